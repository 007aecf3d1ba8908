//! Locating the classification head: the last linear map producing the logits, whatever its
//! name. Shape finds the candidates (a weight [K, D] with K = number of outputs, a bias [K]);
//! a functional test decides: shifting the true head's bias by d shifts every logit by exactly
//! d (scaling a bias-free head's weight by 2 doubles the logits). Nothing after the head may
//! transform its output, so hidden layers of the same shape fail the test.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::Classifier;
use crate::error::{Error, Result};

/// The classification head: the linear map that produces the logits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Head {
    /// Module path of the head, e.g. `fc` or `classifier.6`.
    pub name: String,
    /// Parameter name of the weight [out_features, in_features].
    pub weight: String,
    /// Parameter name of the bias [out_features], if the head has one.
    pub bias: Option<String>,
    /// Input features of the head: the width of the features it classifies.
    pub in_features: i64,
    /// Outputs of the head: the number of classes.
    pub out_features: i64,
    /// `automatic` or `user` (named with --head).
    pub located_by: String,
    /// Whether the functional test confirmed that this map produces the logits.
    pub verified: bool,
}

impl Head {
    pub(super) fn placeholder() -> Self {
        Head {
            name: String::new(),
            weight: String::new(),
            bias: None,
            in_features: 0,
            out_features: 0,
            located_by: String::new(),
            verified: false,
        }
    }
}

struct Candidate {
    name: String,
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Candidate {
    fn describe(&self) -> String {
        let bias = if self.bias.is_some() { "" } else { ", no bias" };
        format!("{} {:?}{bias}", self.name, self.weight.size())
    }

    fn into_head(self, located_by: &str, verified: bool) -> Head {
        let size = self.weight.size();
        Head {
            weight: format!("{}.weight", self.name),
            bias: self.bias.as_ref().map(|_| format!("{}.bias", self.name)),
            name: self.name,
            in_features: size[1],
            out_features: size[0],
            located_by: located_by.to_string(),
            verified,
        }
    }
}

/// Every linear map (2-D `.weight`, optional matching `.bias`) in the model.
fn linear_maps(model: &Classifier) -> Result<Vec<Candidate>> {
    let params = model.named_parameters()?;
    let mut maps = Vec::new();
    for (name, tensor) in &params {
        let Some(prefix) = name.strip_suffix(".weight") else {
            continue;
        };
        if tensor.dim() != 2 {
            continue;
        }
        let rows = tensor.size()[0];
        let bias = params
            .iter()
            .find(|(n, t)| n.strip_suffix(".bias") == Some(prefix) && t.size() == [rows])
            .map(|(_, t)| t.shallow_clone());
        maps.push(Candidate { name: prefix.to_string(), weight: tensor.shallow_clone(), bias });
    }
    Ok(maps)
}

/// Does perturbing this map change the logits exactly as the last linear map would?
fn produces_logits(model: &Classifier, candidate: &Candidate, sample: &Tensor) -> Result<bool> {
    tch::no_grad(|| {
        let before = model.logits(sample)?;
        let scale = 1.0 + before.abs().max().double_value(&[]);
        // With a bias: add a distinct shift per class. Without: double the weight.
        let (mut param, shift) = match &candidate.bias {
            Some(bias) => {
                let k = bias.size()[0];
                let shift = (Tensor::arange(k, (Kind::Float, bias.device())) + 1.0) * (0.25 * scale);
                (bias.shallow_clone(), Some(shift))
            }
            None => (candidate.weight.shallow_clone(), None),
        };
        let saved = param.copy();
        let expected = match &shift {
            Some(shift) => {
                let _ = param.g_add_(shift);
                &before + shift
            }
            None => {
                let _ = param.g_mul_scalar_(2.0);
                &before * 2.0
            }
        };
        let after = model.logits(sample);
        param.copy_(&saved);
        let error = (after? - expected).abs().max().double_value(&[]);
        // A bias-free map whose logits are all zero proves nothing.
        let informative = shift.is_some() || scale > 1.0 + 1e-6;
        Ok(informative && error <= 1e-3 * scale)
    })
}

/// Finds the head; `requested` (from --head) may be a full module path or a unique suffix of
/// one at a `.` boundary (so `fc` finds `module.fc`).
pub(super) fn locate(model: &Classifier, sample: &Tensor, requested: Option<&str>) -> Result<Head> {
    let maps = linear_maps(model)?;
    let k = model.num_classes;
    let list = |maps: &[&Candidate]| maps.iter().map(|c| c.describe()).collect::<Vec<_>>().join("; ");

    if let Some(requested) = requested {
        let matches: Vec<&Candidate> =
            maps.iter().filter(|c| c.name == requested || c.name.ends_with(&format!(".{requested}"))).collect();
        let exact = matches.iter().position(|c| c.name == requested);
        let candidate = match (exact, matches.len()) {
            (Some(i), _) => matches[i],
            (None, 1) => matches[0],
            (None, 0) => {
                return Err(Error::Head(format!(
                    "no linear map named `{requested}`; linear maps in the model: {}",
                    list(&maps.iter().collect::<Vec<_>>())
                )));
            }
            (None, _) => {
                return Err(Error::Head(format!("`{requested}` is ambiguous: {}", list(&matches))));
            }
        };
        if candidate.weight.size()[0] != k {
            return Err(Error::Head(format!(
                "`{}` has {} outputs but the model produces {k} logits",
                candidate.name,
                candidate.weight.size()[0]
            )));
        }
        let verified = produces_logits(model, candidate, sample)?;
        if !verified {
            tracing::warn!(head = %candidate.name, "the named head does not produce the logits directly; using it as asked");
        }
        let index = maps.iter().position(|c| c.name == candidate.name).expect("candidate comes from maps");
        return Ok(maps.into_iter().nth(index).expect("index is valid").into_head("user", verified));
    }

    let shaped: Vec<Candidate> = maps.into_iter().filter(|c| c.weight.size()[0] == k).collect();
    if shaped.is_empty() {
        return Err(Error::Head(format!(
            "no linear map with {k} outputs (the number of logits) in the model; name the head with --head"
        )));
    }
    let mut confirmed = Vec::new();
    for (i, candidate) in shaped.iter().enumerate() {
        if produces_logits(model, candidate, sample)? {
            confirmed.push(i);
        }
    }
    match confirmed.as_slice() {
        [i] => Ok(shaped.into_iter().nth(*i).expect("index is valid").into_head("automatic", true)),
        [] => Err(Error::Head(format!(
            "none of the linear maps with {k} outputs produces the logits directly (something \
             transforms them after the last linear layer, e.g. softmax or scaling); candidates: {}; \
             name the head with --head if one of them is it",
            list(&shaped.iter().collect::<Vec<_>>())
        ))),
        several => Err(Error::Head(format!(
            "ambiguous: several linear maps produce the logits: {}; name one with --head",
            list(&several.iter().map(|&i| &shaped[i]).collect::<Vec<_>>())
        ))),
    }
}
