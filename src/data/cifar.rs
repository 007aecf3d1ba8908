//! CIFAR-10 binary batches: records of 1 label byte followed by 3x32x32 bytes (CHW).
use std::path::{Path, PathBuf};

use tch::Tensor;

use super::{DataFormat, DataSource, Dataset, Split, images_from_bytes, sha256_files};
use crate::error::{Error, Result};

const SIDE: usize = 32;
const RECORD: usize = 1 + 3 * SIDE * SIDE;

fn split_files(dir: &Path, split: Split) -> Vec<PathBuf> {
    match split {
        Split::Train => (1..=5).map(|i| dir.join(format!("data_batch_{i}.bin"))).collect(),
        Split::Test => vec![dir.join("test_batch.bin")],
    }
}

pub(super) fn is_cifar_dir(dir: &Path) -> bool {
    dir.join("test_batch.bin").exists() || dir.join("data_batch_1.bin").exists()
}

pub(super) fn load_dir(dir: &Path, split: Option<Split>) -> Result<Dataset> {
    let split =
        split.ok_or_else(|| Error::data(dir, "a CIFAR-10 directory holds two splits: append #train or #test"))?;
    let files = split_files(dir, split);
    if let Some(missing) = files.iter().find(|f| !f.exists()) {
        return Err(Error::data(dir, format!("missing batch file {}", missing.display())));
    }
    load_files(dir, &files, Some(split))
}

pub(super) fn load_files(root: &Path, files: &[PathBuf], split: Option<Split>) -> Result<Dataset> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for file in files {
        let raw = std::fs::read(file).map_err(|e| Error::io(file, e))?;
        if raw.is_empty() || raw.len() % RECORD != 0 {
            return Err(Error::data(
                file,
                format!("{} bytes is not a whole number of {RECORD}-byte CIFAR-10 records", raw.len()),
            ));
        }
        for record in raw.chunks_exact(RECORD) {
            labels.push(i64::from(record[0]));
            pixels.extend_from_slice(&record[1..]);
        }
    }
    let n = labels.len() as i64;
    let images = images_from_bytes(&pixels, [n, 3, SIDE as i64, SIDE as i64]);
    Ok(Dataset {
        images,
        labels: Tensor::from_slice(&labels),
        source: DataSource {
            path: root.to_path_buf(),
            split,
            format: DataFormat::Cifar10,
            sha256: sha256_files(root.parent().unwrap_or(root), files)?,
            images_in_source: n,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_records_and_rejects_partial_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut raw = Vec::new();
        for label in [4u8, 7] {
            raw.push(label);
            raw.extend(std::iter::repeat_n(128u8, RECORD - 1));
        }
        std::fs::write(dir.path().join("test_batch.bin"), &raw).unwrap();
        let data = super::super::load(&format!("{}#test", dir.path().display()).parse().unwrap()).unwrap();
        assert_eq!(data.images.size(), vec![2, 3, 32, 32]);
        assert_eq!(data.labels_vec(), vec![4, 7]);

        let partial = dir.path().join("partial.bin");
        std::fs::write(&partial, &raw[..RECORD + 10]).unwrap();
        let err = super::super::load(&partial.display().to_string().parse().unwrap()).unwrap_err().to_string();
        assert!(err.contains("not a whole number of 3073-byte CIFAR-10 records"), "{err}");
    }
}
