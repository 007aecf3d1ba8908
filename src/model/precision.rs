//! How a model's arithmetic runs on the device. `bf16` is the fast path on CUDA: bf16 autocast
//! (matrix products and convolutions in bf16 on the tensor cores, reductions and the loss in
//! float32, parameters and optimiser state stay float32) with channels-last tensors, which
//! cuDNN's tensor-core convolutions want. It is opt-in: the numbers change within bf16 rounding.
use std::ffi::c_int;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::error::{Error, Result};

/// The arithmetic a model runs in on the device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// float32 everywhere (cuDNN may use TF32 for convolutions on GPUs that have it).
    #[default]
    Fp32,
    /// bf16 autocast with channels-last memory format; CUDA only.
    Bf16,
}

impl Precision {
    /// Fails when `device` cannot run this precision (bf16 on the CPU).
    pub fn check_device(self, device: Device) -> Result<()> {
        match (self, device) {
            (Precision::Bf16, Device::Cpu) => {
                Err(Error::Settings("precision bf16 needs a CUDA device; use fp32 on the CPU".into()))
            }
            _ => Ok(()),
        }
    }
}

unsafe extern "C" {
    fn fstgate_autocast_bf16_enter() -> c_int;
    fn fstgate_autocast_exit(previous: c_int);
}

/// bf16 autocast on CUDA for the current thread while it lives.
pub(super) struct Bf16Autocast {
    previous: c_int,
    // Autocast state is per thread: the guard must not move to another one.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Bf16Autocast {
    pub(super) fn enter() -> Result<Self> {
        // SAFETY: the C++ side touches only this thread's autocast state and catches exceptions.
        let previous = unsafe { fstgate_autocast_bf16_enter() };
        if previous < 0 {
            return Err(Error::Device("could not enter bf16 autocast".into()));
        }
        Ok(Bf16Autocast { previous, _not_send: std::marker::PhantomData })
    }
}

impl Drop for Bf16Autocast {
    fn drop(&mut self) {
        // SAFETY: pairs with the enter above, on the same thread (the guard is !Send).
        unsafe { fstgate_autocast_exit(self.previous) }
    }
}

/// The same 4-d tensor with NHWC strides (torch.channels_last); other ranks are returned as is.
pub(super) fn channels_last(t: &Tensor) -> Tensor {
    if t.dim() == 4 { t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]) } else { t.shallow_clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn bf16_is_refused_on_the_cpu_with_the_reason() {
        let err = Precision::Bf16.check_device(Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("bf16 needs a CUDA device"), "{err}");
        assert!(Precision::Fp32.check_device(Device::Cpu).is_ok());
    }

    #[test]
    fn channels_last_keeps_values_and_moves_channels_innermost() {
        let t = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]);
        let nhwc = channels_last(&t);
        assert_eq!(nhwc.size(), vec![2, 3, 4, 5]);
        assert_eq!(nhwc.stride(), vec![60, 1, 15, 3]);
        assert!(nhwc.equal(&t));
        let flat = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
        assert_eq!(channels_last(&flat).stride(), flat.stride());
    }
}
