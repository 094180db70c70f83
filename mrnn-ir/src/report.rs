//! Reports: the diagnostics of one source file, in source order, rendered rustc-style with the
//! file name, line, column, JSON path and a caret under the offending text, for the CLI and for
//! errors returned by the run-time (JSON) front door.
//!
//! Output stays proportional to what is shown, never to the input: at most [`MAX_SHOWN`]
//! diagnostics are rendered (the rest are counted), and a source line or a message longer than
//! [`MAX_SHOWN_CHARS`] is shown elided around the caret (a one-line config with thousands of
//! errors would otherwise print the whole line once per error).

use std::cell::OnceCell;
use std::fmt;

use crate::diag::{Diagnostic, Loc, MAX_SHOWN_CHARS, Severity, elide, pointer_to_path, thousands};
use crate::json_map::{JsonMap, line_column};

/// The most diagnostics a report renders; the others are counted in one line
/// (`... and 4,990 more errors`).
pub const MAX_SHOWN: usize = 10;

/// A resolved position in a source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub column: usize,
    /// Characters to underline (at least 1).
    pub len: usize,
    /// For JSON: the path of the value, as in `recurrent_connections[3].src_region`.
    pub path: Option<String>,
}

/// Every diagnostic of one source (a JSON config, a Rust file, or a network built in code), in
/// source order.
#[derive(Debug, Default)]
pub struct Report {
    /// File name as shown to the user (may be empty for in-memory input).
    pub file: String,
    /// The source text (empty when there is none).
    pub text: String,
    /// Errors and warnings in the order they were found.
    pub diagnostics: Vec<Diagnostic>,
    // Boxed: built only when a JSON diagnostic is rendered, and keeps `Report` small in `Err`s.
    json_map: OnceCell<Box<JsonMap>>,
}

impl Clone for Report {
    fn clone(&self) -> Self {
        Report::new(self.file.clone(), self.text.clone(), self.diagnostics.clone())
    }
}

impl Report {
    /// A report over `text` read from `file`.
    #[must_use]
    pub fn new(
        file: impl Into<String>,
        text: impl Into<String>,
        mut diagnostics: Vec<Diagnostic>,
    ) -> Report {
        let mut report = Report {
            file: file.into(),
            text: text.into(),
            diagnostics: Vec::new(),
            json_map: OnceCell::new(),
        };
        sort_in_source_order(&mut diagnostics, Some(&report));
        report.diagnostics = diagnostics;
        report
    }

    fn json_map(&self) -> &JsonMap {
        self.json_map.get_or_init(|| Box::new(JsonMap::build(&self.text)))
    }

    /// A report with a single error and no source position (unreadable file, say).
    #[must_use]
    pub fn single_error(file: impl Into<String>, message: impl Into<String>) -> Report {
        Report::new(file, String::new(), vec![Diagnostic::error(Loc::Unknown, message)])
    }

