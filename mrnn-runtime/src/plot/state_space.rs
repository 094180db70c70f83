//! Fixed points among trajectories in principal-component space ([`state_space_figure`]).

use std::path::Path;

use plotters::prelude::*;

use super::legend::{self, Entry, MarkerStyle, Shape, Swatch};
use super::text::{self, FAMILY};
use super::{
    Area, DrawResult, Marker, axis_label, count_non_finite, figure, finite_runs, group_color,
    group_radius, groups, non_finite_note, padded_range,
};
use crate::{Error, Result};

fn marker_style(group: &str) -> MarkerStyle {
    MarkerStyle {
        shape: Shape::Circle,
        radius: group_radius(group),
        fill: group_color(group),
        edge: BLACK,
        edge_width: 1,
    }
}

/// Fixed points (markers colored by group, legend under the title) among trajectories in
/// principal-component space: a 3-D view of the first three coordinates beside the plane of the
/// first two, 1400 x 720 pixels (only the plane, 760 x 720, when the points have two
/// coordinates). Points with a coordinate that is not finite are left out, and counted in a
/// note.
///
/// ```
/// use mrnn_runtime::plot::{self, Marker};
/// let path = std::env::temp_dir().join(format!("mrnn-doc-fp-{}.png", std::process::id()));
/// let circle: Vec<Vec<f64>> =
///     (0..60).map(|t| f64::from(t) / 10.0).map(|s| vec![s.cos(), s.sin()]).collect();
/// let origin = Marker { coords: vec![0.0, 0.0], group: "unstable".into() };
/// plot::state_space_figure(&path, "a limit cycle", &[circle], &[origin], &["PC1", "PC2"])?;
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), mrnn_runtime::Error>(())
/// ```
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
    let shown = dims.min(3);
    let finite = |p: &[f64]| p[..shown].iter().all(|v| v.is_finite());
    let range = |k: usize| {
        padded_range(
            trajectories
                .iter()
                .flatten()
                .filter(|p| finite(p))
                .map(|p| p[k])
                .chain(markers.iter().filter(|m| finite(&m.coords)).map(|m| m.coords[k])),
        )
    };
    let skipped = trajectories
        .iter()
        .flatten()
        .chain(markers.iter().map(|m| &m.coords))
        .map(|p| count_non_finite(p[..shown].iter().copied()))
        .sum();
    let note = non_finite_note(skipped);
    let label =
        |k: usize| axis_labels.get(k).map_or_else(|| format!("PC{}", k + 1), |s| (*s).to_owned());
    let entries: Vec<Entry> = groups(markers)
        .into_iter()
        .map(|g| Entry::new(g, Swatch::Marker(marker_style(g))))
        .collect();
    let three = dims >= 3;
    let size = if three { (1400, 720) } else { (760, 720) };
    figure(path, size, |root| {
        let mut body = text::header(root, title, note.as_deref())?;
        if !entries.is_empty() {
            let (w, _) = body.dim_in_pixel();
            let (top, rest) = body.split_vertically(legend::rows_height(&entries, w - 24));
            legend::draw_rows(&top.margin(0, 0, 12, 12), &entries)?;
            body = rest;
        }
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
        let (w, h) = right.dim_in_pixel();
        let (x0, x1) = range(0);
        let (y0, y1) = range(1);
        let desc = text::one_line_size(&label(0), w.saturating_sub(90), 16.0)
            .min(text::one_line_size(&label(1), h.saturating_sub(80), 16.0));
        let mut chart = ChartBuilder::on(&right)
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(label(0))
            .y_desc(label(1))
            .axis_desc_style((FAMILY, desc))
            .x_label_formatter(&axis_label(x1 - x0))
            .y_label_formatter(&axis_label(y1 - y0))
            .label_style((FAMILY, 14))
            .draw()?;
        let line = RGBColor(150, 150, 150).mix(0.5);
        for t in trajectories {
            for run in finite_runs(t.iter().map(|p| (p[0], p[1]))) {
                chart.draw_series(LineSeries::new(run, line.stroke_width(1)))?;
            }
        }
        for m in markers.iter().filter(|m| finite(&m.coords)) {
            legend::draw_marker(&mut chart, (m.coords[0], m.coords[1]), &marker_style(&m.group))?;
        }
        Ok(())
    })
}

fn draw_3d(
    area: &Area<'_>,
    trajectories: &[Vec<Vec<f64>>],
    markers: &[Marker],
    ranges: [(f64, f64); 3],
    labels: &[String; 3],
) -> DrawResult {
    let [x, y, z] = ranges;
    let area = text::caption(area, &format!("{}, {}, {}", labels[0], labels[1], labels[2]), 16.0)?;
    let mut chart =
        ChartBuilder::on(&area).margin(20).build_cartesian_3d(x.0..x.1, y.0..y.1, z.0..z.1)?;
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
        .x_formatter(&axis_label(x.1 - x.0))
        .y_formatter(&axis_label(y.1 - y.0))
        .z_formatter(&axis_label(z.1 - z.0))
        .label_style((FAMILY, 12))
        .draw()?;
    let line = RGBColor(150, 150, 150).mix(0.5);
    let finite = |p: &[f64]| p[..3].iter().all(|v| v.is_finite());
    for t in trajectories {
        let mut run: Vec<(f64, f64, f64)> = Vec::new();
        for p in t.iter().map(Some).chain([None]) {
            match p {
                Some(p) if finite(p) => run.push((p[0], p[1], p[2])),
                _ => {
                    if !run.is_empty() {
                        chart.draw_series(LineSeries::new(
                            std::mem::take(&mut run),
                            line.stroke_width(1),
                        ))?;
                    }
                }
            }
        }
    }
    for m in markers.iter().filter(|m| finite(&m.coords)) {
        let color = group_color(&m.group);
        let at = (m.coords[0], m.coords[1], m.coords[2]);
        let radius = group_radius(&m.group);
        chart.draw_series(std::iter::once(Circle::new(at, radius, color.filled())))?;
        chart.draw_series(std::iter::once(Circle::new(at, radius, BLACK.stroke_width(1))))?;
    }
    Ok(())
}
