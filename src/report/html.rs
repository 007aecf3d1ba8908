//! report.html: a self-contained static page rendered from a [`Report`] for people (reviewers,
//! compliance), beside the report.json machines read. No scripts and no external resources: the
//! charts are inline SVG (plotters), the triggered images inline PNG.
use std::fmt::Write as _;

use base64::Engine as _;
use tch::{Kind, Tensor};

use super::decision::Verdict;
use super::layout::{DECISION_FILE, MODEL_FILE, PROVENANCE_FILE, REPORT_FILE, SIGNATURE_FILE};
use super::{Report, charts};
use crate::error::{Error, Result};
use crate::evaluation::Examples;
use crate::purification::Candidate;
use crate::stats::Interval;

/// One triggered test image, with its true class and the predictions before and after.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TriggeredExample {
    /// The triggered image, PNG-encoded.
    pub png: Vec<u8>,
    /// Its true class.
    pub label: i64,
    /// The class the uploaded model predicted.
    pub before: i64,
    /// The class the purified model predicted.
    pub after: i64,
}

/// Pairs the examples' images (encoded as PNG) with the predictions made on them.
pub fn triggered_examples(examples: &Examples, before: &[i64], after: &[i64]) -> Result<Vec<TriggeredExample>> {
    (0..examples.labels.len())
        .map(|i| {
            Ok(TriggeredExample {
                png: png(&examples.images.get(i as i64))?,
                label: examples.labels[i],
                before: before[i],
                after: after[i],
            })
        })
        .collect()
}

/// A [C, H, W] image in [0, 1] (C = 1 or 3) as PNG bytes.
pub fn png(image: &Tensor) -> Result<Vec<u8>> {
    let size = image.size();
    let (channels, height, width) = (size[0], size[1] as u32, size[2] as u32);
    let pixels = (image.to_device(tch::Device::Cpu) * 255.0).round().clamp(0.0, 255.0).to_kind(Kind::Uint8);
    let pixels = Vec::<u8>::try_from(pixels.permute([1, 2, 0]).contiguous().flatten(0, -1)).map_err(Error::Torch)?;
    let color = match channels {
        1 => image::ExtendedColorType::L8,
        3 => image::ExtendedColorType::Rgb8,
        other => return Err(Error::Settings(format!("cannot show a {other}-channel image"))),
    };
    let mut out = Vec::new();
    image::ImageEncoder::write_image(image::codecs::png::PngEncoder::new(&mut out), &pixels, width, height, color)
        .map_err(|e| Error::Settings(format!("PNG encoding: {e}")))?;
    Ok(out)
}

/// HTML-escapes text (model paths, plugin reasons and configs come from users).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// At most four decimals, without trailing zeros (measurements carry float noise).
fn number(value: f64) -> String {
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" { "0".to_string() } else { text.to_string() }
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{:.1}%", 100.0 * v))
}

