//! Legends drawn beside the data (in a row under a title, or in a column beside a chart), never
//! over it, and the marker shapes that figures and their legends share.

use plotters::prelude::*;

use super::text::{Align, Fitted, draw_fitted, fit_text, line_height};
use super::{Area, Chart2d, DrawResult};

/// The shape of a marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Circle,
    Triangle,
    Square,
    Diamond,
}

/// A marker: shape, radius in pixels, fill, and edge color.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct MarkerStyle {
    pub(crate) shape: Shape,
    pub(crate) radius: i32,
    pub(crate) fill: RGBColor,
    pub(crate) edge: RGBColor,
    /// The width of the edge, in pixels.
    pub(crate) edge_width: u32,
}

impl MarkerStyle {
    /// The polygon of a non-circular shape, in pixels around its center.
    fn outline(&self) -> Vec<(i32, i32)> {
        let r = self.radius;
        match self.shape {
            Shape::Triangle => vec![(0, -r - 1), (r + 1, r - 1), (-r - 1, r - 1)],
            Shape::Square => vec![(-r, -r), (r, -r), (r, r), (-r, r)],
            Shape::Diamond => vec![(0, -r - 1), (r + 1, 0), (0, r + 1), (-r - 1, 0)],
            Shape::Circle => Vec::new(),
        }
    }
}

/// Draws `marker` at `at` (pixel coordinates of `area`).
pub(crate) fn draw_marker_px(area: &Area<'_>, at: (i32, i32), marker: &MarkerStyle) -> DrawResult {
    let r = marker.radius;
    if marker.shape == Shape::Circle {
        area.draw(&Circle::new(at, r, marker.fill.filled()))?;
        area.draw(&Circle::new(at, r, marker.edge.stroke_width(marker.edge_width)))?;
        return Ok(());
    }
    let outline = marker.outline();
    let shifted: Vec<(i32, i32)> = outline.iter().map(|(x, y)| (at.0 + x, at.1 + y)).collect();
    area.draw(&Polygon::new(shifted.clone(), marker.fill.filled()))?;
    let mut closed = shifted;
    closed.push(closed[0]);
    area.draw(&PathElement::new(closed, marker.edge.stroke_width(marker.edge_width)))?;
    Ok(())
}

/// Draws `marker` at the data coordinates `at` of `chart`.
pub(crate) fn draw_marker(
    chart: &mut Chart2d<'_, '_>,
    at: (f64, f64),
    marker: &MarkerStyle,
) -> DrawResult {
    let r = marker.radius;
    if marker.shape == Shape::Circle {
        chart.draw_series(std::iter::once(Circle::new(at, r, marker.fill.filled())))?;
        chart.draw_series(std::iter::once(Circle::new(
            at,
            r,
            marker.edge.stroke_width(marker.edge_width),
        )))?;
        return Ok(());
    }
    let outline = marker.outline();
    chart.draw_series(std::iter::once(
        EmptyElement::at(at) + Polygon::new(outline.clone(), marker.fill.filled()),
    ))?;
    let mut closed = outline;
    closed.push(closed[0]);
    chart.draw_series(std::iter::once(
        EmptyElement::at(at)
            + PathElement::new(closed, marker.edge.stroke_width(marker.edge_width)),
    ))?;
    Ok(())
}

/// What a legend entry shows beside its label.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Swatch {
    /// A line of this color and width.
    Line(RGBColor, u32),
    /// A shaded band (with its mean line) of this color.
    Band(RGBColor),
    /// A marker.
    Marker(MarkerStyle),
}

/// One entry of a legend.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub(crate) label: String,
    pub(crate) swatch: Swatch,
}

impl Entry {
    pub(crate) fn new(label: impl Into<String>, swatch: Swatch) -> Entry {
        Entry { label: label.into(), swatch }
    }
}

/// The text size of legends.
pub(crate) const LEGEND_SIZE: f64 = 14.0;
const SWATCH: i32 = 26;
const GAP: i32 = 6;
const SPACING: i32 = 18;

