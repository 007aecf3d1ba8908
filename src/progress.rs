//! Training progress for people: a bar on a terminal, one log line per epoch otherwise.
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use crate::training::{EpochRecord, Progress, Silent};

/// A bar on stderr when it is a terminal.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn begin(&self, epochs: usize, steps_per_epoch: usize) {
        // The automatic strength trains several candidates, one bar run each.
        self.0.reset();
        self.0.set_length((epochs * steps_per_epoch) as u64);
    }
    fn step(&self) {
        self.0.inc(1);
    }
    fn epoch(&self, record: &EpochRecord) {
        self.0.set_message(format!(
            "epoch {} loss {:.4} acc {:.1}%",
            record.epoch,
            record.loss,
            100.0 * record.train_accuracy
        ));
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// A tracing line per epoch (CI logs, pipes).
struct Lines;

impl Progress for Lines {
    fn epoch(&self, r: &EpochRecord) {
        tracing::info!(
            epoch = r.epoch,
            lr = r.learning_rate,
            loss = r.loss,
            cross_entropy = r.cross_entropy,
            train_accuracy = r.train_accuracy,
            head_cosine = r.head_cosine_to_original,
            seconds = r.seconds,
            "epoch done"
        );
    }
}

/// The right reporter for this process: nothing when quiet, a bar on a terminal, else lines.
pub fn for_terminal(quiet: bool) -> Box<dyn Progress> {
    if quiet {
        Box::new(Silent)
    } else if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps {msg}")
                .expect("static template")
                .progress_chars("=> "),
        );
        Box::new(Bar(bar))
    } else {
        Box::new(Lines)
    }
}
