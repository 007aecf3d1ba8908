//! fstgate-componentize IN.wasm OUT.wasm: wraps the core module a policy crate compiles to
//! (wasm32-unknown-unknown, with the world's type information that wit-bindgen embeds) into a
//! WebAssembly component that fstgate can load. No adapter is involved: the module imports only
//! what the world declares, so the component imports nothing but `log`.
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use wit_component::ComponentEncoder;

fn main() -> anyhow::Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [input, output] = args.as_slice() else {
        bail!("usage: fstgate-componentize IN.wasm OUT.wasm");
    };
    let module = std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
    let component = ComponentEncoder::default()
        .module(&module)
        .with_context(|| format!("{} is not a core module with component type information", input.display()))?
        .validate(true)
        .encode()
        .with_context(|| format!("cannot make a component of {}", input.display()))?;
    write_atomically(output, &component)
}

/// Writes via a temporary file beside `path` and a rename, so that a reader (or an interrupted
/// build) never sees half a component. (Not `tempfile`: its files are private, mode 0600.)
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path.file_name().with_context(|| format!("{} names no file", path.display()))?;
    let temp = path.with_file_name(format!(".{}.{}.partial", name.to_string_lossy(), std::process::id()));
    let written = std::fs::write(&temp, bytes).and_then(|()| std::fs::rename(&temp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.with_context(|| format!("cannot write {}", path.display()))
}