/// after - before, in points, signed.
fn change(before: Option<f64>, after: Option<f64>) -> String {
    match (before, after) {
        (Some(b), Some(a)) => format!("{:+.1}", 100.0 * (a - b)),
        _ => String::new(),
    }
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;color:#222;max-width:1100px;margin:2em auto;padding:0 1em}\
h1{margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}\
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ddd;padding:.3em .7em;text-align:right}\
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}\
.verdict{display:inline-block;padding:.2em .8em;border-radius:4px;color:#fff;font-weight:600}\
.release{background:#2e7d32}.deny{background:#c62828}.bad{color:#c62828;font-weight:600}.good{color:#2e7d32}tr.suspected{background:#fdecea;font-weight:600}\
.strip{display:flex;flex-wrap:wrap;gap:12px}.strip figure{margin:0;text-align:center;font-size:13px}\
.strip img{width:84px;height:84px;image-rendering:pixelated;border:1px solid #ccc}\
pre,code{background:#f6f6f6;font-size:13px}pre{padding:.6em;overflow-x:auto}.muted{color:#666}";

/// Renders the page. `key_id` is the signing key's fingerprint when the directory is signed.
/// `name` says which model this is where it came from (the report's path may be a download).
pub fn render(report: &Report, name: &str, examples: &[TriggeredExample], key_id: Option<&str>) -> String {
    let mut page = String::new();
    let released = report.decision.releasable;
    let (verdict_class, verdict) = if released { ("release", "RELEASE") } else { ("deny", "DENY") };
    let title = format!("fstgate report: {name}");
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n\
         <h1>Backdoor purification report</h1>\n\
         <p><span id=\"verdict\" class=\"verdict {verdict_class}\">{verdict}</span> \
         <code id=\"model-name\">{}</code> (sha256 <code>{}</code>)</p>\n\
         <p class=\"muted\">fstgate {} on {}, {} to {}; {} classes; method {} with alpha {}.</p>\n",
        escape(&title),
        escape(name),
        escape(&report.model.source.sha256),
        escape(&report.fstgate_version),
        escape(&report.device),
        escape(&report.started_at),
        escape(&report.finished_at),
        report.model.num_classes,
        escape(serde_json::to_value(report.settings.method).ok().as_ref().and_then(|m| m.as_str()).unwrap_or_default()),
        number(report.settings.alpha),
    );
    summary(&mut page, report);
    per_class(&mut page, report);
    evidence(&mut page, report);
    training(&mut page, report);
    triggered(&mut page, report, examples);
    probes(&mut page, report);
    policies(&mut page, report);
    attestation(&mut page, report, key_id);
    if !report.warnings.is_empty() {
        page.push_str("<h2>Warnings</h2>\n<ul id=\"warnings\">");
        for warning in &report.warnings {
            let _ = write!(page, "<li>{}</li>", escape(warning));
        }
        page.push_str("</ul>\n");
    }
    page.push_str("</body></html>\n");
    page
}

/// A 95% interval of fractions as percentages, with the id the page's test reads it by.
fn interval_cell(id: &str, interval: Option<Interval>) -> String {
    interval.map_or_else(String::new, |i| {
        format!("<br><span class=\"muted\" id=\"{id}\">{:.1}&ndash;{:.1}%</span>", 100.0 * i.low, 100.0 * i.high)
    })
}

fn summary(page: &mut String, report: &Report) {
    let s = &report.summary;
    let ci = s.confidence_95.as_ref();
    let rows = [
        (
            "clean-accuracy",
            "Clean accuracy (C-Acc)",
            (Some(s.clean_accuracy_before), ci.map(|c| c.clean_accuracy_before)),
            (Some(s.clean_accuracy_after), ci.map(|c| c.clean_accuracy_after)),
            // The change is after - before: the drop's interval, negated.
            ci.map(|c| c.clean_accuracy_drop_points.negated()),
            true,
        ),
        (
            "attack-success-rate",
            "Attack success rate (ASR)",
            (s.attack_success_rate_before, ci.and_then(|c| c.attack_success_rate_before)),
            (s.attack_success_rate_after, ci.and_then(|c| c.attack_success_rate_after)),
            None,
            false,
        ),
        (
            "robust-accuracy",
            "Robust accuracy (RA)",
            (s.robust_accuracy_before, ci.and_then(|c| c.robust_accuracy_before)),
            (s.robust_accuracy_after, ci.and_then(|c| c.robust_accuracy_after)),
            None,
            true,
        ),
        (
            "worst-probe",
            "Worst trigger probe",
            (s.worst_probe_rate_before, ci.and_then(|c| c.worst_probe_rate_before)),
            (s.worst_probe_rate_after, ci.and_then(|c| c.worst_probe_rate_after)),
            None,
            false,
        ),
    ];
    page.push_str(
        "<h2>Before and after</h2>\n<table id=\"summary\"><tr><th>metric</th><th>before</th><th>after</th>\
         <th>change (points)</th></tr>\n",
    );
    for (id, name, (before, before_ci), (after, after_ci), change_ci, higher_is_better) in rows {
        let class = match (before, after) {
            (Some(b), Some(a)) if (a > b + 0.005) == higher_is_better && (a - b).abs() > 0.005 => "good",
            (Some(b), Some(a)) if (a - b).abs() > 0.005 => "bad",
            _ => "",
        };
        let change_ci = change_ci.map_or_else(String::new, |i| {
            format!("<br><span class=\"muted\" id=\"{id}-change-ci\">{:+.1} to {:+.1}</span>", i.low, i.high)
        });
        let _ = writeln!(
            page,
            "<tr><td>{name}</td><td id=\"{id}-before\">{}{}</td><td id=\"{id}-after\">{}{}</td>\
             <td class=\"{class}\">{}{change_ci}</td></tr>",
            percent(before),
            interval_cell(&format!("{id}-before-ci"), before_ci),
            percent(after),
            interval_cell(&format!("{id}-after-ci"), after_ci),
            change(before, after)
        );
    }
    let _ = writeln!(
        page,
        "</table>\n<p class=\"muted\">{} test images{}.{}</p>",
        report.after.test_images,
        report.after.attack.as_ref().map_or_else(String::new, |a| format!(
            "; attack: {} to class {}, measured on {} triggered images outside it",
            escape(&a.trigger),
            a.target_class,
            a.images
        )),
        ci.map_or_else(String::new, |c| format!(
            " Under each figure its 95% confidence interval (Wilson's; for the change in C-Acc Newcombe's \
             paired interval: of the {} test images, {} were right before purification only and {} after it only).",
            c.test_images.total(),
            c.test_images.first_only,
            c.test_images.second_only
        ))
    );
    let categories = ["C-Acc", "ASR", "RA"].map(String::from);
    page.push_str(&charts::before_after(
        "percent of test images",
        &categories,
        &[Some(s.clean_accuracy_before), s.attack_success_rate_before, s.robust_accuracy_before],
        &[Some(s.clean_accuracy_after), s.attack_success_rate_after, s.robust_accuracy_after],
    ));
}

fn per_class(page: &mut String, report: &Report) {
    let (before, after) = (&report.before.per_class_accuracy, &report.after.per_class_accuracy);
    let classes: Vec<String> = (0..before.len()).map(|c| c.to_string()).collect();
    page.push_str("<h2>Accuracy per class</h2>\n");
    page.push_str(&charts::before_after("clean accuracy", &classes, before, after));
    page.push_str("<table id=\"per-class\"><tr><th>class</th>");
    for class in &classes {
        let _ = write!(page, "<th>{class}</th>");
    }
    for (row, values) in [("before", before), ("after", after)] {
        let _ = write!(page, "</tr>\n<tr><td>{row}</td>");
        for (class, value) in values.iter().enumerate() {
            let _ = write!(page, "<td id=\"class-{class}-{row}\">{}</td>", percent(*value));
        }
    }
    page.push_str("</tr></table>\n");
}

fn training(page: &mut String, report: &Report) {
    let t = &report.timings;
    let _ = writeln!(
        page,
        "<h2>Purification</h2>\n<p>{} epochs, lr {}, batch {}, alpha {}, {} clean images; {:.1} s of {:.1} s in all \
         (evaluation {:.1} s before, {:.1} s after).</p>",
        report.settings.epochs,
        report.settings.learning_rate,
        report.settings.batch_size,
        number(report.settings.alpha),
        report.clean_data.images_used,
        t.purification_seconds,
        t.total_seconds,
        t.evaluation_before_seconds,
        t.evaluation_after_seconds,
    );
    if !report.epochs.is_empty() {
        page.push_str(&charts::epochs(&report.epochs));
    }
    let Some(search) = &report.strength_search else { return };
    let _ = writeln!(
        page,
        "<h3>Automatic strength</h3>\n<p>{}</p>\n<p>{} tuning and {} validation images; the original model scores \
         {} on the validation images.</p>",
        escape(&search.rule),
        search.tuning_images,
        search.validation_images,
        percent(Some(search.original_validation_accuracy)),
    );
    if search.suspect_probes.is_empty() {
        page.push_str("<p>No trigger probe pushed the original model's validation images into one class at the suspect rate.</p>\n");
    } else {
        page.push_str("<p>Suspect probes (the original model's validation images pushed into one class):</p>\n<ul id=\"suspects\">");
        for probe in &search.suspect_probes {
            let _ = write!(
                page,
                "<li><code>{}</code> into class {}: {}</li>",
                escape(&probe.trigger),
                probe.class,
                percent(Some(probe.rate))
            );
        }
        page.push_str("</ul>\n");
    }
    page.push_str(
        "<table id=\"strength\"><tr><th>candidate</th><th>alpha</th><th>epochs</th><th>validation accuracy</th>\
         <th>drop (points, 95% CI)</th><th>cos(W, W0)</th><th>suspect push</th><th>each signal's push (the evidence table's \
         order)</th><th>seconds</th><th>recipe</th><th></th></tr>\n",
    );
    for (i, c) in search.candidates.iter().enumerate() {
        let note = if i == search.chosen { "chosen".to_string() } else { c.failure.clone().unwrap_or_default() };
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td></tr>",
            i + 1,
            number(c.alpha),
            c.epochs,
            percent(c.validation_accuracy),
            c.validation_drop_points.map_or_else(
                || "n/a".into(),
                |d| format!(
                    "{d:.1}{}",
                    c.validation_drop_points_95.map_or_else(String::new, |i| format!(
                        " <span class=\"muted\">({:.1} to {:.1})</span>",
                        i.low, i.high
                    ))
                )
            ),
            c.head_cosine_to_original.map_or_else(|| "n/a".into(), |d| format!("{d:.3}")),
            percent(c.suspect_push),
            c.signal_pushes.iter().map(|p| percent(Some(*p))).collect::<Vec<_>>().join(" / "),
            c.seconds,
            escape(&recipe(c)),
            escape(&note)
        );
    }
    let _ = writeln!(page, "</table>\n<p>{}</p>", escape(&search.reason));
}

/// What sets a candidate's tuning apart from plain FST from a new head (empty: nothing does).
fn recipe(candidate: &Candidate) -> String {
    let mut parts = Vec::new();
    if candidate.head_kept {
        parts.push("original head".to_string());
    }
    if let Some(share) = candidate.feature_interpolation {
        parts.push(format!("features {share} of the way"));
    }
    if let Some(radius) = candidate.sharpness_radius {
        parts.push(format!("sharpness-aware, radius {radius}"));
    }
    if let Some(share) = candidate.unlearn_share {
        parts.push(format!("unlearns inverted triggers on {share} of each batch"));
    }
    if let Some(adversarial) = candidate.adversarial_unlearning {
        parts.push(format!(
            "unlearns adversarial perturbations on {} of each batch (radius {})",
            adversarial.share, adversarial.radius
        ));
    }
    if let Some(weight) = candidate.distillation {
        parts.push(format!("distils from the original at weight {weight}"));
    }
    parts.join("; ")
}

/// The backdoor evidence found without the attack: every signal with its push before and after
/// (and the 95% upper bound), then the inversion's per-class mask sizes.
fn evidence(page: &mut String, report: &Report) {
    let Some(evidence) = report.strength_search.as_ref().and_then(|s| s.evidence.as_ref()) else { return };
    let finding = match (evidence.backdoor_suspected, evidence.cleared) {
        (false, _) => "no evidence of a backdoor",
        (true, true) => "backdoor suspected, cleared by purification",
        (true, false) => "backdoor suspected, NOT cleared by purification",
    };
    let _ = writeln!(
        page,
        "<h2>Backdoor evidence (trigger unknown)</h2>\n<p id=\"evidence\"><strong>{finding}</strong>: {}</p>",
        escape(&evidence.reason)
    );
    if !evidence.signals.is_empty() {
        page.push_str(
            "<table id=\"signals\"><tr><th>signal</th><th>class</th><th>push before</th><th>push after</th>\
             <th>95% upper</th><th>images</th><th>mask (against its median)</th>\
             <th>mask on the from-scratch reference (against its median)</th>\
             <th>push on the from-scratch reference</th><th>mask ratio inverted afresh after unlearning</th>\
             <th>push refitted at its size after</th><th>the same refit on the reference</th>\
             <th>push after under a fresh head</th><th></th></tr>\n",
        );
        for s in &evidence.signals {
            let ratio = |r: Option<f64>| r.map_or_else(|| "n/a".into(), |r| format!("{r:.2}"));
            // Inverted triggers are judged by pixels since version 12; older reports have the
            // ratio alone.
            let mask = |pixels: Option<f64>, r: Option<f64>| match pixels {
                Some(pixels) => format!("{pixels:.1} px ({})", ratio(r)),
                None => ratio(r),
            };
            let note = match (s.natural, s.cleared, s.natural_push) {
                (true, _, _) => "the model's nature".to_string(),
                (false, true, Some(natural)) => format!("cleared (at the reference's {})", percent(Some(natural))),
                (false, true, None) => "cleared".to_string(),
                (false, false, _) => "not cleared".to_string(),
            };
            let _ = writeln!(
                page,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&s.trigger),
                s.class,
                percent(Some(s.push_before)),
                percent(s.push_after),
                percent(s.push_after_upper_95),
                s.images,
                mask(s.mask_pixels, s.mask_ratio),
                mask(s.reference_mask_pixels, s.reference_mask_ratio),
                percent(s.reference_push),
                ratio(s.purified_mask_ratio),
                percent(s.refit_push_after),
                percent(s.reference_refit_push),
                percent(s.relearned_push),
                note
            );
        }
        page.push_str("</table>\n");
    }
    if let Some(check) = report.strength_search.as_ref().and_then(|s| s.relearning.as_ref()) {
        let known = check
            .known_trigger_asr
            .map_or(String::new(), |asr| format!("; the named trigger's success rate under it {}", percent(Some(asr))));
        let _ = writeln!(
            page,
            "<p id=\"relearning\">Relearning check (a fresh head learnt alone on the purified model's frozen \
             features from the clean tuning images, {} epochs at {}, {:.1} s): {} validation accuracy{known}. A \
             signal that comes back under it was disconnected from the head, not removed from the features; it \
             decides nothing.</p>",
            check.epochs,
            number(check.learning_rate),
            check.seconds,
            percent(Some(check.validation_accuracy))
        );
    }
    if let Some(reference) = &evidence.reference {
        let _ = writeln!(
            page,
            "<p id=\"reference\">From-scratch reference (the same architecture trained on the clean tuning images \
             only, {} steps, {:.1} s): {} validation accuracy, {}.</p>",
            reference.steps,
            reference.seconds,
            percent(Some(reference.validation_accuracy)),
            if reference.usable { "used to judge the signals" } else { "too weak to judge the signals by" }
        );
    }
    if let Some(inversion) = &evidence.inversion {
        let _ = write!(
            page,
            "<p>Trigger inversion ({} steps on {} images, push measured on {} held-out images, {:.1} s): the smallest \
             mask per class, in pixels, and its ratio to the other classes' median; then the smallest blend per \
             class (one weight over the whole image), its weight as a share of the image, its ratio to the other \
             classes' blends and its push.</p>\n<table id=\"inversion\"><tr>\
             <th>class</th><th>mask pixels</th><th>ratio</th><th>push</th><th>anomaly index</th>\
             <th>blend</th><th>blend ratio</th><th>blend push</th></tr>\n",
            inversion.settings.steps, inversion.optimisation_images, inversion.held_out_images, inversion.seconds
        );
        for c in &inversion.classes {
            let suspected =
                inversion.suspected_targets.contains(&c.class) || inversion.suspected_blend_targets.contains(&c.class);
            let mark = if suspected { " class=\"suspected\"" } else { "" };
            let blend = inversion.blends.get(c.class as usize).map_or_else(
                || "<td>n/a</td><td>n/a</td><td>n/a</td>".to_string(),
                |b| {
                    format!(
                        "<td>{}</td><td>{:.2}</td><td>{}</td>",
                        percent(inversion.share_of_image(b)),
                        b.mask_ratio,
                        percent(Some(b.push))
                    )
                },
            );
            let _ = writeln!(
                page,
                "<tr{mark}><td>{}</td><td>{:.1}</td><td>{:.2}</td><td>{}</td><td>{:.1}</td>{blend}</tr>",
                c.class,
                c.mask_pixels,
                c.mask_ratio,
                percent(Some(c.push)),
                c.anomaly_index
            );
        }
        page.push_str("</table>\n");
    }
}

fn triggered(page: &mut String, report: &Report, examples: &[TriggeredExample]) {
    let Some(attack) = &report.after.attack else { return };
    if examples.is_empty() {
        return;
    }
    let _ = writeln!(
        page,
        "<h2>Triggered test images</h2>\n<p>One test image per class with the trigger <code>{}</code>; a prediction \
         of the target class {} is the backdoor at work.</p>\n<div class=\"strip\" id=\"triggered\">",
        escape(&attack.trigger),
        attack.target_class
    );
    let encoder = base64::engine::general_purpose::STANDARD;
    for example in examples {
        let mark =
            |p: i64| if p == attack.target_class { format!("<span class=\"bad\">{p}</span>") } else { p.to_string() };
        let _ = writeln!(
            page,
            "<figure><img alt=\"triggered image of class {}\" src=\"data:image/png;base64,{}\">\
             <figcaption>class {}<br>before: {}<br>after: {}</figcaption></figure>",
            example.label,
            encoder.encode(&example.png),
            example.label,
            mark(example.before),
            mark(example.after)
        );
    }
    page.push_str("</div>\n");
}

fn probes(page: &mut String, report: &Report) {
    if report.before.probes.is_empty() {
        return;
    }
    page.push_str(
        "<h2>Trigger probes</h2>\n<p>Each probe stamps a common trigger on every test image; the rate is the share \
         of images outside a class pushed into it (the worst class).</p>\n<table id=\"probes\"><tr><th>probe</th>\
         <th>class before</th><th>rate before</th><th>class after</th><th>rate after</th></tr>\n",
    );
    for (before, after) in report.before.probes.iter().zip(&report.after.probes) {
        let _ = writeln!(
            page,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&before.trigger),
            before.class,
            percent(Some(before.rate)),
            after.class,
            percent(Some(after.rate))
        );
    }
    page.push_str("</table>\n");
}

