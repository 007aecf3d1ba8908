//! IDX files (MNIST, Fashion-MNIST): big-endian magic 0x0000_08_NN (NN = number of dims),
//! dims as u32, then unsigned bytes.
use std::path::{Path, PathBuf};

use tch::Tensor;

use super::{DataFormat, DataSource, Dataset, Split, images_from_bytes, read_maybe_gz, sha256_files};
use crate::error::{Error, Result};

const UBYTE: u8 = 0x08;

/// The split's images file in `dir` (MNIST naming: `train-*`, `t10k-*`), .gz or raw.
fn images_file(dir: &Path, split: Split) -> Option<PathBuf> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    ["", ".gz"].iter().map(|ext| dir.join(format!("{prefix}-images-idx3-ubyte{ext}"))).find(|p| p.exists())
}

pub(super) fn is_idx_dir(dir: &Path) -> bool {
    images_file(dir, Split::Train).is_some() || images_file(dir, Split::Test).is_some()
}

pub(super) fn load_dir(dir: &Path, split: Option<Split>) -> Result<Dataset> {
    let split = split.ok_or_else(|| Error::data(dir, "an IDX directory holds two splits: append #train or #test"))?;
    let images = images_file(dir, split)
        .ok_or_else(|| Error::data(dir, format!("no {split:?} images file in this IDX directory")))?;
    let mut dataset = load_images_file(&images)?;
    dataset.source.split = Some(split);
    Ok(dataset)
}

/// Loads an images file and the labels file beside it (`images-idx3` -> `labels-idx1`).
pub(super) fn load_images_file(images_path: &Path) -> Result<Dataset> {
    let name = images_path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let labels_path = images_path.with_file_name(name.replace("images-idx3", "labels-idx1"));
    if !labels_path.exists() {
        return Err(Error::data(images_path, format!("labels file {} not found beside it", labels_path.display())));
    }
    let (image_dims, image_bytes) = parse(images_path, 3)?;
    let (label_dims, label_bytes) = parse(&labels_path, 1)?;
    let n = image_dims[0];
    if label_dims[0] != n {
        return Err(Error::data(
            images_path,
            format!("{n} images but {} labels in {}", label_dims[0], labels_path.display()),
        ));
    }
    let images = images_from_bytes(&image_bytes, [n as i64, 1, image_dims[1] as i64, image_dims[2] as i64]);
    let labels = Tensor::from_slice(&label_bytes).to_kind(tch::Kind::Int64);
    let root = images_path.parent().unwrap_or(Path::new(""));
    Ok(Dataset {
        images,
        labels,
        source: DataSource {
            path: images_path.to_path_buf(),
            split: None,
            format: DataFormat::Idx,
            sha256: sha256_files(root, &[images_path.to_path_buf(), labels_path])?,
            images_in_source: n as i64,
        },
    })
}

/// Parses an unsigned-byte IDX file with `want_dims` dimensions.
fn parse(path: &Path, want_dims: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let raw = read_maybe_gz(path)?;
    if raw.len() < 4 || raw[0] != 0 || raw[1] != 0 {
        return Err(Error::data(path, "not an IDX file (bad magic number)"));
    }
    if raw[2] != UBYTE {
        return Err(Error::data(path, format!("IDX element type 0x{:02x} is not unsigned byte", raw[2])));
    }
    let ndims = raw[3] as usize;
    if ndims != want_dims {
        return Err(Error::data(path, format!("IDX file has {ndims} dimensions, expected {want_dims}")));
    }
    let header = 4 + 4 * ndims;
    if raw.len() < header {
        return Err(Error::data(path, "truncated IDX header"));
    }
    let dims: Vec<usize> =
        raw[4..header].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let expected: usize = dims.iter().product();
    let body = &raw[header..];
    if body.len() != expected {
        return Err(Error::data(
            path,
            format!("IDX dims {dims:?} need {expected} bytes but the file holds {}", body.len()),
        ));
    }
    Ok((dims, body.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_idx(path: &Path, ndims: u8, dims: &[u32], body: &[u8]) {
        let mut raw = vec![0, 0, UBYTE, ndims];
        for d in dims {
            raw.extend_from_slice(&d.to_be_bytes());
        }
        raw.extend_from_slice(body);
        std::fs::write(path, raw).unwrap();
    }

    #[test]
    fn reads_raw_idx_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("train-images-idx3-ubyte");
        write_idx(&images, 3, &[2, 2, 2], &[0, 255, 0, 255, 255, 255, 0, 0]);
        write_idx(&dir.path().join("train-labels-idx1-ubyte"), 1, &[2], &[3, 9]);
        let data = super::super::load(&format!("{}#train", dir.path().display()).parse().unwrap()).unwrap();
        assert_eq!(data.images.size(), vec![2, 1, 2, 2]);
        assert_eq!(data.labels_vec(), vec![3, 9]);
        assert!((data.images.double_value(&[0, 0, 0, 1]) - 1.0).abs() < 1e-6);
        assert_eq!(data.source.format, DataFormat::Idx);
    }

    #[test]
    fn truncated_idx_is_rejected_with_its_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("t10k-images-idx3-ubyte");
        write_idx(&images, 3, &[2, 2, 2], &[0, 1, 2]);
        write_idx(&dir.path().join("t10k-labels-idx1-ubyte"), 1, &[2], &[3, 9]);
        let err = load_images_file(&images).unwrap_err().to_string();
        assert!(err.contains("need 8 bytes but the file holds 3"), "{err}");
    }

    #[test]
    fn directory_without_split_asks_for_one() {
        let dir = tempfile::tempdir().unwrap();
        write_idx(&dir.path().join("train-images-idx3-ubyte"), 3, &[1, 1, 1], &[0]);
        let err = load_dir(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("append #train or #test"), "{err}");
    }
}
