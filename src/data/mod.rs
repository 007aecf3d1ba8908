//! Image classification data: loading (IDX, CIFAR-10 binary, safetensors, ImageFolder),
//! conforming to the model's input geometry, class-balanced sampling, and the on-device
//! preprocessing and augmentation used while tuning.
mod augment;
mod cifar;
mod idx;
mod image_folder;
mod safetensors_file;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::{Kind, Tensor};

pub use augment::Augmentation;

use crate::error::{Error, Result};

/// On-disk layouts fstgate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DataFormat {
    /// MNIST / Fashion-MNIST IDX files (raw or .gz).
    Idx,
    /// CIFAR-10 binary batches (1 label byte + 3072 CHW bytes per record).
    Cifar10,
    /// A safetensors file with `images` and `labels`.
    Safetensors,
    /// A directory of class sub-directories holding PNG/JPEG files (torchvision ImageFolder).
    ImageFolder,
}

/// Which split of a multi-split layout (IDX and CIFAR-10 directories) to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The training split (`DIR#train`).
    Train,
    /// The test split (`DIR#test`).
    Test,
}

/// Where a data set comes from: `PATH` or `DIR#train` / `DIR#test`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSpec {
    /// The data file or directory.
    pub path: PathBuf,
    /// The split of a multi-split directory (`#train`, `#test`); none for a single-split source.
    pub split: Option<Split>,
}

impl FromStr for DataSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (path, split) = match s.rsplit_once('#') {
            Some((path, "train")) => (path, Some(Split::Train)),
            Some((path, "test")) => (path, Some(Split::Test)),
            Some((_, other)) => {
                return Err(Error::data(s, format!("unknown split `{other}` (train or test)")));
            }
            None => (s, None),
        };
        Ok(DataSpec { path: PathBuf::from(path), split })
    }
}

/// Provenance of a loaded data set, recorded in reports.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DataSource {
    /// The data file or directory, as given.
    pub path: PathBuf,
    /// The split read from a multi-split directory; absent for a single-split source.
    pub split: Option<Split>,
    /// The layout it was read as.
    pub format: DataFormat,
    /// sha256 over the files read (for several files: over their names and digests).
    pub sha256: String,
    /// Number of images in the source before any sampling.
    pub images_in_source: i64,
}