fn draw_swatch(area: &Area<'_>, swatch: &Swatch, (x, y): (i32, i32)) -> DrawResult {
    match swatch {
        Swatch::Line(color, width) => {
            area.draw(&PathElement::new(
                vec![(x, y), (x + SWATCH, y)],
                color.stroke_width(*width),
            ))?;
        }
        Swatch::Band(color) => {
            area.draw(&Rectangle::new(
                [(x, y - 6), (x + SWATCH, y + 6)],
                color.mix(0.25).filled(),
            ))?;
            area.draw(&PathElement::new(vec![(x, y), (x + SWATCH, y)], color.stroke_width(2)))?;
        }
        Swatch::Marker(m) => draw_marker_px(area, (x + SWATCH / 2, y), m)?,
    }
    Ok(())
}

/// Entries laid out in rows across `width`: `(x, y, fitted label)` of each, and the height.
fn layout_rows(entries: &[Entry], width: u32) -> (Vec<(i32, i32, Fitted)>, u32) {
    let room = (width as i32 - SWATCH - GAP - 8).max(20) as u32;
    let mut placed = Vec::new();
    let (mut x, mut y, mut row_height) = (4, 0, 0);
    for e in entries {
        let label = fit_text(&e.label, room, u32::MAX, LEGEND_SIZE);
        let w = SWATCH + GAP + label.width() as i32;
        if x > 4 && x + w > width as i32 - 4 {
            x = 4;
            y += row_height + 4;
            row_height = 0;
        }
        row_height = row_height.max(label.height() as i32);
        placed.push((x, y, label));
        x += w + SPACING;
    }
    (placed, if entries.is_empty() { 0 } else { (y + row_height + 6) as u32 })
}

/// The height [`draw_rows`] needs for `entries` across `width` pixels.
pub(crate) fn rows_height(entries: &[Entry], width: u32) -> u32 {
    layout_rows(entries, width).1
}

/// Draws `entries` in rows, left to right, wrapping to the area's width.
pub(crate) fn draw_rows(area: &Area<'_>, entries: &[Entry]) -> DrawResult {
    let (width, _) = area.dim_in_pixel();
    let (placed, _) = layout_rows(entries, width);
    for ((x, y, label), e) in placed.iter().zip(entries) {
        let mid = y + line_height(label.size) as i32 / 2;
        draw_swatch(area, &e.swatch, (*x, mid))?;
        let left = x + SWATCH + GAP;
        draw_fitted(area, label, (left, width as i32), *y, Align::Left, BLACK)?;
    }
    Ok(())
}

/// Draws `entries` one under another from the top of `area`; those that do not fit are
/// summarized in a last line (`... and 12 more`).
pub(crate) fn draw_column(area: &Area<'_>, entries: &[Entry]) -> DrawResult {
    let (width, height) = area.dim_in_pixel();
    let room = (width as i32 - SWATCH - GAP - 8).max(20) as u32;
    let labels: Vec<Fitted> =
        entries.iter().map(|e| fit_text(&e.label, room, u32::MAX, LEGEND_SIZE)).collect();
    let more_height = line_height(LEGEND_SIZE) as i32 + 4;
    let mut y = 4;
    for (k, (e, label)) in entries.iter().zip(&labels).enumerate() {
        let h = label.height() as i32 + 4;
        let rest_fits =
            labels[k..].iter().map(|l| l.height() as i32 + 4).sum::<i32>() + y <= height as i32;
        if !rest_fits && y + h + more_height > height as i32 {
            let more = fit_text(
                &format!("... and {} more", entries.len() - k),
                width.saturating_sub(8).max(1),
                u32::MAX,
                LEGEND_SIZE,
            );
            draw_fitted(area, &more, (4, width as i32 - 4), y, Align::Left, BLACK)?;
            return Ok(());
        }
        let mid = y + line_height(label.size) as i32 / 2;
        draw_swatch(area, &e.swatch, (4, mid))?;
        draw_fitted(area, label, (4 + SWATCH + GAP, width as i32 - 4), y, Align::Left, BLACK)?;
        y += h;
    }
    Ok(())
}
