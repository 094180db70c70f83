//! Rust source files as input to the compiler's tools: finds every `mrnn!` invocation in a file
//! (items, statements, expressions, inside other macros' arguments, at any depth), and checks or
//! expands each one outside of rustc, with diagnostics located by line and column in the file
//! (for `mrnn check file.rs`).
//!
//! The file is lexed (proc-macro2's lexer keeps its own stack) and its tokens are walked with an
//! explicit stack: it is never parsed as Rust by syn, whose parser recurses once per nested
//! bracket, operator or expression, so that a file of 40,000 nested brackets (or 40,000 `-`)
//! would overflow the stack. The tokens of each invocation are refused beyond
//! [`MAX_NESTING`] levels before the DSL's parser (whose recursion
//! the grammar bounds) reads them. Whether the rest of the file is valid Rust is rustc's
//! business.

use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};

use crate::diag::{Diagnostic, Loc};
use crate::expand::{LoweredDsl, lower_dsl, nesting_error};
use crate::report::{MAX_SHOWN, Report};
use crate::syntax::{MAX_NESTING, Network, too_deep};

/// One `mrnn!` invocation found in a file.
#[derive(Debug)]
pub struct Invocation {
    /// The tokens inside the macro's delimiters.
    pub tokens: TokenStream,
    /// 1-based line of the macro name.
    pub line: usize,
}

/// Finds the `mrnn!` invocations of a Rust file (`mrnn!`, or any path ending in it, such as
/// `mrnn_runtime::mrnn!`), in the order they are written. Invocations inside `macro_rules!`
/// definitions are templates, not networks, and are skipped. Fails only when the file does not
/// lex (an unclosed bracket or string).
pub fn find_invocations(text: &str) -> syn::Result<Vec<Invocation>> {
    let tokens = lex(text)?;
    let mut found = Vec::new();
    // Each level: its tokens and the index of the next one to look at.
    let mut stack: Vec<(Vec<TokenTree>, usize)> = vec![(tokens.into_iter().collect(), 0)];
    while let Some((tokens, next)) = stack.last_mut() {
        let at = *next;
        let Some(token) = tokens.get(at) else {
            stack.pop();
            continue;
        };
        let bang_then_group =
            |offset: usize| match (tokens.get(at + offset), tokens.get(at + offset + 1)) {
                (Some(TokenTree::Punct(p)), Some(TokenTree::Group(g))) if p.as_char() == '!' => {
                    Some(g.clone())
                }
                _ => None,
            };
        let mut step = 1;
        let mut descend = None;
        match token {
            TokenTree::Ident(ident) if ident == "mrnn" => {
                if let Some(group) = bang_then_group(1) {
                    found.push(Invocation {
                        tokens: group.stream(),
                        line: ident.span().start().line,
                    });
                    step = 3;
                }
            }
            TokenTree::Ident(ident) if ident == "macro_rules" => {
                // `macro_rules! name { ... }`: skip the definition's body.
                if let (
                    Some(TokenTree::Punct(p)),
                    Some(TokenTree::Ident(_)),
                    Some(TokenTree::Group(_)),
                ) = (tokens.get(at + 1), tokens.get(at + 2), tokens.get(at + 3))
                    && p.as_char() == '!'
                {
                    step = 4;
                }
            }
            TokenTree::Group(group) => descend = Some(group.stream()),
            _ => {}
        }
        *next = at + step;
        if let Some(inner) = descend {
            stack.push((inner.into_iter().collect(), 0));
        }
    }
    Ok(found)
}

/// Lexes a Rust file as rustc does: without a byte-order mark, and without a `#!` line (kept as
/// an empty line, so that line numbers stay the file's).
fn lex(text: &str) -> syn::Result<TokenStream> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = match text.strip_prefix("#!") {
        Some(rest) if !rest.trim_start().starts_with('[') => {
            &text[text.find('\n').unwrap_or(text.len())..]
        }
        _ => text,
    };
    text.parse::<TokenStream>()
        .map_err(|e| syn::Error::new(e.span(), format!("cannot parse the file as Rust: {e}")))
}

