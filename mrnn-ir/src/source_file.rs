//! Rust source files as input to the compiler's tools: finds every `mrnn!` invocation in a file
//! (items, statements, expressions, at any depth), and checks or expands each one outside of
//! rustc, with diagnostics located by line and column in the file (for `mrnn check file.rs`).

use std::path::{Path, PathBuf};

use proc_macro2::TokenStream;
use syn::visit::Visit;

use crate::diag::{Diagnostic, Loc, Severity};
use crate::expand::{LoweredDsl, lower_dsl};
use crate::report::Report;
use crate::syntax::Network;

/// One `mrnn!` invocation found in a file.
#[derive(Debug)]
pub struct Invocation {
    /// The tokens inside the macro's delimiters.
    pub tokens: TokenStream,
    /// 1-based line of the macro name.
    pub line: usize,
}

/// Finds the `mrnn!` invocations of a Rust file (any path ending in `mrnn`, so
/// `mrnn_runtime::mrnn!` counts too).
pub fn find_invocations(text: &str) -> syn::Result<Vec<Invocation>> {
    let file = syn::parse_file(text)?;
    let mut finder = Finder { found: Vec::new() };
    finder.visit_file(&file);
    Ok(finder.found)
}

struct Finder {
    found: Vec<Invocation>,
}

impl<'ast> Visit<'ast> for Finder {
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        if mac.path.segments.last().is_some_and(|s| s.ident == "mrnn") {
            let line = mac.path.segments.last().map_or(0, |s| s.ident.span().start().line);
            self.found.push(Invocation { tokens: mac.tokens.clone(), line });
        }
        syn::visit::visit_macro(self, mac);
    }
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
            diagnostics.push(error_at(&e, format!("cannot parse the file as Rust: {e}")));
            return FileCheck { networks, report: Report::new(file, text, diagnostics), lowered };
        }
    };
    if invocations.is_empty() {
        diagnostics.push(Diagnostic {
            severity: Severity::Error,
            message: "no `mrnn!` invocation in this file".to_owned(),
            loc: Loc::Unknown,
            help: Some(
                "`mrnn check` takes a JSON config or a Rust file with `mrnn! { ... }` in it"
                    .to_owned(),
            ),
        });
    }
    for invocation in invocations {
        let net = match syn::parse2::<Network>(invocation.tokens) {
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
        for d in &result.diagnostics {
            // Problems inside a `from` file are reported at the literal, with their JSON position.
            let mut d = d.clone();
            if let Some(prefix) = result.json_prefix(&d) {
                d.message = format!("{prefix}: {}", d.message);
                d.loc = result.json.as_ref().map_or(Loc::Unknown, |j| Loc::span(j.literal.span()));
            }
            diagnostics.push(d);
        }
        lowered.push(result);
    }
    FileCheck { networks, report: Report::new(file, text, diagnostics), lowered }
}

fn error_at(e: &syn::Error, message: String) -> Diagnostic {
    Diagnostic { severity: Severity::Error, message, loc: Loc::span(e.span()), help: None }
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
