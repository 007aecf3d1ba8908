//! Image classifiers as TorchScript modules: loading (a TorchScript archive or an MLflow model
//! directory), taking the logits out of whatever the model returns, and saving.
mod dataflow;
pub mod graph;
mod head;
mod mlflow;
mod precision;

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tch::{CModule, Device, IValue, Kind, Tensor};

pub use head::Head;
use precision::Bf16Autocast;
pub use precision::Precision;

use crate::data::InputSpec;
use crate::error::{Error, Result};

/// How the logits are taken from the model's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OutputKind {
    /// forward returns the logits tensor.
    Tensor,
    /// forward returns a tuple or list; the logits are its first element.
    TupleFirst,
    /// forward returns a dict; the logits are under key `logits`.
    DictLogits,
}

/// Where the model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ModelFormat {
    /// A TorchScript archive (`torch.jit.save`).
    Torchscript,
    /// An MLflow model directory whose data file is a TorchScript archive.
    MlflowTorchscript,
}

/// Provenance of a loaded model, recorded in reports.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ModelSource {
    /// The path the user gave; for a model from a registry, the registry's URI for it.
    pub path: PathBuf,
    /// The TorchScript archive actually loaded (inside an MLflow directory, its data file).
    pub archive: PathBuf,
    /// The form the model was given in.
    pub format: ModelFormat,
    /// sha256 of the TorchScript archive.
    pub sha256: String,
    /// Every call in the archive's TorchScript code (`aten::conv2d`, `prim::If`, ...) with its
    /// count, as the graph scan read it before the model ran.
    pub ops: std::collections::BTreeMap<String, u64>,
    /// The registry or store the gate took the model from (pipeline jobs); then `path` is the
    /// registry's URI for it and `archive` the file within the upload. Absent for a local file.
    pub registry: Option<RegistrySource>,
}

/// A registered model version as its registry names it, for reviewers who search for it there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RegistrySource {
    /// The pipeline source's name (`[[sources]] name`).
    pub source: String,
    /// `mlflow` or `object-store`.
    pub kind: String,
    /// The registry's address: the MLflow tracking URL or the store URL, without credentials.
    pub location: String,
    /// The registered model's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The registry's own URI for this version: `models:/<name>/<version>` for MLflow, the
    /// upload's directory URL in a store.
    pub uri: String,
}

/// Sets how this process runs TorchScript, once, before the first model loads: plain
/// interpretation, without the profiling executor and its fuser. A purification loads a fresh
/// module and runs a few hundred steps; profiling, re-optimising and compiling fused kernels for
/// each module costs more than it saves (ResNet-18 on an H100: 1.64 s of training with it, 0.94 s
/// without, same accuracy; docs/benchmarks.md). `set_torchscript_optimization` overrides it.
pub fn init_torchscript() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| set_torchscript_optimization(false));
}

/// Turns TorchScript's profiling executor and tensor-expression fuser on or off, process-wide.
pub fn set_torchscript_optimization(enabled: bool) {
    tch::jit::set_profiling_mode(enabled);
    tch::jit::set_tensor_expr_fuser_enabled(enabled);
}

/// A classifier's state, taken by `Classifier::snapshot`.
pub struct Snapshot(Vec<u8>);

/// A TorchScript image classifier with its classification head located.
pub struct Classifier {
    module: CModule,
    /// Where the model came from.
    pub source: ModelSource,
    /// How the logits are taken from the model's output.
    pub output: OutputKind,
    /// The located classification head.
    pub head: Head,
    /// Number of logits the model produces.
    pub num_classes: i64,
    device: Device,
    precision: Precision,
}

