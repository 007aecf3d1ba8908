//! Confidence intervals for the rates a gate measures. Every figure in a report is counted on a
//! few hundred or thousand images (2,000 test images, 600 validation images), and a limit such
//! as "at most 2 points lost" sits inside the spread such counts carry, so a reader needs each
//! figure with its interval: Wilson's score interval for a single rate (sound near 0 and 1, where
//! an attack success rate after purification lives), and Newcombe's square-and-add interval for
//! the difference of two rates measured on the same images (the accuracy before and after
//! purification are paired: most images are classified the same way by both models, so the
//! drop is far more certain than two independent intervals would say).
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The standard normal quantile for a two-sided 95% interval.
const Z_95: f64 = 1.959_964;

/// A 95% confidence interval, in the unit of the figure it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Interval {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

impl Interval {
    /// The same interval with both bounds multiplied by `factor` (a fraction as points: 100).
    pub fn scaled(self, factor: f64) -> Interval {
        Interval { low: self.low * factor, high: self.high * factor }
    }

    /// The interval of the figure's negation (a drop's interval as a change's).
    pub fn negated(self) -> Interval {
        Interval { low: -self.high, high: -self.low }
    }

    /// Whether `value` lies within the bounds.
    pub fn contains(&self, value: f64) -> bool {
        self.low <= value && value <= self.high
    }
}

