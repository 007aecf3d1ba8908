//! Backdoor triggers from the FST paper's evaluation, applied to batches of [0, 1] images in
//! the model's input geometry. Specs are short strings (`badnets:size=3,pos=br`) and serialise
//! to tagged JSON in reports.
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{Error, Result};

/// A backdoor trigger: applied to test images for a known attack, or tried as a probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Trigger {
    /// A square patch pasted at a corner or position (BadNets).
    Badnets {
        /// Side of the patch, in pixels.
        size: i64,
        /// Where the patch goes.
        position: Position,
        /// What the patch looks like.
        pattern: PatchPattern,
    },
    /// x' = (1 - alpha) x + alpha pattern (Blended).
    Blended {
        /// Weight of the pattern, in [0, 1].
        alpha: f64,
        /// The image blended in.
        pattern: BlendPattern,
    },
    /// A horizontal sinusoid x' = x + delta/255 sin(2 pi j f / W), clipped (SIG).
    Sig {
        /// Amplitude, in 8-bit pixel levels (0 to 255).
        delta: f64,
        /// Periods across the image width.
        frequency: f64,
    },
    /// A smooth random warp of the sampling grid (WaNet): k x k control points, strength s.
    Wanet {
        /// Control points per side of the warp field.
        k: i64,
        /// Warp strength s; displacements scale with s / image height.
        strength: f64,
        /// Seed of the random warp field.
        seed: u64,
    },
}

/// Where a BadNets patch is pasted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Position {
    /// The bottom-right corner (`pos=br`, the default).
    BottomRight,
    /// The bottom-left corner (`pos=bl`).
    BottomLeft,
    /// The top-right corner (`pos=tr`).
    TopRight,
    /// The top-left corner (`pos=tl`).
    TopLeft,
    /// Top-left pixel of the patch.
    At {
        /// Column, in pixels from the left.
        x: i64,
        /// Row, in pixels from the top.
        y: i64,
    },
}

/// What a BadNets patch looks like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum PatchPattern {
    /// Every pixel of the patch set to one value.
    Solid {
        /// Pixel value on the [0, 1] scale (default 1: white).
        value: f64,
    },
    /// Alternating 1 and 0 pixels, 1 at the patch's top-left.
    Checkerboard,
}

/// The image a Blended trigger mixes in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum BlendPattern {
    /// Uniform noise in [0, 1] from a seeded generator (identical on every machine).
    Noise {
        /// Seed of the noise generator.
        seed: u64,
    },
    /// An image file, converted to the input's channels and size.
    Image {
        /// The image file.
        path: PathBuf,
    },
}

impl Trigger {
    /// The image file this trigger blends in, if it has one.
    pub fn image_path(&self) -> Option<&std::path::Path> {
        match self {
            Trigger::Blended { pattern: BlendPattern::Image { path }, .. } => Some(path),
            _ => None,
        }
    }
}

fn spec_error(spec: &str, reason: impl Into<String>) -> Error {
    Error::Trigger { spec: spec.to_string(), reason: reason.into() }
}

