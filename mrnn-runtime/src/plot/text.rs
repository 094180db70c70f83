//! Text that fits: widths measured with the bundled font, and titles, captions and labels shrunk
//! or wrapped to the space they are given, so that no text of a figure is ever cut off.
//!
//! ```
//! use mrnn_runtime::plot::text::{fit_text, text_width};
//! let title = "Jacobian eigenvalues of a_region_with_a_very_long_name (others held fixed)";
//! let fitted = fit_text(title, 300, u32::MAX, 22.0);
//! // Every line fits in 300 pixels, at a size the font can still be read at.
//! assert!(fitted.lines.len() > 1 && fitted.size >= 8.0);
//! assert!(fitted.lines.iter().all(|line| text_width(line, fitted.size) <= 300));
//! ```

use std::sync::Once;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{Area, DrawResult};

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");
static REGISTER: Once = Once::new();

/// The family name every figure uses: the bundled font.
pub(crate) const FAMILY: &str = "sans-serif";

/// The smallest size text is shrunk to before it is wrapped onto more lines.
const MIN_SIZE: f64 = 9.0;

pub(crate) fn register_font() {
    REGISTER.call_once(|| {
        // Cannot fail for the bundled font (a test registers it); if it ever did, text would be
        // missing from figures but drawing would still succeed.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

/// The width in pixels of `text` on one line at `size` pixels, measured with the bundled font
/// (the sum of the glyphs' advances and kerning, plus a pixel of antialiasing on each side).
#[must_use]
pub fn text_width(text: &str, size: f64) -> u32 {
    register_font();
    if text.is_empty() {
        return 0;
    }
    let font = (FAMILY, size).into_font();
    match font.layout_box(text) {
        Ok(((x0, _), (x1, _))) => (x1 - x0).unsigned_abs() + 2,
        // Without the font, a generous estimate (wider than any glyph of DejaVu Sans).
        Err(_) => (text.chars().count() as f64 * size * 0.7).ceil() as u32,
    }
}

/// The distance between the tops of two lines of text at `size` pixels.
#[must_use]
pub fn line_height(size: f64) -> u32 {
    (size * 1.25).ceil() as u32
}

/// Text laid out to fit a box: its size in pixels and its lines.
#[derive(Clone, Debug, PartialEq)]
pub struct Fitted {
    /// The font size, in pixels.
    pub size: f64,
    /// The lines, top to bottom.
    pub lines: Vec<String>,
}

impl Fitted {
    /// The height of the lines, in pixels.
    #[must_use]
    pub fn height(&self) -> u32 {
        line_height(self.size) * self.lines.len() as u32
    }

    /// The width of the widest line, in pixels.
    #[must_use]
    pub fn width(&self) -> u32 {
        self.lines.iter().map(|l| text_width(l, self.size)).max().unwrap_or(0)
    }
}

/// The smallest size text is ever drawn at: text that does not fit even at this size is elided.
const FLOOR_SIZE: f64 = 6.0;

/// Lays `text` out in at most `max_width` by `max_height` pixels at `size` pixels or less: on
/// one line when it fits (or fits shrunk to no less than 80%), else wrapped at spaces (long
/// words broken between characters) at the largest size whose lines fit both ways, 9 pixels or
/// more unless the box is too small for that. Only text that does not fit even at 6 pixels
/// (hundreds of characters in a label's box) is elided: as many lines as fit, the last ending
/// in `...`. No line is ever wider than `max_width` unless a single character is.
#[must_use]
pub fn fit_text(text: &str, max_width: u32, max_height: u32, size: f64) -> Fitted {
    let size = if size.is_finite() && size >= 1.0 { size.floor() } else { 12.0 };
    let text = text.trim();
    let width = text_width(text, size);
    if width <= max_width && line_height(size) <= max_height {
        return Fitted { size, lines: vec![text.to_owned()] };
    }
    // Shrinking a little reads better than wrapping.
    let shrunk = (size * f64::from(max_width) / f64::from(width.max(1))).floor();
    if shrunk >= (0.8 * size).max(MIN_SIZE.min(size))
        && text_width(text, shrunk) <= max_width
        && line_height(shrunk) <= max_height
    {
        return Fitted { size: shrunk, lines: vec![text.to_owned()] };
    }
    let floor = FLOOR_SIZE.min(size);
    let mut s = size;
    loop {
        // Lines can hold no more than the width: a size whose text needs more lines than fit
        // is passed over without wrapping it (long titles stay fast to fit).
        let at_least = text_width(text, s).div_ceil(max_width.max(1));
        if line_height(s).saturating_mul(at_least) > max_height && s > floor {
            s -= 1.0;
            continue;
        }
        let lines = wrap(text, max_width, s);
        if line_height(s) * lines.len() as u32 <= max_height {
            return Fitted { size: s, lines };
        }
        if s <= floor {
            return elide(lines, max_width, max_height, s);
        }
        s -= 1.0;
    }
}

/// The first lines of `lines` that fit in `max_height` (at least one), the last ending in `...`.
fn elide(mut lines: Vec<String>, max_width: u32, max_height: u32, size: f64) -> Fitted {
    let keep = ((max_height / line_height(size)) as usize).max(1);
    lines.truncate(keep);
    if let Some(last) = lines.last_mut() {
        while !last.is_empty() && text_width(&format!("{last}..."), size) > max_width {
            last.pop();
        }
        last.push_str("...");
    }
    Fitted { size, lines }
}

/// `text` broken into lines no wider than `max_width` at `size`: greedily at spaces, and words
/// wider than a line between characters.
fn wrap(text: &str, max_width: u32, size: f64) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let candidate =
            if current.is_empty() { word.to_owned() } else { format!("{current} {word}") };
        if text_width(&candidate, size) <= max_width {
            current = candidate;
            continue;
        }
        if !current.is_empty() {
            lines.push(std::mem::take(&mut current));
        }
        if text_width(word, size) <= max_width {
            word.clone_into(&mut current);
            continue;
        }
        // A word wider than a line: as many characters per line as fit (at least one). The
        // characters' own widths guess the break (linear in the word's length); one
        // measurement of the line corrects the guess for kerning.
        let chars: Vec<char> = word.chars().collect();
        let widths: Vec<u32> = chars
            .iter()
            .map(|c| text_width(c.encode_utf8(&mut [0; 4]), size).saturating_sub(2))
            .collect();
        let measure =
            |a: usize, b: usize| text_width(&chars[a..b].iter().collect::<String>(), size);
        let mut i = 0;
        while i < chars.len() {
            let (mut j, mut width) = (i, 2);
            while j < chars.len() && (j == i || width + widths[j] <= max_width) {
                width += widths[j];
                j += 1;
            }
            while j > i + 1 && measure(i, j) > max_width {
                j -= 1;
            }
            while j < chars.len() && measure(i, j + 1) <= max_width {
                j += 1;
            }
            current = chars[i..j].iter().collect();
            if j < chars.len() {
                lines.push(std::mem::take(&mut current));
            }
            i = j;
        }
    }
    if !current.is_empty() || lines.is_empty() {
        lines.push(current);
    }
    lines
}

/// Where a block of text sits horizontally in its box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Center,
    Right,
}

