//! Links fstgate against the libtorch that `./dev setup` installed (LIBTORCH, set in
//! .cargo/config.toml): embeds an rpath so the binary runs without LD_LIBRARY_PATH, and compiles
//! the small C++ module builder the attack lab uses to create trainable TorchScript modules and
//! the bf16 autocast switch (src/model/autocast.cpp).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=src/lab/module_builder.cpp");
    println!("cargo:rerun-if-changed=src/model/autocast.cpp");
    let libtorch = std::env::var("LIBTORCH")
        .map(PathBuf::from)
        .expect("LIBTORCH is not set: run `./dev setup` (it installs libtorch and links .libtorch)");
    // Resolve the .libtorch link so the rpath names the real cache directory.
    let libtorch = libtorch
        .canonicalize()
        .unwrap_or_else(|e| panic!("libtorch not found at {}: {e}; run `./dev setup`", libtorch.display()));
    let lib_dir = libtorch.join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    println!("cargo:rustc-env=FSTGATE_LIBTORCH_LIB={}", lib_dir.display());

    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("src/lab/module_builder.cpp")
        .file("src/model/autocast.cpp")
        .include(libtorch.join("include"))
        .include(libtorch.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .flag_if_supported("-Wno-unused-parameter")
        .warnings(false)
        .compile("fstgate_module_builder");
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
