//! `fstgate scan`: trigger inversion on one model without purifying it, the judge's evidence
//! alone: a table per class, the JSON document, and the inverted triggers as images.
use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use fstgate::data::DataSpec;
use fstgate::device;
use fstgate::evaluation::{InversionSettings, InvertedClass};
use fstgate::job::{self, Sample, ScanJob};
use fstgate::purification::AutoStrength;

use crate::args::InputArgs;

#[derive(Args)]
pub(crate) struct ScanArgs {
    /// TorchScript archive, or an MLflow model directory with a TorchScript pytorch flavour.
    #[arg(long)]
    model: PathBuf,
    /// Module path of the classification head (found automatically when omitted).
    #[arg(long)]
    head: Option<String>,
    /// Clean images of the model's task: PATH, or DIR#train / DIR#test for IDX and CIFAR-10.
    #[arg(long)]
    clean_data: DataSpec,
    /// Number of clean images to use, class-balanced; a fifth of them is held out to measure
    /// each trigger's push, and the masks are optimised on at most 1,000 of the rest.
    #[arg(long, default_value_t = 3000)]
    clean_count: i64,
    /// Seeds the split, the optimisation's batches and its starts.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Optimiser steps, all classes together (default: the judge's, 200): more steps shrink
    /// masks further, at proportional cost.
    #[arg(long)]
    steps: Option<usize>,
    /// Clean images per class and step (default: the judge's, 20).
    #[arg(long)]
    batch_size: Option<i64>,
    /// Write the scan's document (schemas/scan.schema.json) here; `-` for stdout.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write every inverted trigger as PNG images into this directory.
    #[arg(long)]
    triggers: Option<PathBuf>,
    #[command(flatten)]
    input: InputArgs,
}

/// Scans, prints the table, and writes what was asked for.
pub(crate) fn run(args: ScanArgs) -> anyhow::Result<()> {
    let judge = AutoStrength::judge();
    let job = ScanJob {
        model: args.model,
        head: args.head,
        clean_data: args.clean_data,
        clean_sample: Sample::Count(args.clean_count),
        input: args.input.spec(),
        device: device::resolve(args.input.device)?,
        held_out_fraction: judge.validation_fraction,
        optimisation_images: judge.inversion_images,
        seed: args.seed,
        inversion: InversionSettings {
            steps: args.steps.unwrap_or(judge.inversion.steps),
            batch_size: args.batch_size.unwrap_or(judge.inversion.batch_size),
            ..judge.inversion
        },
    };
    tracing::info!(device = %device::name(job.device), "scanning {}", job.model.display());
    let (report, triggers) = job::scan(&job)?;
    if let Some(dir) = &args.triggers {
        job::write_trigger_images(dir, &triggers)?;
    }
    let json_to_stdout = args.json.as_deref().is_some_and(|path| path.as_os_str() == "-");
    // The table goes where the document does not.
    let mut out: Box<dyn Write> =
        if json_to_stdout { Box::new(std::io::stderr()) } else { Box::new(std::io::stdout()) };
    let inversion = &report.inversion;
    let mut table = |title: &str,
                     classes: &[InvertedClass],
                     suspected: &[i64],
                     size: &dyn Fn(&InvertedClass) -> String|
     -> std::io::Result<()> {
        writeln!(out, "{title}")?;
        writeln!(out, "  class  size        ratio  anomaly  push    reached  suspected")?;
        for class in classes {
            writeln!(
                out,
                "  {:>5}  {:<10}  {:>5.2}  {:>7.2}  {:>5.1}%  {:<7}  {}",
                class.class,
                size(class),
                class.mask_ratio,
                class.anomaly_index,
                100.0 * class.push,
                if class.reached { "yes" } else { "no" },
                if suspected.contains(&class.class) { "yes" } else { "" }
            )?;
        }
        Ok(())
    };
    table("patches (mask size in pixels)", &inversion.classes, &inversion.suspected_targets, &|c| {
        format!("{:.1} px", c.mask_pixels)
    })?;
    if !inversion.blends.is_empty() {
        table("blends (weight, share of the image)", &inversion.blends, &inversion.suspected_blend_targets, &|c| {
            format!("{:.1}%", 100.0 * inversion.share_of_image(c).unwrap_or(f64::NAN))
        })?;
    }
    writeln!(
        out,
        "{} ({:.0} s). Size ratios are against the other classes' median; the judge also reads each \
         suspect against a model trained from scratch on the clean images, which a scan does not.",
        if report.backdoor_suspected {
            format!(
                "backdoor suspected: patch targets {:?}, blend targets {:?}",
                inversion.suspected_targets, inversion.suspected_blend_targets
            )
        } else {
            "no class stands out".to_string()
        },
        report.seconds
    )?;
    drop(out);
    match args.json.as_deref() {
        Some(_) if json_to_stdout => println!("{}", serde_json::to_string_pretty(&report)?),
        Some(path) => fstgate::fsutil::write_json(path, &report)?,
        None => {}
    }
    Ok(())
}
