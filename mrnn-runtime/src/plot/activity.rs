//! The activity of each region over time ([`activity_figure`]): one panel per region with the
//! mean rate of its units, a band for their spread, and a few example units; and the summaries
//! it draws ([`TimeCourse`], [`RegionActivity`], [`region_activity`]).

use std::path::Path;

use candle_core::{DType, Tensor};
use plotters::prelude::*;

use super::legend::{self, Entry, Swatch};
use super::text::{self, FAMILY};
use super::{
    Area, DrawResult, axis_label, category_color, draw_polyline, figure, finite_runs,
    non_finite_note, padded_range,
};
use crate::{Architecture, Error, Result};

/// A quantity over time summarized over many traces (units, trials): its mean and standard
/// deviation at each time.
#[derive(Clone, Debug, PartialEq)]
pub struct TimeCourse {
    /// The mean at each time.
    pub mean: Vec<f64>,
    /// The (population) standard deviation at each time.
    pub sd: Vec<f64>,
}

impl TimeCourse {
    /// The mean and standard deviation at each time of `samples[t]`, the values at time `t`.
    /// A time with a NaN among its values has a NaN mean (the figure leaves it out and says so).
    #[must_use]
    pub fn of_samples(samples: &[Vec<f64>]) -> TimeCourse {
        let (mut mean, mut sd) = (Vec::new(), Vec::new());
        for values in samples {
            let n = values.len() as f64;
            let m = values.iter().sum::<f64>() / n;
            let var = values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n;
            mean.push(m);
            sd.push(var.sqrt());
        }
        TimeCourse { mean, sd }
    }

    /// Summarizes `values` over every dimension but `time_dim`: the mean and standard deviation
    /// at each index of `time_dim` (for `[B, T, n]` rates with `time_dim` 1: over the trials and
    /// the units).
    pub fn of_tensor(values: &Tensor, time_dim: usize) -> Result<TimeCourse> {
        let dims = values.dims();
        if time_dim >= dims.len() || values.elem_count() == 0 {
            return Err(Error::Shape {
                what: "time course values".into(),
                expected: format!("a non-empty tensor with a time dimension {time_dim}"),
                got: dims.to_vec(),
            });
        }
        let steps = dims[time_dim];
        crate::memory::ensure_fits(
            format!("a time course of a {dims:?} tensor"),
            crate::memory::f64_bytes(dims).saturating_mul(3),
        )?;
        let x = values
            .detach()
            .to_dtype(DType::F64)?
            .transpose(0, time_dim)?
            .contiguous()?
            .reshape((steps, ()))?;
        let mean = x.mean_keepdim(1)?;
        let sd = x.broadcast_sub(&mean)?.sqr()?.mean(1)?.sqrt()?;
        Ok(TimeCourse { mean: mean.squeeze(1)?.to_vec1()?, sd: sd.to_vec1()? })
    }

    /// The number of times.
    #[must_use]
    pub fn len(&self) -> usize {
        self.mean.len()
    }

    /// Whether there are no times.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.mean.is_empty()
    }

    /// The values (mean and band edges) that are not finite.
    pub(crate) fn non_finite(&self) -> usize {
        self.mean.iter().zip(&self.sd).filter(|(m, s)| !(m.is_finite() && s.is_finite())).count()
    }

    /// The band's edges, `mean - sd` and `mean + sd`, at the finite times.
    pub(crate) fn band_values(&self) -> impl Iterator<Item = f64> + '_ {
        self.mean.iter().zip(&self.sd).flat_map(|(m, s)| [m - s, m + s])
    }
}

/// The activity of one region for [`activity_figure`].
#[derive(Clone, Debug, PartialEq)]
pub struct RegionActivity {
    /// The region's name.
    pub name: String,
    /// Its number of units.
    pub units: usize,
    /// The rate averaged over its units and the trials, and its spread (standard deviation over
    /// units and trials), at each time.
    pub course: TimeCourse,
    /// A few units' trial-averaged rates over time: `(label, rates)`.
    pub examples: Vec<(String, Vec<f64>)>,
}

