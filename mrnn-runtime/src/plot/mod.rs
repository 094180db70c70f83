//! PNG figures of training and dissection, one function per kind of figure, each taking plain
//! data (numbers and names), so that a user's program draws the same figures as the `mrnn`
//! command line:
//!
//! | figure | function | data |
//! |---|---|---|
//! | loss curves | [`line_chart`] | [`Series`] |
//! | example trials | [`trials_figure`] | [`TrialPanel`] |
//! | activity of each region over time | [`activity_figure`] | [`RegionActivity`] (from rates: [`region_activity`]) |
//! | each source -> target current over time | [`current_grid_figure`] | [`CurrentGrid`] (from [`crate::analysis::Currents`]: [`current_grid`]) |
//! | region-by-source current matrix | [`matrix_figure`] | values by row and column |
//! | fixed points in PC space | [`state_space_figure`] | trajectories and [`Marker`]s |
//! | eigenvalue spectra | [`spectra_figure`] | [`Spectrum`] |
//! | flow field with trajectories by condition | [`flow_figure`] | [`FlowPlot`] |
//!
//! Figures are drawn with plotters' bitmap backend into memory, in a bundled font (a Latin subset
//! of DejaVu Sans, `assets/`, so nothing depends on the system's font libraries), encoded as PNG
//! and written by [`crate::checkpoint::write_atomic`], the one writer of every file: an
//! interrupted run never leaves a half-written figure. Titles, captions and labels are measured
//! with the font and shrunk or wrapped to fit ([`text`]); legends sit beside the data, never
//! over it. Data that are not finite (NaN, infinities) are left out of the drawing, and the
//! figure says how many values were left out.

// Pixel coordinates are i32 in plotters and sizes u32; figures are at most `MAX_SIDE` = 16384
// pixels a side, so converting between them never wraps.
#![allow(clippy::cast_possible_wrap, reason = "pixel coordinates are below MAX_SIDE")]

mod activity;
mod currents;
mod flow;
mod legend;
mod lines;
mod matrix;
mod spectra;
mod state_space;
pub mod text;

use std::path::Path;

use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::{Error, Result};

pub use activity::{RegionActivity, TimeCourse, activity_figure, region_activity};
pub use currents::{CurrentGrid, current_grid, current_grid_figure};
pub use flow::{FlowPlot, flow_figure};
pub use lines::{Series, TrialPanel, line_chart, trials_figure};
pub use matrix::matrix_figure;
pub use spectra::{Spectrum, spectra_figure};
pub use state_space::state_space_figure;

/// Line colors, in order (the first eight of matplotlib's "tab10" palette, which
/// neuroscientists know).
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

/// The last two colors of "tab10", after [`PALETTE`].
const TAB10_TAIL: [RGBColor; 2] = [RGBColor(188, 189, 34), RGBColor(23, 190, 207)];

/// The color of item `k` of `n` (regions, conditions, sources): the colors of "tab10" but its
/// gray (which figures keep for examples and unlabeled lines) when there are at most 9,
/// otherwise `n` hues evenly spaced around the color wheel, so that no two items share a color.
#[must_use]
pub fn category_color(k: usize, n: usize) -> RGBColor {
    if n <= 9 {
        return if k < 7 { PALETTE[k] } else { TAB10_TAIL[(k - 7) % TAB10_TAIL.len()] };
    }
    // Alternate lightness so that neighboring hues differ more.
    let hue = k as f64 / n as f64;
    let lightness = if k.is_multiple_of(2) { 0.42 } else { 0.55 };
    let (r, g, b) = HSLColor(hue, 0.75, lightness).rgb();
    RGBColor(r, g, b)
}

/// The largest side of a figure, in pixels.
pub const MAX_SIDE: u32 = 16_384;

/// A drawing area of a figure being drawn (pixel coordinates).
pub type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type Chart2d<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Draws a figure of `size` pixels (width, height) through `draw` on a white background, and
/// writes it to `path` as PNG with [`crate::checkpoint::write_atomic`].
///
/// Sizes beyond [`MAX_SIDE`] on a side, or whose pixels do not fit in the memory limit
/// ([`crate::memory`]), are refused before anything is drawn.
///
/// ```
/// use mrnn_runtime::plot;
/// use plotters::prelude::*;
/// let path = std::env::temp_dir().join(format!("mrnn-doc-figure-{}.png", std::process::id()));
/// plot::figure(&path, (200, 100), |root| {
///     root.draw(&Circle::new((100, 50), 30, RED.filled()))?;
///     Ok(())
/// })?;
/// assert_eq!(&std::fs::read(&path).unwrap()[1..4], b"PNG");
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), mrnn_runtime::Error>(())
/// ```
pub fn figure(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> std::result::Result<(), Box<dyn std::error::Error>>,
) -> Result<()> {
    let png = render(size, draw).map_err(|e| match e {
        Error::Invalid(message) => {
            Error::Invalid(format!("cannot draw `{}`: {message}", path.display()))
        }
        other => other,
    })?;
    crate::checkpoint::write_atomic(path, &png)
}