/// Images as float [N, C, H, W] in [0, 1] on the CPU, labels as int64 [N].
#[derive(Debug)]
pub struct Dataset {
    /// Images, float [N, C, H, W] in [0, 1], on the CPU.
    pub images: Tensor,
    /// Class labels, int64 [N].
    pub labels: Tensor,
    /// Where the images came from.
    pub source: DataSource,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> i64 {
        self.labels.size()[0]
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [C, H, W] of one image.
    pub fn image_shape(&self) -> Vec<i64> {
        self.images.size()[1..].to_vec()
    }

    /// The labels, copied into a vector.
    pub fn labels_vec(&self) -> Vec<i64> {
        Vec::<i64>::try_from(&self.labels).expect("labels are int64")
    }

    /// A data set from tensors already in memory (used by the lab and tests).
    pub fn from_tensors(images: Tensor, labels: Tensor, source: DataSource) -> Result<Self> {
        let dataset = Dataset { images: images.to_kind(Kind::Float), labels: labels.to_kind(Kind::Int64), source };
        dataset.check_consistent()?;
        Ok(dataset)
    }

    fn check_consistent(&self) -> Result<()> {
        let path = &self.source.path;
        let shape = self.images.size();
        if shape.len() != 4 {
            return Err(Error::data(path, format!("images must be [N, C, H, W], got {shape:?}")));
        }
        if shape[0] != self.len() {
            return Err(Error::data(path, format!("{} images but {} labels", shape[0], self.len())));
        }
        if self.is_empty() {
            return Err(Error::data(path, "the data set is empty"));
        }
        if self.labels.min().int64_value(&[]) < 0 {
            return Err(Error::data(path, "negative label"));
        }
        Ok(())
    }

    /// Fails unless every label is a class of a `num_classes`-way classifier.
    pub fn check_labels(&self, num_classes: i64) -> Result<()> {
        let max = self.labels.max().int64_value(&[]);
        if max >= num_classes {
            return Err(Error::DataModelMismatch(format!(
                "{}: label {max} is out of range for a model with {num_classes} outputs",
                self.source.path.display()
            )));
        }
        Ok(())
    }

    /// Resizes and converts channels so that images have the model's input geometry.
    pub fn conform(self, input: &InputSpec) -> Result<Self> {
        let mut images = self.images;
        let channels = images.size()[1];
        if let Some(want) = input.channels {
            images = match (channels, want) {
                (c, w) if c == w => images,
                (1, w) => images.repeat([1, w, 1, 1]),
                (3, 1) => images.mean_dim(&[1i64][..], true, Kind::Float),
                (c, w) => {
                    return Err(Error::Settings(format!("cannot convert {c}-channel images to {w} channels")));
                }
            };
        }
        if let Some([h, w]) = input.size {
            let shape = images.size();
            if shape[2] != h || shape[3] != w {
                images = images.upsample_bilinear2d([h, w], false, None, None).clamp(0.0, 1.0);
            }
        }
        Ok(Dataset { images, labels: self.labels, source: self.source })
    }

    /// `fraction` of each class (at least one image per class present), chosen with `seed`.
    pub fn balanced_subset(&self, fraction: f64, seed: u64) -> Result<Dataset> {
        Ok(self.select(&self.balanced_indices(fraction, seed)?))
    }

    /// Splits off a class-balanced `fraction` (as `balanced_subset` chooses it): returns the
    /// rest and the part split off, disjoint, each in the original order.
    pub fn balanced_split(&self, fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        let held_out = self.balanced_indices(fraction, seed)?;
        let mut taken = vec![false; self.len() as usize];
        held_out.iter().for_each(|&i| taken[i as usize] = true);
        let rest: Vec<i64> = (0..self.len()).filter(|&i| !taken[i as usize]).collect();
        Ok((self.select(&rest), self.select(&held_out)))
    }

    /// Sorted indices of `fraction` of each class, at least one per class present.
    fn balanced_indices(&self, fraction: f64, seed: u64) -> Result<Vec<i64>> {
        if !(fraction > 0.0 && fraction <= 1.0) {
            return Err(Error::Settings(format!("fraction {fraction} is not in (0, 1]")));
        }
        let labels = self.labels_vec();
        let num_classes = labels.iter().max().map_or(0, |m| m + 1) as usize;
        let mut by_class: Vec<Vec<i64>> = vec![Vec::new(); num_classes];
        for (i, &label) in labels.iter().enumerate() {
            by_class[label as usize].push(i as i64);
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut chosen = Vec::new();
        for members in by_class.iter_mut().filter(|m| !m.is_empty()) {
            members.shuffle(&mut rng);
            let take = ((members.len() as f64 * fraction).round() as usize).clamp(1, members.len());
            chosen.extend_from_slice(&members[..take]);
        }
        chosen.sort_unstable();
        Ok(chosen)
    }

    /// `count` images, class-balanced, as a fraction of this set.
    pub fn balanced_count(&self, count: i64, seed: u64) -> Result<Dataset> {
        if count <= 0 {
            return Err(Error::Settings(format!("image count {count} must be positive")));
        }
        self.balanced_subset((count as f64 / self.len() as f64).min(1.0), seed)
    }

    /// The images at `indices`, in that order.
    pub fn select(&self, indices: &[i64]) -> Dataset {
        let index = Tensor::from_slice(indices);
        Dataset {
            images: self.images.index_select(0, &index),
            labels: self.labels.index_select(0, &index),
            source: self.source.clone(),
        }
    }
}

/// The model's input contract: geometry and normalisation, applied on the device per batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InputSpec {
    /// Model input height and width; data is resized to it when it differs.
    pub size: Option<[i64; 2]>,
    /// Model input channels (1 or 3); grey images are repeated, RGB averaged.
    pub channels: Option<i64>,
    /// Per-channel mean subtracted after scaling pixels to [0, 1] (one value: all channels).
    pub mean: Vec<f64>,
    /// Per-channel standard deviation divided by (one value: all channels).
    pub std: Vec<f64>,
}

impl Default for InputSpec {
    fn default() -> Self {
        InputSpec { size: None, channels: None, mean: vec![0.0], std: vec![1.0] }
    }
}

impl InputSpec {
    /// Fails unless `mean` and `std` have the same non-zero length and every std is positive and
    /// finite.
    pub fn validate(&self) -> Result<()> {
        let lengths_ok = !self.mean.is_empty() && self.mean.len() == self.std.len();
        if !lengths_ok {
            return Err(Error::Settings(format!(
                "mean ({} values) and std ({} values) must have the same, non-zero length",
                self.mean.len(),
                self.std.len()
            )));
        }
        if self.std.iter().any(|s| !(*s > 0.0 && s.is_finite())) {
            return Err(Error::Settings("every std must be positive and finite".into()));
        }
        Ok(())
    }

    /// Normalises a batch of [0, 1] images already on its device.
    pub fn normalize(&self, images: &Tensor) -> Tensor {
        let device = images.device();
        let shape = [1, self.mean.len() as i64, 1, 1];
        let mean = Tensor::from_slice(&self.mean).to_kind(Kind::Float).view(shape).to_device(device);
        let std = Tensor::from_slice(&self.std).to_kind(Kind::Float).view(shape).to_device(device);
        (images - mean) / std
    }
}

/// Loads a data set, detecting the layout from what is at the path.
pub fn load(spec: &DataSpec) -> Result<Dataset> {
    let path = &spec.path;
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let dataset = if meta.is_dir() {
        if idx::is_idx_dir(path) {
            idx::load_dir(path, spec.split)?
        } else if cifar::is_cifar_dir(path) {
            cifar::load_dir(path, spec.split)?
        } else {
            image_folder::load(path)?
        }
    } else {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.ends_with(".safetensors") {
            safetensors_file::load(path)?
        } else if name.contains("idx3-ubyte") {
            idx::load_images_file(path)?
        } else if name.ends_with(".bin") {
            cifar::load_files(path, std::slice::from_ref(path), None)?
        } else {
            return Err(Error::data(
                path,
                "unknown data layout: expected an IDX images file or directory, CIFAR-10 .bin \
                 batches, a .safetensors file, or an ImageFolder directory",
            ));
        }
    };
    dataset.check_consistent()?;
    Ok(dataset)
}

/// Pixel bytes (0-255) in [N, C, H, W] order as float images in [0, 1].
pub(crate) fn images_from_bytes(pixels: &[u8], shape: [i64; 4]) -> Tensor {
    Tensor::from_slice(pixels).view(shape).to_kind(Kind::Float) / 255.0
}

/// Reads a whole file, gunzipping it when it starts with the gzip magic.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::data(path, format!("corrupt gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// sha256 of one file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io(path, e))?;
    Ok(hex::encode(hasher.finalize()))
}

