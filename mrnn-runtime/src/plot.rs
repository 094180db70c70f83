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

/// A point to mark in an analysis figure; its group (`stable`, `saddle`, ...) picks its color
/// and legend entry.
#[derive(Clone, Debug)]
pub struct Marker {
    /// Coordinates (2 or 3 used).
    pub coords: Vec<f64>,
    /// Legend group.
    pub group: String,
}

/// The color of a stability group: stable blue, saddle red, unstable orange, marginal purple,
/// anything else gray.
#[must_use]
pub fn group_color(group: &str) -> RGBColor {
    match group {
        "stable" => PALETTE[0],
        "saddle" => PALETTE[3],
        "unstable" => PALETTE[1],
        "marginal" => PALETTE[4],
        _ => PALETTE[7],
    }
}

/// The marker radius of a group: stable points (attractors) stand out.
fn group_radius(group: &str) -> i32 {
    if group == "stable" { 7 } else { 5 }
}

/// The groups of `markers` in order of first appearance.
fn groups(markers: &[Marker]) -> Vec<&str> {
    let mut seen: Vec<&str> = Vec::new();
    for m in markers {
        if !seen.contains(&m.group.as_str()) {
            seen.push(&m.group);
        }
    }
    seen
}

/// Linear interpolation in a table of `(position, color)` stops, `t` clamped to `[0, 1]`.
fn interpolate(stops: &[(f64, (u8, u8, u8))], t: f64) -> RGBColor {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    for w in stops.windows(2) {
        let ((t0, c0), (t1, c1)) = (w[0], w[1]);
        if t <= t1 {
            let f = if t1 > t0 { (t - t0) / (t1 - t0) } else { 0.0 };
            let mix =
                |a: u8, b: u8| (f64::from(a) + f * (f64::from(b) - f64::from(a))).round() as u8;
            return RGBColor(mix(c0.0, c1.0), mix(c0.1, c1.1), mix(c0.2, c1.2));
        }
    }
    let (_, c) = stops[stops.len() - 1];
    RGBColor(c.0, c.1, c.2)
}

/// The viridis colormap at `t` in `[0, 1]` (dark blue to yellow).
#[must_use]
pub fn viridis(t: f64) -> RGBColor {
    interpolate(
        &[
            (0.0, (68, 1, 84)),
            (0.25, (59, 82, 139)),
            (0.5, (33, 145, 140)),
            (0.75, (94, 201, 98)),
            (1.0, (253, 231, 37)),
        ],
        t,
    )
}

/// A diverging colormap at `t` in `[-1, 1]`: blue for negative, white at 0, red for positive.
#[must_use]
pub fn diverging(t: f64) -> RGBColor {
    interpolate(
        &[
            (0.0, (33, 102, 172)),
            (0.25, (103, 169, 207)),
            (0.5, (247, 247, 247)),
            (0.75, (239, 138, 98)),
            (1.0, (178, 24, 43)),
        ],
        0.5 * (t + 1.0),
    )
}