/// The activity of every region of `arch` from `rates` (`[B, T, H]` in the architecture's
/// layout, or `[T, H]` for one trial): each region's mean rate and spread over its units and
/// the trials, and as examples the trial-averaged rates of its `examples` most modulated units
/// (the largest standard deviation over time).
pub fn region_activity(
    arch: &Architecture,
    rates: &Tensor,
    examples: usize,
) -> Result<Vec<RegionActivity>> {
    let h = arch.hidden_size();
    let batch_first = arch.settings().batch_first;
    let (time_dim, trial_dim) = match rates.dims() {
        [_, n] if *n == h => (0, None),
        [_, _, n] if *n == h => {
            if batch_first {
                (1, Some(0))
            } else {
                (0, Some(1))
            }
        }
        _ => {
            let layout = if batch_first { "[B, T, H] or [T, H]" } else { "[T, B, H] or [T, H]" };
            return Err(Error::Shape {
                what: "rates".into(),
                expected: format!("{layout} with H = {h}"),
                got: rates.dims().to_vec(),
            });
        }
    };
    if rates.elem_count() == 0 {
        return Err(Error::Shape {
            what: "rates".into(),
            expected: "at least one trial and one step".into(),
            got: rates.dims().to_vec(),
        });
    }
    crate::memory::ensure_fits(
        format!("the activity of {:?} rates", rates.dims()),
        crate::memory::f64_bytes(rates.dims()).saturating_mul(3),
    )?;
    let rates = rates.detach().to_dtype(DType::F64)?;
    let last = rates.rank() - 1;
    // Trial averages [T, H], for the example units.
    let averaged = match trial_dim {
        Some(d) => rates.mean(d)?,
        None => rates.clone(),
    };
    let averaged: Vec<Vec<f64>> = averaged.to_vec2()?;
    let mut out = Vec::new();
    for region in arch.regions() {
        let block = rates.narrow(last, region.offset, region.units)?;
        let course = TimeCourse::of_tensor(&block, time_dim)?;
        let trace = |u: usize| -> Vec<f64> { averaged.iter().map(|row| row[u]).collect() };
        let spread = |u: usize| TimeCourse::of_samples(&[trace(u)]).sd[0];
        let mut units: Vec<(usize, f64)> = region.range().map(|u| (u, spread(u))).collect();
        // Most modulated first; NaN spreads last, ties in declaration order.
        units.sort_by(|a, b| {
            let key = |s: f64| if s.is_nan() { f64::NEG_INFINITY } else { s };
            key(b.1).total_cmp(&key(a.1)).then(a.0.cmp(&b.0))
        });
        let examples = units
            .iter()
            .take(examples)
            .map(|&(u, _)| (format!("{}[{}]", region.name, u - region.offset), trace(u)))
            .collect();
        out.push(RegionActivity {
            name: region.name.to_string(),
            units: region.units,
            course,
            examples,
        });
    }
    Ok(out)
}

/// Panels drawn at most by [`activity_figure`].
const MAX_PANELS: usize = 64;
/// The size of one panel.
const PANEL: (u32, u32) = (330, 230);

/// The rows and columns of a grid of `n` panels: a little wider than tall.
fn grid(n: usize) -> (usize, usize) {
    let n = n.max(1);
    let cols = ((1.5 * n as f64).sqrt().ceil() as usize).clamp(1, n);
    (n.div_ceil(cols), cols)
}