/// sha256 over several files: one line "<sha256>  <name relative to root>\n" per file, sorted
/// by name, like `sha256sum`'s output (so it can be reproduced with standard tools).
pub fn sha256_files(root: &Path, files: &[PathBuf]) -> Result<String> {
    let mut lines = Vec::with_capacity(files.len());
    for file in files {
        let name = file.strip_prefix(root).unwrap_or(file).to_string_lossy().into_owned();
        lines.push(format!("{}  {name}\n", sha256_file(file)?));
    }
    lines.sort_by(|a, b| a[66..].cmp(&b[66..]));
    Ok(hex::encode(Sha256::digest(lines.concat().as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn toy(labels: &[i64]) -> Dataset {
        let n = labels.len() as i64;
        Dataset::from_tensors(
            Tensor::zeros([n, 1, 4, 4], (Kind::Float, Device::Cpu)),
            Tensor::from_slice(labels),
            DataSource {
                path: "toy".into(),
                split: None,
                format: DataFormat::Safetensors,
                sha256: String::new(),
                images_in_source: n,
            },
        )
        .unwrap()
    }

    #[test]
    fn parses_specs_with_splits() {
        let spec: DataSpec = "/data/fmnist#test".parse().unwrap();
        assert_eq!(spec.path, PathBuf::from("/data/fmnist"));
        assert_eq!(spec.split, Some(Split::Test));
        assert_eq!("/a/b.safetensors".parse::<DataSpec>().unwrap().split, None);
        let err = "/a#validation".parse::<DataSpec>().unwrap_err().to_string();
        assert!(err.contains("unknown split `validation`"), "{err}");
    }

    #[test]
    fn balanced_subset_keeps_class_proportions_and_is_seeded() {
        let labels: Vec<i64> = (0..1000).map(|i| if i < 800 { 0 } else { 1 }).collect();
        let data = toy(&labels);
        let subset = data.balanced_subset(0.1, 7).unwrap();
        let got = subset.labels_vec();
        assert_eq!(got.iter().filter(|&&l| l == 0).count(), 80);
        assert_eq!(got.iter().filter(|&&l| l == 1).count(), 20);
        let again = data.balanced_subset(0.1, 7).unwrap();
        assert_eq!(subset.labels_vec(), again.labels_vec());
        assert!(data.balanced_subset(0.0, 7).is_err());
        assert!(data.balanced_subset(1.5, 7).is_err());
    }

    #[test]
    fn balanced_split_is_disjoint_complete_and_matches_the_subset() {
        let labels: Vec<i64> = (0..500).map(|i| i % 10).collect();
        let data = toy(&labels);
        let (rest, held_out) = data.balanced_split(0.2, 3).unwrap();
        assert_eq!((rest.len(), held_out.len()), (400, 100));
        assert!(held_out.labels_vec().iter().all(|&l| (0..10).contains(&l)));
        assert_eq!(held_out.labels_vec(), data.balanced_subset(0.2, 3).unwrap().labels_vec());
        for class in 0..10 {
            assert_eq!(held_out.labels_vec().iter().filter(|&&l| l == class).count(), 10);
        }
    }

    #[test]
    fn label_out_of_range_is_named() {
        let data = toy(&[0, 1, 12]);
        let err = data.check_labels(10).unwrap_err().to_string();
        assert!(err.contains("label 12 is out of range for a model with 10 outputs"), "{err}");
        data.check_labels(13).unwrap();
    }

    #[test]
    fn conform_converts_channels_and_size() {
        let data = toy(&[0, 1]);
        let input = InputSpec { size: Some([8, 8]), channels: Some(3), ..InputSpec::default() };
        let conformed = data.conform(&input).unwrap();
        assert_eq!(conformed.image_shape(), vec![3, 8, 8]);
    }

    #[test]
    fn normalisation_settings_are_validated() {
        let bad = InputSpec { mean: vec![0.5, 0.5], std: vec![0.5], ..InputSpec::default() };
        assert!(bad.validate().is_err());
        let zero = InputSpec { std: vec![0.0], ..InputSpec::default() };
        assert!(zero.validate().is_err());
        InputSpec::default().validate().unwrap();
    }
}