type Figure<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Fixed points (markers colored by group) among trajectories in principal-component space: a
/// 3-D view of the first three coordinates beside the plane of the first two (only the plane
/// when the points have two coordinates).
pub fn state_space_figure(
    path: &Path,
    title: &str,
    trajectories: &[Vec<Vec<f64>>],
    markers: &[Marker],
    axis_labels: &[&str],
) -> Result<()> {
    let dims = trajectories
        .iter()
        .flatten()
        .map(Vec::len)
        .chain(markers.iter().map(|m| m.coords.len()))
        .min()
        .unwrap_or(2);
    if dims < 2 {
        return Err(Error::Invalid(format!(
            "cannot draw `{}`: points need at least 2 coordinates",
            path.display()
        )));
    }
    let range = |k: usize| {
        padded_range(
            trajectories.iter().flatten().map(|p| p[k]).chain(markers.iter().map(|m| m.coords[k])),
        )
    };
    let label =
        |k: usize| axis_labels.get(k).map_or_else(|| format!("PC{}", k + 1), |s| (*s).to_owned());
    let three = dims >= 3;
    let size = if three { (1400, 680) } else { (760, 680) };
    figure(path, size, |root| {
        let (header, body) = root.split_vertically(40);
        header.titled(title, ("sans-serif", 22))?;
        let (left, right) = if three {
            let (l, r) = body.split_horizontally(700);
            (Some(l), r)
        } else {
            (None, body.clone())
        };
        if let Some(left) = left {
            draw_3d(
                &left,
                trajectories,
                markers,
                [range(0), range(1), range(2)],
                &[label(0), label(1), label(2)],
            )?;
        }
        let mut chart = ChartBuilder::on(&right)
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(range(0).0..range(0).1, range(1).0..range(1).1)?;
        chart
            .configure_mesh()
            .x_desc(label(0))
            .y_desc(label(1))
            .label_style(("sans-serif", 14))
            .draw()?;
        let line = RGBColor(150, 150, 150).mix(0.5);
        for t in trajectories {
            chart.draw_series(LineSeries::new(
                t.iter().map(|p| (p[0], p[1])),
                line.stroke_width(1),
            ))?;
        }
        for g in groups(markers) {
            let (color, radius) = (group_color(g), group_radius(g));
            chart
                .draw_series(
                    markers
                        .iter()
                        .filter(|m| m.group == g)
                        .map(|m| Circle::new((m.coords[0], m.coords[1]), radius, color.filled())),
                )?
                .label(g)
                .legend(move |(x, y)| Circle::new((x + 10, y), 5, color.filled()));
            chart.draw_series(
                markers.iter().filter(|m| m.group == g).map(|m| {
                    Circle::new((m.coords[0], m.coords[1]), radius, BLACK.stroke_width(1))
                }),
            )?;
        }
        if !markers.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()?;
        }
        Ok(())
    })
}

fn draw_3d(
    area: &Figure<'_>,
    trajectories: &[Vec<Vec<f64>>],
    markers: &[Marker],
    ranges: [(f64, f64); 3],
    labels: &[String; 3],
) -> DrawResult {
    let [x, y, z] = ranges;
    let mut chart = ChartBuilder::on(area)
        .margin(20)
        .caption(format!("{}, {}, {}", labels[0], labels[1], labels[2]), ("sans-serif", 16))
        .build_cartesian_3d(x.0..x.1, y.0..y.1, z.0..z.1)?;
    chart.with_projection(|mut p| {
        p.yaw = 0.6;
        p.pitch = 0.35;
        p.scale = 0.85;
        p.into_matrix()
    });
    chart
        .configure_axes()
        .light_grid_style(BLACK.mix(0.08))
        .max_light_lines(4)
        .label_style(("sans-serif", 12))
        .draw()?;
    let line = RGBColor(150, 150, 150).mix(0.5);
    for t in trajectories {
        chart.draw_series(LineSeries::new(
            t.iter().map(|p| (p[0], p[1], p[2])),
            line.stroke_width(1),
        ))?;
    }
    for m in markers {
        let color = group_color(&m.group);
        let at = (m.coords[0], m.coords[1], m.coords[2]);
        let radius = group_radius(&m.group);
        chart.draw_series(std::iter::once(Circle::new(at, radius, color.filled())))?;
        chart.draw_series(std::iter::once(Circle::new(at, radius, BLACK.stroke_width(1))))?;
    }
    Ok(())
}

/// The eigenvalues of one matrix, for [`spectra_figure`].
#[derive(Clone, Debug)]
pub struct Spectrum {
    /// Panel title.
    pub title: String,
    /// `(re, im)` pairs.
    pub values: Vec<(f64, f64)>,
    /// Group (stability) that colors the points.
    pub group: String,
}

