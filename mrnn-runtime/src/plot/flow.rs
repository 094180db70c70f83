//! A flow field in a plane with the trajectories that cross it, one color per condition, a
//! marker at each start, and fixed points by stability ([`flow_figure`]).

use std::path::Path;

use plotters::prelude::*;

use super::legend::{self, Entry, MarkerStyle, Shape, Swatch};
use super::text::{self, FAMILY};
use super::{
    Chart2d, DrawResult, Marker, NON_FINITE_COLOR, axis_label, category_color, color_bar,
    draw_polyline, figure, grays, groups, non_finite_note, padded_range,
};
use crate::{Error, Result};

/// What [`flow_figure`] draws: a grid (`xs` by `ys`; point `(i, j)` at index `j * xs.len() + i`)
/// with its velocity and speed, trajectories (each with its condition) and marked points, in
/// the same plane.
#[derive(Clone, Copy, Debug)]
pub struct FlowPlot<'a> {
    /// Grid coordinates along the horizontal axis (increasing, evenly spaced).
    pub xs: &'a [f64],
    /// Grid coordinates along the vertical axis (increasing, evenly spaced).
    pub ys: &'a [f64],
    /// Velocity at each grid point.
    pub velocity: &'a [[f64; 2]],
    /// Speed at each grid point (the shade, on a log scale).
    pub speed: &'a [f64],
    /// Trajectories in the plane.
    pub trajectories: &'a [Vec<[f64; 2]>],
    /// The condition of each trajectory (one label per trajectory; trajectories with the same
    /// label share a color and a legend entry), or empty: no conditions.
    pub conditions: &'a [String],
    /// Points to mark (fixed points; their group is their stability).
    pub markers: &'a [Marker],
    /// Axis names.
    pub labels: [&'a str; 2],
}

/// The marker of a fixed point of a stability group: attractors filled black, saddles open
/// circles, unstable points open diamonds, marginal ones gray (black and white, so that they
/// never look like a condition's color).
fn fixed_point_style(group: &str) -> MarkerStyle {
    let (shape, fill, edge) = match group {
        "stable" => (Shape::Circle, BLACK, WHITE),
        "saddle" => (Shape::Circle, WHITE, BLACK),
        "unstable" => (Shape::Diamond, WHITE, BLACK),
        "marginal" => (Shape::Circle, RGBColor(150, 150, 150), BLACK),
        _ => (Shape::Square, RGBColor(110, 110, 110), WHITE),
    };
    MarkerStyle { shape, radius: 6, fill, edge, edge_width: 2 }
}

fn fixed_point_label(group: &str) -> String {
    match group {
        "stable" | "saddle" | "unstable" | "marginal" => format!("{group} fixed point"),
        other => other.to_owned(),
    }
}

fn start_style(color: RGBColor) -> MarkerStyle {
    MarkerStyle { shape: Shape::Triangle, radius: 5, fill: color, edge: BLACK, edge_width: 1 }
}

/// The gray of trajectories without conditions.
const NO_CONDITION: RGBColor = RGBColor(40, 40, 40);

