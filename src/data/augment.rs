//! Tuning augmentation on whole batches, on the batch's device: random crop after zero padding
//! (torchvision's RandomCrop(size, padding)) and random horizontal flip. No per-image CPU work.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::rng::SeededRng;

/// Random augmentation of training batches: a padded random crop and a horizontal flip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Augmentation {
    /// Zero padding on each side before a random crop back to the input size (0: no crop).
    pub crop_padding: i64,
    /// Flip each image horizontally with probability 1/2.
    pub horizontal_flip: bool,
}

/// One epoch's random draws for every image, made on the host and uploaded once: per-step
/// uploads would each wait for the device (a pageable host-to-device copy synchronises).
pub struct EpochDraws {
    /// Crop offsets (rows, columns), [n, 1, 1] each.
    offsets: Option<(Tensor, Tensor)>,
    /// Flip or not, [n, 1, 1, 1].
    flips: Option<Tensor>,
}

impl Augmentation {
    /// No augmentation.
    pub const NONE: Augmentation = Augmentation { crop_padding: 0, horizontal_flip: false };

    /// Draws the augmentation of `n` images (in the epoch's order) with the job's generator.
    pub fn draw(&self, n: i64, rng: &mut SeededRng, device: Device) -> EpochDraws {
        let span = 2 * self.crop_padding + 1;
        let offsets = (self.crop_padding > 0)
            .then(|| (rng.integers(span, &[n, 1, 1], device), rng.integers(span, &[n, 1, 1], device)));
        let flips = self.horizontal_flip.then(|| rng.coins(&[n, 1, 1, 1], device));
        EpochDraws { offsets, flips }
    }

    /// Augments a [B, C, H, W] batch: the images at `start..start + B` of the epoch's draws.
    pub fn apply(&self, images: &Tensor, draws: &EpochDraws, start: i64) -> Tensor {
        let batch = images.size()[0];
        let mut out = match &draws.offsets {
            Some((y, x)) => self.random_crop(images, &y.narrow(0, start, batch), &x.narrow(0, start, batch)),
            None => images.shallow_clone(),
        };
        if let Some(flips) = &draws.flips {
            out = out.flip([3]).where_self(&flips.narrow(0, start, batch), &out);
        }
        out
    }

    fn random_crop(&self, images: &Tensor, offset_y: &Tensor, offset_x: &Tensor) -> Tensor {
        let (b, h, w) = (images.size()[0], images.size()[2], images.size()[3]);
        let p = self.crop_padding;
        let device = images.device();
        let padded = images.constant_pad_nd([p, p, p, p]);
        // One offset per image in [0, 2p]; gather rows and columns with broadcast indices.
        let rows = offset_y + Tensor::arange(h, (Kind::Int64, device)).view([1, h, 1]);
        let cols = offset_x + Tensor::arange(w, (Kind::Int64, device)).view([1, 1, w]);
        let batch_index = Tensor::arange(b, (Kind::Int64, device)).view([b, 1, 1]);
        // [B, H+2p, W+2p, C] indexed by [B,1,1], [B,H,1], [B,1,W] -> [B, H, W, C]
        padded
            .permute([0, 2, 3, 1])
            .index(&[Some(batch_index), Some(rows), Some(cols)])
            .permute([0, 3, 1, 2])
            .contiguous()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn augment(aug: Augmentation, images: &Tensor, seed: u64) -> Tensor {
        let draws = aug.draw(images.size()[0], &mut SeededRng::new(seed), Device::Cpu);
        aug.apply(images, &draws, 0)
    }

    #[test]
    fn crop_shifts_content_within_padding_and_keeps_shape() {
        let images = Tensor::ones([64, 1, 8, 8], (Kind::Float, Device::Cpu));
        let aug = Augmentation { crop_padding: 2, horizontal_flip: false };
        let out = augment(aug, &images, 3);
        assert_eq!(out.size(), vec![64, 1, 8, 8]);
        // Every crop keeps at least the 4x4 centre of ones; some crops bring in zero padding.
        let per_image = out.sum_dim_intlist(&[1i64, 2, 3][..], false, Kind::Float);
        let min = per_image.min().double_value(&[]);
        assert!(min >= 36.0 - 1e-6, "crop lost more than the padding allows: {min}");
        assert!(min < 64.0, "no crop moved the image");
    }

    #[test]
    fn flip_mirrors_some_images_and_is_seeded() {
        let images = Tensor::arange(8, (Kind::Float, Device::Cpu)).view([1, 1, 1, 8]).repeat([32, 1, 1, 1]);
        let aug = Augmentation { crop_padding: 0, horizontal_flip: true };
        let a = augment(aug, &images, 5);
        let b = augment(aug, &images, 5);
        assert!(a.equal(&b));
        let flipped = (0..32).filter(|&i| a.double_value(&[i, 0, 0, 0]) == 7.0).count();
        assert!(flipped > 4 && flipped < 28, "{flipped} of 32 images flipped");
        assert!(augment(Augmentation::NONE, &images, 5).equal(&images));
    }
}
