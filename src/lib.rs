//! fstgate: a backdoor-purification gate for model registries.
//!
//! Data flows one way through the stages: `data` and `model` load the inputs, `purification`
//! (on top of the shared `training` loop) applies Feature Shift Tuning, `evaluation` measures
//! before and after, and `job` ties one purification together into a `report`. The `lab` makes
//! backdoored models to test all of it on.
pub mod attestation;
pub mod data;
pub mod device;
pub mod error;
pub mod evaluation;
pub mod fsutil;
pub mod job;
pub mod lab;
pub mod model;
pub mod policy;
pub mod progress;
pub mod purification;
pub mod report;
pub mod rng;
pub mod training;

pub use error::{Error, Result};