/// The activity of each region over time, one panel per region (330 x 230 pixels each, at most
/// 64, in a grid a little wider than tall; the figure is at least 480 pixels wide, and as tall
/// as its panels plus the title and legend): the mean rate over the region's units and the
/// trials (thick, one color per region), a band of one standard deviation over units and
/// trials around it, and the example units' trial-averaged rates (thin gray). `time` gives the
/// horizontal coordinate of each step (empty: the step index). Values that are not finite are
/// left out and counted in a note.
///
/// ```
/// use mrnn_runtime::plot::{self, RegionActivity, TimeCourse};
/// let path = std::env::temp_dir().join(format!("mrnn-doc-activity-{}.png", std::process::id()));
/// // Three units of one region, over 50 steps.
/// let units: Vec<Vec<f64>> = (0..3)
///     .map(|u| (0..50).map(|t| (f64::from(t) / 8.0 + f64::from(u)).sin().max(0.0)).collect())
///     .collect();
/// let samples: Vec<Vec<f64>> = (0..50).map(|t| units.iter().map(|u| u[t]).collect()).collect();
/// let region = RegionActivity {
///     name: "thal".into(),
///     units: 3,
///     course: TimeCourse::of_samples(&samples),
///     examples: vec![("thal[0]".into(), units[0].clone())],
/// };
/// plot::activity_figure(&path, "activity", &[region], &[], "step")?;
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), mrnn_runtime::Error>(())
/// ```
pub fn activity_figure(
    path: &Path,
    title: &str,
    regions: &[RegionActivity],
    time: &[f64],
    x_label: &str,
) -> Result<()> {
    for r in regions {
        if r.course.sd.len() != r.course.len()
            || (!time.is_empty() && r.course.len() != time.len())
            || r.examples.iter().any(|(_, e)| e.len() != r.course.len())
        {
            return Err(Error::Invalid(format!(
                "cannot draw `{}`: region `{}` has {} means, {} deviations and examples of {:?} steps{}",
                path.display(),
                r.name,
                r.course.len(),
                r.course.sd.len(),
                r.examples.iter().map(|(_, e)| e.len()).collect::<Vec<_>>(),
                if time.is_empty() { String::new() } else { format!(", for {} times", time.len()) }
            )));
        }
    }
    let shown = &regions[..regions.len().min(MAX_PANELS)];
    let title = if regions.len() > MAX_PANELS {
        format!("{title} (first {MAX_PANELS} of {} regions)", regions.len())
    } else {
        title.to_owned()
    };
    let skipped: usize = shown
        .iter()
        .map(|r| {
            r.course.non_finite()
                + r.examples.iter().flat_map(|(_, e)| e).filter(|v| !v.is_finite()).count()
        })
        .sum();
    let note = non_finite_note(skipped);
    let entries = vec![
        Entry::new("mean over units and trials", Swatch::Line(NEUTRAL, 3)),
        Entry::new("± 1 s.d. over units and trials", Swatch::Band(NEUTRAL)),
        Entry::new("example units (trial average, most modulated)", Swatch::Line(EXAMPLE, 1)),
    ];
    let (rows, cols) = grid(shown.len());
    let width = (PANEL.0 * cols as u32).max(480);
    let top = text::header_height(width, &title, note.as_deref())
        + legend::rows_height(&entries, width - 24);
    let height = top + PANEL.1 * rows as u32;
    let x_of = |t: usize| time.get(t).copied().unwrap_or(t as f64);
    figure(path, (width, height), |root| {
        let body = text::header(root, &title, note.as_deref())?;
        let (key, body) = body.split_vertically(legend::rows_height(&entries, width - 24));
        legend::draw_rows(&key.margin(0, 0, 12, 12), &entries)?;
        if shown.is_empty() {
            let message = text::fit_text("no regions to draw", width - 24, u32::MAX, 16.0);
            text::draw_fitted(
                &body,
                &message,
                (12, width as i32 - 12),
                20,
                text::Align::Center,
                BLACK,
            )?;
            return Ok(());
        }
        let cells = body.split_evenly((rows, cols));
        let steps = shown.iter().map(|r| r.course.len()).max().unwrap_or(0);
        let (x0, x1) = padded_range((0..steps).map(x_of));
        for (k, (r, cell)) in shown.iter().zip(&cells).enumerate() {
            let units =
                if r.units == 1 { "1 unit".to_owned() } else { format!("{} units", r.units) };
            let area = text::caption(cell, &format!("{} ({units})", r.name), 15.0)?;
            panel(&area, r, (x0, x1), x_label, category_color(k, shown.len()), &x_of)?;
        }
        Ok(())
    })
}

/// Legend swatches: each region has its own color, so the legend shows the kinds of line.
const NEUTRAL: RGBColor = RGBColor(90, 90, 90);
const EXAMPLE: RGBColor = RGBColor(120, 120, 120);

