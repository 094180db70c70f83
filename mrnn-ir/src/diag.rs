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
    /// Another place that explains this one: where a duplicated name was first declared.
    pub note: Option<Note>,
}

/// A secondary location of a diagnostic, with what it shows: `` `v1` first declared ``, which
/// the CLI renders as "note: `v1` first declared here" above the place, and `mrnn!` as
/// "= note: `v1` first declared at line 4, column 16".
#[derive(Clone, Debug)]
pub struct Note {
    /// Where.
    pub loc: Loc,
    /// What is there: lowercase, no trailing period, no "here".
    pub message: String,
}

impl Diagnostic {
    /// An error without help or note.
    #[must_use]
    pub fn error(loc: Loc, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            loc,
            help: None,
            note: None,
        }
    }

    /// The message with its help, on one line, as a proc-macro error shows it.
    #[must_use]
    pub fn message_with_help(&self) -> String {
        match &self.help {
            Some(help) => format!("{}\n  = help: {help}", self.message),
            None => self.message.clone(),
        }
    }
}

/// The most characters of user text a message or a source line shows: a name or a line of a
/// megabyte (a minified config, a generated name) is shown elided around its middle.
pub const MAX_SHOWN_CHARS: usize = 160;

/// `text` if it has at most `max` characters, else its start and end around `...`, with the
/// number of characters left out.
#[must_use]
pub fn elide(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let keep = max / 2;
    let head: String = text.chars().take(keep).collect();
    let tail: String = text.chars().skip(count - keep).collect();
    format!("{head}...({} characters)...{tail}", count - 2 * keep)
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
        self.push(Diagnostic::error(loc, message));
    }

    /// Records an error with a hint on how to fix it.
    pub fn error_help(&self, loc: Loc, message: impl Into<String>, help: impl Into<String>) {
        self.push(Diagnostic { help: Some(help.into()), ..Diagnostic::error(loc, message) });
    }

    /// Records an error with a hint and a note at another place (where a duplicated name was
    /// first declared).
    pub fn error_note(
        &self,
        loc: Loc,
        message: impl Into<String>,
        help: Option<String>,
        note: Note,
    ) {
        self.push(Diagnostic { help, note: Some(note), ..Diagnostic::error(loc, message) });
    }

    /// Records a warning with an optional hint.
    pub fn warning(&self, loc: Loc, message: impl Into<String>, help: Option<String>) {
        self.push(Diagnostic {
            severity: Severity::Warning,
            message: message.into(),
            loc,
            help,
            note: None,
        });
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

/// Names longer than this get no "did you mean": the edit distance is quadratic in the length,
/// and a name of a thousand characters is not a typo of another.
const MAX_SUGGESTED_LEN: usize = 64;

/// Finds the closest of `candidates` to `name` (for "did you mean" hints): edit distance at most
/// a third of the name's length (at least 1), and less than the name's length (so `b` does not
/// suggest `u`), ties broken by declaration order.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let len = name.chars().count();
    if len > MAX_SUGGESTED_LEN {
        return None;
    }
    let limit = (len / 3).max(1);
    candidates
        .into_iter()
        // Lengths that differ by more than the limit cannot be within it (and skipping them
        // keeps long candidates out of the quadratic distance).
        .filter(|c| {
            c.len().abs_diff(name.len()) <= 4 * limit && c.chars().count().abs_diff(len) <= limit
        })
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

/// A count with thousands separators, as messages print them: `4,990`.
#[must_use]
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
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
    fn long_names_get_no_suggestion_and_no_quadratic_work() {
        let long = "x".repeat(100_000);
        let other = format!("{long}y");
        assert_eq!(closest(&long, [other.as_str(), "x"]), None);
        assert_eq!(closest("thal", ["thalamus_with_a_long_name", "thai"]), Some("thai"));
    }

    #[test]
    fn elides_long_text_around_its_middle() {
        assert_eq!(elide("short", 10), "short");
        let long = "a".repeat(50) + &"b".repeat(50);
        let shown = elide(&long, 20);
        assert_eq!(shown, format!("{}...(80 characters)...{}", "a".repeat(10), "b".repeat(10)));
    }

    #[test]
    fn counts_read_with_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(4990), "4,990");
        assert_eq!(thousands(1_234_567), "1,234,567");
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