/// Draws a figure of `size` pixels through `draw` and returns it encoded as PNG.
pub fn render(
    size: (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> std::result::Result<(), Box<dyn std::error::Error>>,
) -> Result<Vec<u8>> {
    let (w, h) = size;
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return Err(Error::Invalid(format!(
            "a figure of {w}x{h} pixels: each side must be between 1 and {MAX_SIDE}"
        )));
    }
    // The RGB pixels, and about as much again for the PNG.
    let bytes = u64::from(w) * u64::from(h) * 3;
    crate::memory::ensure_fits(format!("a figure of {w}x{h} pixels"), 2 * bytes)?;
    text::register_font();
    let mut pixels = vec![0u8; bytes as usize];
    {
        let backend = BitMapBackend::with_buffer_and_format(&mut pixels, size)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let root = backend.into_drawing_area();
        let drawn = root
            .fill(&WHITE)
            .map_err(|e| -> Box<dyn std::error::Error> { Box::new(e) })
            .and_then(|()| draw(&root))
            .and_then(|()| {
                root.present().map_err(|e| -> Box<dyn std::error::Error> { Box::new(e) })
            });
        drawn.map_err(|e| Error::Invalid(e.to_string()))?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&pixels, w, h, image::ColorType::Rgb8)
        .map_err(|e| Error::Invalid(format!("cannot encode PNG: {e}")))?;
    Ok(png)
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
    let span = hi - lo;
    // A range too narrow for f64 to divide (or overflowing) gets a fixed width around it.
    if !span.is_finite() || span <= 1e-12 * lo.abs().max(hi.abs()).max(1e-300) {
        let pad = if span.is_finite() { 0.5 * lo.abs().max(1.0) } else { 0.0 };
        let (a, b) = (lo - pad, hi + pad);
        return if a.is_finite() && b.is_finite() && a < b { (a, b) } else { (-1.0, 1.0) };
    }
    let pad = 0.05 * span;
    (lo - pad, hi + pad)
}

