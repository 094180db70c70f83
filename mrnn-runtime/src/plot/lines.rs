//! Line charts of training: loss curves ([`line_chart`]) and example trials, input against
//! target and output ([`trials_figure`]).

use std::path::Path;

use plotters::prelude::*;

use super::legend::{self, Entry, Swatch};
use super::text::{self, FAMILY};
use super::{
    PALETTE, axis_label, count_non_finite, draw_polyline, figure, finite_runs, non_finite_note,
    padded_range,
};
use crate::Result;

/// A named series of points.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// `(x, y)` points.
    pub points: Vec<(f64, f64)>,
}

/// A line chart of several series, 900 x 560 pixels; `log_y` plots log10 of y (for loss curves;
/// zero is drawn at 1e-12). Several series get a legend under the title.
///
/// ```
/// use mrnn_runtime::plot::{self, Series};
/// let path = std::env::temp_dir().join(format!("mrnn-doc-loss-{}.png", std::process::id()));
/// let loss = Series {
///     label: "loss".into(),
///     points: (1..100).map(|i| (f64::from(i), 1.0 / f64::from(i))).collect(),
/// };
/// plot::line_chart(&path, "training loss", "step", "loss", &[loss], true)?;
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), mrnn_runtime::Error>(())
/// ```
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_y: bool,
) -> Result<()> {
    // NaN stays NaN (it is counted, not drawn at the floor); 0 and below go to the floor.
    let transform = |y: f64| if log_y && !y.is_nan() { y.max(1e-12).log10() } else { y };
    let points = || series.iter().flat_map(|s| s.points.iter().map(|&(x, y)| (x, transform(y))));
    let (x0, x1) = padded_range(points().map(|p| p.0));
    let (y0, y1) = padded_range(points().map(|p| p.1));
    let skipped = points().filter(|p| !(p.0.is_finite() && p.1.is_finite())).count();
    let note = non_finite_note(skipped);
    let y_label = if log_y { format!("log10 {y_label}") } else { y_label.to_owned() };
    let entries: Vec<Entry> = series
        .iter()
        .enumerate()
        .map(|(i, s)| Entry::new(&s.label, Swatch::Line(PALETTE[i % PALETTE.len()], 2)))
        .collect();
    figure(path, (900, 560), |root| {
        let mut body = text::header(root, title, note.as_deref())?;
        if series.len() > 1 {
            let (w, _) = body.dim_in_pixel();
            let (top, rest) = body.split_vertically(legend::rows_height(&entries, w - 24));
            legend::draw_rows(&top.margin(0, 0, 12, 12), &entries)?;
            body = rest;
        }
        let (w, h) = body.dim_in_pixel();
        let mut chart = ChartBuilder::on(&body)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label.as_str())
            .axis_desc_style((
                FAMILY,
                text::one_line_size(&y_label, h.saturating_sub(80), 16.0).min(text::one_line_size(
                    x_label,
                    w.saturating_sub(100),
                    16.0,
                )),
            ))
            .x_label_formatter(&axis_label(x1 - x0))
            .y_label_formatter(&axis_label(y1 - y0))
            .label_style((FAMILY, 14))
            .draw()?;
        for (i, s) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            for run in finite_runs(s.points.iter().map(|&(x, y)| (x, transform(y)))) {
                draw_polyline(&mut chart, &run, color.stroke_width(2))?;
            }
        }
        Ok(())
    })
}

/// One example trial for [`trials_figure`]: `[T, channels]` arrays.
#[derive(Clone, Debug)]
pub struct TrialPanel {
    /// Network input per step and channel.
    pub input: Vec<Vec<f32>>,
    /// Desired output per step and channel.
    pub target: Vec<Vec<f32>>,
    /// Actual readout per step and channel.
    pub output: Vec<Vec<f32>>,
}

/// Trials drawn at most by [`trials_figure`].
const MAX_TRIALS: usize = 12;

/// Example trials, 360 x 620 pixels per trial (at most 12; the title says how many were left
/// out): one column per trial; top row the inputs, bottom row targets (thin) and outputs
/// (thick), one color per channel.
pub fn trials_figure(path: &Path, title: &str, trials: &[TrialPanel]) -> Result<()> {
    let shown = &trials[..trials.len().min(MAX_TRIALS)];
    let columns = shown.len().max(1);
    let title = if trials.len() > MAX_TRIALS {
        format!("{title} (first {MAX_TRIALS} of {} trials)", trials.len())
    } else {
        title.to_owned()
    };
    let values = |t: &TrialPanel| -> Vec<f64> {
        t.input.iter().chain(&t.target).chain(&t.output).flatten().map(|&v| f64::from(v)).collect()
    };
    let note = non_finite_note(shown.iter().map(|t| count_non_finite(values(t))).sum());
    figure(path, (360 * columns as u32, 620), |root| {
        let body = text::header(root, &title, note.as_deref())?;
        let cells = body.split_evenly((2, columns));
        for (j, trial) in shown.iter().enumerate() {
            let steps = trial.input.len().max(trial.target.len()).max(1) as f64;
            let channel = |rows: &[Vec<f32>], c: usize| {
                finite_runs(
                    rows.iter()
                        .enumerate()
                        .map(|(t, v)| (t as f64, v.get(c).map_or(f64::NAN, |&x| f64::from(x)))),
                )
            };
            let (iy0, iy1) = padded_range(trial.input.iter().flatten().map(|&v| f64::from(v)));
            let top = text::caption(&cells[j], &format!("trial {} input", j + 1), 15.0)?;
            let mut chart = ChartBuilder::on(&top)
                .margin(8)
                .margin_right(20)
                .x_label_area_size(24)
                .y_label_area_size(40)
                .build_cartesian_2d(0.0..steps, iy0..iy1)?;
            chart
                .configure_mesh()
                .x_label_formatter(&axis_label(steps))
                .y_label_formatter(&axis_label(iy1 - iy0))
                .label_style((FAMILY, 11))
                .draw()?;
            let channels = trial.input.iter().map(Vec::len).max().unwrap_or(0);
            for c in 0..channels {
                let color = PALETTE[c % PALETTE.len()];
                for run in channel(&trial.input, c) {
                    draw_polyline(&mut chart, &run, color.stroke_width(2))?;
                }
            }
            let values = trial.target.iter().chain(&trial.output).flatten().map(|&v| f64::from(v));
            let (oy0, oy1) = padded_range(values);
            let bottom =
                text::caption(&cells[columns + j], "target (thin) vs output (thick)", 15.0)?;
            let mut chart = ChartBuilder::on(&bottom)
                .margin(8)
                .margin_right(20)
                .x_label_area_size(36)
                .y_label_area_size(40)
                .build_cartesian_2d(0.0..steps, oy0..oy1)?;
            chart
                .configure_mesh()
                .x_desc("step")
                .axis_desc_style((FAMILY, 13))
                .x_label_formatter(&axis_label(steps))
                .y_label_formatter(&axis_label(oy1 - oy0))
                .label_style((FAMILY, 11))
                .draw()?;
            let channels =
                trial.target.iter().chain(&trial.output).map(Vec::len).max().unwrap_or(0);
            for c in 0..channels {
                let color = PALETTE[c % PALETTE.len()];
                for run in channel(&trial.target, c) {
                    draw_polyline(&mut chart, &run, color.mix(0.6).stroke_width(1))?;
                }
                for run in channel(&trial.output, c) {
                    draw_polyline(&mut chart, &run, color.stroke_width(3))?;
                }
            }
        }
        Ok(())
    })
}
