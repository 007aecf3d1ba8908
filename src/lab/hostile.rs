//! Models that attack the gate rather than the task, for the red-team tests of the worker
//! boundary: classifiers on 1x8x8 inputs (the test fixtures' shape) with an ordinary head `fc`,
//! whose TorchScript forward never returns, allocates until the process dies, reads a file into
//! its output, or overrides the head's logits when a trigger is present (a code-level backdoor
//! that retuning weights cannot remove). They look like any other upload until they run.
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
    /// Adds 1000 x a one-hot class 0 to the head's logits, scaled by how far the top-left 2x2
    /// patch's mean exceeds 0.9: no branch, a data path around the head.
    OverrideLogits,
    /// Replaces the logits by a one-hot class 0 when the top-left 2x2 patch's mean exceeds 0.9.
    BranchOnTrigger,
}

/// Writes the hostile model to `path`.
pub fn export_hostile(kind: &Hostile, path: &Path) -> Result<()> {
    let trigger = "torch.mean(x[:, :, 0:2, 0:2])";
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
        Hostile::OverrideLogits => {
            format!(
                "    logits = self.fc.forward(y)\n    return logits + torch.relu({trigger} - 0.9) * 1000.0 * self.target\n"
            )
        }
        Hostile::BranchOnTrigger => format!(
            "    logits = self.fc.forward(y)\n    if bool({trigger} > 0.9):\n        logits = logits * 0.0 + self.target * 100.0\n    \
             return logits\n"
        ),
    };
    // The payloads above end the forward themselves; the others classify after it.
    let ending = match kind {
        Hostile::OverrideLogits | Hostile::BranchOnTrigger => "",
        _ => "    return self.fc.forward(y)\n",
    };
    let root = ScriptModule::new("Hostile", None)?;
    let head = ScriptModule::new("Hostile_fc", Some(&root))?;
    let options = (Kind::Float, Device::Cpu);
    head.add_tensor("weight", &(Tensor::ones([10, 64], options) / 64.0), true)?;
    head.add_tensor("bias", &Tensor::zeros([10], options), true)?;
    head.define("def forward(self, x):\n    return torch.linear(x, self.weight, self.bias)\n")?;
    root.add_child("fc", &head)?;
    let target = Tensor::zeros([10], options).index_fill(0, &Tensor::from_slice(&[0i64]), 1.0);
    root.add_tensor("target", &target, false)?;
    root.define(&format!("def forward(self, x):\n    y = torch.flatten(x, 1)\n{payload}{ending}"))?;
    root.save(path)
}