fn policies(page: &mut String, report: &Report) {
    page.push_str(
        "<h2>Policies</h2>\n<table id=\"policies\"><tr><th>policy</th><th>verdict</th><th>reasons</th>\
         <th>measurements</th><th>component sha256</th></tr>\n",
    );
    for policy in &report.decision.policies {
        let (class, verdict) = match policy.verdict {
            Verdict::Allow => ("good", "allow"),
            Verdict::Deny => ("bad", "deny"),
        };
        let reasons: Vec<String> = policy.reasons.iter().chain(policy.failure.as_ref()).map(|r| escape(r)).collect();
        let measurements: Vec<String> =
            policy.measurements.iter().map(|m| format!("{} = {}", escape(&m.name), number(m.value))).collect();
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td class=\"{class}\">{verdict}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            escape(&policy.name),
            reasons.join("<br>"),
            measurements.join("<br>"),
            escape(policy.sha256.get(..16).unwrap_or(&policy.sha256)),
        );
    }
    let _ = writeln!(
        page,
        "</table>\n<p>The gate's decision: <strong>{}</strong>.</p>",
        if report.decision.releasable { "release (every policy allows)" } else { "deny" }
    );
}

fn attestation(page: &mut String, report: &Report, key_id: Option<&str>) {
    page.push_str("<h2>Attestation</h2>\n");
    let Some(key_id) = key_id else {
        page.push_str("<p class=\"bad\">This directory is not signed: it cannot be published by a gate.</p>\n");
        return;
    };
    let _ = writeln!(
        page,
        "<p>Signed with the ECDSA P-256 key <code id=\"key-id\">{}</code>. The purified model <code>{MODEL_FILE}</code> \
         has sha256 <code>{}</code>; it was purified from the model with sha256 <code>{}</code>.</p>\n<ul>\
         <li><code>{SIGNATURE_FILE}</code>: an OpenSSF model_signing bundle (Sigstore bundle, DSSE) over every file \
         of the directory, this page included</li>\
         <li><code>{PROVENANCE_FILE}</code>: SLSA provenance v1 (in-toto Statement, DSSE): the original model, the \
         data, the settings, the report's digest</li>\
         <li><code>{DECISION_FILE}</code>: a SLSA verification summary with the policies' verdicts</li>\
         <li><code>{REPORT_FILE}</code>: the figures on this page, for machines \
         (<code>schemas/report.schema.json</code>)</li></ul>\n\
         <p>To verify (<code>DIR</code> is this directory, <code>key.pub</code> the public key):</p>\n\
         <pre>fstgate verify DIR --public-key key.pub --original-model ORIGINAL_MODEL\n\
         model_signing verify key DIR --public_key key.pub --signature DIR/{SIGNATURE_FILE}</pre>",
        escape(key_id),
        escape(&report.output.sha256),
        escape(&report.model.source.sha256),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::AdversarialUnlearning;

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }

    #[test]
    fn a_candidates_recipe_names_what_sets_its_tuning_apart() {
        let plain: Candidate = serde_json::from_value(serde_json::json!({
            "alpha": 0.09, "epochs": 48, "learning_rate": 0.01, "validation_accuracy": 0.9,
            "validation_drop_points": 1.0, "head_cosine_to_original": -0.9, "reached_shift_target": false,
            "within_accuracy_budget": true, "failure": null, "seconds": 1.0
        }))
        .unwrap();
        assert_eq!(recipe(&plain), "");
        let sharp = Candidate { sharpness_radius: Some(4.0), unlearn_share: Some(0.2), ..plain.clone() };
        assert_eq!(recipe(&sharp), "sharpness-aware, radius 4; unlearns inverted triggers on 0.2 of each batch");
        let gentle = Candidate { feature_interpolation: Some(0.5), ..plain.clone() };
        assert_eq!(recipe(&gentle), "features 0.5 of the way");
        let evidence = Candidate {
            adversarial_unlearning: Some(AdversarialUnlearning { share: 0.2, radius: 0.1, steps: 5 }),
            distillation: Some(1.0),
            ..plain
        };
        assert_eq!(
            recipe(&evidence),
            "unlearns adversarial perturbations on 0.2 of each batch (radius 0.1); distils from the original at weight 1"
        );
    }

    #[test]
    fn numbers_lose_float_noise() {
        assert_eq!(number(2.500000000000002), "2.5");
        assert_eq!(number(0.0127777), "0.0128");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(-0.00001), "0");
    }

    #[test]
    fn the_evidence_section_shows_every_signal_with_its_masks_and_the_relearning_check() {
        // The plugin SDK's fixture: a real judge's report with every field of the evidence.
        let report: Report =
            serde_json::from_str(include_str!("../../plugin-sdk/tests/fixtures/report.json")).expect("a whole report");
        let mut page = String::new();
        evidence(&mut page, &report);
        assert!(page.contains("<strong>backdoor suspected, cleared by purification</strong>"), "{page}");
        // The signal's row: push before and after, then its mask and the reference's, in pixels
        // and against each model's median, and its push under a fresh head.
        let row = page.lines().find(|l| l.starts_with("<tr><td><code>inverted trigger")).expect("the signal's row");
        for cell in
            ["<td>0</td>", "<td>83.9%</td>", "<td>0.0%</td>", "<td>15.5 px (0.14)</td>", "<td>76.3 px (1.08)</td>"]
        {
            assert!(row.contains(cell), "{cell} not in {row}");
        }
        assert!(row.ends_with("<td>29.6%</td><td>cleared</td></tr>"), "{row}");
        assert!(page.contains("<p id=\"relearning\">Relearning check"), "{page}");
        // A signal cleared at the reference's push says so.
        let mut floored = report.clone();
        floored.strength_search.as_mut().unwrap().evidence.as_mut().unwrap().signals[0].natural_push = Some(0.074);
        let mut floored_page = String::new();
        evidence(&mut floored_page, &floored);
        assert!(floored_page.contains("<td>cleared (at the reference's 7.4%)</td></tr>"), "{floored_page}");
        // Text from the report is escaped.
        assert!(!page.contains("-> class") && page.contains("-&gt; class"), "{page}");
    }

    #[test]
    fn each_candidate_shows_every_signals_push_in_the_evidence_order() {
        let mut report: Report =
            serde_json::from_str(include_str!("../../plugin-sdk/tests/fixtures/report.json")).expect("a whole report");
        report.strength_search.as_mut().unwrap().candidates[0].signal_pushes = vec![0.1, 0.0021];
        let mut page = String::new();
        training(&mut page, &report);
        let rows: Vec<&str> = page.lines().filter(|l| l.starts_with("<tr><td>")).collect();
        assert!(rows[0].contains("<td>10.0% / 0.2%</td>"), "{}", rows[0]);
        assert!(rows[1].contains("<td>0.0%</td><td>"), "{}", rows[1]);
    }

    #[test]
    fn png_round_trips_a_grayscale_image() {
        let image = Tensor::from_slice(&[0.0f32, 0.5, 1.0, 0.25, 0.75, 1.0]).view([1, 2, 3]);
        let decoded = image::load_from_memory(&png(&image).unwrap()).unwrap().to_luma8();
        assert_eq!(decoded.dimensions(), (3, 2));
        assert_eq!(decoded.into_raw(), vec![0, 128, 255, 64, 191, 255]);
    }
}