impl Classifier {
    /// Loads the model at `path` onto `device`, probes it with `sample` (a small batch of
    /// [0, 1]-scaled, already normalised inputs) and locates its head (`head_name` overrides).
    pub fn load(path: &Path, device: Device, sample: &Tensor, head_name: Option<&str>) -> Result<Self> {
        init_torchscript();
        let (archive, format) = resolve_archive(path)?;
        check_torchscript_archive(&archive)?;
        // Before loading: loading runs `__setstate__` methods, and the forward below the rest.
        let code = graph::read_code(&archive)?;
        let ops = graph::scan(&archive, &code)?;
        let mut module = CModule::load_on_device(&archive, device)
            .map_err(|e| Error::model(&archive, format!("TorchScript load failed: {}", first_line(&e.to_string()))))?;
        module.set_eval();
        let sha256 = crate::data::sha256_file(&archive)?;
        let sample = sample.to_device(device);
        let output = tch::no_grad(|| module.forward_is(&[IValue::Tensor(sample.shallow_clone())])).map_err(|e| {
            Error::DataModelMismatch(format!(
                "the model rejects inputs of shape {:?}: {}",
                sample.size(),
                first_line(&e.to_string())
            ))
        })?;
        let (output_kind, logits) = take_logits(output, &archive)?;
        let shape = logits.size();
        if shape.len() != 2 || shape[0] != sample.size()[0] {
            return Err(Error::model(
                &archive,
                format!("output of shape {shape:?} for a batch of {}: expected [batch, classes]", sample.size()[0]),
            ));
        }
        let mut classifier = Classifier {
            module,
            source: ModelSource { path: path.to_path_buf(), archive, format, sha256, ops, registry: None },
            output: output_kind,
            head: Head::placeholder(),
            num_classes: shape[1],
            device,
            precision: Precision::Fp32,
        };
        classifier.head = head::locate(&classifier, &sample, head_name)?;
        let findings = dataflow::check(&code, &classifier.head.name);
        if !findings.is_empty() {
            return Err(Error::model(
                &classifier.source.archive,
                format!("refused: its code can override the classification: {}", findings.join("; ")),
            ));
        }
        Ok(classifier)
    }

