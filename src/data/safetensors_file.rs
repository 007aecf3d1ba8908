//! A safetensors file holding `images` (uint8 0-255 or float 0-1; [N,H,W] or [N,C,H,W]) and
//! integer `labels` [N].
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use tch::{Kind, Tensor};

use super::{DataFormat, DataSource, Dataset, sha256_file};
use crate::error::{Error, Result};

pub(super) fn load(path: &Path) -> Result<Dataset> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let file =
        SafeTensors::deserialize(&raw).map_err(|e| Error::data(path, format!("not a valid safetensors file: {e}")))?;
    let view = |name: &str| {
        file.tensor(name).map_err(|_| {
            let names: Vec<String> = file.names().into_iter().map(str::to_string).collect();
            Error::data(path, format!("no tensor `{name}` (found: {})", names.join(", ")))
        })
    };
    let images = view("images")?;
    let labels = view("labels")?;

    let shape: Vec<i64> = images.shape().iter().map(|&d| d as i64).collect();
    let images_t = match images.dtype() {
        Dtype::U8 => tensor(images.data(), &shape, Kind::Uint8).to_kind(Kind::Float) / 255.0,
        Dtype::F32 => tensor(images.data(), &shape, Kind::Float),
        Dtype::F64 => tensor(images.data(), &shape, Kind::Double).to_kind(Kind::Float),
        other => {
            return Err(Error::data(path, format!("images dtype {other:?} is not U8, F32 or F64")));
        }
    };
    let images_t = match shape.len() {
        3 => images_t.unsqueeze(1),
        4 => images_t,
        n => {
            return Err(Error::data(path, format!("images have {n} dims; need [N,H,W] or [N,C,H,W]")));
        }
    };
    if images_t.numel() > 0 {
        let (min, max) = (images_t.min().double_value(&[]), images_t.max().double_value(&[]));
        if !(min >= 0.0 && max <= 1.0) {
            return Err(Error::data(path, format!("float images must lie in [0, 1]; found values in [{min}, {max}]")));
        }
    }

    let label_shape = [labels.shape().iter().product::<usize>() as i64];
    if labels.shape().len() != 1 {
        return Err(Error::data(path, format!("labels must be [N], got {:?}", labels.shape())));
    }
    let labels_t = match labels.dtype() {
        Dtype::I64 => tensor(labels.data(), &label_shape, Kind::Int64),
        Dtype::I32 => tensor(labels.data(), &label_shape, Kind::Int).to_kind(Kind::Int64),
        Dtype::I16 => tensor(labels.data(), &label_shape, Kind::Int16).to_kind(Kind::Int64),
        Dtype::U8 => tensor(labels.data(), &label_shape, Kind::Uint8).to_kind(Kind::Int64),
        other => {
            return Err(Error::data(path, format!("labels dtype {other:?} is not an integer type")));
        }
    };
    Ok(Dataset {
        images: images_t,
        labels: labels_t,
        source: DataSource {
            path: path.to_path_buf(),
            split: None,
            format: DataFormat::Safetensors,
            sha256: sha256_file(path)?,
            images_in_source: shape[0],
        },
    })
}

fn tensor(bytes: &[u8], shape: &[i64], kind: Kind) -> Tensor {
    Tensor::from_data_size(bytes, shape, kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    use safetensors::tensor::TensorView;

    fn write(path: &Path, images: (Dtype, Vec<usize>, Vec<u8>), labels: (Dtype, Vec<usize>, Vec<u8>)) {
        let mut map = HashMap::new();
        map.insert("images".to_string(), TensorView::new(images.0, images.1, &images.2).unwrap());
        map.insert("labels".to_string(), TensorView::new(labels.0, labels.1, &labels.2).unwrap());
        safetensors::serialize_to_file(&map, None, path).unwrap();
    }

    #[test]
    fn reads_uint8_nhw_with_int64_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.safetensors");
        let labels: Vec<u8> = [1i64, 2].iter().flat_map(|l| l.to_le_bytes()).collect();
        write(&path, (Dtype::U8, vec![2, 2, 2], vec![0, 255, 0, 0, 0, 0, 0, 255]), (Dtype::I64, vec![2], labels));
        let data = load(&path).unwrap();
        assert_eq!(data.images.size(), vec![2, 1, 2, 2]);
        assert_eq!(data.labels_vec(), vec![1, 2]);
        assert!((data.images.double_value(&[1, 0, 1, 1]) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn rejects_out_of_range_floats_and_missing_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.safetensors");
        let pixels: Vec<u8> = [0.5f32, 255.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        write(&path, (Dtype::F32, vec![1, 1, 1, 2], pixels), (Dtype::U8, vec![1], vec![0]));
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("must lie in [0, 1]"), "{err}");

        let mut map = HashMap::new();
        map.insert("pixels".to_string(), TensorView::new(Dtype::U8, vec![1], &[0u8]).unwrap());
        safetensors::serialize_to_file(&map, None, &path).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("no tensor `images` (found: pixels)"), "{err}");

        std::fs::write(&path, b"garbage").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("not a valid safetensors file"));
    }
}
