//! in-toto Statement v1: subjects (name + digests) and a typed predicate.
use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";

/// An in-toto ResourceDescriptor: an artefact named by its digests, and by name or URI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceDescriptor {
    /// The artefact's name, e.g. `model.pt`, `original-model` or `policy:<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the artefact is or came from (`file://...`, a registry URI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Algorithm (`sha256`) to hex digest.
    pub digest: BTreeMap<String, String>,
}

impl ResourceDescriptor {
    /// A descriptor with a single `sha256` digest (hex).
    pub fn sha256(name: Option<&str>, uri: Option<&str>, sha256: &str) -> Self {
        ResourceDescriptor {
            name: name.map(str::to_string),
            uri: uri.map(str::to_string),
            digest: BTreeMap::from([("sha256".to_string(), sha256.to_string())]),
        }
    }

    /// The `sha256` digest (hex), if there is one.
    pub fn sha256_digest(&self) -> Option<&str> {
        self.digest.get("sha256").map(String::as_str)
    }
}

/// An in-toto Statement v1: the subjects it is about and a predicate of type `P`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement<P> {
    /// Always [`STATEMENT_TYPE`] (`_type`).
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// The artefacts the predicate is about.
    pub subject: Vec<ResourceDescriptor>,
    /// URI of the predicate's type (`predicateType`).
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// What is stated about the subjects.
    pub predicate: P,
}

impl<P> Statement<P> {
    /// A Statement v1 about `subject` with `predicate` of `predicate_type`.
    pub fn new(subject: Vec<ResourceDescriptor>, predicate_type: &str, predicate: P) -> Self {
        Statement {
            statement_type: STATEMENT_TYPE.to_string(),
            subject,
            predicate_type: predicate_type.to_string(),
            predicate,
        }
    }
}