/// Eigenvalue spectra against the unit circle, one small panel per matrix (at most 36; the
/// title says how many were left out).
pub fn spectra_figure(path: &Path, title: &str, spectra: &[Spectrum]) -> Result<()> {
    const MAX_PANELS: usize = 36;
    let shown = &spectra[..spectra.len().min(MAX_PANELS)];
    let n = shown.len().max(1);
    let cols = (n as f64).sqrt().ceil() as usize;
    let rows = n.div_ceil(cols);
    let title = if spectra.len() > MAX_PANELS {
        format!("{title} (first {MAX_PANELS} of {})", spectra.len())
    } else {
        title.to_owned()
    };
    figure(path, (300 * cols as u32, 300 * rows as u32 + 40), |root| {
        let (header, body) = root.split_vertically(40);
        header.titled(&title, ("sans-serif", 22))?;
        let cells = body.split_evenly((rows, cols));
        for (s, cell) in shown.iter().zip(&cells) {
            let r = s.values.iter().map(|&(re, im)| re.hypot(im)).fold(1.0, f64::max) * 1.1;
            let mut chart = ChartBuilder::on(cell)
                .caption(&s.title, ("sans-serif", 14))
                .margin(8)
                .x_label_area_size(22)
                .y_label_area_size(34)
                .build_cartesian_2d(-r..r, -r..r)?;
            chart
                .configure_mesh()
                .x_labels(5)
                .y_labels(5)
                .light_line_style(WHITE)
                .label_style(("sans-serif", 11))
                .draw()?;
            let circle = (0..=200).map(|k| {
                let a = std::f64::consts::TAU * f64::from(k) / 200.0;
                (a.cos(), a.sin())
            });
            chart.draw_series(LineSeries::new(circle, BLACK.stroke_width(1)))?;
            chart.draw_series(LineSeries::new([(-r, 0.0), (r, 0.0)], BLACK.mix(0.2)))?;
            chart.draw_series(LineSeries::new([(0.0, -r), (0.0, r)], BLACK.mix(0.2)))?;
            let color = group_color(&s.group);
            chart.draw_series(s.values.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        Ok(())
    })
}

/// What [`flow_figure`] draws: a grid (`xs` by `ys`; point `(i, j)` at index `j * xs.len() + i`)
/// with its velocity and speed, trajectories and marked points, in the same plane.
#[derive(Clone, Copy, Debug)]
pub struct FlowPlot<'a> {
    /// Grid coordinates along the horizontal axis.
    pub xs: &'a [f64],
    /// Grid coordinates along the vertical axis.
    pub ys: &'a [f64],
    /// Velocity at each grid point.
    pub velocity: &'a [[f64; 2]],
    /// Speed at each grid point (the color, on a log scale).
    pub speed: &'a [f64],
    /// Trajectories in the plane.
    pub trajectories: &'a [Vec<[f64; 2]>],
    /// Points to mark (fixed points).
    pub markers: &'a [Marker],
    /// Axis names.
    pub labels: [&'a str; 2],
}

/// A flow field: log10 speed as color (viridis, with a color bar), unit arrows for the
/// direction, trajectories in black, marked points colored by group.
pub fn flow_figure(path: &Path, title: &str, plot: &FlowPlot<'_>) -> Result<()> {
    let (nx, ny) = (plot.xs.len(), plot.ys.len());
    if nx < 2 || ny < 2 || plot.velocity.len() != nx * ny || plot.speed.len() != nx * ny {
        return Err(Error::Invalid(format!(
            "cannot draw `{}`: a flow grid needs at least 2 x 2 points and one velocity and speed per point",
            path.display()
        )));
    }
    let log: Vec<f64> = plot.speed.iter().map(|s| s.max(1e-300).log10()).collect();
    let (lo, hi) = padded_range(log.iter().copied());
    let (dx, dy) = (plot.xs[1] - plot.xs[0], plot.ys[1] - plot.ys[0]);
    let (x0, x1) = (plot.xs[0] - dx / 2.0, plot.xs[nx - 1] + dx / 2.0);
    let (y0, y1) = (plot.ys[0] - dy / 2.0, plot.ys[ny - 1] + dy / 2.0);
    figure(path, (900, 760), |root| {
        let (header, body) = root.split_vertically(40);
        header.titled(title, ("sans-serif", 22))?;
        let (main, bar) = body.split_horizontally(780);
        let mut chart = ChartBuilder::on(&main)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(plot.labels[0])
            .y_desc(plot.labels[1])
            .label_style(("sans-serif", 14))
            .draw()?;
        let cells = (0..ny).flat_map(|j| (0..nx).map(move |i| (i, j)));
        chart.draw_series(cells.map(|(i, j)| {
            let (x, y) = (plot.xs[i], plot.ys[j]);
            let color = viridis((log[j * nx + i] - lo) / (hi - lo));
            Rectangle::new(
                [(x - dx / 2.0, y - dy / 2.0), (x + dx / 2.0, y + dy / 2.0)],
                color.filled(),
            )
        }))?;
        // Arrows of a fixed length in grid units: direction only; speed is the color.
        let arrow = WHITE.mix(0.9).stroke_width(1);
        for j in 0..ny {
            for i in 0..nx {
                let [vx, vy] = plot.velocity[j * nx + i];
                // Normalize in grid units so arrows look the same length whatever the axes.
                let (ux, uy) = (vx / dx, vy / dy);
                let len = ux.hypot(uy);
                if !(len.is_finite() && len > 0.0) {
                    continue;
                }
                let (ux, uy) = (0.4 * ux / len, 0.4 * uy / len);
                let (x, y) = (plot.xs[i], plot.ys[j]);
                let tip = (x + ux * dx, y + uy * dy);
                let tail = (x - ux * dx, y - uy * dy);
                let head = |angle: f64| {
                    let (c, s) = (angle.cos(), angle.sin());
                    let (hx, hy) = (-(ux * c - uy * s) * 0.45, -(ux * s + uy * c) * 0.45);
                    (tip.0 + hx * dx, tip.1 + hy * dy)
                };
                chart.draw_series(std::iter::once(PathElement::new(vec![tail, tip], arrow)))?;
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![head(0.45), tip, head(-0.45)],
                    arrow,
                )))?;
            }
        }
        for t in plot.trajectories {
            chart.draw_series(LineSeries::new(
                t.iter()
                    .map(|p| (p[0], p[1]))
                    .filter(|p| p.0 >= x0 && p.0 <= x1 && p.1 >= y0 && p.1 <= y1),
                BLACK.mix(0.35).stroke_width(1),
            ))?;
        }
        for m in plot.markers {
            let (at, radius) = ((m.coords[0], m.coords[1]), group_radius(&m.group));
            chart.draw_series(std::iter::once(Circle::new(
                at,
                radius,
                group_color(&m.group).filled(),
            )))?;
            chart.draw_series(std::iter::once(Circle::new(at, radius, WHITE.stroke_width(2))))?;
        }
        color_bar(&bar, (lo, hi), "log10 speed", viridis_unit)?;
        Ok(())
    })
}