    /// The device the model runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The arithmetic the model runs in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Runs the model in `precision` from now on (bf16 moves 4-d parameters to channels-last).
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        precision.check_device(self.device)?;
        self.precision = precision;
        self.apply_memory_format()
    }

    fn apply_memory_format(&mut self) -> Result<()> {
        if self.precision == Precision::Bf16 {
            tch::no_grad(|| -> Result<()> {
                for (_, mut parameter) in self.named_parameters()? {
                    if parameter.dim() == 4 {
                        parameter.set_data(&precision::channels_last(&parameter));
                    }
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Logits [batch, classes] (float32 under bf16 autocast) for a normalised batch on the model's device.
    pub fn logits(&self, inputs: &Tensor) -> Result<Tensor> {
        let output = match self.precision {
            Precision::Fp32 => self.module.forward_is(&[IValue::Tensor(inputs.shallow_clone())]),
            Precision::Bf16 => {
                let _autocast = Bf16Autocast::enter()?;
                self.module.forward_is(&[IValue::Tensor(precision::channels_last(inputs))])
            }
        }
        .map_err(|e| Error::model(&self.source.archive, format!("forward failed: {}", first_line(&e.to_string()))))?;
        let logits = take_logits(output, &self.source.archive)?.1;
        Ok(if matches!(logits.kind(), Kind::BFloat16 | Kind::Half) { logits.to_kind(Kind::Float) } else { logits })
    }

    /// BatchNorm uses batch statistics and updates its running statistics; dropout is active.
    pub fn set_train(&mut self) {
        self.module.set_train();
    }

    /// BatchNorm uses its running statistics; dropout is off.
    pub fn set_eval(&mut self) {
        self.module.set_eval();
    }

    /// All parameters with their TorchScript names (e.g. `layer1.0.conv1.weight`).
    pub fn named_parameters(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(self.module.named_parameters()?)
    }

    /// The head's weight and (if any) bias tensors, sharing storage with the module.
    pub fn head_tensors(&self) -> Result<(Tensor, Option<Tensor>)> {
        let params = self.named_parameters()?;
        let find = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, t)| t.shallow_clone());
        let weight =
            find(&self.head.weight).ok_or_else(|| Error::Head(format!("parameter {} vanished", self.head.weight)))?;
        Ok((weight, self.head.bias.as_deref().and_then(find)))
    }

    /// Predicted classes for a normalised batch (eval mode is the caller's business).
    pub fn predict(&self, inputs: &Tensor) -> Result<Tensor> {
        Ok(self.logits(inputs)?.argmax(1, false))
    }

    /// Predicted classes for [0, 1] images (CPU) after `stamp` (a trigger, or nothing),
    /// normalised by `input`, in batches of `batch_size` on the model's device (eval mode is the
    /// caller's business). The images go to the device once and the predictions come back once,
    /// so the host does not wait on the device between batches.
    pub fn stamped_predictions(
        &self,
        images: &Tensor,
        input: &InputSpec,
        batch_size: i64,
        stamp: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<Vec<i64>> {
        let n = images.size()[0];
        let images = images.to_device(self.device);
        let predicted = tch::no_grad(|| -> Result<Vec<Tensor>> {
            let mut batches = Vec::with_capacity((n / batch_size.max(1) + 1) as usize);
            let mut start = 0;
            while start < n {
                let len = batch_size.min(n - start);
                let batch = stamp(&images.narrow(0, start, len))?;
                batches.push(self.predict(&input.normalize(&batch))?);
                start += len;
            }
            Ok(batches)
        })?;
        if predicted.is_empty() {
            return Ok(Vec::new());
        }
        Vec::<i64>::try_from(Tensor::cat(&predicted, 0).to_device(Device::Cpu)).map_err(Error::Torch)
    }

    /// Does the output change between train and eval mode? BatchNorm and dropout make it
    /// change; torch.jit.trace bakes the mode in. Runs on a fresh copy of the archive, because a
    /// train-mode forward updates BatchNorm running statistics.
    pub fn mode_sensitive(&self, sample: &Tensor) -> Result<bool> {
        let mut probe = CModule::load_on_device(&self.source.archive, self.device)?;
        let input = [IValue::Tensor(sample.to_device(self.device))];
        probe.set_eval();
        let eval = tch::no_grad(|| probe.forward_is(&input))?;
        probe.set_train();
        let Ok(train) = tch::no_grad(|| probe.forward_is(&input)) else {
            return Ok(true);
        };
        let (_, train) = take_logits(train, &self.source.archive)?;
        let (_, eval) = take_logits(eval, &self.source.archive)?;
        Ok(!train.allclose(&eval, 1e-5, 1e-6, false))
    }

    /// The module's whole state (parameters, buffers such as BatchNorm running statistics, and
    /// any other attribute) as an in-memory archive. TorchScript exposes no buffer list to copy,
    /// so the state is serialised through a temporary file.
    pub fn snapshot(&mut self) -> Result<Snapshot> {
        let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let path = dir.path().join("snapshot.pt");
        self.save(&path)?;
        Ok(Snapshot(std::fs::read(&path).map_err(|e| Error::io(&path, e))?))
    }

    /// Puts the module back into a snapshot's state (in eval mode); head and output contract are
    /// unchanged, since a snapshot is the same module.
    pub fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        let mut module = CModule::load_data_on_device(&mut std::io::Cursor::new(&snapshot.0), self.device)?;
        module.set_eval();
        self.module = module;
        self.apply_memory_format()
    }

    /// Writes the module as a TorchScript archive loadable by torch.jit.load and by fstgate.
    /// Parameters are saved on the CPU as float so the archive loads anywhere.
    pub fn save(&mut self, path: &Path) -> Result<()> {
        self.module.to(Device::Cpu, Kind::Float, false);
        let saved = self.module.save(path);
        self.module.to(self.device, Kind::Float, false);
        saved.map_err(|e| Error::Write { path: path.to_path_buf(), source: std::io::Error::other(e.to_string()) })
    }
}

/// Finds the TorchScript archive behind `path`: the file itself, or the pytorch flavour's data
/// inside an MLflow model directory.
fn resolve_archive(path: &Path) -> Result<(PathBuf, ModelFormat)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        Ok((mlflow::torchscript_archive(path)?, ModelFormat::MlflowTorchscript))
    } else {
        Ok((path.to_path_buf(), ModelFormat::Torchscript))
    }
}

