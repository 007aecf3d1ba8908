//! Builders for the WIT `verdict` record.
use crate::bindings::{Decision, Measurement, Verdict};

impl Verdict {
    /// Release allowed, no reasons.
    pub fn allow() -> Self {
        Verdict { decision: Decision::Allow, reasons: Vec::new(), measurements: Vec::new() }
    }

    /// Release denied for `reason`: one sentence a reviewer can act on, with the figures.
    pub fn deny(reason: impl Into<String>) -> Self {
        Verdict { decision: Decision::Deny, reasons: vec![reason.into()], measurements: Vec::new() }
    }

    /// Denied for these reasons, or allowed when there are none.
    pub fn from_reasons(reasons: Vec<String>) -> Self {
        let decision = if reasons.is_empty() { Decision::Allow } else { Decision::Deny };
        Verdict { decision, reasons, measurements: Vec::new() }
    }

    /// Records a figure the policy judged by (it appears in the gate's decision record).
    pub fn with_measurement(mut self, name: impl Into<String>, value: f64) -> Self {
        self.measurements.push(Measurement { name: name.into(), value });
        self
    }

    /// Both verdicts at once: denied when either denies, with the reasons and measurements of
    /// both. This is how a policy made of several rules combines them.
    pub fn and(mut self, other: Verdict) -> Self {
        if other.decision == Decision::Deny {
            self.decision = Decision::Deny;
        }
        self.reasons.extend(other.reasons);
        self.measurements.extend(other.measurements);
        self
    }

    /// Whether the verdict allows the release.
    pub fn is_allow(&self) -> bool {
        self.decision == Decision::Allow
    }

    /// The value recorded under `name`, if any.
    pub fn measurement(&self, name: &str) -> Option<f64> {
        self.measurements.iter().find(|m| m.name == name).map(|m| m.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn and_denies_when_either_denies_and_keeps_everything() {
        let a = Verdict::allow().with_measurement("a", 1.0);
        let b = Verdict::deny("too high").with_measurement("b", 2.0);
        let both = a.clone().and(b.clone());
        assert!(!both.is_allow());
        assert_eq!(both.reasons, ["too high"]);
        assert_eq!((both.measurement("a"), both.measurement("b")), (Some(1.0), Some(2.0)));
        assert!(!b.and(a.clone()).is_allow());
        assert!(a.clone().and(a).is_allow());
        assert!(Verdict::from_reasons(vec![]).is_allow());
        assert!(!Verdict::from_reasons(vec!["x".into()]).is_allow());
    }
}
