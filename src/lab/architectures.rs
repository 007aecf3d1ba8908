//! The lab's model families, written as TorchScript source over named parameters so that the
//! exported module behaves like a scripted PyTorch model (BatchNorm follows train/eval mode).
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::module_builder::ScriptModule;
use crate::error::Result;
use crate::rng::SeededRng;

/// A model family the lab can train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// Three conv-BN-ReLU stages (width, 2x, 4x channels), global average pool, head `fc`.
    SmallCnn,
    /// small-cnn with GroupNorm (4 channels per group) instead of BatchNorm: no running
    /// statistics, the same computation in train and eval mode.
    SmallCnnGn,
    /// ResNet-18 for 28x28/32x32 inputs (3x3 stem, no max-pool; BasicBlocks [2, 2, 2, 2]).
    Resnet18,
    /// LeNet-style: two 5x5 conv-ReLU-max-pool stages (width, 2x channels), no normalisation,
    /// flattened features, a hidden layer of 32x width units with ReLU and dropout 0.5, head `fc`.
    Lenet,
}

impl Architecture {
    /// The base channel width the lab uses unless told otherwise.
    pub fn default_width(self) -> i64 {
        match self {
            Architecture::SmallCnn | Architecture::SmallCnnGn | Architecture::Lenet => 16,
            Architecture::Resnet18 => 64,
        }
    }
}

/// Parameters and buffers by module path, in definition order, plus the forward source.
struct Net<'a> {
    tensors: Vec<(String, Tensor, bool)>,
    forward: String,
    rng: &'a mut SeededRng,
}

impl<'a> Net<'a> {
    fn new(rng: &'a mut SeededRng) -> Self {
        Net { tensors: Vec::new(), forward: String::new(), rng }
    }

    /// A parameter with PyTorch's default init for conv and linear layers:
    /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    fn uniform_param(&mut self, name: String, shape: &[i64], fan_in: i64) {
        let bound = 1.0 / (fan_in as f64).sqrt();
        let tensor = self.rng.uniform(shape, -bound, bound, Device::Cpu);
        self.param(name, tensor);
    }

    fn param(&mut self, name: String, tensor: Tensor) {
        self.tensors.push((name, tensor, true));
    }

    /// Returns the expression for a convolution of `x`.
    fn conv(&mut self, x: &str, name: &str, (cin, cout, k): (i64, i64, i64), stride: i64, bias: bool) -> String {
        let fan_in = cin * k * k;
        self.uniform_param(format!("{name}.weight"), &[cout, cin, k, k], fan_in);
        let bias_expr = if bias {
            self.uniform_param(format!("{name}.bias"), &[cout], fan_in);
            format!("self.{name}.bias")
        } else {
            "None".to_string()
        };
        let pad = k / 2;
        format!("torch.conv2d({x}, self.{name}.weight, {bias_expr}, [{stride}, {stride}], [{pad}, {pad}])")
    }

    fn batch_norm(&mut self, x: &str, name: &str, channels: i64) -> String {
        let opts = (Kind::Float, Device::Cpu);
        self.param(format!("{name}.weight"), Tensor::ones([channels], opts));
        self.param(format!("{name}.bias"), Tensor::zeros([channels], opts));
        self.tensors.push((format!("{name}.running_mean"), Tensor::zeros([channels], opts), false));
        self.tensors.push((format!("{name}.running_var"), Tensor::ones([channels], opts), false));
        format!(
            "torch.batch_norm({x}, self.{name}.weight, self.{name}.bias, self.{name}.running_mean, \
             self.{name}.running_var, self.training, 0.1, 1e-05, True)"
        )
    }

    /// GroupNorm with `channels / 4` groups (at least one).
    fn group_norm(&mut self, x: &str, name: &str, channels: i64) -> String {
        let opts = (Kind::Float, Device::Cpu);
        self.param(format!("{name}.weight"), Tensor::ones([channels], opts));
        self.param(format!("{name}.bias"), Tensor::zeros([channels], opts));
        let groups = (channels / 4).max(1);
        format!("torch.group_norm({x}, {groups}, self.{name}.weight, self.{name}.bias, 1e-05, True)")
    }

    fn linear(&mut self, x: &str, name: &str, inputs: i64, outputs: i64) -> String {
        self.uniform_param(format!("{name}.weight"), &[outputs, inputs], inputs);
        self.uniform_param(format!("{name}.bias"), &[outputs], inputs);
        format!("torch.linear({x}, self.{name}.weight, self.{name}.bias)")
    }

    /// Global average pooling, then the linear head `fc` producing the logits.
    fn pooled_head(&mut self, features: i64, classes: i64) {
        self.line("x = torch.flatten(torch.adaptive_avg_pool2d(x, [1, 1]), 1)".into());
        let fc = self.linear("x", "fc", features, classes);
        self.line(format!("return {fc}"));
    }

    fn line(&mut self, statement: String) {
        self.forward.push_str("    ");
        self.forward.push_str(&statement);
        self.forward.push('\n');
    }
}

fn small_cnn(channels: i64, classes: i64, width: i64, group_norm: bool, rng: &mut SeededRng) -> Net<'_> {
    let mut net = Net::new(rng);
    let widths = [width, 2 * width, 4 * width];
    let mut cin = channels;
    for (i, &cout) in widths.iter().enumerate() {
        let stage = i + 1;
        let conv = net.conv("x", &format!("conv{stage}"), (cin, cout, 3), 1, true);
        let norm = if group_norm {
            net.group_norm(&conv, &format!("gn{stage}"), cout)
        } else {
            net.batch_norm(&conv, &format!("bn{stage}"), cout)
        };
        net.line(format!("x = torch.relu({norm})"));
        if stage < widths.len() {
            net.line("x = torch.max_pool2d(x, [2, 2])".into());
        }
        cin = cout;
    }
    net.pooled_head(cin, classes);
    net
}

