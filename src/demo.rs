//! `fstgate demo`: the whole job on the embedded default, on real data. Under a work directory
//! it backdoors a small CNN on Fashion-MNIST with the lab (once), writes a signing key and a
//! pipeline configuration (a local registry directory, a SQLite job store, two WebAssembly policy
//! plugins), and registers the model as a new version; the caller then runs the watcher on it.
use std::path::{Path, PathBuf};

use tch::Device;

use crate::attestation::keys;
use crate::data::{self, Augmentation, DataSpec, InputSpec};
use crate::error::{Error, Result};
use crate::evaluation::Trigger;
use crate::lab::{self, Architecture, PoisonSettings};
use crate::policy;
use crate::training::Progress;

/// The registered model's name; each run registers `fashion-cnn/<next version>`.
pub const MODEL_NAME: &str = "fashion-cnn";
/// The registry's name in the configuration (the job store keys jobs by it).
pub const SOURCE_NAME: &str = "local-registry";

/// Example policy components (plugin-sdk/examples, built by scripts/build-plugins.sh), shipped in
/// the binary so the demo needs no checkout, each with the one limit it is configured with: the
/// default policy's own (`policy::DEFAULT_*`), so the demo gates as `fstgate purify` does.
const POLICIES: [(&str, &[u8], &str, f64); 2] = [
    (
        "max-asr.wasm",
        include_bytes!("../plugin-sdk/examples/prebuilt/max-asr.wasm"),
        "max_attack_success_rate",
        policy::DEFAULT_MAX_ATTACK_SUCCESS_RATE,
    ),
    (
        "max-accuracy-drop.wasm",
        include_bytes!("../plugin-sdk/examples/prebuilt/max-accuracy-drop.wasm"),
        "max_accuracy_drop_points",
        policy::DEFAULT_MAX_ACCURACY_DROP_POINTS,
    ),
];

/// Everything under the work directory.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The work directory itself.
    pub work: PathBuf,
    /// The lab's backdoored model (kept between runs) and its lab report.
    pub backdoored: PathBuf,
    /// `registry/`: the local registry the watcher reads uploads from.
    pub registry: PathBuf,
    /// `released/`: the destination purified models and decisions are published to.
    pub released: PathBuf,
    /// `state/`: the pipeline's state directory (the SQLite job store).
    pub state: PathBuf,
    /// `fstgate.toml`: the pipeline configuration.
    pub config: PathBuf,
    /// `signing-key.pem`: the key that signs releases.
    pub private_key: PathBuf,
    /// `signing-key.pub`: its public half, for `fstgate verify`.
    pub public_key: PathBuf,
    /// `policies/`: the policy plugins the gate runs.
    pub policies: PathBuf,
}

impl Layout {
    /// The layout under `work`.
    pub fn new(work: &Path) -> Self {
        Layout {
            work: work.to_path_buf(),
            backdoored: work.join("backdoored.pt"),
            registry: work.join("registry"),
            released: work.join("released"),
            state: work.join("state"),
            config: work.join("fstgate.toml"),
            private_key: work.join("signing-key.pem"),
            public_key: work.join("signing-key.pub"),
            policies: work.join("policies"),
        }
    }

    /// The versions registered so far, plus one.
    fn next_version(&self) -> Result<u64> {
        let dir = self.registry.join(MODEL_NAME);
        let mut last = 0;
        if dir.is_dir() {
            for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
                let entry = entry.map_err(|e| Error::io(&dir, e))?;
                if let Some(version) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) {
                    last = last.max(version);
                }
            }
        }
        Ok(last + 1)
    }
}

/// A model version just registered.
#[derive(Debug, Clone)]
pub struct Registered {
    /// `fashion-cnn/<version>`, the job store's model id.
    pub model: String,
    /// `<registry>/fashion-cnn/<version>`, holding model.pt and the _SUCCESS marker.
    pub upload: PathBuf,
}