/// The directory a `from "file.json"` path is relative to: the closest directory above `file`
/// holding a `Cargo.toml` (what `CARGO_MANIFEST_DIR` is while cargo builds it), else the file's
/// own directory.
#[must_use]
pub fn manifest_dir_of(file: &Path) -> PathBuf {
    let start = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let start = if start.as_os_str().is_empty() { PathBuf::from(".") } else { start };
    let mut dir = start.as_path();
    loop {
        if dir.join("Cargo.toml").is_file() {
            return dir.to_path_buf();
        }
        match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => dir = parent,
            _ => return start,
        }
    }
}

/// The result of checking every network of a Rust file.
#[derive(Debug)]
pub struct FileCheck {
    /// Names of the networks found, in order (those that parsed).
    pub networks: Vec<String>,
    /// Every diagnostic, located in the Rust file (problems inside a `from` JSON file are
    /// prefixed with their JSON location).
    pub report: Report,
    /// The lowered networks (for tools that go on to expand or draw them).
    pub lowered: Vec<LoweredDsl>,
}

/// Checks every `mrnn!` network of a Rust file.
#[must_use]
pub fn check_file(text: &str, file: &str, manifest_dir: &Path) -> FileCheck {
    let mut diagnostics = Vec::new();
    let mut networks = Vec::new();
    let mut lowered = Vec::new();
    let invocations = match find_invocations(text) {
        Ok(found) => found,
        Err(e) => {
            diagnostics.push(error_at(&e, e.to_string()));
            return FileCheck { networks, report: Report::new(file, text, diagnostics), lowered };
        }
    };
    if invocations.is_empty() {
        diagnostics.push(Diagnostic {
            help: Some(
                "`mrnn check` takes a JSON config or a Rust file with `mrnn! { ... }` in it"
                    .to_owned(),
            ),
            ..Diagnostic::error(Loc::Unknown, "no `mrnn!` invocation in this file")
        });
    }
    for invocation in invocations {
        let parsed = match too_deep(&invocation.tokens, MAX_NESTING) {
            Some(span) => Err(nesting_error(span)),
            None => syn::parse2::<Network>(invocation.tokens),
        };
        let net = match parsed {
            Ok(net) => net,
            Err(e) => {
                for e in e {
                    diagnostics.push(error_at(&e, e.to_string()));
                }
                continue;
            }
        };
        networks.push(net.name.to_string());
        let result = lower_dsl(&net, Some(manifest_dir));
        for (i, d) in result.diagnostics.iter().enumerate() {
            // Problems inside a `from` file are reported at the literal, with their JSON
            // position. Finding a position counts characters up to it: only the diagnostics a
            // report can show get one (thousands of them in a one-line file would be quadratic).
            let mut d = d.clone();
            let in_json = matches!(d.loc, Loc::Json { .. } | Loc::JsonText { .. });
            if let Some(json) = result.json.as_ref().filter(|_| in_json) {
                if i < MAX_SHOWN
                    && let Some(prefix) = result.json_prefix(&d)
                {
                    d.message = format!("{prefix}: {}", d.message);
                }
                d.loc = Loc::span(json.literal.span());
            }
            diagnostics.push(d);
        }
        lowered.push(result);
    }
    FileCheck { networks, report: Report::new(file, text, diagnostics), lowered }
}

fn error_at(e: &syn::Error, message: String) -> Diagnostic {
    Diagnostic::error(Loc::span(e.span()), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r"
use mrnn_runtime::mrnn;

mrnn! {
    pub Good {
        input u[2]: exc;
        region a[4]: exc;
        u -> a;
    }
}

fn main() {
    mrnn_runtime::mrnn! {
        Bad {
            input u[2]: exc;
            region a[4]: exc;
            u -> b;
        }
    }
}
";

    #[test]
    fn finds_nested_invocations_and_locates_errors() {
        let check = check_file(FILE, "src/main.rs", Path::new("."));
        assert_eq!(check.networks, ["Good", "Bad"]);
        let out = check.report.to_string();
        assert_eq!(check.report.error_count(), 1, "{out}");
        assert!(out.contains("error: unknown region `b`"), "{out}");
        assert!(out.contains("--> src/main.rs:17:18"), "{out}");
        assert!(out.contains("17 |             u -> b;"), "{out}");
    }

    #[test]
    fn reports_files_without_networks_and_unparsable_files() {
        assert!(check_file("fn main() {}", "a.rs", Path::new(".")).report.has_errors());
        let check = check_file("fn main( {", "a.rs", Path::new("."));
        assert!(check.report.to_string().contains("cannot parse the file as Rust"));
    }
}