    /// Whether any diagnostic is an error.
    #[must_use]
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Error)
    }

    /// Number of errors.
    #[must_use]
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error).count()
    }

    /// Number of warnings.
    #[must_use]
    pub fn warning_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Warning).count()
    }

    /// Where a location is in this report's text.
    #[must_use]
    pub fn position(&self, loc: &Loc) -> Option<Position> {
        match loc {
            Loc::Unknown => None,
            Loc::JsonText { line, column } => {
                Some(Position { line: *line, column: *column, len: 1, path: None })
            }
            Loc::Json { pointer, key } => {
                let offset = self.json_map().offset(pointer, *key)?;
                let (line, column) = line_column(&self.text, offset);
                Some(Position {
                    line,
                    column,
                    len: json_token_len(&self.text[offset..]),
                    path: Some(pointer_to_path(pointer)),
                })
            }
            Loc::Tokens { start, end } => span_position(*start, *end),
        }
    }

    /// `file:line:column` (and the JSON path) of a location, for one-line messages.
    #[must_use]
    pub fn describe_location(&self, loc: &Loc) -> Option<String> {
        let p = self.position(loc)?;
        let path = p.path.map(|path| format!(" ({path})")).unwrap_or_default();
        Some(format!("{}:{}:{}{path}", self.file, p.line, p.column))
    }

    /// Renders one diagnostic rustc-style: the message, its place with the source line (elided
    /// around the caret when long), its help, and its note with the note's place.
    #[must_use]
    pub fn render_one(&self, d: &Diagnostic) -> String {
        use fmt::Write;
        let level = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut out = format!("{level}: {}\n", elide(&d.message, 4 * MAX_SHOWN_CHARS));
        let help = d.help.as_ref().map(|h| elide(h, 4 * MAX_SHOWN_CHARS));
        match self.position(&d.loc) {
            Some(p) => {
                let pad = self.render_place(&mut out, &p);
                if let Some(help) = &help {
                    let _ = writeln!(out, "{pad} = help: {help}");
                }
            }
            None => {
                if !self.file.is_empty() {
                    let _ = writeln!(out, "  --> {}", self.file);
                }
                if let Some(help) = &help {
                    let _ = writeln!(out, "  = help: {help}");
                }
            }
        }
        if let Some(note) = &d.note {
            let _ = writeln!(out, "note: {} here", elide(&note.message, 4 * MAX_SHOWN_CHARS));
            if let Some(p) = self.position(&note.loc) {
                self.render_place(&mut out, &p);
            }
        }
        out
    }

    /// Writes ` --> file:line:col (path)` and the source line with a caret under the place;
    /// returns the gutter's padding.
    fn render_place(&self, out: &mut String, p: &Position) -> String {
        use fmt::Write;
        let gutter = p.line.to_string().len();
        let pad = " ".repeat(gutter);
        let path = p
            .path
            .as_ref()
            .map(|path| format!(" ({})", elide(path, MAX_SHOWN_CHARS)))
            .unwrap_or_default();
        let _ = writeln!(out, "{pad}--> {}:{}:{}{path}", self.file, p.line, p.column);
        if let Some(line) = self.text.lines().nth(p.line.saturating_sub(1)) {
            let (shown, column, len) = snippet(line, p.column, p.len);
            let caret_pad: String = shown
                .chars()
                .take(column - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{} | {shown}", p.line);
            let _ = writeln!(out, "{pad} | {caret_pad}{}", "^".repeat(len.max(1)));
        }
        pad
    }

    /// One line per diagnostic: `file:line:col: error: message` (for logs and error chains), at
    /// most [`MAX_SHOWN`] of them and then a line counting the others.
    #[must_use]
    pub fn one_line_each(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .diagnostics
            .iter()
            .take(MAX_SHOWN)
            .map(|d| {
                let level = if d.severity == Severity::Error { "error" } else { "warning" };
                let at = self.describe_location(&d.loc).unwrap_or_else(|| self.file.clone());
                let help = d
                    .help
                    .as_ref()
                    .map(|h| format!(" (help: {})", elide(h, 4 * MAX_SHOWN_CHARS)))
                    .unwrap_or_default();
                let message = elide(&d.message, 4 * MAX_SHOWN_CHARS);
                if at.is_empty() {
                    format!("{level}: {message}{help}")
                } else {
                    format!("{at}: {level}: {message}{help}")
                }
            })
            .collect();
        lines.extend(self.more_line());
        lines
    }

    /// The first [`MAX_SHOWN`] diagnostics rendered rustc-style, each followed by a blank line,
    /// and a line counting the others: the report without its summary line.
    #[must_use]
    pub fn render_diagnostics(&self) -> String {
        let mut out = String::new();
        for d in self.diagnostics.iter().take(MAX_SHOWN) {
            out.push_str(&self.render_one(d));
            out.push('\n');
        }
        if let Some(more) = self.more_line() {
            out.push_str(&more);
            out.push_str("\n\n");
        }
        out
    }

    /// `... and 4,990 more errors` when some diagnostics are not shown.
    fn more_line(&self) -> Option<String> {
        let hidden = self.diagnostics.get(MAX_SHOWN..)?;
        let errors = hidden.iter().filter(|d| d.severity == Severity::Error).count();
        let warnings = hidden.len() - errors;
        let count = |n: usize, what: &str| {
            (n > 0)
                .then(|| format!("{} more {what}{}", thousands(n), if n == 1 { "" } else { "s" }))
        };
        let parts: Vec<String> =
            [count(errors, "error"), count(warnings, "warning")].into_iter().flatten().collect();
        Some(format!("... and {}", parts.join(" and ")))
    }

    /// The order of a location in this report's source: JSON by offset, DSL tokens by line and
    /// column, unlocated last.
    fn order_key(&self, loc: &Loc) -> (u8, usize, usize) {
        match loc {
            Loc::JsonText { line, column } => (0, *line, *column),
            Loc::Json { pointer, key } => {
                (0, self.json_map().offset(pointer, *key).unwrap_or(usize::MAX), 0)
            }
            Loc::Tokens { start, .. } => {
                span_position(*start, *start).map_or((1, 0, 0), |p| (1, p.line, p.column))
            }
            Loc::Unknown => (2, 0, 0),
        }
    }
}