/// The demo's backdoor (also the integration tests' model): a small CNN, BadNets (3x3 white
/// patch, bottom right) to class 0, 1% of the training images poisoned, 5 epochs, seed 1.
pub fn lab_settings() -> PoisonSettings {
    PoisonSettings {
        architecture: Architecture::SmallCnn,
        width: Architecture::SmallCnn.default_width(),
        trigger: "badnets".parse::<Trigger>().expect("the default BadNets trigger parses"),
        target_class: 0,
        poisoning_rate: 0.01,
        clean_label: false,
        epochs: 5,
        learning_rate: 0.05,
        weight_decay: 5e-4,
        batch_size: 128,
        augmentation: Augmentation::NONE,
        seed: 1,
    }
}

/// Backdoors the lab model on 30,000 training images if the work directory has none yet.
pub fn backdoor(layout: &Layout, fashion_mnist: &Path, device: Device, progress: &dyn Progress) -> Result<bool> {
    if layout.backdoored.is_file() {
        return Ok(false);
    }
    let input = InputSpec::default();
    let spec = |split: &str| format!("{}#{split}", fashion_mnist.display()).parse::<DataSpec>();
    let train = data::load(&spec("train")?)?.conform(&input)?.balanced_count(30_000, 1)?;
    let test = data::load(&spec("test")?)?.conform(&input)?.balanced_count(2_000, 1)?;
    std::fs::create_dir_all(&layout.work).map_err(|e| Error::io(&layout.work, e))?;
    lab::train_backdoored(&train, &test, &lab_settings(), &input, device, &layout.backdoored, progress)?;
    Ok(true)
}

/// Writes what the pipeline needs that is not there yet: the signing key pair, the policy
/// components, and the configuration (rewritten every run, so it follows this binary).
pub fn configure(layout: &Layout, fashion_mnist: &Path) -> Result<()> {
    for dir in [&layout.registry, &layout.released, &layout.policies] {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    if !layout.private_key.is_file() {
        keys::generate_files(&layout.private_key, &layout.public_key)?;
    }
    let mut policies = String::new();
    for (file, bytes, key, limit) in POLICIES {
        crate::fsutil::write_atomic(&layout.policies.join(file), bytes)?;
        // Debug formatting keeps a TOML float a float (2.0, not 2).
        policies.push_str(&format!("\n[[policies]]\nplugin = \"policies/{file}\"\nconfig = {{ {key} = {limit:?} }}\n"));
    }
    let data = fashion_mnist.display();
    let config = format!(
        "# fstgate demo pipeline (schemas/pipeline-config.schema.json); paths are relative to this file.\n\
         state_dir = \"state\"\n\
         device = \"auto\"\n\n\
         [[sources]]\nname = \"{SOURCE_NAME}\"\nurl = \"registry\"\n\n\
         [destination]\nurl = \"released\"\n\n\
         [[data]]\nmodels = \"{MODEL_NAME}/*\"\n\
         clean = {clean}\nclean_count = 3000\ntest = {test}\ntest_count = 2000\ntrigger = \"badnets\"\ntarget_class = 0\n\n\
         [signing_key]\npath = \"signing-key.pem\"\n{policies}",
        clean = toml_string(&format!("{data}#train")),
        test = toml_string(&format!("{data}#test")),
    );
    crate::fsutil::write_atomic(&layout.config, config.as_bytes())
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// Registers the backdoored model as the next version: model.pt first, the _SUCCESS marker last
/// (the object-store source's rule for a complete upload).
pub fn register(layout: &Layout) -> Result<Registered> {
    let version = layout.next_version()?;
    let upload = layout.registry.join(MODEL_NAME).join(version.to_string());
    std::fs::create_dir_all(&upload).map_err(|e| Error::io(&upload, e))?;
    let model = upload.join("model.pt");
    std::fs::copy(&layout.backdoored, &model).map_err(|e| Error::io(&model, e))?;
    let marker = upload.join("_SUCCESS");
    std::fs::write(&marker, b"").map_err(|e| Error::io(&marker, e))?;
    Ok(Registered { model: format!("{MODEL_NAME}/{version}"), upload })
}
