//! fstgate: a backdoor-purification gate for model registries.
//!
//! Data flows one way through the stages: `data` and `model` load the inputs, `purification`
//! (on top of the shared `training` loop) applies Feature Shift Tuning, `evaluation` measures
//! before and after, and `job` ties one purification together into a `report`, which `policy`
//! judges and `attestation` signs. The `pipeline` runs jobs for a registry: `sources` find new
//! uploads (object stores, or MLflow registries through the `mlflow` client), `jobs` records each
//! one's state, `publication` writes the outcome exactly once to a `store` and records it in the
//! registry. The `lab` makes backdoored models to test all of it on.
//!
//! Modules are layered in that order: each imports only the ones below it (the document types
//! of `report`, including the decision and a purified directory's file names, sit below every
//! stage that writes or reads them; `schemas` lists them all from the top). tests/architecture.rs
//! holds the layers and fails on an upward import.
#![warn(missing_docs)]

pub mod attestation;
pub mod data;
pub mod demo;
pub mod device;
pub mod error;
pub mod evaluation;
pub mod failpoint;
pub mod fsutil;
pub mod job;
pub mod jobs;
pub mod lab;
pub mod mlflow;
pub mod model;
pub mod pipeline;
pub mod policy;
pub mod progress;
pub mod publication;
pub mod purification;
pub mod report;
pub mod rng;
pub mod schemas;
pub mod sources;
pub mod stats;
pub mod store;
pub mod training;
pub mod worker;

pub use error::{Error, Result};
