//! The two predicates fstgate signs: SLSA Provenance v1 (how the purified model was made, from
//! what) and SLSA Verification Summary v1 (what the gate decided, with the policy verdicts and
//! the metrics in an `fstgate` extension field that SLSA consumers ignore).
use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::statement::ResourceDescriptor;
use crate::data::InputSpec;
use crate::purification::Settings;
use crate::report::Summary;
use crate::report::decision::{Decision, PolicyResult};

/// Predicate type of the SLSA Provenance v1 statement (`provenance.intoto.json`).
pub const PROVENANCE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// Predicate type of the SLSA Verification Summary v1 statement (`decision.intoto.json`).
pub const VSA_TYPE: &str = "https://slsa.dev/verification_summary/v1";
/// `buildType` of fstgate's purification, naming the shape of [`ExternalParameters`].
pub const BUILD_TYPE: &str = "urn:fstgate:purification:v1";
/// `builder.id` in the provenance: the purification that made the model.
pub const BUILDER_ID: &str = "urn:fstgate:builder:purify";
/// `verifier.id` in the verification summary: the gate that decided.
pub const VERIFIER_ID: &str = "urn:fstgate:gate";

/// SLSA Provenance v1 predicate: how the purified model was built, and from what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// What was run, with which inputs.
    pub build_definition: BuildDefinition,
    /// Who ran it, and when.
    pub run_details: RunDetails,
}

/// SLSA `buildDefinition`: the build's type, parameters and inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    /// Always `urn:fstgate:purification:v1`.
    pub build_type: String,
    /// The parameters the user chose.
    pub external_parameters: ExternalParameters,
    /// The parameters fstgate chose itself.
    pub internal_parameters: InternalParameters,
    /// The original model, the clean and test data, and every policy that ran.
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// What the user chose: fstgate's own part of the provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalParameters {
    /// The original model as the job named it: the path given, or the registry's URI for it.
    pub model: String,
    /// Path of the clean data set purification trained on.
    pub clean_data: String,
    /// Path of the test data set the model was evaluated on.
    pub test_data: String,
    /// The purification settings used.
    pub purification: Settings,
    /// The model's input contract the data was prepared for.
    pub input: InputSpec,
    /// The known trigger, if one was given.
    pub trigger: Option<String>,
}

/// Parameters fstgate set rather than the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InternalParameters {
    /// The device purification ran on: `cpu` or `cuda:N`.
    pub device: String,
}

/// SLSA `runDetails`: the builder and the run's metadata and byproducts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunDetails {
    /// The builder: `urn:fstgate:builder:purify` with fstgate's version.
    pub builder: Builder,
    /// When the run started and finished, and its id.
    pub metadata: BuildMetadata,
    /// report.json.
    pub byproducts: Vec<ResourceDescriptor>,
}

/// An SLSA builder or verifier: its id and the versions of its components.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Builder {
    /// URI naming the builder or verifier.
    pub id: String,
    /// Component name to version, e.g. `fstgate` to the crate version.
    pub version: BTreeMap<String, String>,
}

/// SLSA build metadata: the run's id and times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildMetadata {
    /// sha256 of the run's report.json, which identifies the run.
    pub invocation_id: String,
    /// When the purification job started (RFC 3339, UTC).
    pub started_on: String,
    /// When the purification job finished (RFC 3339, UTC).
    pub finished_on: String,
}

/// The verification summary's overall result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VerificationResult {
    /// At least one policy ran and every one allowed the model: it is releasable.
    Passed,
    /// A policy denied the model, or none ran.
    Failed,
}

/// SLSA Verification Summary v1 predicate: what the gate decided about the purified model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationSummary {
    /// The gate: `urn:fstgate:gate` with fstgate's version.
    pub verifier: Builder,
    /// When the decision was signed (RFC 3339, UTC, whole seconds).
    pub time_verified: String,
    /// The purified model, relative to the attested directory.
    pub resource_uri: String,
    /// The policy set that ran, by a sha256 over each policy's code digest, config digest and name.
    pub policy: ResourceDescriptor,
    /// The provenance this decision was made on.
    pub input_attestations: Vec<ResourceDescriptor>,
    /// `PASSED` when the model is releasable, `FAILED` otherwise.
    pub verification_result: VerificationResult,
    /// `FSTGATE_POLICY_PASSED` when the model is releasable; empty otherwise.
    pub verified_levels: Vec<String>,
    /// The SLSA version of the verification: `1.0`.
    pub slsa_version: String,
    /// fstgate's extension: the verdicts and the figures they were based on.
    pub fstgate: DecisionRecord,
}

/// fstgate's decision on a purified model: the verdict of every policy and the metrics they judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord {
    /// `release` or `deny`.
    pub decision: String,
    /// Whether the model may be released: at least one policy ran and every one allowed it.
    pub releasable: bool,
    /// Each policy's verdict, with its reasons and figures.
    pub policies: Vec<PolicyResult>,
    /// The figures the policies decided on.
    pub metrics: Summary,
}

/// Level recorded in verifiedLevels when every policy allowed the model.
pub const RELEASE_LEVEL: &str = "FSTGATE_POLICY_PASSED";

impl DecisionRecord {
    /// The record of `decision`, made on `metrics`.
    pub fn new(decision: &Decision, metrics: &Summary) -> Self {
        DecisionRecord {
            decision: if decision.releasable { "release" } else { "deny" }.to_string(),
            releasable: decision.releasable,
            policies: decision.policies.clone(),
            metrics: metrics.clone(),
        }
    }
}
