//! A matrix as a heat map with its values written in the cells ([`matrix_figure`]): the
//! region-by-source current matrix.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::text::{self, Align, FAMILY, draw_fitted, fit_text};
use super::{
    NON_FINITE_COLOR, color_bar, diverging, figure, non_finite_note, sequential, short_number,
};
use crate::{Error, Result};

fn diverging_unit(t: f64) -> RGBColor {
    diverging(2.0 * t - 1.0)
}

/// Width of a column and height of a row, in pixels.
const CELL: (u32, u32) = (110, 64);
/// The size of row and column names.
const NAME_SIZE: f64 = 14.0;

/// A matrix as a heat map with its values written in the cells: rows and columns named (names
/// wrapped or shrunk to their cell, never cut), `None` cells gray (no connection), values that
/// are not finite yellow with their value written (and counted in a note). Values of both signs
/// get a diverging scale symmetric about 0 (blue negative, red positive); non-negative values a
/// white-to-red scale from 0. The figure has 110 pixels per column and 64 per row, plus room
/// for the names, the title and the color bar.
///
/// ```
/// use mrnn_runtime::plot;
/// let path = std::env::temp_dir().join(format!("mrnn-doc-matrix-{}.png", std::process::id()));
/// let rows = ["exc".to_owned(), "inh".to_owned()];
/// let cols = ["exc".to_owned(), "inh".to_owned(), "input".to_owned()];
/// let values = [vec![Some(0.3), Some(-0.8), Some(0.1)], vec![Some(0.6), None, None]];
/// plot::matrix_figure(&path, "mean current", &rows, &cols, &values, "current")?;
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), mrnn_runtime::Error>(())
/// ```
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
    let finite = || values.iter().flatten().flatten().copied().filter(|v| v.is_finite());
    let big = finite().fold(0.0f64, |m, v| m.max(v.abs()));
    let big = if big > 0.0 && big.is_finite() { big } else { 1.0 };
    let signed = finite().any(|v| v < 0.0);
    let (scale, range): (fn(f64) -> RGBColor, (f64, f64)) =
        if signed { (diverging_unit, (-big, big)) } else { (sequential, (0.0, big)) };
    let skipped = values.iter().flatten().flatten().filter(|v| !v.is_finite()).count();
    let note = non_finite_note(skipped);
    // Row names get the room the longest needs, up to 240 pixels (longer ones wrap).
    let row_room =
        rows.iter().map(|n| text::text_width(n, NAME_SIZE)).max().unwrap_or(0).clamp(40, 240);
    let row_names: Vec<_> =
        rows.iter().map(|n| fit_text(n, row_room, CELL.1 - 4, NAME_SIZE)).collect();
    let col_names: Vec<_> = cols.iter().map(|n| fit_text(n, CELL.0 - 8, 60, NAME_SIZE)).collect();
    let col_room = col_names.iter().map(text::Fitted::height).max().unwrap_or(0);
    let (y_area, x_area) = (row_room + 44, col_room + 40);
    let width = (y_area + 24 + CELL.0 * c as u32 + 130).max(520);
    let header = text::header_height(width, title, note.as_deref());
    let height = (header + x_area + CELL.1 * r as u32 + 24).max(360);
    figure(path, (width, height), |root| {
        let body = text::header(root, title, note.as_deref())?;
        let (main, bar) = body.split_horizontally(width - 120);
        let mut chart = ChartBuilder::on(&main)
            .margin(12)
            .x_label_area_size(x_area)
            .y_label_area_size(y_area)
            .build_cartesian_2d(-0.5..c as f64 - 0.5, -0.5..r as f64 - 0.5)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_labels(0)
            .x_desc("source")
            .y_desc("target")
            .axis_desc_style((FAMILY, 16))
            .draw()?;
        // Names are drawn here, fitted to their cells, rather than as plotters' tick labels,
        // which are never wrapped and overlap or run off the figure when long.
        for (j, name) in col_names.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(j as f64, -0.5));
            let half = CELL.0 as i32 / 2;
            draw_fitted(root, name, (x - half, x + half), y + 6, Align::Center, BLACK)?;
        }
        for (i, name) in row_names.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(-0.5, (r - 1 - i) as f64));
            let top = y - name.height() as i32 / 2;
            draw_fitted(root, name, (x - 8 - row_room as i32, x - 8), top, Align::Right, BLACK)?;
        }
        let center = Pos::new(HPos::Center, VPos::Center);
        for (i, row) in values.iter().enumerate() {
            let y = (r - 1 - i) as f64;
            for (j, v) in row.iter().enumerate() {
                let x = j as f64;
                let cell = [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)];
                let t = |v: f64| (v - range.0) / (range.1 - range.0);
                let fill = match v {
                    None => RGBColor(210, 210, 210),
                    Some(v) if !v.is_finite() => NON_FINITE_COLOR,
                    Some(v) => scale(t(*v)),
                };
                chart.draw_series(std::iter::once(Rectangle::new(cell, fill.filled())))?;
                chart.draw_series(std::iter::once(Rectangle::new(cell, WHITE.stroke_width(1))))?;
                let text = v.map_or_else(|| "none".to_owned(), short_number);
                // White on dark cells, black on light ones (relative luminance).
                let RGBColor(r8, g8, b8) = fill;
                let luma = 0.2126 * f64::from(r8) + 0.7152 * f64::from(g8) + 0.0722 * f64::from(b8);
                let ink = if luma < 110.0 { WHITE } else { BLACK };
                let size = text::one_line_size(&text, CELL.0 - 10, 15.0);
                let style = TextStyle::from((FAMILY, size).into_font()).color(&ink).pos(center);
                chart.draw_series(std::iter::once(Text::new(text, (x, y), style)))?;
            }
        }
        color_bar(&bar, range, label, scale)?;
        Ok(())
    })
}