/// Sorts diagnostics in source order, so that a mistake is reported before what follows it in
/// the file: JSON locations by their offset in `json`'s text (the config of a `from` form comes
/// before the settings in its braces), then DSL tokens by line and column, then unlocated ones.
/// The sort is stable: diagnostics at one place keep the order they were found in, and so do
/// tokens without positions (a compiler that gives spans no line numbers).
pub fn sort_in_source_order(diagnostics: &mut [Diagnostic], json: Option<&Report>) {
    let empty = Report::default();
    let json = json.unwrap_or(&empty);
    diagnostics.sort_by_cached_key(|d| json.order_key(&d.loc));
}

/// The part of a long source line shown around a caret at `column` (1-based, characters) that
/// underlines `len` characters: the shown text, the caret's column in it, and its length.
fn snippet(line: &str, column: usize, len: usize) -> (String, usize, usize) {
    let count = line.chars().count();
    if count <= MAX_SHOWN_CHARS {
        return (line.to_owned(), column.max(1), len);
    }
    let start = column.saturating_sub(1).saturating_sub(MAX_SHOWN_CHARS / 2).min(count);
    let end = (start + MAX_SHOWN_CHARS).min(count);
    let mut shown: String = line.chars().skip(start).take(end - start).collect();
    let mut column = column.max(1) - start;
    if start > 0 {
        shown.insert_str(0, "...");
        column += 3;
    }
    if end < count {
        shown.push_str("...");
    }
    let len = len.min(end.saturating_sub(start + column.saturating_sub(1)).max(1));
    (shown, column, len)
}

impl fmt::Display for Report {
    /// Every diagnostic rendered rustc-style, then a summary line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render_diagnostics())?;
        let (errors, warnings) = (self.error_count(), self.warning_count());
        let what = self.file.as_str();
        match (errors, warnings) {
            (0, 0) => write!(f, "{what}: ok"),
            (0, w) => write!(f, "{what}: ok, {w} warning{}", if w == 1 { "" } else { "s" }),
            (e, w) => write!(
                f,
                "{what}: {e} error{}{}",
                if e == 1 { "" } else { "s" },
                if w > 0 {
                    format!(", {w} warning{}", if w == 1 { "" } else { "s" })
                } else {
                    String::new()
                }
            ),
        }
    }
}

impl std::error::Error for Report {}

/// Length of the JSON token starting the text: a whole string, number or literal; one character
/// for `{` and `[`.
fn json_token_len(text: &str) -> usize {
    let mut chars = text.chars();
    match chars.next() {
        Some('"') => {
            let mut len = 1;
            let mut escaped = false;
            for c in chars {
                len += 1;
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    break;
                }
            }
            len
        }
        Some('{' | '[') | None => 1,
        Some(_) => text
            .chars()
            .take_while(|c| !matches!(c, ',' | '}' | ']') && !c.is_whitespace())
            .count()
            .max(1),
    }
}

/// Position of DSL tokens in a Rust file parsed by the CLI (proc-macro2's `span-locations`).
#[cfg(feature = "syntax")]
fn span_position(start: proc_macro2::Span, end: proc_macro2::Span) -> Option<Position> {
    let (s, e) = (start.start(), end.end());
    if s.line == 0 {
        return None; // spans from a real compiler session carry no position here
    }
    let len = if e.line == s.line && e.column > s.column { e.column - s.column } else { 1 };
    Some(Position { line: s.line, column: s.column + 1, len, path: None })
}

#[cfg(not(feature = "syntax"))]
fn span_position(_start: proc_macro2::Span, _end: proc_macro2::Span) -> Option<Position> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_json_errors_with_caret_and_path() {
        let text =
            "{\n  \"recurrent_regions\": [\n    {\"name\": \"a\", \"num_units\": 0}\n  ]\n}\n";
        let d = Diagnostic {
            help: Some("give it at least 1".into()),
            ..Diagnostic::error(
                Loc::json("/recurrent_regions/0/num_units"),
                "region `a` has zero units",
            )
        };
        let report = Report::new("net.json", text, vec![d]);
        let out = report.to_string();
        assert!(out.contains("error: region `a` has zero units"), "{out}");
        assert!(out.contains("--> net.json:3:32 (recurrent_regions[0].num_units)"), "{out}");
        assert!(out.contains("3 |     {\"name\": \"a\", \"num_units\": 0}"), "{out}");
        assert!(out.contains("  |                                ^\n"), "{out}");
        assert!(out.contains("= help: give it at least 1"), "{out}");
        assert!(out.ends_with("net.json: 1 error"), "{out}");
    }

    #[test]
    fn token_lengths() {
        assert_eq!(json_token_len("\"d3\", x"), 4);
        assert_eq!(json_token_len("\"a\\\"b\""), 6);
        assert_eq!(json_token_len("0.95}"), 4);
        assert_eq!(json_token_len("{\"a\": 1}"), 1);
    }
}