/// A flow field, 1120 x 800 pixels: log10 speed as a gray shade (light: slow; color bar at the
/// right), unit arrows for the direction, the trajectories colored by condition with a
/// triangle at each start, fixed points by stability (filled black: stable; open circle:
/// saddle; open diamond: unstable), and the legend beside the plot. Grid cells whose speed is
/// not finite are yellow, and non-finite values are counted in a note.
///
/// ```
/// use mrnn_runtime::plot::{self, FlowPlot, Marker};
/// let path = std::env::temp_dir().join(format!("mrnn-doc-flow-{}.png", std::process::id()));
/// let axis: Vec<f64> = (0..11).map(|i| f64::from(i) - 5.0).collect();
/// // A linear sink: the velocity points to the origin.
/// let velocity: Vec<[f64; 2]> =
///     axis.iter().flat_map(|&y| axis.iter().map(move |&x| [-x, -y])).collect();
/// let speed: Vec<f64> = velocity.iter().map(|v| v[0].hypot(v[1])).collect();
/// let from = |x: f64, y: f64| (0..20).map(|t| 0.8f64.powi(t)).map(|d| [x * d, y * d]).collect();
/// let trajectories: Vec<Vec<[f64; 2]>> = vec![from(4.0, 3.0), from(-4.0, 2.0), from(3.0, -4.0)];
/// let conditions = ["go".to_owned(), "no-go".to_owned(), "go".to_owned()];
/// let sink = Marker { coords: vec![0.0, 0.0], group: "stable".into() };
/// let flow = FlowPlot {
///     xs: &axis,
///     ys: &axis,
///     velocity: &velocity,
///     speed: &speed,
///     trajectories: &trajectories,
///     conditions: &conditions,
///     markers: &[sink],
///     labels: ["PC1", "PC2"],
/// };
/// plot::flow_figure(&path, "a sink", &flow)?;
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), mrnn_runtime::Error>(())
/// ```
pub fn flow_figure(path: &Path, title: &str, plot: &FlowPlot<'_>) -> Result<()> {
    let (nx, ny) = (plot.xs.len(), plot.ys.len());
    check(plot)
        .map_err(|what| Error::Invalid(format!("cannot draw `{}`: {what}", path.display())))?;
    let (dx, dy) = (plot.xs[1] - plot.xs[0], plot.ys[1] - plot.ys[0]);
    let (x0, x1) = (plot.xs[0] - dx / 2.0, plot.xs[nx - 1] + dx / 2.0);
    let (y0, y1) = (plot.ys[0] - dy / 2.0, plot.ys[ny - 1] + dy / 2.0);
    // NaN stays NaN (`max` would turn it into the floor, hiding it); zero goes to the floor.
    let log: Vec<f64> = plot
        .speed
        .iter()
        .map(|s| if s.is_nan() { f64::NAN } else { s.max(1e-300).log10() })
        .collect();
    // The shades span at most 8 decades below the fastest point: a point exactly at a fixed
    // point (speed 0, or 1e-300) would otherwise wash out the rest of the field.
    let top = log.iter().copied().filter(|v| v.is_finite()).fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = padded_range(log.iter().copied().filter(|&v| v >= top - 8.0));
    let mut skipped = plot.speed.iter().filter(|s| !s.is_finite()).count()
        + plot.velocity.iter().flatten().filter(|v| !v.is_finite()).count();
    skipped += plot.trajectories.iter().flatten().flatten().filter(|v| !v.is_finite()).count();
    skipped +=
        plot.markers.iter().filter(|m| m.coords.iter().take(2).any(|v| !v.is_finite())).count();
    let note = non_finite_note(skipped);

    // Conditions in order of first appearance, each with its color.
    let mut names: Vec<&str> = Vec::new();
    for c in plot.conditions {
        if !names.contains(&c.as_str()) {
            names.push(c);
        }
    }
    let color_of = |k: usize| -> RGBColor {
        plot.conditions.get(k).map_or(NO_CONDITION, |c| {
            let i = names.iter().position(|n| n == c).unwrap_or(0);
            category_color(i, names.len())
        })
    };
    let entries = legend_entries(plot, &names, log.iter().any(|v| !v.is_finite()));
    let inside = |p: &[f64; 2]| {
        p[0].is_finite() && p[1].is_finite() && p[0] >= x0 && p[0] <= x1 && p[1] >= y0 && p[1] <= y1
    };
    let width = if plot.trajectories.len() > 40 { 1 } else { 2 };

    figure(path, (1120, 800), |root| {
        let body = text::header(root, title, note.as_deref())?;
        let (main, side) = body.split_horizontally(800);
        let (_, side_h) = side.dim_in_pixel();
        let (bar, key) = side.split_vertically(side_h * 2 / 5);
        let (w, h) = main.dim_in_pixel();
        let desc = text::one_line_size(plot.labels[0], w.saturating_sub(100), 16.0)
            .min(text::one_line_size(plot.labels[1], h.saturating_sub(80), 16.0));
        let mut chart = ChartBuilder::on(&main)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(plot.labels[0])
            .y_desc(plot.labels[1])
            .axis_desc_style((FAMILY, desc))
            .x_label_formatter(&axis_label(x1 - x0))
            .y_label_formatter(&axis_label(y1 - y0))
            .label_style((FAMILY, 14))
            .draw()?;
        let cells = (0..ny).flat_map(|j| (0..nx).map(move |i| (i, j)));
        chart.draw_series(cells.map(|(i, j)| {
            let (x, y) = (plot.xs[i], plot.ys[j]);
            let v = log[j * nx + i];
            let color = if v.is_finite() { grays((v - lo) / (hi - lo)) } else { NON_FINITE_COLOR };
            Rectangle::new(
                [(x - dx / 2.0, y - dy / 2.0), (x + dx / 2.0, y + dy / 2.0)],
                color.filled(),
            )
        }))?;
        draw_arrows(&mut chart, plot)?;
        for (k, t) in plot.trajectories.iter().enumerate() {
            let style = color_of(k).mix(0.85).stroke_width(width);
            for run in clipped_runs(t, [x0, x1, y0, y1]) {
                draw_polyline(&mut chart, &run, style)?;
            }
        }
        // Starts over every line, fixed points over everything.
        for (k, t) in plot.trajectories.iter().enumerate() {
            if let Some(p) = t.first().filter(|p| inside(p)) {
                legend::draw_marker(&mut chart, (p[0], p[1]), &start_style(color_of(k)))?;
            }
        }
        for m in plot.markers {
            if let [x, y, ..] = m.coords[..]
                && inside(&[x, y])
            {
                legend::draw_marker(&mut chart, (x, y), &fixed_point_style(&m.group))?;
            }
        }
        // A narrow bar: the color bar's chart would otherwise stretch across the side column.
        let (bar, _) = bar.split_horizontally(130);
        color_bar(&bar, (lo, hi), "log10 speed", grays)?;
        legend::draw_column(&key.margin(8, 8, 12, 8), &entries)?;
        Ok(())
    })
}