/// A TorchScript archive is a zip with a `code/` tree; `torch.save` of an eager module is a zip
/// with only `data.pkl`. Telling them apart gives a useful error instead of a C++ one. Entry
/// names are in the zip's central directory at the end of the file, so only the first bytes and
/// the tail are read.
fn check_torchscript_archive(path: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 4 << 20;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut magic = [0u8; 4];
    let is_zip = file.read_exact(&mut magic).is_ok() && &magic == b"PK\x03\x04";
    if !is_zip {
        return Err(Error::model(path, "not a TorchScript archive (not a zip file; corrupt or another format)"));
    }
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL)))
        .and_then(|_| file.read_to_end(&mut tail))
        .map_err(|e| Error::io(path, e))?;
    let has = |needle: &[u8]| tail.windows(needle.len()).any(|w| w == needle);
    if !has(b"/code/") && !has(b"constants.pkl") {
        return Err(Error::model(
            path,
            "this is a pickled eager PyTorch module (torch.save), not TorchScript: export it with \
             torch.jit.script(model).save(path) or torch.jit.trace",
        ));
    }
    Ok(())
}

/// Takes the logits out of a model output: a tensor, the first element of a tuple or list, or
/// the `logits` entry of a dict; anything else is an error about the model at `archive`.
fn take_logits(output: IValue, archive: &Path) -> Result<(OutputKind, Tensor)> {
    logits_of(output).map_err(|reason| Error::model(archive, reason))
}

fn logits_of(output: IValue) -> std::result::Result<(OutputKind, Tensor), String> {
    match output {
        IValue::Tensor(t) => Ok((OutputKind::Tensor, t)),
        IValue::Tuple(items) | IValue::GenericList(items) => match items.into_iter().next() {
            Some(IValue::Tensor(t)) => Ok((OutputKind::TupleFirst, t)),
            Some(other) => {
                Err(format!("the first element of the model's tuple output is not a tensor: {}", describe(&other)))
            }
            None => Err("the model returns an empty tuple".to_string()),
        },
        IValue::TensorList(mut items) if !items.is_empty() => Ok((OutputKind::TupleFirst, items.swap_remove(0))),
        IValue::GenericDict(entries) => {
            let keys: Vec<String> = entries.iter().map(|(k, _)| describe(k)).collect();
            entries
                .into_iter()
                .find_map(|(k, v)| match (k, v) {
                    (IValue::String(k), IValue::Tensor(t)) if k == "logits" => Some(t),
                    _ => None,
                })
                .map(|t| (OutputKind::DictLogits, t))
                .ok_or_else(|| {
                    format!("the model returns a dict without a `logits` tensor (keys: {})", keys.join(", "))
                })
        }
        other => Err(format!("the model returns {}, not logits", describe(&other))),
    }
}

fn describe(value: &IValue) -> String {
    match value {
        IValue::String(s) => s.clone(),
        IValue::Tensor(t) => format!("a tensor {:?}", t.size()),
        IValue::Tuple(_) => "a tuple".into(),
        IValue::GenericList(_) | IValue::TensorList(_) => "a list".into(),
        IValue::GenericDict(_) => "a dict".into(),
        IValue::None => "None".into(),
        other => format!("{other:?}").chars().take(60).collect(),
    }
}

/// The line of a libtorch error that says what went wrong: its first, unless that only says the
/// TorchScript interpreter failed, in which case the error raised at the bottom of the trace
/// (e.g. `RuntimeError: ... DefaultCPUAllocator: can't allocate memory ...`).
pub(crate) fn first_line(s: &str) -> &str {
    let mut lines = s.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or(s.trim());
    if first.contains("operation failed in the TorchScript interpreter") {
        return lines.next_back().unwrap_or(first);
    }
    first
}
