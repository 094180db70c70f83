//! PNG figures with plotters' bitmap backend and a bundled font (a Latin subset of DejaVu Sans,
//! `assets/`), so nothing depends on the system's font libraries. Every figure is drawn to a
//! temporary file and renamed into place: an interrupted run never leaves a half-written PNG.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::{Error, Result};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");
static REGISTER: Once = Once::new();

/// Line colors, in order (the matplotlib "tab10" palette neuroscientists know).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn register_font() {
    REGISTER.call_once(|| {
        // Cannot fail for the bundled font (it is parsed once in the tests); if it ever did,
        // text would be missing from figures but drawing would still succeed.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn plot_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("cannot draw `{}`: {e}", path.display()))
}

/// Draws a figure of `size` pixels into `path` (PNG) through `draw`, atomically.
pub fn figure(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(
        &DrawingArea<BitMapBackend<'_>, Shift>,
    ) -> std::result::Result<(), Box<dyn std::error::Error>>,
) -> Result<()> {
    register_font();
    let tmp = temp_path(path);
    {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
        draw(&root).map_err(|e| plot_error(path, e))?;
        root.present().map_err(|e| plot_error(path, e))?;
    }
    std::fs::rename(&tmp, path)
        .map_err(|source| Error::Io { path: path.display().to_string(), source })
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(".tmp.png");
    path.with_file_name(name)
}

/// A named series of points.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// `(x, y)` points.
    pub points: Vec<(f64, f64)>,
}

/// The range of values, padded a little, never empty or non-finite.
#[must_use]
pub fn padded_range(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if (hi - lo).abs() < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

/// A line chart of several series; `log_y` plots log10 of y (for loss curves).
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_y: bool,
) -> Result<()> {
    let transform = |y: f64| if log_y { y.max(1e-12).log10() } else { y };
    let (x0, x1) = padded_range(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
    let (y0, y1) =
        padded_range(series.iter().flat_map(|s| s.points.iter().map(|p| transform(p.1))));
    let y_label = if log_y { format!("log10 {y_label}") } else { y_label.to_owned() };
    figure(path, (900, 560), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 24))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label.as_str())
            .label_style(("sans-serif", 14))
            .draw()?;
        for (i, s) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let points =
                s.points.iter().map(|&(x, y)| (x, transform(y))).filter(|p| p.1.is_finite());
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(s.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
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

/// Example trials: one column per trial; top row the inputs, bottom row targets (dashed) and
/// outputs (solid), one color per channel.
pub fn trials_figure(path: &Path, title: &str, trials: &[TrialPanel]) -> Result<()> {
    let columns = trials.len().max(1) as u32;
    figure(path, (360 * columns, 620), |root| {
        let (header, body) = root.split_vertically(40);
        header.titled(title, ("sans-serif", 22))?;
        let cells = body.split_evenly((2, columns as usize));
        for (j, trial) in trials.iter().enumerate() {
            let steps = trial.input.len() as f64;
            let (iy0, iy1) = padded_range(trial.input.iter().flatten().map(|&v| f64::from(v)));
            let mut top = ChartBuilder::on(&cells[j])
                .caption(format!("trial {} input", j + 1), ("sans-serif", 15))
                .margin(8)
                .x_label_area_size(24)
                .y_label_area_size(36)
                .build_cartesian_2d(0.0..steps, iy0..iy1)?;
            top.configure_mesh().label_style(("sans-serif", 11)).draw()?;
            let channels = trial.input.first().map_or(0, Vec::len);
            for c in 0..channels {
                let color = PALETTE[c % PALETTE.len()];
                top.draw_series(LineSeries::new(
                    trial.input.iter().enumerate().map(|(t, v)| (t as f64, f64::from(v[c]))),
                    color.stroke_width(2),
                ))?;
            }
            let values = trial.target.iter().chain(&trial.output).flatten().map(|&v| f64::from(v));
            let (oy0, oy1) = padded_range(values);
            let mut bottom = ChartBuilder::on(&cells[columns as usize + j])
                .caption("target (thin) vs output (thick)", ("sans-serif", 15))
                .margin(8)
                .x_label_area_size(24)
                .y_label_area_size(36)
                .build_cartesian_2d(0.0..steps, oy0..oy1)?;
            bottom.configure_mesh().x_desc("step").label_style(("sans-serif", 11)).draw()?;
            let channels = trial.target.first().map_or(0, Vec::len);
            for c in 0..channels {
                let color = PALETTE[c % PALETTE.len()];
                bottom.draw_series(LineSeries::new(
                    trial.target.iter().enumerate().map(|(t, v)| (t as f64, f64::from(v[c]))),
                    color.mix(0.6).stroke_width(1),
                ))?;
                bottom.draw_series(LineSeries::new(
                    trial.output.iter().enumerate().map(|(t, v)| (t as f64, f64::from(v[c]))),
                    color.stroke_width(3),
                ))?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_font_parses() {
        assert!(ab_glyph_parses(FONT));
    }

    fn ab_glyph_parses(bytes: &'static [u8]) -> bool {
        plotters::style::register_font("test-font", FontStyle::Normal, bytes).is_ok()
    }

    #[test]
    fn draws_pngs_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.png");
        let series = Series {
            label: "loss".into(),
            points: (1..50).map(|i| (f64::from(i), 1.0 / f64::from(i))).collect(),
        };
        line_chart(&path, "loss", "step", "loss", &[series], true).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(!temp_path(&path).exists());
        let panel = TrialPanel {
            input: vec![vec![1.0, 0.0]; 10],
            target: vec![vec![1.0]; 10],
            output: vec![vec![0.5]; 10],
        };
        let trials = dir.path().join("trials.png");
        trials_figure(&trials, "flip-flop", &[panel.clone(), panel]).unwrap();
        assert!(std::fs::metadata(&trials).unwrap().len() > 1000);
    }

    #[test]
    fn unwritable_paths_are_errors() {
        let series = Series { label: "x".into(), points: vec![(0.0, 1.0)] };
        assert!(
            line_chart(Path::new("/nonexistent/dir/x.png"), "t", "x", "y", &[series], false)
                .is_err()
        );
    }
}