/// `points` split into runs of finite points: a non-finite point breaks a line (it is not
/// drawn, and the line does not jump across it).
pub(crate) fn finite_runs(points: impl IntoIterator<Item = (f64, f64)>) -> Vec<Vec<(f64, f64)>> {
    let mut runs = vec![Vec::new()];
    for p in points {
        if p.0.is_finite() && p.1.is_finite() {
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

/// The number of values that are not finite.
pub(crate) fn count_non_finite(values: impl IntoIterator<Item = f64>) -> usize {
    values.into_iter().filter(|v| !v.is_finite()).count()
}

/// The note a figure carries when `count` values were not drawn.
pub(crate) fn non_finite_note(count: usize) -> Option<String> {
    match count {
        0 => None,
        1 => Some("1 value is NaN or infinite and is not drawn".to_owned()),
        n => Some(format!("{n} values are NaN or infinite and are not drawn")),
    }
}

/// A number in a few characters: three decimals, or three significant digits in scientific
/// notation when that would show nothing.
pub(crate) fn short_number(v: f64) -> String {
    if v == 0.0 || (1e-2..1e4).contains(&v.abs()) { format!("{v:.3}") } else { format!("{v:.2e}") }
}

/// Tick values for `[lo, hi]`: round numbers (1, 2 or 5 times a power of ten), at most about
/// `max` of them.
pub(crate) fn nice_ticks(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite() && hi > lo) || max == 0 {
        return Vec::new();
    }
    let raw = (hi - lo) / max as f64;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|s| (hi - lo) / s <= max as f64)
        .unwrap_or(10.0 * power);
    let first = (lo / step).ceil();
    let last = (hi / step).floor();
    if !(first.is_finite() && last.is_finite()) || last - first > 1000.0 {
        return Vec::new();
    }
    let mut ticks = Vec::new();
    let mut k = first;
    while k <= last {
        // Snap to the step's own decimals (0.30000000000000004 reads as 0.3).
        let v = k * step;
        ticks.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        k += 1.0;
    }
    ticks
}

/// A tick label: the value with as many decimals as its step needs.
pub(crate) fn tick_label(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    let magnitude = v.abs();
    if !(1e-3..1e5).contains(&magnitude) {
        return format!("{v:.1e}");
    }
    let decimals = if step > 0.0 && step.is_finite() {
        (-step.log10().floor()).clamp(0.0, 6.0) as usize
    } else {
        2
    };
    format!("{v:.decimals$}")
}

/// An axis label of plotters' charts: at most three decimals without trailing zeros (`20`, not
/// `20.0`; `0`, not `-0.0`), or scientific notation for very large and small magnitudes.
#[allow(clippy::trivially_copy_pass_by_ref, reason = "plotters passes labels by reference")]
pub(crate) fn axis_number(v: &f64) -> String {
    let v = *v;
    if !v.is_finite() {
        return v.to_string();
    }
    if v != 0.0 && !(1e-3..1e5).contains(&v.abs()) {
        return format!("{v:.1e}");
    }
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" { "0".to_owned() } else { text.to_owned() }
}

/// [`axis_number`] for an axis spanning `span`: values within a billionth of the span of zero
/// are zero (plotters' ticks land on `-2.2e-16` where they mean 0).
pub(crate) fn axis_label(span: f64) -> impl Fn(&f64) -> String {
    move |v: &f64| {
        let v = if span.is_finite() && v.abs() < 1e-9 * span.abs() { 0.0 } else { *v };
        axis_number(&v)
    }
}

/// Draws a polyline of data points as separate segments when it is thicker than a pixel:
/// plotters joins thick lines with miters, which shoot far out of the plot where a line turns
/// back on itself. A single point (a run between NaNs, or one step) is drawn as a dot.
pub(crate) fn draw_polyline(
    chart: &mut Chart2d<'_, '_>,
    points: &[(f64, f64)],
    style: ShapeStyle,
) -> DrawResult {
    if let [p] = points {
        let radius = style.stroke_width.max(2);
        chart.draw_series(std::iter::once(Circle::new(*p, radius, style.color.filled())))?;
    } else if style.stroke_width <= 1 {
        chart.draw_series(std::iter::once(PathElement::new(points.to_vec(), style)))?;
    } else {
        chart.draw_series(points.windows(2).map(|w| PathElement::new(vec![w[0], w[1]], style)))?;
    }
    Ok(())
}

/// [`draw_polyline`] in pixel coordinates of `area`.
pub(crate) fn draw_polyline_px(
    area: &Area<'_>,
    points: &[(i32, i32)],
    style: ShapeStyle,
) -> DrawResult {
    if let [p] = points {
        area.draw(&Circle::new(*p, style.stroke_width.max(2), style.color.filled()))?;
    } else if style.stroke_width <= 1 {
        area.draw(&PathElement::new(points.to_vec(), style))?;
    } else {
        for w in points.windows(2) {
            area.draw(&PathElement::new(vec![w[0], w[1]], style))?;
        }
    }
    Ok(())
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

/// A sequential colormap at `t` in `[0, 1]`: white to dark red (for magnitudes).
#[must_use]
pub fn sequential(t: f64) -> RGBColor {
    interpolate(&[(0.0, (255, 255, 255)), (0.5, (239, 138, 98)), (1.0, (153, 0, 13))], t)
}

/// A light gray colormap at `t` in `[0, 1]`: white to mid gray, a background under colored
/// lines (the flow field's speed).
#[must_use]
pub fn grays(t: f64) -> RGBColor {
    interpolate(&[(0.0, (252, 252, 252)), (1.0, (150, 150, 150))], t)
}

/// The color of a value that is not finite, in maps and matrices.
pub(crate) const NON_FINITE_COLOR: RGBColor = RGBColor(255, 230, 120);

/// A vertical color bar for values in `range`, `color` taking `t` in `[0, 1]`.
fn color_bar(
    area: &Area<'_>,
    range: (f64, f64),
    label: &str,
    color: fn(f64) -> RGBColor,
) -> DrawResult {
    let (lo, hi) = range;
    let (_, height) = area.dim_in_pixel();
    let desc = text::one_line_size(label, height.saturating_sub(70).max(20), 14.0);
    let mut chart = ChartBuilder::on(area)
        .margin_top(12)
        .margin_bottom(52)
        .margin_right(8)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..1.0, lo..hi)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc(label)
        .axis_desc_style((text::FAMILY, desc))
        .y_label_formatter(&axis_label(hi - lo))
        .label_style((text::FAMILY, 12))
        .draw()?;
    let steps = 100;
    chart.draw_series((0..steps).map(|k| {
        let (a, b) = (f64::from(k) / f64::from(steps), f64::from(k + 1) / f64::from(steps));
        Rectangle::new([(0.0, lo + a * (hi - lo)), (1.0, lo + b * (hi - lo))], color(a).filled())
    }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_size(bytes: &[u8]) -> (u32, u32) {
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        (be(&bytes[16..20]), be(&bytes[20..24]))
    }

    #[test]
    fn draws_pngs_in_memory_of_the_size_asked() {
        let png = render((123, 45), |root| {
            root.draw(&Circle::new((60, 20), 10, RED.filled()))?;
            Ok(())
        })
        .unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert_eq!(png_size(&png), (123, 45));
    }

    #[test]
    fn absurd_sizes_are_refused_before_drawing() {
        for size in [(0, 10), (10, 0), (MAX_SIDE + 1, 10)] {
            let e = render(size, |_| Ok(())).unwrap_err();
            assert!(e.to_string().contains("pixels"), "{e}");
        }
    }

    #[test]
    fn drawing_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        let e = figure(&path, (10, 10), |_| Err("no data".into())).unwrap_err();
        assert!(e.to_string().contains("x.png") && e.to_string().contains("no data"), "{e}");
        assert!(!path.exists());
    }

    #[test]
    fn writes_through_the_atomic_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.png");
        figure(&path, (20, 20), |_| Ok(())).unwrap();
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["f.png"], "no temporary file is left");
        assert!(figure(Path::new("/nonexistent/dir/x.png"), (20, 20), |_| Ok(())).is_err());
        // A directory where the figure should go is an error naming it, and stays as it was.
        let taken = dir.path().join("taken.png");
        std::fs::create_dir(&taken).unwrap();
        std::fs::write(taken.join("keep"), b"x").unwrap();
        let e = figure(&taken, (20, 20), |_| Ok(())).unwrap_err();
        assert!(e.to_string().contains("taken.png"), "{e}");
        assert!(taken.join("keep").is_file());
    }

    #[test]
    fn finite_runs_break_at_nan() {
        let runs = finite_runs([
            (0.0, 1.0),
            (1.0, f64::NAN),
            (2.0, 2.0),
            (3.0, 3.0),
            (f64::INFINITY, 0.0),
        ]);
        assert_eq!(runs, vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]);
        assert!(finite_runs([(f64::NAN, 0.0)]).is_empty());
    }

    #[test]
    fn ranges_are_never_empty() {
        assert_eq!(padded_range([]), (0.0, 1.0));
        assert_eq!(padded_range([f64::NAN]), (0.0, 1.0));
        let (a, b) = padded_range([3.0, 3.0]);
        assert!(a < 3.0 && b > 3.0);
        let (a, b) = padded_range([1e300, -1e300, f64::MAX]);
        assert!(a.is_finite() && b.is_finite() && a < b);
        let (a, b) = padded_range([1e9, 1e9 + 1e-7]);
        assert!(a < 1e9 && b > 1e9 + 1e-7);
    }

    #[test]
    fn axis_numbers_are_short() {
        assert_eq!(axis_number(&20.0), "20");
        assert_eq!(axis_number(&-0.0), "0");
        assert_eq!(axis_number(&-0.0004), "-4.0e-4");
        assert_eq!(axis_number(&0.25), "0.25");
        assert_eq!(axis_number(&1.5e-7), "1.5e-7");
        assert_eq!(axis_number(&f64::NAN), "NaN");
        assert_eq!(axis_label(2.0)(&-2.2e-16), "0");
        assert_eq!(axis_label(1e-12)(&-2.2e-16), "-2.2e-16");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(nice_ticks(-0.26, 0.31, 4), vec![-0.2, 0.0, 0.2]);
        assert!(nice_ticks(f64::NAN, 1.0, 4).is_empty());
        assert_eq!(tick_label(0.2, 0.2), "0.2");
        assert_eq!(tick_label(-20.0, 10.0), "-20");
    }

    #[test]
    fn many_categories_get_distinct_colors() {
        let colors: Vec<RGBColor> = (0..40).map(|k| category_color(k, 40)).collect();
        for (i, a) in colors.iter().enumerate() {
            assert!(!colors[i + 1..].contains(a));
        }
        assert_eq!(category_color(0, 3), PALETTE[0]);
        assert_eq!(category_color(8, 9), TAB10_TAIL[1]);
        assert!((0..9).all(|k| category_color(k, 9) != PALETTE[7]), "gray is kept for examples");
    }
}
