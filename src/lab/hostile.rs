//! Models that attack the gate rather than the task, for the red-team tests of the worker
//! boundary: classifiers on 1x8x8 inputs (the test fixtures' shape) with an ordinary head `fc`,
//! whose TorchScript forward never returns, allocates until the process dies, or reads a file
//! into its output. They look like any other upload until they run.
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use super::module_builder::ScriptModule;
use crate::error::Result;

/// What the model does when its forward runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hostile {
    /// Counts forever before classifying.
    Loop,
    /// Keeps 512 MiB tensors alive, one more per iteration, up to 50 TiB.
    Allocate,
    /// Reads the first 64 bytes of this file with `aten::from_file` and adds them to the logits
    /// (times zero: the classification is unchanged, the bytes are in the computation).
    ReadFile(PathBuf),
}

/// Writes the hostile model to `path`.
pub fn export_hostile(kind: &Hostile, path: &Path) -> Result<()> {
    let payload = match kind {
        Hostile::Loop => "    i = 0\n    while i >= 0:\n        i = i + 1\n    y = y + i * 0.0\n".to_string(),
        Hostile::Allocate => {
            // Used after the loop, so no dead-code elimination drops the allocations.
            "    held = [y]\n    n = 0\n    while n < 100000:\n        held.append(torch.ones([1 << 27]) + n)\n        \
             n = n + 1\n    y = y + held[-1].sum() * 0.0\n"
                .to_string()
        }
        Hostile::ReadFile(file) => format!(
            "    leak = torch.from_file({:?}, None, 64, dtype=0)\n    y = y + leak.float().sum() * 0.0\n",
            file.display().to_string()
        ),
    };
    let root = ScriptModule::new("Hostile", None)?;
    let head = ScriptModule::new("Hostile_fc", Some(&root))?;
    let options = (Kind::Float, Device::Cpu);
    head.add_tensor("weight", &(Tensor::ones([10, 64], options) / 64.0), true)?;
    head.add_tensor("bias", &Tensor::zeros([10], options), true)?;
    root.add_child("fc", &head)?;
    root.define(&format!(
        "def forward(self, x):\n    y = torch.flatten(x, 1)\n{payload}    return torch.linear(y, self.fc.weight, self.fc.bias)\n"
    ))?;
    root.save(path)
}