fn viridis_unit(t: f64) -> RGBColor {
    viridis(t)
}

/// A vertical color bar for values in `range`, `color` taking `t` in `[0, 1]`.
fn color_bar(
    area: &Figure<'_>,
    range: (f64, f64),
    label: &str,
    color: fn(f64) -> RGBColor,
) -> DrawResult {
    let (lo, hi) = range;
    let mut chart = ChartBuilder::on(area)
        .margin_top(12)
        .margin_bottom(52)
        .margin_right(8)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..1.0, lo..hi)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc(label)
        .label_style(("sans-serif", 12))
        .draw()?;
    let steps = 100;
    chart.draw_series((0..steps).map(|k| {
        let (a, b) = (f64::from(k) / f64::from(steps), f64::from(k + 1) / f64::from(steps));
        Rectangle::new([(0.0, lo + a * (hi - lo)), (1.0, lo + b * (hi - lo))], color(a).filled())
    }))?;
    Ok(())
}

fn diverging_unit(t: f64) -> RGBColor {
    diverging(2.0 * t - 1.0)
}

/// A sequential colormap at `t` in `[0, 1]`: white to dark red (for magnitudes).
#[must_use]
pub fn sequential(t: f64) -> RGBColor {
    interpolate(&[(0.0, (255, 255, 255)), (0.5, (239, 138, 98)), (1.0, (153, 0, 13))], t)
}