/// Why `plot` cannot be drawn, if it cannot.
fn check(plot: &FlowPlot<'_>) -> std::result::Result<(), String> {
    let (nx, ny) = (plot.xs.len(), plot.ys.len());
    if nx < 2 || ny < 2 || plot.velocity.len() != nx * ny || plot.speed.len() != nx * ny {
        return Err(
            "a flow grid needs at least 2 x 2 points and one velocity and speed per point".into()
        );
    }
    if !plot.conditions.is_empty() && plot.conditions.len() != plot.trajectories.len() {
        return Err(format!(
            "{} condition labels for {} trajectories (one per trajectory, or none)",
            plot.conditions.len(),
            plot.trajectories.len()
        ));
    }
    let (dx, dy) = (plot.xs[1] - plot.xs[0], plot.ys[1] - plot.ys[0]);
    let ends = [plot.xs[0], plot.xs[nx - 1], plot.ys[0], plot.ys[ny - 1]];
    if !ends.iter().chain([&dx, &dy]).all(|v| v.is_finite()) || dx <= 0.0 || dy <= 0.0 {
        return Err("the grid's coordinates must be finite and increasing".into());
    }
    Ok(())
}

/// The parts of `trajectory` inside `rect` (`[x0, x1, y0, y1]`): its segments clipped to the
/// rectangle, joined where they meet, so that a trajectory that leaves the plot is drawn up to
/// its edge and never across it; non-finite points break it.
fn clipped_runs(trajectory: &[[f64; 2]], rect: [f64; 4]) -> Vec<Vec<(f64, f64)>> {
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    for w in trajectory.windows(2) {
        let (p, q) = ((w[0][0], w[0][1]), (w[1][0], w[1][1]));
        let Some((a, b)) = clip_segment(p, q, rect) else {
            continue;
        };
        match runs.last_mut() {
            Some(run) if run.last() == Some(&a) => run.push(b),
            _ => runs.push(vec![a, b]),
        }
    }
    runs
}

