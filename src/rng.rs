//! Seeded randomness owned by one job. torch's generator is process-global (concurrent jobs
//! would share it, and CPU and CUDA draw differently), so shuffling, augmentation and
//! initialisation draw here, on the host, and upload small tensors. Same seed, same draws, on
//! any device and whatever else the process runs.
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

/// Seeds torch's process-global generator, the one draw that cannot happen on a `SeededRng`: a
/// model's own random ops (dropout inside a TorchScript forward, such as the lab's LeNet) call
/// torch directly. Called once at the start of every training job (purification, the reference,
/// the lab), so a job is reproducible in a process that runs one job at a time, as the worker,
/// the CLI and the lab do.
pub fn seed_torch(seed: u64) {
    tch::manual_seed(seed as i64);
}

/// A job's own random generator (ChaCha8), seeded once.
pub struct SeededRng(ChaCha8Rng);

impl SeededRng {
    /// A generator seeded with `seed`: the same draws for the same seed.
    pub fn new(seed: u64) -> Self {
        SeededRng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A random permutation of 0..n as int64.
    pub fn permutation(&mut self, n: i64, device: Device) -> Tensor {
        let mut order: Vec<i64> = (0..n).collect();
        order.shuffle(&mut self.0);
        Tensor::from_slice(&order).to_device(device)
    }

    /// Uniform floats in [low, high).
    pub fn uniform(&mut self, shape: &[i64], low: f64, high: f64, device: Device) -> Tensor {
        let count = shape.iter().product::<i64>() as usize;
        let values: Vec<f32> = (0..count).map(|_| self.0.random_range(low..high) as f32).collect();
        Tensor::from_slice(&values).view(shape).to_device(device)
    }

    /// Uniform integers in [0, high) as int64.
    pub fn integers(&mut self, high: i64, shape: &[i64], device: Device) -> Tensor {
        let count = shape.iter().product::<i64>() as usize;
        let values: Vec<i64> = (0..count).map(|_| self.0.random_range(0..high)).collect();
        Tensor::from_slice(&values).view(shape).to_device(device)
    }

    /// Fair coin flips as bool.
    pub fn coins(&mut self, shape: &[i64], device: Device) -> Tensor {
        let count = shape.iter().product::<i64>() as usize;
        let values: Vec<bool> = (0..count).map(|_| self.0.random_bool(0.5)).collect();
        Tensor::from_slice(&values).view(shape).to_device(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draws_and_ranges_hold() {
        let (mut a, mut b) = (SeededRng::new(4), SeededRng::new(4));
        assert!(a.permutation(50, Device::Cpu).equal(&b.permutation(50, Device::Cpu)));
        let u = a.uniform(&[1000], -0.5, 0.5, Device::Cpu);
        assert!(u.equal(&b.uniform(&[1000], -0.5, 0.5, Device::Cpu)));
        assert!(u.min().double_value(&[]) >= -0.5 && u.max().double_value(&[]) < 0.5);
        let i = a.integers(3, &[1000], Device::Cpu);
        assert_eq!(i.max().int64_value(&[]), 2);
        let sorted = a.permutation(10, Device::Cpu).sort(0, false).0;
        assert!(sorted.equal(&Tensor::arange(10, (tch::Kind::Int64, Device::Cpu))));
        assert_ne!(SeededRng::new(5).permutation(50, Device::Cpu), b.permutation(50, Device::Cpu));
    }
}
