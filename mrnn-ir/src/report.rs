//! Reports: the diagnostics of one source file, rendered rustc-style with the file name, line,
//! column, JSON path and a caret under the offending text, for the CLI and for errors returned
//! by the run-time (JSON) front door.

use std::cell::OnceCell;
use std::fmt;

use crate::diag::{Diagnostic, Loc, Severity, pointer_to_path};
use crate::json_map::{JsonMap, line_column};

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

/// Every diagnostic of one source (a JSON config, a Rust file, or a network built in code).
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
        diagnostics: Vec<Diagnostic>,
    ) -> Report {
        Report { file: file.into(), text: text.into(), diagnostics, json_map: OnceCell::new() }
    }

    /// A report with a single error and no source position (unreadable file, say).
    #[must_use]
    pub fn single_error(file: impl Into<String>, message: impl Into<String>) -> Report {
        let diagnostic = Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            loc: Loc::Unknown,
            help: None,
        };
        Report::new(file, String::new(), vec![diagnostic])
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
                let map = self.json_map.get_or_init(|| Box::new(JsonMap::build(&self.text)));
                let offset = map.offset(pointer, *key)?;
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

    /// Renders one diagnostic rustc-style.
    #[must_use]
    pub fn render_one(&self, d: &Diagnostic) -> String {
        use fmt::Write;
        let level = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut out = format!("{level}: {}\n", d.message);
        match self.position(&d.loc) {
            Some(p) => {
                let gutter = p.line.to_string().len();
                let pad = " ".repeat(gutter);
                let path = p.path.as_ref().map(|path| format!(" ({path})")).unwrap_or_default();
                let _ = writeln!(out, "{pad}--> {}:{}:{}{path}", self.file, p.line, p.column);
                if let Some(line) = self.text.lines().nth(p.line.saturating_sub(1)) {
                    let caret_pad: String = line
                        .chars()
                        .take(p.column - 1)
                        .map(|c| if c == '\t' { '\t' } else { ' ' })
                        .collect();
                    let _ = writeln!(out, "{pad} |");
                    let _ = writeln!(out, "{} | {line}", p.line);
                    let _ = writeln!(out, "{pad} | {caret_pad}{}", "^".repeat(p.len.max(1)));
                }
                if let Some(help) = &d.help {
                    let _ = writeln!(out, "{pad} = help: {help}");
                }
            }
            None => {
                if !self.file.is_empty() {
                    let _ = writeln!(out, "  --> {}", self.file);
                }
                if let Some(help) = &d.help {
                    let _ = writeln!(out, "  = help: {help}");
                }
            }
        }
        out
    }

    /// One line per diagnostic: `file:line:col: error: message` (for logs and error chains).
    #[must_use]
    pub fn one_line_each(&self) -> Vec<String> {
        self.diagnostics
            .iter()
            .map(|d| {
                let level = if d.severity == Severity::Error { "error" } else { "warning" };
                let at = self.describe_location(&d.loc).unwrap_or_else(|| self.file.clone());
                let help = d.help.as_ref().map(|h| format!(" (help: {h})")).unwrap_or_default();
                if at.is_empty() {
                    format!("{level}: {}{help}", d.message)
                } else {
                    format!("{at}: {level}: {}{help}", d.message)
                }
            })
            .collect()
    }
}

impl fmt::Display for Report {
    /// Every diagnostic rendered rustc-style, then a summary line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            writeln!(f, "{}", self.render_one(d))?;
        }
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
            severity: Severity::Error,
            message: "region `a` has zero units".into(),
            loc: Loc::json("/recurrent_regions/0/num_units"),
            help: Some("give it at least 1".into()),
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
