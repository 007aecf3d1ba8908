//! torchvision's ImageFolder layout: ROOT/<class>/<image>.png|jpg; classes are the sorted
//! sub-directory names, labels their indices. All images must share one size.
use std::path::{Path, PathBuf};

use tch::Tensor;

use super::{DataFormat, DataSource, Dataset, images_from_bytes, sha256_files};
use crate::error::{Error, Result};

const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

pub(super) fn load(root: &Path) -> Result<Dataset> {
    let mut classes: Vec<PathBuf> = read_dir(root)?.into_iter().filter(|p| p.is_dir()).collect();
    classes.sort();
    if classes.is_empty() {
        return Err(Error::data(root, "no class sub-directories (ImageFolder layout expected)"));
    }
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for (label, class_dir) in classes.iter().enumerate() {
        let mut images: Vec<PathBuf> = read_dir(class_dir)?
            .into_iter()
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            })
            .collect();
        images.sort();
        labels.extend(std::iter::repeat_n(label as i64, images.len()));
        files.extend(images);
    }
    if files.is_empty() {
        return Err(Error::data(root, "no PNG or JPEG images under the class directories"));
    }
    let decoded: Vec<image::DynamicImage> = files
        .iter()
        .map(|f| image::open(f).map_err(|e| Error::data(f, format!("cannot decode image: {e}"))))
        .collect::<Result<_>>()?;
    let grey = decoded.iter().all(|img| !img.color().has_color());
    let (width, height) = (decoded[0].width(), decoded[0].height());
    let mut pixels = Vec::with_capacity(files.len() * (width * height * 3) as usize);
    for (img, file) in decoded.iter().zip(&files) {
        if (img.width(), img.height()) != (width, height) {
            return Err(Error::data(
                file,
                format!("image is {}x{} but the first one is {width}x{height}", img.width(), img.height()),
            ));
        }
        if grey {
            pixels.extend_from_slice(img.to_luma8().as_raw());
        } else {
            // HWC -> CHW
            let rgb = img.to_rgb8();
            for channel in 0..3 {
                pixels.extend(rgb.as_raw().iter().skip(channel).step_by(3));
            }
        }
    }
    let channels = if grey { 1 } else { 3 };
    let n = files.len() as i64;
    let images = images_from_bytes(&pixels, [n, channels, height as i64, width as i64]);
    Ok(Dataset {
        images,
        labels: Tensor::from_slice(&labels),
        source: DataSource {
            path: root.to_path_buf(),
            split: None,
            format: DataFormat::ImageFolder,
            sha256: sha256_files(root, &files)?,
            images_in_source: n,
        },
    })
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    entries.map(|e| e.map(|e| e.path()).map_err(|e| Error::io(dir, e))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_class_directories_in_sorted_order() {
        let dir = tempfile::tempdir().unwrap();
        for (class, value) in [("cat", 10u8), ("ant", 200u8)] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            let img = image::GrayImage::from_pixel(4, 3, image::Luma([value]));
            img.save(dir.path().join(class).join("a.png")).unwrap();
        }
        let data = load(dir.path()).unwrap();
        assert_eq!(data.images.size(), vec![2, 1, 3, 4]);
        // "ant" sorts first: label 0, pixel 200.
        assert_eq!(data.labels_vec(), vec![0, 1]);
        assert!((data.images.double_value(&[0, 0, 0, 0]) - 200.0 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn corrupt_image_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a").join("broken.png"), b"not a png").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("broken.png") && err.contains("cannot decode image"), "{err}");
    }
}