/// Draws `fitted` in the box `[x0, x1] x [y0, ..)` of `area` (pixel coordinates of `area`),
/// its lines aligned as asked, starting at `y0`.
pub(crate) fn draw_fitted(
    area: &Area<'_>,
    fitted: &Fitted,
    (x0, x1): (i32, i32),
    y0: i32,
    align: Align,
    color: RGBColor,
) -> DrawResult {
    let (x, h) = match align {
        Align::Left => (x0, HPos::Left),
        Align::Center => (i32::midpoint(x0, x1), HPos::Center),
        Align::Right => (x1, HPos::Right),
    };
    let style = TextStyle::from((FAMILY, fitted.size).into_font())
        .color(&color)
        .pos(Pos::new(h, VPos::Top));
    let step = line_height(fitted.size) as i32;
    // plotters puts the top of the text box above the capitals: lower each line by a third of
    // its size so that the ink sits in the middle of its line (measured on the bundled font).
    let shift = (0.35 * fitted.size).round() as i32;
    for (k, line) in fitted.lines.iter().enumerate() {
        area.draw(&Text::new(line.clone(), (x, y0 + shift + k as i32 * step), style.clone()))?;
    }
    Ok(())
}

/// The size of a figure's title.
const TITLE_SIZE: f64 = 22.0;
/// The size of the note under a title.
const NOTE_SIZE: f64 = 14.0;
/// The color of notes about the data (values not drawn).
pub(crate) const NOTE_COLOR: RGBColor = RGBColor(178, 24, 43);

