//! Where models come from. An object-store source watches a prefix: a model version is uploaded
//! as `<prefix>/<name>/<version>/...` (a TorchScript file, or an MLflow model directory with
//! its MLmodel), and it is complete when its marker `<prefix>/<name>/<version>/_SUCCESS` exists
//! (Hadoop's convention), written after every other file. Uploads without the marker are never
//! picked up, so a half-uploaded model is never purified.
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use object_store::ObjectMeta;
use object_store::ObjectStoreExt;
use object_store::path::Path as StorePath;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::store::{Location, StoreConfig};

/// Written last by the uploader: the model version beside it is complete.
pub const READY_MARKER: &str = "_SUCCESS";

/// A complete upload found by polling.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    /// `<name>/<version>`, relative to the source's prefix.
    pub model: String,
    /// The marker's key and its version tag (e_tag, or modification time where there is none),
    /// so a re-upload of the same version is seen as new.
    pub marker: StorePath,
    pub marker_version: String,
}

/// A downloaded upload.
#[derive(Debug)]
pub struct Artifact {
    /// What to load: the TorchScript file, or the MLflow model directory.
    pub model_path: PathBuf,
    /// sha256 over the sorted `sha256  relative/path` lines of every file: the upload's identity.
    pub sha256: String,
}

pub struct ObjectStoreSource {
    pub name: String,
    location: Location,
}

impl ObjectStoreSource {
    pub fn open(name: &str, config: &StoreConfig) -> Result<Self> {
        Ok(ObjectStoreSource { name: name.to_string(), location: config.open()? })
    }

    pub fn url(&self) -> &str {
        &self.location.url
    }

    /// Every complete upload under the prefix (`<name>/<version>/_SUCCESS`), sorted by model.
    pub async fn poll(&self) -> Result<Vec<Upload>> {
        let objects: Vec<ObjectMeta> = self
            .location
            .store
            .list(Some(&self.location.prefix))
            .try_collect()
            .await
            .map_err(|e| self.location.error(e))?;
        let prefix_depth = self.location.prefix.parts().count();
        let mut uploads: Vec<Upload> = objects
            .into_iter()
            .filter_map(|meta| {
                let parts: Vec<String> = meta.location.parts().map(|p| p.as_ref().to_string()).collect();
                let relative = &parts[prefix_depth.min(parts.len())..];
                match relative {
                    [name, version, marker] if marker == READY_MARKER => Some(Upload {
                        model: format!("{name}/{version}"),
                        marker_version: meta.e_tag.clone().unwrap_or_else(|| meta.last_modified.to_rfc3339()),
                        marker: meta.location,
                    }),
                    _ => None,
                }
            })
            .collect();
        uploads.sort_by(|a, b| a.model.cmp(&b.model));
        Ok(uploads)
    }

    /// Downloads an upload's files (all but the marker) into `dir`, which must not exist.
    pub async fn download(&self, upload: &Upload, dir: &Path) -> Result<Artifact> {
        let (name, version) = upload.model.split_once('/').expect("uploads are name/version");
        let upload_prefix = self.location.key(&[name, version]);
        let objects: Vec<ObjectMeta> =
            self.location.store.list(Some(&upload_prefix)).try_collect().await.map_err(|e| self.location.error(e))?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut manifest = Vec::new();
        for meta in objects {
            let Some(relative) = meta.location.prefix_match(&upload_prefix) else { continue };
            let relative: Vec<String> = relative.map(|p| p.as_ref().to_string()).collect();
            if relative.len() == 1 && relative[0] == READY_MARKER {
                continue;
            }
            let read_error = |e: object_store::Error| self.location.error(format!("{}: {e}", meta.location));
            let bytes =
                self.location.store.get(&meta.location).await.map_err(read_error)?.bytes().await.map_err(read_error)?;
            // object_store paths have no `..` or empty segments, so this stays inside `dir`.
            let local = relative.iter().fold(dir.to_path_buf(), |p, part| p.join(part));
            std::fs::create_dir_all(crate::fsutil::parent_dir(&local)).map_err(|e| Error::io(&local, e))?;
            std::fs::write(&local, &bytes).map_err(|e| Error::io(&local, e))?;
            manifest.push(format!("{}  {}", hex::encode(Sha256::digest(&bytes)), relative.join("/")));
        }
        manifest.sort_by(|a, b| a[66..].cmp(&b[66..]));
        let model_path = model_path(dir, &upload.model)?;
        Ok(Artifact { model_path, sha256: hex::encode(Sha256::digest(manifest.join("\n").as_bytes())) })
    }
}

/// An MLflow model directory (MLmodel at the top) or the upload's one `.pt`/`.pth` file.
fn model_path(dir: &Path, model: &str) -> Result<PathBuf> {
    if dir.join("MLmodel").is_file() {
        return Ok(dir.to_path_buf());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut candidates: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("pt" | "pth")))
        .collect();
    match candidates.len() {
        1 => Ok(candidates.remove(0)),
        0 => Err(Error::model(dir, format!("upload {model} has neither an MLmodel nor a .pt/.pth file"))),
        n => Err(Error::model(dir, format!("upload {model} has {n} .pt/.pth files; which one is the model?"))),
    }
}
