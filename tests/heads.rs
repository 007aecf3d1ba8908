//! Head location and output handling on TorchScript fixtures made by PyTorch's torch.jit.script
//! (tests/fixtures/make_fixtures.py), and the errors for models fstgate must refuse.
use std::path::{Path, PathBuf};

use fstgate::model::{Classifier, OutputKind};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn sample() -> Tensor {
    tch::manual_seed(11);
    Tensor::rand([4, 1, 8, 8], (Kind::Float, Device::Cpu))
}

/// The input the fixture script stored logits for: arange(64) / 64.
fn reference_input() -> Tensor {
    (Tensor::arange(64, (Kind::Float, Device::Cpu)) / 64.0).view([1, 1, 8, 8])
}

fn expected() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(fixtures().join("heads/expected.json")).unwrap();
    serde_json::from_str::<Value>(&text).unwrap().as_object().unwrap().clone()
}

fn load(path: &Path, head: Option<&str>) -> fstgate::Result<Classifier> {
    Classifier::load(path, Device::Cpu, &sample(), head)
}

#[test]
fn finds_every_fixture_head_and_reproduces_pytorch_logits() {
    for (file, spec) in expected() {
        let path = fixtures().join("heads").join(&file);
        let Some(head) = spec["head"].as_str() else {
            continue;
        };
        let model = load(&path, None).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(model.head.name, head, "{file}");
        assert_eq!(model.head.in_features, spec["in_features"].as_i64().unwrap(), "{file}");
        assert_eq!(model.num_classes, 10, "{file}");
        assert!(model.head.verified, "{file}");
        let output = match spec["output"].as_str().unwrap() {
            "tuple" => OutputKind::TupleFirst,
            "dict" => OutputKind::DictLogits,
            _ => OutputKind::Tensor,
        };
        assert_eq!(model.output, output, "{file}");
        let logits = tch::no_grad(|| model.logits(&reference_input())).unwrap();
        let want: Vec<f32> =
            spec["logits_eval"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let diff = (logits.view([-1]) - Tensor::from_slice(&want)).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "{file}: logits differ from PyTorch's by {diff}");
    }
}

#[test]
fn a_hidden_layer_of_the_head_shape_is_not_the_head() {
    let model = load(&fixtures().join("heads/hidden_square.pt"), None).unwrap();
    assert_eq!(model.head.name, "out");
    assert_eq!(model.head.bias.as_deref(), Some("out.bias"));
}

#[test]
fn bias_free_head_is_found() {
    let model = load(&fixtures().join("heads/no_bias_head.pt"), None).unwrap();
    assert_eq!(model.head.name, "fc");
    assert_eq!(model.head.bias, None);
}

#[test]
fn softmax_output_is_refused_with_the_candidates() {
    let err = load(&fixtures().join("heads/softmax_output.pt"), None)
        .err()
        .expect("softmax output must be refused")
        .to_string();
    assert!(err.contains("none of the linear maps with 10 outputs produces the logits directly"), "{err}");
    assert!(err.contains("fc [10, 32]"), "candidates are listed: {err}");
}

#[test]
fn head_override_accepts_a_suffix_and_rejects_unknown_names() {
    let nested = fixtures().join("heads/nested.pt");
    let model = load(&nested, Some("fc")).unwrap();
    assert_eq!(model.head.name, "module.net.fc");
    assert_eq!(model.head.located_by, "user");

    let err = load(&nested, Some("classifier")).err().unwrap().to_string();
    assert!(err.contains("no linear map named `classifier`") && err.contains("module.net.fc [10, 32]"), "{err}");

    // classifier.1 and classifier.4 are [32, 32]: not 10 outputs.
    let err = load(&fixtures().join("heads/sequential.pt"), Some("classifier.4")).err().unwrap().to_string();
    assert!(err.contains("has 32 outputs but the model produces 10 logits"), "{err}");
}

#[test]
fn mlflow_directory_loads_its_torchscript_archive() {
    let model = load(&fixtures().join("mlflow_model"), None).unwrap();
    assert!(model.source.archive.ends_with("data/model.pth"));
    assert_eq!(model.head.name, "fc");
    let direct = load(&fixtures().join("heads/fc.pt"), None).unwrap();
    let a = tch::no_grad(|| model.logits(&reference_input())).unwrap();
    let b = tch::no_grad(|| direct.logits(&reference_input())).unwrap();
    assert!(a.allclose(&b, 1e-6, 1e-6, false));
}

#[test]
fn pickled_eager_modules_garbage_and_missing_files_are_refused_clearly() {
    let err = load(&fixtures().join("eager_pickled.pt"), None).err().unwrap().to_string();
    assert!(err.contains("pickled eager PyTorch module") && err.contains("torch.jit.script"), "{err}");
    let err = load(&fixtures().join("garbage.pt"), None).err().unwrap().to_string();
    assert!(err.contains("garbage.pt") && err.contains("not a TorchScript archive"), "{err}");
    let err = load(&fixtures().join("missing.pt"), None).err().unwrap().to_string();
    assert!(err.contains("missing.pt"), "{err}");
}

#[test]
fn inputs_of_the_wrong_shape_are_named() {
    let wrong = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    let err = Classifier::load(&fixtures().join("heads/fc.pt"), Device::Cpu, &wrong, None).err().unwrap().to_string();
    assert!(err.contains("the model rejects inputs of shape [2, 3, 32, 32]"), "{err}");
}
