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

pub const PROVENANCE_TYPE: &str = "https://slsa.dev/provenance/v1";
pub const VSA_TYPE: &str = "https://slsa.dev/verification_summary/v1";
pub const BUILD_TYPE: &str = "urn:fstgate:purification:v1";
pub const BUILDER_ID: &str = "urn:fstgate:builder:purify";
pub const VERIFIER_ID: &str = "urn:fstgate:gate";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    pub build_type: String,
    pub external_parameters: ExternalParameters,
    pub internal_parameters: InternalParameters,
    /// The original model, the clean and test data, and every policy that ran.
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// What the user chose: fstgate's own part of the provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalParameters {
    pub model: String,
    pub clean_data: String,
    pub test_data: String,
    pub purification: Settings,
    pub input: InputSpec,
    /// The known trigger, if one was given.
    pub trigger: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InternalParameters {
    pub device: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunDetails {
    pub builder: Builder,
    pub metadata: BuildMetadata,
    /// report.json.
    pub byproducts: Vec<ResourceDescriptor>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Builder {
    pub id: String,
    pub version: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildMetadata {
    pub invocation_id: String,
    pub started_on: String,
    pub finished_on: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VerificationResult {
    Passed,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationSummary {
    pub verifier: Builder,
    pub time_verified: String,
    /// The purified model, relative to the attested directory.
    pub resource_uri: String,
    pub policy: ResourceDescriptor,
    /// The provenance this decision was made on.
    pub input_attestations: Vec<ResourceDescriptor>,
    pub verification_result: VerificationResult,
    pub verified_levels: Vec<String>,
    pub slsa_version: String,
    /// fstgate's extension: the verdicts and the figures they were based on.
    pub fstgate: DecisionRecord,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord {
    /// `release` or `deny`.
    pub decision: String,
    pub releasable: bool,
    pub policies: Vec<PolicyResult>,
    pub metrics: Summary,
}

/// Level recorded in verifiedLevels when every policy allowed the model.
pub const RELEASE_LEVEL: &str = "FSTGATE_POLICY_PASSED";

impl DecisionRecord {
    pub fn new(decision: &Decision, metrics: &Summary) -> Self {
        DecisionRecord {
            decision: if decision.releasable { "release" } else { "deny" }.to_string(),
            releasable: decision.releasable,
            policies: decision.policies.clone(),
            metrics: metrics.clone(),
        }
    }
}