/// The most a title may take: a title of thousands of characters is shrunk to fit here rather
/// than push the figure's content out.
const MAX_TITLE_HEIGHT: u32 = 240;

fn header_parts(width: u32, title: &str, note: Option<&str>) -> (Fitted, Option<Fitted>) {
    let room = width.saturating_sub(24).max(1);
    let title = fit_text(title, room, MAX_TITLE_HEIGHT, TITLE_SIZE);
    let note = note.map(|n| fit_text(n, room, u32::MAX, NOTE_SIZE));
    (title, note)
}

/// The height of the header [`header`] draws across `width` pixels.
pub(crate) fn header_height(width: u32, title: &str, note: Option<&str>) -> u32 {
    let (title, note) = header_parts(width, title, note);
    12 + title.height() + note.map_or(0, |n| 2 + n.height())
}

/// Draws a figure's title (and a note under it, in red, when some data could not be drawn),
/// fitted to the figure's width; returns the area below.
pub(crate) fn header<'a>(
    root: &Area<'a>,
    title: &str,
    note: Option<&str>,
) -> Result<Area<'a>, Box<dyn std::error::Error>> {
    let (width, _) = root.dim_in_pixel();
    let (fitted, note_fitted) = header_parts(width, title, note);
    let height = header_height(width, title, note);
    let (top, rest) = root.split_vertically(height);
    draw_fitted(&top, &fitted, (12, width as i32 - 12), 6, Align::Center, BLACK)?;
    if let Some(n) = &note_fitted {
        let y = 6 + fitted.height() as i32 + 2;
        draw_fitted(&top, n, (12, width as i32 - 12), y, Align::Center, NOTE_COLOR)?;
    }
    Ok(rest)
}

/// A caption over a panel: drawn fitted to the panel's width at `size` or smaller; returns the
/// area below it.
pub(crate) fn caption<'a>(
    area: &Area<'a>,
    text: &str,
    size: f64,
) -> Result<Area<'a>, Box<dyn std::error::Error>> {
    let (width, height) = area.dim_in_pixel();
    let room = width.saturating_sub(8).max(1);
    let fitted = fit_text(text, room, (height / 3).max(line_height(MIN_SIZE)), size);
    let (top, rest) = area.split_vertically(fitted.height() + 6);
    draw_fitted(&top, &fitted, (4, width as i32 - 4), 3, Align::Center, BLACK)?;
    Ok(rest)
}

