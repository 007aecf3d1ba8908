//! MLflow model directories: `MLmodel` (YAML) names the flavours; the pytorch flavour's
//! `model_data` is the file (or the directory holding `model.pth`) with the serialised model.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Deserialize)]
struct MlModel {
    #[serde(default)]
    flavors: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Deserialize)]
struct PytorchFlavor {
    model_data: String,
}

/// The TorchScript archive inside the MLflow model directory `dir`.
pub(super) fn torchscript_archive(dir: &Path) -> Result<PathBuf> {
    let mlmodel_path = dir.join("MLmodel");
    let text = std::fs::read_to_string(&mlmodel_path).map_err(|e| {
        Error::model(dir, format!("a model directory must be an MLflow model with an MLmodel file ({e})"))
    })?;
    let mlmodel: MlModel =
        serde_yaml::from_str(&text).map_err(|e| Error::model(&mlmodel_path, format!("invalid MLmodel YAML: {e}")))?;
    let flavor = mlmodel.flavors.get("pytorch").ok_or_else(|| {
        let found: Vec<&str> = mlmodel.flavors.keys().map(String::as_str).collect();
        Error::model(&mlmodel_path, format!("no pytorch flavour (flavours: {})", found.join(", ")))
    })?;
    let flavor: PytorchFlavor = serde_yaml::from_value(flavor.clone())
        .map_err(|e| Error::model(&mlmodel_path, format!("pytorch flavour: {e}")))?;
    let data = dir.join(&flavor.model_data);
    // model_data must stay inside the model directory.
    let canonical_dir = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    let canonical_data = data.canonicalize().map_err(|e| Error::io(&data, e))?;
    if !canonical_data.starts_with(&canonical_dir) {
        return Err(Error::model(
            &mlmodel_path,
            format!("model_data `{}` points outside the model directory", flavor.model_data),
        ));
    }
    if canonical_data.is_file() {
        return Ok(canonical_data);
    }
    let archive = canonical_data.join("model.pth");
    if archive.is_file() {
        Ok(archive)
    } else {
        Err(Error::model(&data, "no model.pth in the pytorch flavour's model_data directory"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_model_pth_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("data/model.pth"), b"x").unwrap();
        std::fs::write(
            dir.path().join("MLmodel"),
            "flavors:\n  pytorch:\n    model_data: data\n    pytorch_version: 2.11.0\n",
        )
        .unwrap();
        assert!(torchscript_archive(dir.path()).unwrap().ends_with("data/model.pth"));

        std::fs::write(dir.path().join("MLmodel"), "flavors:\n  pytorch:\n    model_data: ../..\n").unwrap();
        let err = torchscript_archive(dir.path()).unwrap_err().to_string();
        assert!(err.contains("points outside the model directory"), "{err}");

        std::fs::write(dir.path().join("MLmodel"), "flavors:\n  sklearn: {}\n").unwrap();
        let err = torchscript_archive(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no pytorch flavour (flavours: sklearn)"), "{err}");
    }
}
