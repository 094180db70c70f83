//! The time course of each source -> target current ([`current_grid_figure`]): a grid with one
//! row per target region and one column per source (region or input), as in CURBD's figures.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::activity::{TimeCourse, band_runs};
use super::legend::{self, Entry, MarkerStyle, Shape, Swatch};
use super::text::{self, Align, FAMILY, draw_fitted, fit_text};
use super::{
    Area, DrawResult, category_color, draw_polyline_px, figure, finite_runs, nice_ticks,
    non_finite_note, padded_range, tick_label,
};
use crate::analysis::Currents;
use crate::{Error, Result};

/// The currents of [`current_grid_figure`]: `cells[target][source]` is the time course of the
/// current the target's units receive from the source (mean and spread over the target's units
/// and the trials), `None` when the source does not project to the target.
#[derive(Clone, Debug, PartialEq)]
pub struct CurrentGrid {
    /// The receiving regions (rows).
    pub targets: Vec<String>,
    /// The sending regions and inputs (columns).
    pub sources: Vec<String>,
    /// The time courses, by target, then source.
    pub cells: Vec<Vec<Option<TimeCourse>>>,
}

/// The grid of `currents`' time courses, averaged over all dimensions but `time_dim` (1 for
/// [`crate::analysis::currents_of_run`] on a batch-first network, 0 on a time-first one); input
/// sources are named `name (input)`.
pub fn current_grid(currents: &Currents, time_dim: usize) -> Result<CurrentGrid> {
    let cells = currents
        .time_courses
        .iter()
        .map(|row| {
            row.iter()
                .map(|c| c.as_ref().map(|c| TimeCourse::of_tensor(c, time_dim)).transpose())
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(CurrentGrid {
        targets: currents.targets.clone(),
        sources: currents
            .sources
            .iter()
            .map(|s| if s.input { format!("{} (input)", s.name) } else { s.name.clone() })
            .collect(),
        cells,
    })
}

/// Rows and columns drawn at most by [`current_grid_figure`].
const MAX_SIDE: usize = 48;
const NAME_SIZE: f64 = 14.0;
const TICK_SIZE: f64 = 11.0;
const NOT_CONNECTED: RGBColor = RGBColor(236, 236, 236);

/// The time course of each source -> target current: one row per target, one column per
/// source that projects to any of them (at most 48 of each; the title says what was left
/// out), each cell the mean current into the target's units (one color per source) with a band
/// of one standard deviation over units and trials, and a zero line. Cells of a row share
/// their vertical scale, so that one reads which source drives a target; unconnected pairs are
/// left gray. Cells are 180 x 120 pixels for a few regions, down to 90 x 64 for many; names are
/// wrapped or shrunk to their cells. `time` gives the horizontal coordinate of each step
/// (empty: the step index). Values that are not finite are left out and counted in a note.
///
/// ```
/// use mrnn_runtime::plot::{self, CurrentGrid, TimeCourse};
/// let path = std::env::temp_dir().join(format!("mrnn-doc-grid-{}.png", std::process::id()));
/// let wave = |a: f64| TimeCourse {
///     mean: (0..40).map(|t| a * (f64::from(t) / 6.0).sin()).collect(),
///     sd: vec![0.1; 40],
/// };
/// let grid = CurrentGrid {
///     targets: vec!["exc".into(), "inh".into()],
///     sources: vec!["exc".into(), "inh".into(), "stim (input)".into()],
///     cells: vec![
///         vec![Some(wave(1.0)), Some(wave(-0.5)), Some(wave(0.3))],
///         vec![Some(wave(0.8)), None, None],
///     ],
/// };
/// plot::current_grid_figure(&path, "currents over time", &grid, &[], "step")?;
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), mrnn_runtime::Error>(())
/// ```
pub fn current_grid_figure(
    path: &Path,
    title: &str,
    grid: &CurrentGrid,
    time: &[f64],
    x_label: &str,
) -> Result<()> {
    check_grid(grid, time)
        .map_err(|what| Error::Invalid(format!("cannot draw `{}`: {what}", path.display())))?;
    let (rows, cols, title) = shown(grid, title);
    let skipped: usize = rows
        .iter()
        .flat_map(|&t| cols.iter().filter_map(move |&s| grid.cells[t][s].as_ref()))
        .map(TimeCourse::non_finite)
        .sum();
    let note = non_finite_note(skipped);

    let cell = cell_size(rows.len(), cols.len());
    let row_room = rows
        .iter()
        .map(|&t| text::text_width(&grid.targets[t], NAME_SIZE))
        .max()
        .unwrap_or(0)
        .clamp(40, 170);
    let tick_room = 50;
    let left = row_room + tick_room + 14;
    let row_names: Vec<_> =
        rows.iter().map(|&t| fit_text(&grid.targets[t], row_room, cell.1 - 4, NAME_SIZE)).collect();
    let col_names: Vec<_> =
        cols.iter().map(|&s| fit_text(&grid.sources[s], cell.0 - 10, 56, NAME_SIZE)).collect();
    let top = col_names.iter().map(text::Fitted::height).max().unwrap_or(0) + 10;
    let bottom = 50;
    let width = (left + cell.0 * cols.len() as u32 + 16).max(520);
    let mut entries = vec![
        Entry::new(
            "mean current into the target's units, ± 1 s.d. over units and trials (band)",
            Swatch::Band(RGBColor(90, 90, 90)),
        ),
        Entry::new(
            "not connected",
            Swatch::Marker(MarkerStyle {
                shape: Shape::Square,
                radius: 7,
                fill: NOT_CONNECTED,
                edge: RGBColor(190, 190, 190),
                edge_width: 1,
            }),
        ),
    ];
    let unconnected = rows.iter().any(|&t| cols.iter().any(|&s| grid.cells[t][s].is_none()));
    if !unconnected {
        entries.pop();
    }
    let key_height = legend::rows_height(&entries, width - 24);
    let height = text::header_height(width, &title, note.as_deref())
        + key_height
        + top
        + cell.1 * rows.len() as u32
        + bottom;
    let x_of = |t: usize| time.get(t).copied().unwrap_or(t as f64);
    let steps = grid.cells.iter().flatten().flatten().map(TimeCourse::len).max().unwrap_or(0);
    let (x0, x1) = if steps > 1 { (x_of(0), x_of(steps - 1)) } else { padded_range([x_of(0)]) };
    let (x0, x1) =
        if x0.is_finite() && x1.is_finite() && x1 > x0 { (x0, x1) } else { padded_range([x0, x1]) };

    figure(path, (width, height), |root| {
        let body = text::header(root, &title, note.as_deref())?;
        let (key, body) = body.split_vertically(key_height);
        legend::draw_rows(&key.margin(0, 0, 12, 12), &entries)?;
        let layout = Layout {
            left: left as i32,
            top: top as i32,
            cell: (cell.0 as i32, cell.1 as i32),
            x: (x0, x1),
        };
        for (j, name) in col_names.iter().enumerate() {
            let (cx0, _) = layout.cell_origin(0, j);
            draw_fitted(&body, name, (cx0 + 4, cx0 + cell.0 as i32 - 4), 4, Align::Center, BLACK)?;
        }
        for (i, &t) in rows.iter().enumerate() {
            let row: Vec<Option<&TimeCourse>> =
                cols.iter().map(|&s| grid.cells[t][s].as_ref()).collect();
            let values =
                row.iter().flatten().flat_map(|c| c.band_values().chain(c.mean.iter().copied()));
            let y = padded_range(values.chain([0.0]));
            let (_, cy0) = layout.cell_origin(i, 0);
            let name = &row_names[i];
            let name_top = cy0 + (cell.1 as i32 - name.height() as i32) / 2;
            draw_fitted(&body, name, (8, 8 + row_room as i32), name_top, Align::Right, BLACK)?;
            draw_row_ticks(&body, &layout, i, y)?;
            for (j, course) in row.iter().enumerate() {
                let color = category_color(j, cols.len());
                draw_cell(&body, &layout, (i, j), *course, y, color, &x_of)?;
            }
        }
        draw_time_ticks(&body, &layout, rows.len(), cols.len(), x_label)?;
        Ok(())
    })
}

/// The size of a cell: smaller as the grid grows, so that 48 x 48 cells stay under 5000
/// pixels a side.
fn cell_size(rows: usize, cols: usize) -> (u32, u32) {
    let width = match cols {
        0..=6 => 180,
        7..=12 => 140,
        13..=24 => 110,
        _ => 90,
    };
    let height = match rows {
        0..=6 => 120,
        7..=12 => 96,
        13..=24 => 80,
        _ => 64,
    };
    (width, height)
}

/// Why `grid` cannot be drawn against `time`, if it cannot.
fn check_grid(grid: &CurrentGrid, time: &[f64]) -> std::result::Result<(), String> {
    let (nt, ns) = (grid.targets.len(), grid.sources.len());
    if nt == 0 || ns == 0 {
        return Err(format!("a current grid needs targets and sources, got {nt} and {ns}"));
    }
    if grid.cells.len() != nt || grid.cells.iter().any(|r| r.len() != ns) {
        return Err(format!("the cells do not match the {nt} targets and {ns} sources"));
    }
    let courses = || grid.cells.iter().flatten().flatten();
    let steps = courses().map(TimeCourse::len).max().unwrap_or(0);
    if courses().any(|c| c.len() != steps || c.sd.len() != steps)
        || (!time.is_empty() && steps > 0 && time.len() != steps)
    {
        return Err(format!(
            "every time course needs the same number of steps{}",
            if time.is_empty() { String::new() } else { format!(" ({} times)", time.len()) }
        ));
    }
    Ok(())
}

/// The rows (targets) and columns (sources that project to any of them, or all when none
/// does) drawn, at most 48 of each, and the title saying what was left out.
fn shown(grid: &CurrentGrid, title: &str) -> (Vec<usize>, Vec<usize>, String) {
    let (nt, ns) = (grid.targets.len(), grid.sources.len());
    let rows: Vec<usize> = (0..nt.min(MAX_SIDE)).collect();
    let connected: Vec<usize> =
        (0..ns).filter(|&s| rows.iter().any(|&t| grid.cells[t][s].is_some())).collect();
    let listed = if connected.is_empty() { (0..ns).collect() } else { connected };
    let cols: Vec<usize> = listed.iter().copied().take(MAX_SIDE).collect();
    let mut title = title.to_owned();
    if nt > rows.len() {
        let _ = write!(title, " (first {} of {nt} targets)", rows.len());
    }
    if listed.len() > cols.len() {
        let _ = write!(title, " (first {} of {} sources)", cols.len(), listed.len());
    }
    (rows, cols, title)
}

/// Where the cells are in the figure's body, in pixels, and the horizontal range.
struct Layout {
    left: i32,
    top: i32,
    cell: (i32, i32),
    x: (f64, f64),
}

/// Padding inside a cell, around its plot: wider between rows, where the tick labels of one
/// row's bottom and the next row's top would otherwise touch.
const PAD: (i32, i32) = (4, 7);

impl Layout {
    fn cell_origin(&self, i: usize, j: usize) -> (i32, i32) {
        (self.left + j as i32 * self.cell.0, self.top + i as i32 * self.cell.1)
    }

    /// The plot's rectangle in cell `(i, j)`: `(x0, y0, x1, y1)`.
    fn plot_rect(&self, i: usize, j: usize) -> (i32, i32, i32, i32) {
        let (cx, cy) = self.cell_origin(i, j);
        (cx + PAD.0, cy + PAD.1, cx + self.cell.0 - PAD.0, cy + self.cell.1 - PAD.1)
    }

    fn map(&self, rect: (i32, i32, i32, i32), y: (f64, f64), (xv, yv): (f64, f64)) -> (i32, i32) {
        let (px0, py0, px1, py1) = rect;
        let fx = (xv - self.x.0) / (self.x.1 - self.x.0);
        let fy = (yv - y.0) / (y.1 - y.0);
        (
            px0 + (fx * f64::from(px1 - px0)).round() as i32,
            py1 - (fy * f64::from(py1 - py0)).round() as i32,
        )
    }
}

fn draw_cell(
    area: &Area<'_>,
    layout: &Layout,
    (i, j): (usize, usize),
    course: Option<&TimeCourse>,
    y: (f64, f64),
    color: RGBColor,
    x_of: &dyn Fn(usize) -> f64,
) -> DrawResult {
    let rect = layout.plot_rect(i, j);
    let (px0, py0, px1, py1) = rect;
    let Some(c) = course else {
        area.draw(&Rectangle::new([(px0, py0), (px1, py1)], NOT_CONNECTED.filled()))?;
        return Ok(());
    };
    area.draw(&Rectangle::new([(px0, py0), (px1, py1)], RGBColor(190, 190, 190).stroke_width(1)))?;
    let to_px = |p: (f64, f64)| layout.map(rect, y, p);
    if y.0 < 0.0 && y.1 > 0.0 {
        area.draw(&PathElement::new(
            vec![to_px((layout.x.0, 0.0)), to_px((layout.x.1, 0.0))],
            RGBColor(150, 150, 150).stroke_width(1),
        ))?;
    }
    let band = (0..c.len()).map(|t| (x_of(t), c.mean[t], c.sd[t]));
    for run in band_runs(band) {
        let mut outline: Vec<(i32, i32)> = run.iter().map(|&(x, m, s)| to_px((x, m + s))).collect();
        outline.extend(run.iter().rev().map(|&(x, m, s)| to_px((x, m - s))));
        if let [(x, m, s)] = run[..] {
            // One time: the band is an error bar.
            let bar = vec![to_px((x, m - s)), to_px((x, m + s))];
            area.draw(&PathElement::new(bar, color.mix(0.4).stroke_width(3)))?;
        } else {
            area.draw(&Polygon::new(outline, color.mix(0.25).filled()))?;
        }
    }
    for run in finite_runs(c.mean.iter().enumerate().map(|(t, &v)| (x_of(t), v))) {
        let points: Vec<(i32, i32)> = run.into_iter().map(to_px).collect();
        draw_polyline_px(area, &points, color.stroke_width(2))?;
    }
    Ok(())
}

fn draw_row_ticks(area: &Area<'_>, layout: &Layout, i: usize, y: (f64, f64)) -> DrawResult {
    let rect = layout.plot_rect(i, 0);
    let count = if layout.cell.1 >= 96 { 4 } else { 3 };
    let ticks = nice_ticks(y.0, y.1, count);
    let step = if ticks.len() > 1 { ticks[1] - ticks[0] } else { 0.0 };
    for v in ticks {
        let (x, py) = layout.map(rect, y, (layout.x.0, v));
        area.draw(&PathElement::new(vec![(x - 4, py), (x, py)], BLACK.stroke_width(1)))?;
        let label = tick_label(v, step);
        // Long labels (1.5e-7) shrink into the tick column rather than run into the names.
        let size = text::one_line_size(&label, 44, TICK_SIZE);
        let style =
            TextStyle::from((FAMILY, size).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
        area.draw(&Text::new(label, (x - 6, py), style))?;
    }
    Ok(())
}

fn draw_time_ticks(
    area: &Area<'_>,
    layout: &Layout,
    rows: usize,
    cols: usize,
    x_label: &str,
) -> DrawResult {
    if rows == 0 {
        return Ok(());
    }
    let count = if layout.cell.0 >= 140 { 4 } else { 2 };
    let ticks = nice_ticks(layout.x.0, layout.x.1, count);
    let step = if ticks.len() > 1 { ticks[1] - ticks[0] } else { 0.0 };
    let style =
        TextStyle::from((FAMILY, TICK_SIZE).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for j in 0..cols {
        let rect = layout.plot_rect(rows - 1, j);
        for &v in &ticks {
            let (px, py) = layout.map(rect, (0.0, 1.0), (v, 0.0));
            area.draw(&PathElement::new(vec![(px, py), (px, py + 4)], BLACK.stroke_width(1)))?;
            area.draw(&Text::new(tick_label(v, step), (px, py + 6), style.clone()))?;
        }
    }
    let (x0, _) = layout.cell_origin(0, 0);
    let (x1, y) = layout.cell_origin(rows, cols);
    let label = fit_text(x_label, (x1 - x0).max(20) as u32, 40, 14.0);
    draw_fitted(area, &label, (x0, x1), y + 24, Align::Center, BLACK)?;
    Ok(())
}