/// The largest size, `size` at most, at which `text` fits on one line in `max_width` pixels
/// (for axis descriptions, which plotters draws on one line).
pub(crate) fn one_line_size(text: &str, max_width: u32, size: f64) -> f64 {
    let width = text_width(text, size);
    if width <= max_width {
        return size;
    }
    let mut s = (size * f64::from(max_width) / f64::from(width)).floor().max(4.0);
    while s > 4.0 && text_width(text, s) > max_width {
        s -= 1.0;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_font_parses() {
        assert!(plotters::style::register_font("test-font", FontStyle::Normal, FONT).is_ok());
    }

    #[test]
    fn widths_grow_with_text_and_size() {
        assert_eq!(text_width("", 14.0), 0);
        let (a, b) = (text_width("exc", 14.0), text_width("exc -> inhib", 14.0));
        assert!(a > 10 && b > 2 * a, "{a} {b}");
        assert!(text_width("exc", 28.0) > a + a / 2);
    }

    #[test]
    fn short_text_stays_on_one_line() {
        let f = fit_text("exc", 200, u32::MAX, 22.0);
        assert_eq!((f.size, f.lines.len()), (22.0, 1));
        // A little too wide: shrunk, not wrapped.
        let text = "mean rate of alm_exc";
        let w = text_width(text, 22.0);
        let f = fit_text(text, w - w / 10, u32::MAX, 22.0);
        assert_eq!(f.lines, [text]);
        assert!(f.size < 22.0 && f.width() <= w - w / 10);
    }

    #[test]
    fn long_text_wraps_and_never_exceeds_the_width() {
        let name = "a".repeat(120);
        for text in [
            "Jacobian eigenvalues of str (others held fixed)".to_owned(),
            format!("Jacobian eigenvalues of {name} (others held fixed)"),
            format!("{name}_{name}"),
        ] {
            for width in [60, 140, 300, 900] {
                let f = fit_text(&text, width, u32::MAX, 22.0);
                assert!(f.size >= MIN_SIZE, "{text:?} in {width}: size {}", f.size);
                for line in &f.lines {
                    assert!(text_width(line, f.size) <= width, "{line:?} in {width}");
                }
                // Nothing is lost: the words come back in order.
                assert_eq!(f.lines.concat().replace(' ', ""), text.replace(' ', ""));
            }
        }
    }

    #[test]
    fn text_that_cannot_fit_even_tiny_is_elided_visibly() {
        let name = "x".repeat(5000);
        let f = fit_text(&name, 160, 56, 14.0);
        assert!((f.size - FLOOR_SIZE).abs() < 1e-12, "{}", f.size);
        assert!(f.height() <= 56 && f.lines.iter().all(|l| text_width(l, f.size) <= 160));
        assert!(f.lines.last().unwrap().ends_with("..."));
    }

    #[test]
    fn a_low_box_shrinks_the_text_until_the_lines_fit() {
        let text = "current into alm_inhib from every source and input region over time";
        let f = fit_text(text, 120, 40, 22.0);
        assert!(f.height() <= 40, "{f:?}");
        assert!(f.lines.iter().all(|l| text_width(l, f.size) <= 120));
    }

    #[test]
    fn one_line_sizes_fit() {
        let text = "log10 mean |current| into the region";
        assert!((one_line_size("x", 100, 14.0) - 14.0).abs() < 1e-12);
        let s = one_line_size(text, 120, 14.0);
        assert!(s < 14.0 && text_width(text, s) <= 120);
    }

    #[test]
    fn drawn_text_stays_in_its_box() {
        for size in [9.0, 11.0, 14.0, 22.0] {
            let f = fit_text("Hdgy exc -> alm_inhib (input) |Q| [0]", 120, u32::MAX, size);
            let png = crate::plot::render((240, 240), |root| {
                draw_fitted(root, &f, (40, 160), 30, Align::Left, BLACK)
            })
            .unwrap();
            let image = image::load_from_memory(&png).unwrap().to_rgb8();
            let ink: Vec<(u32, u32)> = image
                .enumerate_pixels()
                .filter(|(_, _, p)| p.0 != [255, 255, 255])
                .map(|(x, y, _)| (x, y))
                .collect();
            let (x0, x1) =
                (ink.iter().map(|p| p.0).min().unwrap(), ink.iter().map(|p| p.0).max().unwrap());
            let (y0, y1) =
                (ink.iter().map(|p| p.1).min().unwrap(), ink.iter().map(|p| p.1).max().unwrap());
            assert!(x0 >= 40 && x1 <= 160, "size {size}: columns {x0}..{x1}");
            assert!(
                y0 >= 30 && y1 < 30 + f.height(),
                "size {size}: rows {y0}..{y1} of {}",
                f.height()
            );
        }
    }
}