fn lenet(channels: i64, classes: i64, width: i64, (height, image_width): (i64, i64), rng: &mut SeededRng) -> Net<'_> {
    let mut net = Net::new(rng);
    let mut cin = channels;
    let (mut h, mut w) = (height, image_width);
    for (stage, cout) in [width, 2 * width].into_iter().enumerate() {
        let conv = net.conv("x", &format!("conv{}", stage + 1), (cin, cout, 5), 1, true);
        net.line(format!("x = torch.max_pool2d(torch.relu({conv}), [2, 2])"));
        (cin, h, w) = (cout, h / 2, w / 2);
    }
    let hidden = 32 * width;
    net.line("x = torch.flatten(x, 1)".into());
    let fc1 = net.linear("x", "fc1", cin * h * w, hidden);
    net.line(format!("x = torch.dropout(torch.relu({fc1}), 0.5, self.training)"));
    let fc = net.linear("x", "fc", hidden, classes);
    net.line(format!("return {fc}"));
    net
}

fn resnet18(channels: i64, classes: i64, width: i64, rng: &mut SeededRng) -> Net<'_> {
    let mut net = Net::new(rng);
    let stem = net.conv("x", "conv1", (channels, width, 3), 1, false);
    let stem = net.batch_norm(&stem, "bn1", width);
    net.line(format!("x = torch.relu({stem})"));
    let mut cin = width;
    for (stage, (multiplier, first_stride)) in [(1, 1), (2, 2), (4, 2), (8, 2)].into_iter().enumerate() {
        let cout = width * multiplier;
        for block in 0..2 {
            let stride = if block == 0 { first_stride } else { 1 };
            let prefix = format!("layer{}.block{block}", stage + 1);
            let conv = net.conv("x", &format!("{prefix}.conv1"), (cin, cout, 3), stride, false);
            let bn = net.batch_norm(&conv, &format!("{prefix}.bn1"), cout);
            net.line(format!("out = torch.relu({bn})"));
            let conv = net.conv("out", &format!("{prefix}.conv2"), (cout, cout, 3), 1, false);
            let bn = net.batch_norm(&conv, &format!("{prefix}.bn2"), cout);
            net.line(format!("out = {bn}"));
            if stride != 1 || cin != cout {
                let conv = net.conv("x", &format!("{prefix}.shortcut_conv"), (cin, cout, 1), stride, false);
                let bn = net.batch_norm(&conv, &format!("{prefix}.shortcut_bn"), cout);
                net.line(format!("x = torch.relu(out + {bn})"));
            } else {
                net.line("x = torch.relu(out + x)".into());
            }
            cin = cout;
        }
    }
    net.pooled_head(cin, classes);
    net
}

/// A module tree: tensors of this module, then children by name, in definition order.
#[derive(Default)]
struct Node {
    tensors: Vec<(String, Tensor, bool)>,
    children: Vec<(String, Node)>,
}

impl Node {
    fn insert(&mut self, path: &str, tensor: Tensor, is_parameter: bool) {
        match path.split_once('.') {
            None => self.tensors.push((path.to_string(), tensor, is_parameter)),
            Some((child, rest)) => {
                let index = match self.children.iter().position(|(n, _)| n == child) {
                    Some(i) => i,
                    None => {
                        self.children.push((child.to_string(), Node::default()));
                        self.children.len() - 1
                    }
                };
                self.children[index].1.insert(rest, tensor, is_parameter);
            }
        }
    }

    /// Registers this node's tensors and (recursively built) children on `module`; every class
    /// lives in the root's compilation unit so one archive holds the whole tree.
    fn fill(&self, class: &str, module: &ScriptModule, root: &ScriptModule) -> Result<()> {
        for (name, tensor, is_parameter) in &self.tensors {
            module.add_tensor(name, tensor, *is_parameter)?;
        }
        for (name, child) in &self.children {
            let child_class = format!("{class}_{name}");
            let child_module = ScriptModule::new(&child_class, Some(root))?;
            child.fill(&child_class, &child_module, root)?;
            module.add_child(name, &child_module)?;
        }
        Ok(())
    }
}

/// Writes a freshly initialised (torch's global seed) TorchScript model to `path`, for images of
/// `channels` x `size` (height, width).
pub fn export(
    architecture: Architecture,
    channels: i64,
    size: (i64, i64),
    classes: i64,
    width: i64,
    rng: &mut SeededRng,
    path: &Path,
) -> Result<()> {
    let net = match architecture {
        Architecture::SmallCnn => small_cnn(channels, classes, width, false, rng),
        Architecture::SmallCnnGn => small_cnn(channels, classes, width, true, rng),
        Architecture::Resnet18 => resnet18(channels, classes, width, rng),
        Architecture::Lenet => lenet(channels, classes, width, size, rng),
    };
    let class = match architecture {
        Architecture::SmallCnn => "SmallCnn",
        Architecture::SmallCnnGn => "SmallCnnGn",
        Architecture::Resnet18 => "ResNet18",
        Architecture::Lenet => "LeNet",
    };
    let mut tree = Node::default();
    for (name, tensor, is_parameter) in net.tensors {
        tree.insert(&name, tensor, is_parameter);
    }
    let root = ScriptModule::new(class, None)?;
    tree.fill(class, &root, &root)?;
    root.define(&format!("def forward(self, x):\n{}", net.forward))?;
    root.save(path)
}