/// The part of the segment `p`-`q` inside `rect` (`[x0, x1, y0, y1]`), by Liang and Barsky's
/// algorithm; `None` when it misses the rectangle or a coordinate is not finite.
fn clip_segment(
    p: (f64, f64),
    q: (f64, f64),
    [x0, x1, y0, y1]: [f64; 4],
) -> Option<((f64, f64), (f64, f64))> {
    if ![p.0, p.1, q.0, q.1].iter().all(|v| v.is_finite()) {
        return None;
    }
    let (dx, dy) = (q.0 - p.0, q.1 - p.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (step, room) in [(-dx, p.0 - x0), (dx, x1 - p.0), (-dy, p.1 - y0), (dy, y1 - p.1)] {
        if step == 0.0 {
            if room < 0.0 {
                return None;
            }
        } else {
            let t = room / step;
            if step < 0.0 {
                t0 = t0.max(t);
            } else {
                t1 = t1.min(t);
            }
        }
    }
    // A segment that misses the rectangle, or only touches a corner.
    if t0 >= t1 {
        return None;
    }
    // Ends that were not clipped are kept exactly, so that consecutive segments join.
    let at = |t: f64| (p.0 + t * dx, p.1 + t * dy);
    let a = if t0 > 0.0 { at(t0) } else { p };
    let b = if t1 < 1.0 { at(t1) } else { q };
    Some((a, b))
}

/// The legend: fixed points by stability, the start marker, the conditions' colors (and the
/// color of non-finite speeds when there are some).
fn legend_entries(plot: &FlowPlot<'_>, names: &[&str], non_finite_speed: bool) -> Vec<Entry> {
    let mut entries: Vec<Entry> = groups(plot.markers)
        .into_iter()
        .map(|g| Entry::new(fixed_point_label(g), Swatch::Marker(fixed_point_style(g))))
        .collect();
    if !plot.trajectories.is_empty() {
        let start = if names.is_empty() { NO_CONDITION } else { RGBColor(200, 200, 200) };
        entries.push(Entry::new("start of a trajectory", Swatch::Marker(start_style(start))));
    }
    if names.is_empty() && !plot.trajectories.is_empty() {
        entries.push(Entry::new("trajectories", Swatch::Line(NO_CONDITION, 2)));
    }
    if non_finite_speed {
        let square = MarkerStyle {
            shape: Shape::Square,
            radius: 7,
            fill: NON_FINITE_COLOR,
            edge: RGBColor(150, 150, 150),
            edge_width: 1,
        };
        entries.push(Entry::new("speed NaN or infinite", Swatch::Marker(square)));
    }
    for (i, n) in names.iter().enumerate() {
        entries.push(Entry::new(*n, Swatch::Line(category_color(i, names.len()), 3)));
    }
    entries
}

/// Arrows of a fixed length in grid units at every grid point: the direction of the flow (its
/// speed is the shade).
fn draw_arrows(chart: &mut Chart2d<'_, '_>, plot: &FlowPlot<'_>) -> DrawResult {
    let (nx, ny) = (plot.xs.len(), plot.ys.len());
    let (dx, dy) = (plot.xs[1] - plot.xs[0], plot.ys[1] - plot.ys[0]);
    let arrow = RGBColor(70, 70, 70).mix(0.55).stroke_width(1);
    for j in 0..ny {
        for i in 0..nx {
            let [vx, vy] = plot.velocity[j * nx + i];
            // Normalize in grid units so arrows look the same length whatever the axes.
            let (ux, uy) = (vx / dx, vy / dy);
            let len = ux.hypot(uy);
            if !(len.is_finite() && len > 0.0) {
                continue;
            }
            let (ux, uy) = (0.35 * ux / len, 0.35 * uy / len);
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trajectories_are_clipped_at_the_plot_edge() {
        let rect = [0.0, 1.0, 0.0, 1.0];
        // In, out through the right edge, back in through the top.
        let path = [[0.5, 0.5], [1.5, 0.5], [0.5, 1.5], [0.25, 0.5]];
        let runs = clipped_runs(&path, rect);
        assert_eq!(runs, vec![vec![(0.5, 0.5), (1.0, 0.5)], vec![(0.375, 1.0), (0.25, 0.5)]]);
        // Entirely outside, or broken by NaN.
        assert!(clipped_runs(&[[2.0, 2.0], [3.0, 3.0]], rect).is_empty());
        let broken = [[0.1, 0.1], [0.2, 0.2], [f64::NAN, 0.3], [0.4, 0.4], [0.5, 0.5]];
        assert_eq!(clipped_runs(&broken, rect).len(), 2);
        // Crossing the whole plot.
        assert_eq!(clip_segment((-1.0, 0.5), (2.0, 0.5), rect), Some(((0.0, 0.5), (1.0, 0.5))));
    }
}
