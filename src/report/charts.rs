//! The report's charts, drawn with plotters as SVG text for inlining into report.html. Text is
//! left to the browser (no font stack in the binary).
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::training::EpochRecord;

const BEFORE: RGBColor = RGBColor(0xc0, 0x39, 0x2b);
const AFTER: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const VALIDATION: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const WIDTH: u32 = 640;
const HEIGHT: u32 = 300;

/// Renders with plotters into an SVG string. Drawing into memory fails only on a plotters bug,
/// which becomes an empty chart rather than a failed job: the numbers are also in the tables.
fn svg(size: (u32, u32), draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> DrawResult) -> String {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        if let Err(e) = draw(&root).and_then(|()| root.present().map_err(|e| e.to_string())) {
            tracing::warn!("chart not drawn: {e}");
        }
    }
    out
}

type DrawResult = Result<(), String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Grouped bars, in percent: for each category the value before and after purification
/// (absent values draw no bar).
pub fn before_after(y_label: &str, categories: &[String], before: &[Option<f64>], after: &[Option<f64>]) -> String {
    let n = categories.len().max(1) as f64;
    svg((WIDTH, HEIGHT), |root| {
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(48)
            // Headroom above 100% keeps the legend off the bars.
            .build_cartesian_2d(-0.5..n - 0.5, 0.0..125.0)
            .map_err(err)?;
        let label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                categories.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(categories.len())
            .x_label_formatter(&label)
            .y_desc(y_label)
            .y_label_formatter(&|y| if *y <= 100.0 { format!("{y:.0}%") } else { String::new() })
            .draw()
            .map_err(err)?;
        for (series, values, color, offset) in [("before", before, BEFORE, -0.4), ("after", after, AFTER, 0.0)] {
            let bars = values.iter().enumerate().filter_map(|(i, v)| {
                v.map(|v| {
                    let x = i as f64 + offset;
                    Rectangle::new([(x, 0.0), (x + 0.4, 100.0 * v)], color.filled())
                })
            });
            chart
                .draw_series(bars)
                .map_err(err)?
                .label(series)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(err)
    })
}

/// Training loss (left axis) and training accuracy (right axis) per epoch.
pub fn epochs(records: &[EpochRecord]) -> String {
    let last = records.len().max(1) as f64;
    let max_loss = records.iter().map(|r| r.loss).filter(|l| l.is_finite()).fold(0.0f64, f64::max).max(1e-3) * 1.1;
    svg((WIDTH, HEIGHT), |root| {
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(52)
            .right_y_label_area_size(52)
            .build_cartesian_2d(0.5..last + 0.5, 0.0..max_loss)
            .map_err(err)?
            .set_secondary_coord(0.5..last + 0.5, 0.0..100.0);
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("loss")
            .x_labels(records.len().clamp(2, 12))
            .x_label_formatter(&|x| if (x - x.round()).abs() < 1e-6 { format!("{x:.0}") } else { String::new() })
            .draw()
            .map_err(err)?;
        chart
            .configure_secondary_axes()
            .y_desc("accuracy")
            .y_label_formatter(&|y| format!("{y:.0}%"))
            .draw()
            .map_err(err)?;
        let points =
            |f: fn(&EpochRecord) -> f64| records.iter().map(move |r| (r.epoch as f64, f(r))).collect::<Vec<_>>();
        let loss = points(|r| r.loss);
        chart
            .draw_series(LineSeries::new(loss.clone(), BEFORE.stroke_width(2)))
            .map_err(err)?
            .label("loss")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], BEFORE.stroke_width(2)));
        chart.draw_series(loss.into_iter().map(|p| Circle::new(p, 3, BEFORE.filled()))).map_err(err)?;
        let accuracy = points(|r| 100.0 * r.train_accuracy);
        chart
            .draw_secondary_series(LineSeries::new(accuracy.clone(), AFTER.stroke_width(2)))
            .map_err(err)?
            .label("train accuracy")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], AFTER.stroke_width(2)));
        chart.draw_secondary_series(accuracy.into_iter().map(|p| Circle::new(p, 3, AFTER.filled()))).map_err(err)?;
        // The tuning curve on held-out images, where the automatic strength measured one.
        let validation: Vec<(f64, f64)> =
            records.iter().filter_map(|r| Some((r.epoch as f64, 100.0 * r.validation_accuracy?))).collect();
        if !validation.is_empty() {
            chart
                .draw_secondary_series(LineSeries::new(validation.clone(), VALIDATION.stroke_width(2)))
                .map_err(err)?
                .label("validation accuracy")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], VALIDATION.stroke_width(2)));
            chart
                .draw_secondary_series(validation.into_iter().map(|p| Circle::new(p, 3, VALIDATION.filled())))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::MiddleRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(err)
    })
}
