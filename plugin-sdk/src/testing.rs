//! A real report for a plugin's host-side unit tests (feature `testing`, for dev-dependencies).
//!
//! It comes from an FST purification of a BadNets-backdoored Fashion-MNIST model: attack success
//! rate 89.5% before, 2.1% after; worst probe after 39.5% (a blended trigger); clean accuracy
//! 87.2% before, 85.65% after (a 1.55-point drop). Its strength search's `evidence`, the judge's
//! settings (`invert_triggers`, `inversion`, LP-FT warm-up) and the candidates' inversion fields
//! were spliced in from a real `fstgate purify --judge` report (the held-out grid's h03, an MNIST
//! LeNet with a blended backdoor into class 0) when those fields were added, so that every field
//! of the schema is present; the signal's `reference_mask_ratio` comes from the grid's f02 (an
//! MNIST GroupNorm CNN with a checkerboard backdoor into class 3), and the trigger-unlearning
//! fields (`unlearn_share`, `unlearned_triggers`, `reinversion_seconds`, `purified_mask_ratio`)
//! from the w6 grid's w08 gated with `--auto-unlearn-share 0.2`; the refit fields
//! (`refit_residual`, `refit_push_after`, `reference_refit_push`, `refit_residual_push`,
//! `refit_push`) from tests/judgement.rs's lab model gated with `--auto-refit-residual` (the first
//! candidate's from its plain-FST run, the rest from its unlearning run); the gentle candidate's
//! unlearning (`gentle_unlearn_classes`, `gentle_unlearn_share`: the judge's 3 and 0.2;
//! `gentle_unlearned_classes`: none, since this run had evidence) when version 8 added them;
//! the head-keeping switches (`keep_head`, `gentle_keeps_head`, `head_kept`: all false, as in
//! that run) when they were added; the warm-up's own learning rate (`head_warmup_learning_rate`:
//! null, the tuning's) and the epochs' tuning curve (`validation_accuracy`: null, since this run
//! predates it) when those were; the feature interpolation (`feature_interpolation`: null, the
//! run kept its tuned features; `gentle_feature_interpolation`: the judge's 0.5) and the judge's
//! own warm-up rate (`head_warmup_learning_rate` in the search's settings: null, as that run
//! warmed up at the tuning's) when version 10 added them; the relearning check (`relearn_epochs`:
//! the judge's 20; `relearning`, the signal's `relearned_push` and the evidence's
//! `relearned_residual_push`) from the y12 grid's y05 (an MNIST GroupNorm CNN with a noise blend
//! into class 4) gated with `--judge` when the check was added, its inverted patch's push put on
//! this report's signal (the reason's sentence on it with it); the signal's `mask_pixels` and
//! `reference_mask_pixels` (version 12) from this report's own inversion and reference inversion
//! of its class.
//! Change the figures a test is about.
use crate::Report;

/// The fixture's JSON text: a whole report.json. (The gate leaves `decision` out when it asks a
/// policy; the SDK ignores it anyway.)
pub const SAMPLE_REPORT_JSON: &str = include_str!("../tests/fixtures/report.json");

/// [`SAMPLE_REPORT_JSON`] read into the SDK's [`Report`].
pub fn sample_report() -> Report {
    serde_json::from_str(SAMPLE_REPORT_JSON).expect("the sample report matches the SDK's types")
}
