//! The attack lab: poisoning rules and the exported architectures.
mod common;

use fstgate::data::{Augmentation, InputSpec};
use fstgate::lab::{self, Architecture, PoisonSettings};
use fstgate::model::Classifier;
use fstgate::rng::SeededRng;
use tch::{Device, Kind, Tensor};

fn settings(trigger: &str, clean_label: bool, rate: f64) -> PoisonSettings {
    PoisonSettings {
        architecture: Architecture::SmallCnn,
        width: 8,
        trigger: trigger.parse().unwrap(),
        target_class: 3,
        poisoning_rate: rate,
        clean_label,
        epochs: 1,
        learning_rate: 0.05,
        weight_decay: 5e-4,
        batch_size: 64,
        augmentation: Augmentation::NONE,
        seed: 2,
    }
}

#[test]
fn dirty_label_poisoning_relabels_only_other_classes() {
    let train = common::fashion("train", 1000, 1);
    let (poisoned, count) = lab::poison(&train, &settings("badnets", false, 0.05)).unwrap();
    assert_eq!(count, 50);
    let (old, new) = (train.labels_vec(), poisoned.labels_vec());
    let changed: Vec<usize> = (0..old.len()).filter(|&i| old[i] != new[i]).collect();
    assert_eq!(changed.len(), 50, "every poisoned image comes from another class");
    assert!(changed.iter().all(|&i| new[i] == 3));
    // Exactly those images carry the patch.
    let patch = |data: &fstgate::data::Dataset, i: usize| {
        data.images.get(i as i64).narrow(1, 25, 3).narrow(2, 25, 3).min().double_value(&[])
    };
    assert!(changed.iter().all(|&i| patch(&poisoned, i) == 1.0));
    let untouched = (0..old.len()).find(|i| !changed.contains(i)).unwrap();
    assert!(poisoned.images.get(untouched as i64).equal(&train.images.get(untouched as i64)));
}

#[test]
fn clean_label_poisoning_keeps_labels_and_uses_target_images() {
    let train = common::fashion("train", 1000, 1);
    let (poisoned, count) = lab::poison(&train, &settings("sig", true, 0.05)).unwrap();
    assert_eq!(count, 50);
    assert_eq!(poisoned.labels_vec(), train.labels_vec());
    let diff = (&poisoned.images - &train.images).abs().sum_dim_intlist(&[1i64, 2, 3][..], false, Kind::Float);
    let labels = train.labels_vec();
    let touched: Vec<usize> = (0..labels.len()).filter(|&i| diff.double_value(&[i as i64]) > 0.0).collect();
    assert_eq!(touched.len(), 50);
    assert!(touched.iter().all(|&i| labels[i] == 3));
    // Asking for more target images than exist is refused.
    let err = lab::poison(&train, &settings("sig", true, 0.5)).unwrap_err().to_string();
    assert!(err.contains("only 100 are eligible"), "{err}");
}

#[test]
fn exported_architectures_are_scripted_with_batchnorm_following_the_mode() {
    let dir = common::scratch("lab-arch");
    let architectures = [
        (Architecture::SmallCnn, 16, 64),
        (Architecture::SmallCnnGn, 16, 64),
        (Architecture::Resnet18, 8, 64),
        (Architecture::Lenet, 4, 128),
    ];
    for (architecture, width, features) in architectures {
        let path = dir.join(format!("{architecture:?}.pt"));
        lab::export(architecture, 3, (32, 32), 7, width, &mut SeededRng::new(1), &path).unwrap();
        let sample = Tensor::rand([4, 3, 32, 32], (Kind::Float, Device::Cpu));
        let model = Classifier::load(&path, Device::Cpu, &sample, None).unwrap();
        assert_eq!(model.head.name, "fc");
        assert_eq!((model.head.out_features, model.head.in_features), (7, features));
        // GroupNorm has no running statistics: the same computation in both modes; LeNet's
        // dropout follows the mode like BatchNorm.
        let group_norm = architecture == Architecture::SmallCnnGn;
        assert_eq!(
            model.mode_sensitive(&sample).unwrap(),
            architecture != Architecture::SmallCnnGn,
            "{architecture:?}: BatchNorm and dropout must follow train/eval"
        );
        let norm_parameters =
            model.named_parameters().unwrap().into_iter().filter(|(n, _)| n.starts_with("gn")).count();
        assert_eq!(norm_parameters, if group_norm { 6 } else { 0 }, "{architecture:?}");
        // Same seed, same initial weights.
        let again = dir.join("again.pt");
        lab::export(architecture, 3, (32, 32), 7, width, &mut SeededRng::new(1), &again).unwrap();
        let other = Classifier::load(&again, Device::Cpu, &sample, None).unwrap();
        let (a, b) = (tch::no_grad(|| model.logits(&sample)).unwrap(), tch::no_grad(|| other.logits(&sample)).unwrap());
        assert!(a.equal(&b));
    }
}

#[test]
fn lab_writes_model_and_report_atomically() {
    let dir = common::scratch("lab-write");
    let out = dir.join("m.pt");
    let train = common::fashion("train", 600, 1);
    let test = common::fashion("test", 200, 1);
    let report = lab::train_backdoored(
        &train,
        &test,
        &settings("badnets", false, 0.05),
        &InputSpec::default(),
        Device::Cpu,
        &out,
        &fstgate::training::Silent,
    )
    .unwrap();
    assert_eq!(report.poisoned_images, 30);
    assert!(out.exists() && dir.join("m.lab.json").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
    // A bad target class fails before anything is written.
    let bad = PoisonSettings { target_class: 10, ..settings("badnets", false, 0.05) };
    let err = lab::train_backdoored(
        &train,
        &test,
        &bad,
        &InputSpec::default(),
        Device::Cpu,
        &dir.join("bad.pt"),
        &fstgate::training::Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("target class 10 is not in 0..10"), "{err}");
    assert!(!dir.join("bad.pt").exists());
}