/// A number in a few characters: three decimals, or three significant digits in scientific
/// notation when that would show nothing.
fn short_number(v: f64) -> String {
    if v == 0.0 || (1e-2..1e4).contains(&v.abs()) { format!("{v:.3}") } else { format!("{v:.2e}") }
}

/// A matrix as a heat map with its values written in the cells: rows and columns named, `None`
/// cells gray (no connection). Values of both signs get a diverging scale symmetric about 0
/// (blue negative, red positive); non-negative values a white-to-red scale from 0.
pub fn matrix_figure(
    path: &Path,
    title: &str,
    rows: &[String],
    cols: &[String],
    values: &[Vec<Option<f64>>],
    label: &str,
) -> Result<()> {
    if rows.is_empty()
        || cols.is_empty()
        || values.len() != rows.len()
        || values.iter().any(|r| r.len() != cols.len())
    {
        return Err(Error::Invalid(format!(
            "cannot draw `{}`: the matrix is empty or its values do not match its {} rows and {} columns",
            path.display(),
            rows.len(),
            cols.len()
        )));
    }
    let (r, c) = (rows.len(), cols.len());
    let big = values.iter().flatten().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    let big = if big > 0.0 && big.is_finite() { big } else { 1.0 };
    let signed = values.iter().flatten().flatten().any(|&v| v < 0.0);
    let (scale, range): (fn(f64) -> RGBColor, (f64, f64)) =
        if signed { (diverging_unit, (-big, big)) } else { (sequential, (0.0, big)) };
    let width = (160 + 110 * c + 140).max(520) as u32;
    let height = (120 + 70 * r + 60).max(360) as u32;
    let longest = rows.iter().map(String::len).max().unwrap_or(1) as u32;
    figure(path, (width, height), |root| {
        let (header, body) = root.split_vertically(40);
        header.titled(title, ("sans-serif", 22))?;
        let (main, bar) = body.split_horizontally(width - 120);
        let mut chart = ChartBuilder::on(&main)
            .margin(12)
            .x_label_area_size(60)
            .y_label_area_size((9 * longest + 20).max(60))
            .build_cartesian_2d(-0.5..c as f64 - 0.5, -0.5..r as f64 - 0.5)?;
        // Ticks fall on integers, the cell centers; names only there.
        let name = |names: &[String], v: f64, flip: bool| -> String {
            let k = v.round();
            if (v - k).abs() > 1e-6 || k < 0.0 || k as usize >= names.len() {
                return String::new();
            }
            let k = k as usize;
            names[if flip { names.len() - 1 - k } else { k }].clone()
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(c + 1)
            .y_labels(r + 1)
            .x_label_formatter(&|v| name(cols, *v, false))
            .y_label_formatter(&|v| name(rows, *v, true))
            .x_desc("source")
            .y_desc("target")
            .label_style(("sans-serif", 14))
            .draw()?;
        let center = plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        );
        for (i, row) in values.iter().enumerate() {
            let y = (r - 1 - i) as f64;
            for (j, v) in row.iter().enumerate() {
                let x = j as f64;
                let cell = [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)];
                let t = |v: f64| (v - range.0) / (range.1 - range.0);
                let fill = v.map_or(RGBColor(210, 210, 210), |v| scale(t(v)));
                chart.draw_series(std::iter::once(Rectangle::new(cell, fill.filled())))?;
                chart.draw_series(std::iter::once(Rectangle::new(cell, WHITE.stroke_width(1))))?;
                let text = v.map_or_else(|| "none".to_owned(), short_number);
                // White on dark cells, black on light ones (relative luminance).
                let RGBColor(r8, g8, b8) = fill;
                let luma = 0.2126 * f64::from(r8) + 0.7152 * f64::from(g8) + 0.0722 * f64::from(b8);
                let ink = if luma < 110.0 { WHITE } else { BLACK };
                let style = TextStyle::from(("sans-serif", 15).into_font()).color(&ink).pos(center);
                chart.draw_series(std::iter::once(Text::new(text, (x, y), style)))?;
            }
        }
        color_bar(&bar, range, label, scale)?;
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
