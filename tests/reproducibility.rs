//! Same seed, same run, for a model whose forward draws its own randomness: the lab's LeNet calls
//! dropout inside its TorchScript forward, which draws from torch's process-global generator, not
//! the job's, so the lab seeds that generator too, as purification does. Alone in its test binary
//! on purpose: the generator is shared by every thread of the process, so a training test running
//! beside this one would draw from it between the two runs (one job per process is also how the
//! worker and the CLI run).
mod common;

use std::path::Path;

use fstgate::data::{Augmentation, Dataset, InputSpec};
use fstgate::lab::{self, Architecture, LabReport, PoisonSettings};
use fstgate::model::Classifier;
use tch::Device;

fn train_lenet(train: &Dataset, test: &Dataset, out: &Path, seed: u64) -> (LabReport, tch::Tensor) {
    let settings = PoisonSettings {
        architecture: Architecture::Lenet,
        width: 4,
        trigger: "badnets".parse().unwrap(),
        target_class: 3,
        poisoning_rate: 0.05,
        clean_label: false,
        epochs: 2,
        learning_rate: 0.05,
        weight_decay: 5e-4,
        batch_size: 64,
        augmentation: Augmentation::NONE,
        seed,
    };
    let input = InputSpec::default();
    let report =
        lab::train_backdoored(train, test, &settings, &input, Device::Cpu, out, &fstgate::training::Silent).unwrap();
    let sample = input.normalize(&test.images.narrow(0, 0, 16));
    let model = Classifier::load(out, Device::Cpu, &sample, None).unwrap();
    let logits = tch::no_grad(|| model.logits(&sample)).unwrap();
    (report, logits)
}

#[test]
fn a_model_with_dropout_trains_the_same_twice_from_the_same_seed() {
    let dir = common::scratch("reproducible");
    let train = common::fashion("train", 600, 1);
    let test = common::fashion("test", 200, 1);
    let (first, first_logits) = train_lenet(&train, &test, &dir.join("first.pt"), 7);
    let (second, second_logits) = train_lenet(&train, &test, &dir.join("second.pt"), 7);
    let losses = |r: &LabReport| r.epochs.iter().map(|e| e.loss).collect::<Vec<_>>();
    assert_eq!(losses(&first), losses(&second));
    assert!(first_logits.equal(&second_logits), "same seed, different weights");
    // The seed still matters: another one trains another model.
    let (other, _) = train_lenet(&train, &test, &dir.join("other.pt"), 8);
    assert_ne!(losses(&first), losses(&other));
}
