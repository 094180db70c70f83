//! Diagnostics: where a problem is ([`Loc`]), what it is ([`Diagnostic`]), and the collector
//! ([`Ctxt`]) that every phase pushes into so that one build reports every problem at once.

use std::cell::RefCell;
use std::fmt;

use proc_macro2::Span;

/// Where in the user's input something was written.
#[derive(Clone, Debug, Default)]
pub enum Loc {
    /// Nowhere in particular (a default, or a network built in code).
    #[default]
    Unknown,
    /// Tokens of the `mrnn!` DSL, from `start` to `end` (the same span for a single token).
    Tokens {
        /// The first token.
        start: Span,
        /// The last token.
        end: Span,
    },
    /// A place in a JSON document, as an RFC 6901 pointer (`/recurrent_connections/3/src_region`).
    Json {
        /// The pointer.
        pointer: String,
        /// Point at the member's key rather than its value (for unknown keys).
        key: bool,
    },
    /// A line and column (1-based) in a JSON document that did not parse.
    JsonText {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
}

impl Loc {
    /// One token.
    #[must_use]
    pub fn span(span: Span) -> Loc {
        Loc::Tokens { start: span, end: span }
    }

    /// The value at a JSON pointer.
    #[must_use]
    pub fn json(pointer: impl Into<String>) -> Loc {
        Loc::Json { pointer: pointer.into(), key: false }
    }

    /// The key of the member at a JSON pointer.
    #[must_use]
    pub fn json_key(pointer: impl Into<String>) -> Loc {
        Loc::Json { pointer: pointer.into(), key: true }
    }

    /// The same place, one level down: `/a` + `b` = `/a/b`. Only meaningful for JSON.
    #[must_use]
    pub fn child(&self, segment: impl fmt::Display) -> Loc {
        match self {
            Loc::Json { pointer, .. } => {
                Loc::json(format!("{pointer}/{}", escape_pointer_segment(&segment.to_string())))
            }
            other => other.clone(),
        }
    }
}

/// Escapes one segment of a JSON pointer (RFC 6901: `~` -> `~0`, `/` -> `~1`).
#[must_use]
pub fn escape_pointer_segment(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Renders a JSON pointer the way people write paths: `/recurrent_connections/3/src_region`
/// becomes `recurrent_connections[3].src_region`.
#[must_use]
pub fn pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(&segment);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    if out.is_empty() { "(top level)".to_owned() } else { out }
}

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The network is still built; the user is told.
    Warning,
    /// The network is rejected.
    Error,
}

/// One problem found in the user's input.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong: lowercase, no trailing period, DSL names in backticks.
    pub message: String,
    /// Where it is.
    pub loc: Loc,
    /// How to fix it, when there is something specific to say.
    pub help: Option<String>,
}

impl Diagnostic {
    /// The message with its help, on one line, as a proc-macro error shows it.
    #[must_use]
    pub fn message_with_help(&self) -> String {
        match &self.help {
            Some(help) => format!("{}\n  = help: {help}", self.message),
            None => self.message.clone(),
        }
    }
}

/// Collects diagnostics from every phase (after serde's `Ctxt`).
///
/// Phases push and keep going, so one build reports every problem. [`Ctxt::check`] must be
/// called before the context is dropped: forgetting it would silently swallow errors, so
/// dropping an unchecked context is a bug that panics (only in the compiler's own code paths,
/// never because of user input).
#[derive(Debug, Default)]
pub struct Ctxt {
    diagnostics: RefCell<Option<Vec<Diagnostic>>>,
}

impl Ctxt {
    /// An empty collector.
    #[must_use]
    pub fn new() -> Self {
        Ctxt { diagnostics: RefCell::new(Some(Vec::new())) }
    }

    fn push(&self, diagnostic: Diagnostic) {
        self.diagnostics.borrow_mut().as_mut().expect("Ctxt used after check()").push(diagnostic);
    }

    /// Records an error.
    pub fn error(&self, loc: Loc, message: impl Into<String>) {
        self.push(Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            loc,
            help: None,
        });
    }

    /// Records an error with a hint on how to fix it.
    pub fn error_help(&self, loc: Loc, message: impl Into<String>, help: impl Into<String>) {
        self.push(Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            loc,
            help: Some(help.into()),
        });
    }

    /// Records a warning with an optional hint.
    pub fn warning(&self, loc: Loc, message: impl Into<String>, help: Option<String>) {
        self.push(Diagnostic { severity: Severity::Warning, message: message.into(), loc, help });
    }

    /// Whether an error (not a warning) has been recorded so far.
    #[must_use]
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .borrow()
            .as_ref()
            .is_some_and(|d| d.iter().any(|d| d.severity == Severity::Error))
    }

    /// Ends collection: `Ok(warnings)` when no error was recorded, else `Err(everything)`,
    /// errors and warnings in the order they were found.
    pub fn check(self) -> Result<Vec<Diagnostic>, Vec<Diagnostic>> {
        let diagnostics = self.diagnostics.borrow_mut().take().unwrap_or_default();
        if diagnostics.iter().any(|d| d.severity == Severity::Error) {
            Err(diagnostics)
        } else {
            Ok(diagnostics)
        }
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        assert!(
            std::thread::panicking() || self.diagnostics.borrow().is_none(),
            "forgot to check for errors"
        );
    }
}

/// Finds the closest of `candidates` to `name` (for "did you mean" hints): edit distance at most
/// a third of the name's length (at least 1), and less than the name's length (so `b` does not
/// suggest `u`), ties broken by declaration order.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let len = name.chars().count();
    let limit = (len / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|&(d, _)| d <= limit && d < len)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, case-insensitive on ASCII (so `D1` suggests `d1`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitution.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Formats a list of names for messages: `` `a`, `b`, `c` ``.
#[must_use]
pub fn list(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["d1", "d2", "gpe", "thal", "alm_exc"];
        assert_eq!(closest("d3", names), Some("d1"));
        assert_eq!(closest("thall", names), Some("thal"));
        assert_eq!(closest("alm_ex", names), Some("alm_exc"));
        assert_eq!(closest("cortex", names), None);
        assert_eq!(closest("b", ["u", "a"]), None);
    }

    #[test]
    fn pointers_read_as_paths() {
        assert_eq!(
            pointer_to_path("/recurrent_connections/3/src_region"),
            "recurrent_connections[3].src_region"
        );
        assert_eq!(pointer_to_path(""), "(top level)");
        assert_eq!(pointer_to_path("/model/a~1b"), "model.a/b");
    }

    #[test]
    fn check_separates_errors_from_warnings() {
        let cx = Ctxt::new();
        cx.warning(Loc::Unknown, "w", None);
        assert_eq!(cx.check().unwrap().len(), 1);
        let cx = Ctxt::new();
        cx.warning(Loc::Unknown, "w", None);
        cx.error(Loc::Unknown, "e");
        assert_eq!(cx.check().unwrap_err().len(), 2);
    }
}
