//! Eigenvalue spectra against the unit circle ([`spectra_figure`]).

use std::path::Path;

use plotters::prelude::*;

use super::text::{self, FAMILY};
use super::{axis_label, count_non_finite, figure, group_color, non_finite_note};
use crate::Result;

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

/// Panels drawn at most by [`spectra_figure`].
const MAX_PANELS: usize = 36;

/// Eigenvalue spectra against the unit circle, one square panel of 300 x 300 pixels per matrix
/// in a near-square grid (at most 36; the title says how many were left out), under the title
/// (the figure is at least 420 pixels wide, and as tall as its panels plus the title, which is
/// wrapped, never cut, when it is longer than the figure is wide). Eigenvalues that are not
/// finite are left out and counted in a note.
///
/// ```
/// use mrnn_runtime::plot::{self, Spectrum};
/// let path = std::env::temp_dir().join(format!("mrnn-doc-spectra-{}.png", std::process::id()));
/// let spectrum = Spectrum {
///     title: "#0 stable".into(),
///     values: vec![(0.5, 0.3), (0.5, -0.3), (0.9, 0.0)],
///     group: "stable".into(),
/// };
/// plot::spectra_figure(&path, "Jacobian eigenvalues", &[spectrum])?;
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), mrnn_runtime::Error>(())
/// ```
pub fn spectra_figure(path: &Path, title: &str, spectra: &[Spectrum]) -> Result<()> {
    const CELL: u32 = 300;
    let shown = &spectra[..spectra.len().min(MAX_PANELS)];
    let n = shown.len().max(1);
    let cols = (n as f64).sqrt().ceil() as usize;
    let rows = n.div_ceil(cols);
    let title = if spectra.len() > MAX_PANELS {
        format!("{title} (first {MAX_PANELS} of {})", spectra.len())
    } else {
        title.to_owned()
    };
    let skipped = shown
        .iter()
        .flat_map(|s| &s.values)
        .map(|&(re, im)| count_non_finite([re, im]).min(1))
        .sum();
    let note = non_finite_note(skipped);
    let width = (CELL * cols as u32).max(420);
    let height = CELL * rows as u32 + text::header_height(width, &title, note.as_deref());
    figure(path, (width, height), |root| {
        let body = text::header(root, &title, note.as_deref())?;
        let cells = body.split_evenly((rows, cols));
        for (s, cell) in shown.iter().zip(&cells) {
            let finite: Vec<(f64, f64)> = s
                .values
                .iter()
                .copied()
                .filter(|(re, im)| re.is_finite() && im.is_finite())
                .collect();
            let r = finite.iter().map(|&(re, im)| re.hypot(im)).fold(1.0, f64::max) * 1.1;
            let r = if r.is_finite() { r } else { 1.1 };
            let area = text::caption(cell, &s.title, 14.0)?;
            // Equal scales on both axes: the unit circle stays a circle in any panel shape.
            let (margin, x_area, y_area) = (8u32, 22u32, 40u32);
            let (w, h) = area.dim_in_pixel();
            let pw = f64::from(w.saturating_sub(2 * margin + y_area).max(1));
            let ph = f64::from(h.saturating_sub(2 * margin + x_area).max(1));
            let (rx, ry) = (r * (pw / ph).max(1.0), r * (ph / pw).max(1.0));
            let mut chart = ChartBuilder::on(&area)
                .margin(margin)
                .x_label_area_size(x_area)
                .y_label_area_size(y_area)
                .build_cartesian_2d(-rx..rx, -ry..ry)?;
            chart
                .configure_mesh()
                .x_labels(5)
                .y_labels(5)
                .light_line_style(WHITE)
                .x_label_formatter(&axis_label(2.0 * rx))
                .y_label_formatter(&axis_label(2.0 * ry))
                .label_style((FAMILY, 11))
                .draw()?;
            let circle = (0..=200).map(|k| {
                let a = std::f64::consts::TAU * f64::from(k) / 200.0;
                (a.cos(), a.sin())
            });
            chart.draw_series(LineSeries::new(circle, BLACK.stroke_width(1)))?;
            chart.draw_series(LineSeries::new([(-rx, 0.0), (rx, 0.0)], BLACK.mix(0.2)))?;
            chart.draw_series(LineSeries::new([(0.0, -ry), (0.0, ry)], BLACK.mix(0.2)))?;
            let color = group_color(&s.group);
            chart.draw_series(finite.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        Ok(())
    })
}
