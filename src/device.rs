//! Device selection. One binary serves CPU and CUDA machines: rustc links with --as-needed and
//! drops libtorch_cuda.so, so CUDA is registered by loading that library at start-up.
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::OnceLock;

use tch::Device;

use crate::error::{Error, Result};

/// What the user asked for with `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The first CUDA device when one works, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// The CUDA device with this index (`cuda:N`); an error when it is not there.
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| Error::Device(format!("`{s}` is not one of auto, cpu, cuda, cuda:N"))),
        }
    }
}

/// Loads libtorch_cuda.so once per process; returns why it could not be loaded, if so.
fn load_cuda_runtime() -> Result<(), String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let mut tried = Vec::new();
            for dir in cuda_library_dirs() {
                let candidate = dir.join("libtorch_cuda.so");
                if !candidate.exists() {
                    continue;
                }
                // RTLD_GLOBAL so libtorch's dispatcher sees the CUDA kernels the library registers.
                let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL;
                // SAFETY: loading libtorch's own CUDA library runs its static initialisers, which
                // only register kernels with the already-loaded libtorch_cpu.
                match unsafe { libloading::os::unix::Library::open(Some(&candidate), flags) } {
                    Ok(lib) => {
                        // Kept loaded for the life of the process.
                        std::mem::forget(lib);
                        return Ok(());
                    }
                    Err(e) => tried.push(format!("{}: {e}", candidate.display())),
                }
            }
            Err(if tried.is_empty() {
                "libtorch_cuda.so not found beside libtorch".to_string()
            } else {
                tried.join("; ")
            })
        })
        .clone()
}

fn cuda_library_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var("LD_LIBRARY_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .collect();
    dirs.push(PathBuf::from(env!("FSTGATE_LIBTORCH_LIB")));
    dirs
}

/// Resolves a choice to a device that works here, or says why it cannot.
pub fn resolve(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => match load_cuda_runtime() {
            Ok(()) if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            Ok(()) => {
                tracing::debug!("CUDA runtime loaded but no GPU visible; using the CPU");
                Ok(Device::Cpu)
            }
            Err(why) => {
                tracing::debug!("no CUDA ({why}); using the CPU");
                Ok(Device::Cpu)
            }
        },
        DeviceChoice::Cuda(index) => {
            load_cuda_runtime().map_err(|why| Error::Device(format!("CUDA unavailable: {why}")))?;
            let count = tch::Cuda::device_count() as usize;
            if index >= count {
                return Err(Error::Device(format!("cuda:{index} requested but {count} CUDA device(s) are visible")));
            }
            Ok(Device::Cuda(index))
        }
    }
}

/// The name written into reports: `cpu` or `cuda:N`.
pub fn name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".to_string(),
    }
}

/// (De)serialises a `tch::Device` as its report name (`cpu`, `cuda:N`), for job documents
/// handed to a worker process: `#[serde(with = "crate::device::by_name")]`.
pub mod by_name {
    use serde::{Deserialize, Deserializer, Serializer};
    use tch::Device;

    /// Writes `cpu` or `cuda:N`.
    pub fn serialize<S: Serializer>(device: &Device, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::name(*device))
    }

    /// Reads `cpu` or `cuda:N`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Device, D::Error> {
        let name = String::deserialize(deserializer)?;
        match name.strip_prefix("cuda:").map(str::parse::<usize>) {
            None if name == "cpu" => Ok(Device::Cpu),
            Some(Ok(index)) => Ok(Device::Cuda(index)),
            _ => Err(serde::de::Error::custom(format!("`{name}` is not a device name (cpu or cuda:N)"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_choices() {
        assert_eq!("auto".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!("cuda".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(3));
        let err = "gpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(err.contains("`gpu`"), "{err}");
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn auto_always_resolves() {
        let device = resolve(DeviceChoice::Auto).unwrap();
        assert!(matches!(device, Device::Cpu | Device::Cuda(0)));
    }
}