impl FromStr for Trigger {
    type Err = Error;
    fn from_str(spec: &str) -> Result<Self> {
        let (kind, args) = spec.split_once(':').unwrap_or((spec, ""));
        let mut options = std::collections::BTreeMap::new();
        for pair in args.split(',').filter(|p| !p.is_empty()) {
            let (key, value) =
                pair.split_once('=').ok_or_else(|| spec_error(spec, format!("`{pair}` is not key=value")))?;
            options.insert(key.trim().to_string(), value.trim().to_string());
        }
        let mut take = |key: &str| options.remove(key);
        let number = |value: Option<String>, key: &str, default: f64| -> Result<f64> {
            value.map_or(Ok(default), |v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| spec_error(spec, format!("{key}=`{v}` is not a number")))
            })
        };
        let trigger = match kind {
            "badnets" => {
                let size = number(take("size"), "size", 3.0)? as i64;
                let position = match (take("pos").as_deref(), take("x"), take("y")) {
                    (None, Some(x), Some(y)) => {
                        Position::At { x: number(Some(x), "x", 0.0)? as i64, y: number(Some(y), "y", 0.0)? as i64 }
                    }
                    (Some("br") | None, None, None) => Position::BottomRight,
                    (Some("bl"), None, None) => Position::BottomLeft,
                    (Some("tr"), None, None) => Position::TopRight,
                    (Some("tl"), None, None) => Position::TopLeft,
                    _ => {
                        return Err(spec_error(spec, "position is pos=br|bl|tr|tl, or x=..,y=.."));
                    }
                };
                let pattern = match take("pattern").as_deref() {
                    Some("checker" | "checkerboard") => PatchPattern::Checkerboard,
                    Some("solid") | None => PatchPattern::Solid { value: number(take("value"), "value", 1.0)? },
                    Some(other) => {
                        return Err(spec_error(spec, format!("unknown pattern `{other}`")));
                    }
                };
                if size < 1 {
                    return Err(spec_error(spec, "size must be at least 1"));
                }
                Trigger::Badnets { size, position, pattern }
            }
            "blended" => {
                let alpha = number(take("alpha"), "alpha", 0.2)?;
                if !(0.0..=1.0).contains(&alpha) {
                    return Err(spec_error(spec, "alpha must be in [0, 1]"));
                }
                let pattern = match take("image") {
                    Some(path) => BlendPattern::Image { path: path.into() },
                    None => BlendPattern::Noise { seed: number(take("seed"), "seed", 0.0)? as u64 },
                };
                Trigger::Blended { alpha, pattern }
            }
            "sig" => Trigger::Sig {
                delta: number(take("delta"), "delta", 40.0)?,
                frequency: number(take("freq"), "freq", 6.0)?,
            },
            "wanet" => {
                let k = number(take("k"), "k", 4.0)? as i64;
                if k < 2 {
                    return Err(spec_error(spec, "k must be at least 2"));
                }
                Trigger::Wanet {
                    k,
                    strength: number(take("s"), "s", 0.5)?,
                    seed: number(take("seed"), "seed", 0.0)? as u64,
                }
            }
            other => {
                return Err(spec_error(spec, format!("unknown trigger `{other}` (badnets, blended, sig, wanet)")));
            }
        };
        if let Some(key) = options.keys().next() {
            return Err(spec_error(spec, format!("unknown option `{key}` for {kind}")));
        }
        Ok(trigger)
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Badnets { size, position, pattern } => {
                write!(f, "badnets:size={size},")?;
                match position {
                    Position::BottomRight => write!(f, "pos=br")?,
                    Position::BottomLeft => write!(f, "pos=bl")?,
                    Position::TopRight => write!(f, "pos=tr")?,
                    Position::TopLeft => write!(f, "pos=tl")?,
                    Position::At { x, y } => write!(f, "x={x},y={y}")?,
                }
                match pattern {
                    PatchPattern::Solid { value } => write!(f, ",value={value}"),
                    PatchPattern::Checkerboard => write!(f, ",pattern=checker"),
                }
            }
            Trigger::Blended { alpha, pattern: BlendPattern::Noise { seed } } => {
                write!(f, "blended:alpha={alpha},seed={seed}")
            }
            Trigger::Blended { alpha, pattern: BlendPattern::Image { path } } => {
                write!(f, "blended:alpha={alpha},image={}", path.display())
            }
            Trigger::Sig { delta, frequency } => write!(f, "sig:delta={delta},freq={frequency}"),
            Trigger::Wanet { k, strength, seed } => {
                write!(f, "wanet:k={k},s={strength},seed={seed}")
            }
        }
    }
}

impl Trigger {
    /// Applies the trigger to a [N, C, H, W] batch of [0, 1] images on any device.
    pub fn apply(&self, images: &Tensor) -> Result<Tensor> {
        let shape = images.size();
        let (c, h, w) = (shape[1], shape[2], shape[3]);
        let device = images.device();
        match self {
            Trigger::Badnets { size, position, pattern } => {
                let (x, y) = match *position {
                    Position::BottomRight => (w - size, h - size),
                    Position::BottomLeft => (0, h - size),
                    Position::TopRight => (w - size, 0),
                    Position::TopLeft => (0, 0),
                    Position::At { x, y } => (x, y),
                };
                if x < 0 || y < 0 || x + size > w || y + size > h {
                    return Err(spec_error(
                        &self.to_string(),
                        format!("a {size}x{size} patch at ({x}, {y}) does not fit {h}x{w} images"),
                    ));
                }
                let patch = match pattern {
                    PatchPattern::Solid { value } => Tensor::full([*size, *size], *value, (Kind::Float, device)),
                    PatchPattern::Checkerboard => {
                        let i = Tensor::arange(*size, (Kind::Int64, device));
                        (i.view([-1, 1]) + i.view([1, -1])).remainder(2).eq(0).to_kind(Kind::Float)
                    }
                };
                let out = images.copy();
                out.narrow(2, y, *size)
                    .narrow(3, x, *size)
                    .copy_(&patch.view([1, 1, *size, *size]).expand([shape[0], c, *size, *size], false));
                Ok(out)
            }
            Trigger::Blended { alpha, pattern } => {
                let pattern = match pattern {
                    BlendPattern::Noise { seed } => {
                        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(*seed);
                        let values: Vec<f32> = (0..c * h * w).map(|_| rng.random::<f32>()).collect();
                        Tensor::from_slice(&values).view([1, c, h, w])
                    }
                    BlendPattern::Image { path } => load_pattern_image(path, c, h, w)?,
                }
                .to_device(device);
                Ok(images * (1.0 - alpha) + pattern * *alpha)
            }
            Trigger::Sig { delta, frequency } => {
                let j = Tensor::arange(w, (Kind::Float, device));
                let wave = (j * (2.0 * std::f64::consts::PI * frequency / w as f64)).sin() * (delta / 255.0);
                Ok((images + wave.view([1, 1, 1, w])).clamp(0.0, 1.0))
            }
            Trigger::Wanet { k, strength, seed } => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(*seed);
                let values: Vec<f32> = (0..2 * k * k).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
                let control = Tensor::from_slice(&values).view([1, 2, *k, *k]).to_device(device);
                let control = &control / control.abs().mean(Kind::Float);
                let noise = control.upsample_bicubic2d([h, w], true, None, None).permute([0, 2, 3, 1]);
                let ys = Tensor::linspace(-1.0, 1.0, h, (Kind::Float, device));
                let xs = Tensor::linspace(-1.0, 1.0, w, (Kind::Float, device));
                let grid_x = xs.view([1, w]).expand([h, w], false);
                let grid_y = ys.view([h, 1]).expand([h, w], false);
                let identity = Tensor::stack(&[grid_x, grid_y], 2).unsqueeze(0);
                let grid = (identity + noise * (*strength / h as f64)).clamp(-1.0, 1.0);
                let grid = grid.expand([shape[0], h, w, 2], false);
                // bilinear (0), zero padding (0), align_corners as in WaNet.
                Ok(Tensor::grid_sampler(images, &grid, 0, 0, true).clamp(0.0, 1.0))
            }
        }
    }
}