/// Wilson's score interval at 95% for a rate observed on `n` trials (`rate` * `n` successes);
/// with no trials, the whole of [0, 1].
pub fn wilson_95(rate: f64, n: i64) -> Interval {
    if n <= 0 {
        return Interval { low: 0.0, high: 1.0 };
    }
    let n = n as f64;
    let z2 = Z_95 * Z_95;
    let centre = (rate + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let spread = Z_95 * (rate * (1.0 - rate) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    Interval { low: (centre - spread).max(0.0), high: (centre + spread).min(1.0) }
}

/// Wilson's upper bound at 95% (`wilson_95(rate, n).high`): how high a rate measured as
/// `rate` on `n` trials may really be.
pub fn wilson_upper_95(rate: f64, n: i64) -> f64 {
    wilson_95(rate, n).high
}

/// How a set of items fared under two measurements of the same items (the clean test images
/// classified by the model before and after purification): the four cells of the paired 2x2
/// table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PairedCounts {
    /// Right under both.
    pub both: i64,
    /// Right under the first only (an image purification lost).
    pub first_only: i64,
    /// Right under the second only (an image purification won).
    pub second_only: i64,
    /// Right under neither.
    pub neither: i64,
}

impl PairedCounts {
    /// Counts the pairs of outcomes (`first[i]`, `second[i]`); None when the two lists differ in
    /// length, so they cannot be the same items.
    pub fn count(first: &[bool], second: &[bool]) -> Option<PairedCounts> {
        if first.len() != second.len() {
            return None;
        }
        let mut counts = PairedCounts { both: 0, first_only: 0, second_only: 0, neither: 0 };
        for (a, b) in first.iter().zip(second) {
            match (a, b) {
                (true, true) => counts.both += 1,
                (true, false) => counts.first_only += 1,
                (false, true) => counts.second_only += 1,
                (false, false) => counts.neither += 1,
            }
        }
        Some(counts)
    }

    /// Number of items.
    pub fn total(&self) -> i64 {
        self.both + self.first_only + self.second_only + self.neither
    }

    /// The first rate minus the second, with Newcombe's (1998) square-and-add 95% interval for
    /// paired data (his method 10: Wilson intervals for both rates, combined with the estimated
    /// correlation between them, continuity-corrected). None with no items.
    pub fn difference_95(&self) -> Option<(f64, Interval)> {
        let n = self.total();
        if n == 0 {
            return None;
        }
        let (first_right, second_right) = (self.both + self.first_only, self.both + self.second_only);
        let (first_wrong, second_wrong) = (n - first_right, n - second_right);
        let total = n as f64;
        let (p1, p2) = (first_right as f64 / total, second_right as f64 / total);
        let (i1, i2) = (wilson_95(p1, n), wilson_95(p2, n));
        // The correlation of the two rates, with Newcombe's correction of half an item.
        let margins = [first_right, first_wrong, second_right, second_wrong];
        let correlation = if margins.contains(&0) {
            0.0
        } else {
            let cross = (self.both * self.neither - self.first_only * self.second_only) as f64;
            let corrected = if cross > total / 2.0 {
                cross - total / 2.0
            } else if cross >= 0.0 {
                0.0
            } else {
                cross
            };
            corrected / margins.iter().map(|&m| m as f64).product::<f64>().sqrt()
        };
        let combine = |a: f64, b: f64| (a * a + b * b - 2.0 * correlation * a * b).max(0.0).sqrt();
        let difference = p1 - p2;
        let low = difference - combine(p1 - i1.low, i2.high - p2);
        let high = difference + combine(p2 - i2.low, i1.high - p1);
        Some((difference, Interval { low: low.max(-1.0), high: high.min(1.0) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn wilson_matches_the_published_figures() {
        // Newcombe (1998, independent proportions), example 81/263: 0.2553 to 0.3662.
        let interval = wilson_95(81.0 / 263.0, 263);
        assert!(close(interval.low, 0.2553, 5e-5) && close(interval.high, 0.3662, 5e-5), "{interval:?}");
        // Zero successes: the interval starts at 0 and still has width (0/10: 0 to 0.2775).
        let none = wilson_95(0.0, 10);
        assert!(none.low == 0.0 && close(none.high, 0.2775, 5e-5), "{none:?}");
        assert_eq!(wilson_95(0.3, 0), Interval { low: 0.0, high: 1.0 });
        assert_eq!(wilson_upper_95(0.0, 10), none.high);
    }

    #[test]
    fn the_paired_difference_matches_a_published_table() {
        // Cavo et al. (2012) as in Fagerland, Lydersen and Laake's "Statistical Analysis of
        // Contingency Tables", chapter 8: 59 both, 6 first only, 16 second only, 80 neither:
        // -0.0621 (95% CI -0.1186 to -0.0046).
        let counts = PairedCounts { both: 59, first_only: 6, second_only: 16, neither: 80 };
        let (difference, interval) = counts.difference_95().unwrap();
        assert!(close(difference, -0.0621, 5e-5), "{difference}");
        assert!(close(interval.low, -0.1186, 5e-5) && close(interval.high, -0.0046, 5e-5), "{interval:?}");
        // Swapping the measurements mirrors the interval.
        let swapped = PairedCounts { first_only: 16, second_only: 6, ..counts };
        let (mirrored, mirror) = swapped.difference_95().unwrap();
        assert!(close(mirrored, 0.0621, 5e-5) && close(mirror.low, 0.0046, 5e-5) && close(mirror.high, 0.1186, 5e-5));
        let negated = interval.negated();
        assert!(close(mirror.low, negated.low, 1e-12) && close(mirror.high, negated.high, 1e-12), "{mirror:?}");
        assert_eq!(PairedCounts { both: 0, first_only: 0, second_only: 0, neither: 0 }.difference_95(), None);
    }

    #[test]
    fn pairing_narrows_the_interval_of_a_drop() {
        // 2,000 test images, 1,760 right before and 1,740 after, 30 lost and 10 won: the paired
        // interval is far narrower than one that ignored the pairing, and with 30 lost against 10 won it
        // lies above zero.
        let counts = PairedCounts { both: 1_730, first_only: 30, second_only: 10, neither: 230 };
        let (difference, paired) = counts.difference_95().unwrap();
        assert!(close(difference, 0.01, 1e-12));
        assert!(paired.contains(difference) && paired.low > 0.0, "{paired:?}");
        let (before, after) = (wilson_95(0.88, 2_000), wilson_95(0.87, 2_000));
        let unpaired = ((0.88 - before.low).powi(2) + (after.high - 0.87).powi(2)).sqrt();
        assert!(difference - paired.low < unpaired / 2.0, "paired {paired:?}, unpaired half-width {unpaired}");
    }

    #[test]
    fn counts_pair_outcomes_item_by_item() {
        let counts = PairedCounts::count(&[true, true, false, false, true], &[true, false, true, false, true]).unwrap();
        assert_eq!(counts, PairedCounts { both: 2, first_only: 1, second_only: 1, neither: 1 });
        assert_eq!(PairedCounts::count(&[true], &[true, false]), None);
    }
}