fn panel(
    area: &Area<'_>,
    r: &RegionActivity,
    (x0, x1): (f64, f64),
    x_label: &str,
    color: RGBColor,
    x_of: &dyn Fn(usize) -> f64,
) -> DrawResult {
    let values = r
        .course
        .band_values()
        .chain(r.course.mean.iter().copied())
        .chain(r.examples.iter().flat_map(|(_, e)| e.iter().copied()));
    let (y0, y1) = padded_range(values);
    let mut chart = ChartBuilder::on(area)
        .margin_left(6)
        .margin_right(12)
        .margin_bottom(4)
        .x_label_area_size(34)
        .y_label_area_size(48)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_labels(5)
        .y_labels(5)
        .x_desc(x_label)
        .axis_desc_style((FAMILY, 12))
        .x_label_formatter(&axis_label(x1 - x0))
        .y_label_formatter(&axis_label(y1 - y0))
        .light_line_style(WHITE)
        .label_style((FAMILY, 11))
        .draw()?;
    let c = &r.course;
    let band = (0..c.len()).map(|t| (x_of(t), c.mean[t], c.sd[t]));
    for run in band_runs(band) {
        let mut outline: Vec<(f64, f64)> = run.iter().map(|&(x, m, s)| (x, m + s)).collect();
        outline.extend(run.iter().rev().map(|&(x, m, s)| (x, m - s)));
        if let [(x, m, s)] = run[..] {
            // One time: the band is an error bar.
            let bar = vec![(x, m - s), (x, m + s)];
            chart.draw_series(std::iter::once(PathElement::new(
                bar,
                color.mix(0.4).stroke_width(3),
            )))?;
        } else {
            chart.draw_series(std::iter::once(Polygon::new(outline, color.mix(0.22).filled())))?;
        }
    }
    for (_, e) in &r.examples {
        for run in finite_runs(e.iter().enumerate().map(|(t, &v)| (x_of(t), v))) {
            draw_polyline(&mut chart, &run, EXAMPLE.mix(0.9).stroke_width(1))?;
        }
    }
    let runs = finite_runs(c.mean.iter().enumerate().map(|(t, &v)| (x_of(t), v)));
    for run in &runs {
        draw_polyline(&mut chart, run, color.stroke_width(3))?;
    }
    if runs.is_empty() {
        // Say so in the panel: an empty panel would look like a drawing error.
        let (w, h) = area.dim_in_pixel();
        let message =
            text::fit_text("no finite values", w.saturating_sub(80).max(1), u32::MAX, 14.0);
        let top = (h as i32 - message.height() as i32) / 2;
        text::draw_fitted(
            area,
            &message,
            (48, w as i32 - 12),
            top,
            text::Align::Center,
            text::NOTE_COLOR,
        )?;
    }
    Ok(())
}

/// `(x, mean, sd)` points split into runs where all three are finite.
pub(crate) fn band_runs(
    points: impl IntoIterator<Item = (f64, f64, f64)>,
) -> Vec<Vec<(f64, f64, f64)>> {
    let mut runs: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new()];
    for p in points {
        if p.0.is_finite() && p.1.is_finite() && p.2.is_finite() {
            if let Some(run) = runs.last_mut() {
                run.push(p);
            }
        } else if runs.last().is_some_and(|r| !r.is_empty()) {
            runs.push(Vec::new());
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_courses_average_over_everything_but_time() {
        // [B = 2, T = 3, n = 2]
        let v = Tensor::new(
            &[[[1f32, 3.0], [0.0, 0.0], [2.0, 2.0]], [[1.0, 3.0], [4.0, 4.0], [f32::NAN, 2.0]]],
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let c = TimeCourse::of_tensor(&v, 1).unwrap();
        assert_eq!(c.mean[..2], [2.0, 2.0]);
        assert_eq!(c.sd[..2], [1.0, 2.0]);
        assert!(c.mean[2].is_nan(), "NaN is not averaged away");
        assert_eq!(c.non_finite(), 1);
        let s = TimeCourse::of_samples(&[vec![1.0, 3.0], vec![0.0, 0.0, 4.0, 4.0]]);
        assert_eq!((s.mean, s.sd), (vec![2.0, 2.0], vec![1.0, 2.0]));
        assert!(TimeCourse::of_tensor(&v, 3).is_err());
    }

    #[test]
    fn grids_are_a_little_wider_than_tall() {
        assert_eq!(grid(1), (1, 1));
        assert_eq!(grid(2), (1, 2));
        assert_eq!(grid(8), (2, 4));
        assert_eq!(grid(40), (5, 8));
    }
}