fn load_pattern_image(path: &std::path::Path, c: i64, h: i64, w: i64) -> Result<Tensor> {
    let img = image::open(path).map_err(|e| Error::data(path, format!("cannot decode trigger pattern: {e}")))?;
    let img = img.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle);
    let pixels: Vec<u8> = if c == 1 {
        img.to_luma8().into_raw()
    } else {
        let rgb = img.to_rgb8();
        (0..3).flat_map(|ch| rgb.as_raw().iter().skip(ch).step_by(3).copied().collect::<Vec<_>>()).collect()
    };
    Ok(Tensor::from_slice(&pixels).view([1, c.min(3), h, w]).to_kind(Kind::Float) / 255.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn zeros() -> Tensor {
        Tensor::zeros([2, 1, 28, 28], (Kind::Float, Device::Cpu))
    }

    #[test]
    fn specs_parse_and_print_canonically() {
        for spec in [
            "badnets:size=3,pos=br,value=1",
            "badnets:size=4,x=2,y=5,pattern=checker",
            "blended:alpha=0.2,seed=7",
            "sig:delta=40,freq=6",
            "wanet:k=4,s=0.5,seed=0",
        ] {
            let trigger: Trigger = spec.parse().unwrap();
            assert_eq!(trigger.to_string(), spec);
            assert_eq!(trigger.to_string().parse::<Trigger>().unwrap(), trigger);
        }
        assert_eq!("badnets".parse::<Trigger>().unwrap().to_string(), "badnets:size=3,pos=br,value=1");
    }

    #[test]
    fn bad_specs_are_explained() {
        for (spec, needle) in [
            ("laser", "unknown trigger `laser`"),
            ("badnets:size=x", "size=`x` is not a number"),
            ("badnets:colour=red", "unknown option `colour`"),
            ("blended:alpha=2", "alpha must be in [0, 1]"),
            ("badnets:pos=middle", "position is pos="),
        ] {
            let err = spec.parse::<Trigger>().unwrap_err().to_string();
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }

    #[test]
    fn badnets_pastes_exactly_the_patch() {
        let out = "badnets:size=3".parse::<Trigger>().unwrap().apply(&zeros()).unwrap();
        assert_eq!(out.sum(Kind::Float).double_value(&[]), 2.0 * 9.0);
        assert_eq!(out.double_value(&[1, 0, 27, 27]), 1.0);
        assert_eq!(out.double_value(&[1, 0, 24, 27]), 0.0);
        let big = "badnets:size=30".parse::<Trigger>().unwrap().apply(&zeros()).unwrap_err().to_string();
        assert!(big.contains("does not fit 28x28"), "{big}");
    }

    #[test]
    fn blended_sig_and_wanet_change_images_within_range() {
        let images = Tensor::rand([4, 1, 28, 28], (Kind::Float, Device::Cpu));
        for spec in ["blended:alpha=0.2,seed=1", "sig", "wanet:k=4,s=0.5,seed=3"] {
            let out = spec.parse::<Trigger>().unwrap().apply(&images).unwrap();
            assert_eq!(out.size(), images.size());
            let diff = (&out - &images).abs().mean(Kind::Float).double_value(&[]);
            assert!(diff > 1e-3, "{spec} left the images unchanged");
            assert!(out.min().double_value(&[]) >= 0.0 && out.max().double_value(&[]) <= 1.0);
        }
        let blended = "blended:alpha=0.2,seed=1".parse::<Trigger>().unwrap();
        assert!(blended.apply(&images).unwrap().equal(&blended.apply(&images).unwrap()));
    }
}
