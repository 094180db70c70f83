//! The `mrnn!` pipeline end to end: parse -> lower -> check -> layout -> codegen, with every
//! diagnostic turned into `compile_error!` tokens in this one place. [`expand`] never fails: it
//! returns the generated code, or the errors plus the generated type (so that its uses add no
//! errors of their own), or, for input that does not parse, the errors plus a fallback type (see
//! [`codegen::fallback`]). Errors come in source order, at most [`MAX_ERRORS`] of them.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::parse::{Parse, ParseStream};

use crate::check::{self, Purpose};
use crate::codegen::{self, Target};
use crate::diag::{Ctxt, Diagnostic, Loc, MAX_SHOWN_CHARS, Severity, elide, thousands};
use crate::ir::{Ir, Located};
use crate::report::{Report, sort_in_source_order};
use crate::spec::Spec;
use crate::syntax::{MAX_NESTING, Network, too_deep};
use crate::{layout, lower};

/// The most errors (or warnings) one `mrnn!` reports; one more says how many others there are (a
/// generated or pasted network with thousands of mistakes would otherwise bury the first).
pub const MAX_ERRORS: usize = 100;

/// Expands the body of an `mrnn!` invocation. `CARGO_MANIFEST_DIR` (set by cargo while it
/// compiles the user's crate) anchors the path of the `from "file.json"` form.
#[must_use]
pub fn expand(input: TokenStream) -> TokenStream {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    // syn builds its token buffer recursively: input nested too deeply never reaches it, not
    // even to read the type's name (read from the top level only).
    let (parsed, head_tokens) = match too_deep(&input, MAX_NESTING) {
        Some(span) => (Err(nesting_error(span)), shallow(&input)),
        None => (syn::parse2::<Network>(input.clone()), input),
    };
    let net = match parsed {
        Ok(net) => net,
        Err(e) => {
            let errors = e.to_compile_error();
            // Keep the type name, when it can be read, so uses of the type add no errors.
            return match syn::parse2::<Head>(head_tokens) {
                Ok(head) => codegen::fallback(&head.vis, &head.name, &errors),
                Err(_) => errors,
            };
        }
    };
    let lowered = lower_dsl(&net, manifest_dir.as_deref());
    generate(&lowered)
}

/// The top level of a token stream, every group emptied (delimiters and spans kept).
fn shallow(tokens: &TokenStream) -> TokenStream {
    tokens
        .clone()
        .into_iter()
        .map(|tt| match tt {
            proc_macro2::TokenTree::Group(g) => {
                let mut empty = proc_macro2::Group::new(g.delimiter(), TokenStream::new());
                empty.set_span(g.span());
                proc_macro2::TokenTree::Group(empty)
            }
            other => other,
        })
        .collect()
}

/// The error for brackets nested deeper than [`MAX_NESTING`].
#[must_use]
pub fn nesting_error(span: Span) -> syn::Error {
    syn::Error::new(
        span,
        format!(
            "brackets nested more than {MAX_NESTING} levels deep: an `mrnn!` network needs two"
        ),
    )
}

/// The code for a lowered network: the generated type, preceded by its errors if it has any.
///
/// A network with errors still gets its type and constants, laid out from what was declared:
/// the errors stop the build, and uses of `Net::THAL` elsewhere in the crate add none of their
/// own (codegen keeps such a type valid Rust; see [`codegen`]).
#[must_use]
pub fn generate(lowered: &LoweredDsl) -> TokenStream {
    let arch = layout::layout(&lowered.ir);
    let tracked = lowered.json.as_ref().map(|j| j.path.display().to_string());
    let target = Target {
        vis: &lowered.vis,
        name: &lowered.name,
        docs: &lowered.ir.docs,
        tracked_file: tracked.as_deref(),
    };
    let errors: Vec<&Diagnostic> =
        lowered.diagnostics.iter().filter(|d| d.severity == Severity::Error).collect();
    if !errors.is_empty() {
        let shown =
            errors.iter().take(MAX_ERRORS).map(|d| lowered.to_syn_error(d).to_compile_error());
        let more = (errors.len() > MAX_ERRORS).then(|| {
            let more = errors.len() - MAX_ERRORS;
            syn::Error::new(
                lowered.name.span(),
                format!(
                    "... and {} more error{} in this network",
                    thousands(more),
                    if more == 1 { "" } else { "s" }
                ),
            )
            .to_compile_error()
        });
        let code = codegen::generate(&arch, &target, &[]);
        return quote!(#(#shown)* #more #code);
    }
    // As many warnings as errors at most, and the same count of the others.
    let mut warnings: Vec<(Span, String)> = lowered
        .diagnostics
        .iter()
        .take(MAX_ERRORS)
        .map(|d| {
            (
                lowered.to_syn_error(d).span(),
                d.message_with_help_at(lowered.json_prefix(d).as_deref()),
            )
        })
        .collect();
    if lowered.diagnostics.len() > MAX_ERRORS {
        let more = lowered.diagnostics.len() - MAX_ERRORS;
        warnings.push((
            lowered.name.span(),
            format!(
                "... and {} more warning{} in this network",
                thousands(more),
                if more == 1 { "" } else { "s" }
            ),
        ));
    }
    codegen::generate(&arch, &target, &warnings)
}

/// Expands and pretty-prints (for `mrnn expand` and the expansion snapshots).
#[must_use]
pub fn expand_pretty(input: TokenStream) -> String {
    codegen::pretty(&expand(input))
}

/// The `attrs vis Name` prefix of an invocation, read when the rest fails to parse.
struct Head {
    vis: syn::Visibility,
    name: syn::Ident,
}

impl Parse for Head {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        input.call(crate::syntax::parse_attrs)?;
        let vis = input.parse()?;
        let name = input.parse()?;
        input.parse::<TokenStream>()?;
        Ok(Head { vis, name })
    }
}

/// The JSON file of a `from "file.json"` network.
#[derive(Debug)]
pub struct JsonSource {
    /// Absolute path.
    pub path: PathBuf,
    /// The literal as written.
    pub literal: syn::LitStr,
    /// Its diagnostics' positions.
    pub report: Report,
}

/// A lowered and checked DSL network.
#[derive(Debug)]
pub struct LoweredDsl {
    /// Visibility of the generated type.
    pub vis: syn::Visibility,
    /// Name of the generated type.
    pub name: syn::Ident,
    /// The IR (complete only when there are no errors).
    pub ir: Ir,
    /// Errors and warnings.
    pub diagnostics: Vec<Diagnostic>,
    /// The JSON file of the `from` form, if any.
    pub json: Option<JsonSource>,
}

impl LoweredDsl {
    /// `file:line:col (path)` for a diagnostic located in the JSON file.
    #[must_use]
    pub fn json_prefix(&self, d: &Diagnostic) -> Option<String> {
        let json = self.json.as_ref()?;
        if !matches!(d.loc, Loc::Json { .. } | Loc::JsonText { .. }) {
            return None;
        }
        json.report.describe_location(&d.loc).or_else(|| Some(json.report.file.clone()))
    }

    /// The diagnostic as a spanned syn error: under its tokens, or under the `from` literal
    /// (prefixed with the JSON location) for problems inside the file. A note (where a
    /// duplicated name was first declared) becomes a line of the message: a proc macro cannot
    /// point at a second place on stable Rust.
    #[must_use]
    pub fn to_syn_error(&self, d: &Diagnostic) -> syn::Error {
        let mut message = d.message_with_help_at(self.json_prefix(d).as_deref());
        if let Some(note) = &d.note {
            let at = match &note.loc {
                Loc::Tokens { start, .. } if start.start().line > 0 => {
                    let p = start.start();
                    Some(format!("line {}, column {}", p.line, p.column + 1))
                }
                Loc::Json { .. } | Loc::JsonText { .. } => {
                    self.json.as_ref().and_then(|j| j.report.describe_location(&note.loc))
                }
                _ => None,
            };
            let _ = match at {
                Some(at) => write!(message, "\n  = note: {} at {at}", note.message),
                None => write!(message, "\n  = note: {} earlier", note.message),
            };
        }
        // A name of a megabyte would make a message of a megabyte.
        let message = elide(&message, 8 * MAX_SHOWN_CHARS);
        match &d.loc {
            Loc::Tokens { start, end } => syn::Error::new_spanned(SpanRange(*start, *end), message),
            _ => match &self.json {
                Some(json) => syn::Error::new(json.literal.span(), message),
                None => syn::Error::new(self.ir_name_span(), message),
            },
        }
    }

    fn ir_name_span(&self) -> Span {
        match self.ir.name.loc {
            Loc::Tokens { start, .. } => start,
            _ => Span::call_site(),
        }
    }
}

impl Diagnostic {
    /// The message with its help, prefixed with a location when there is one.
    #[must_use]
    pub fn message_with_help_at(&self, at: Option<&str>) -> String {
        match at {
            Some(at) => format!("{at}: {}", self.message_with_help()),
            None => self.message_with_help(),
        }
    }
}

/// Spans a range of tokens on stable Rust: `syn::Error::new_spanned` uses the first and last
/// token's spans, so two tokens carrying `start` and `end` underline everything between.
struct SpanRange(Span, Span);

impl ToTokens for SpanRange {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        tokens.extend([
            proc_macro2::TokenTree::Ident(proc_macro2::Ident::new("a", self.0)),
            proc_macro2::TokenTree::Ident(proc_macro2::Ident::new("b", self.1)),
        ]);
    }
}

/// Lowers and checks a parsed network (reading its JSON file for the `from` form, relative to
/// `manifest_dir` or the current directory).
#[must_use]
pub fn lower_dsl(net: &Network, manifest_dir: Option<&Path>) -> LoweredDsl {
    let cx = Ctxt::new();
    let mut json = None;
    // Checks only make sense on a config that was read: an unreadable or malformed file would
    // add "no recurrent region" on top of its own error.
    let mut config_read = true;
    let base = net.from.as_ref().map(|literal| {
        let relative = literal.value();
        let path = manifest_dir.map_or_else(|| PathBuf::from(&relative), |dir| dir.join(&relative));
        let name = Located::new(net.name.to_string(), Loc::span(net.name.span()));
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let spec = Spec::read(&cx, &text);
                config_read = spec.is_some();
                let ir = lower::from_spec(&cx, &spec.unwrap_or_default(), name);
                json = Some(JsonSource {
                    path: path.clone(),
                    literal: literal.clone(),
                    report: Report::new(relative, text, Vec::new()),
                });
                ir
            }
            Err(e) => {
                config_read = false;
                cx.error_help(
                    Loc::span(literal.span()),
                    format!("cannot read `{relative}`: {e}"),
                    format!(
                        "the path is relative to the crate's manifest directory; looked for `{}`",
                        path.display()
                    ),
                );
                Ir::new(name, crate::model::Settings::DEFAULT)
            }
        }
    });
    let ir = lower::from_syntax(&cx, net, base);
    if config_read {
        check::check(&cx, &ir, Purpose::Codegen);
    }
    let mut diagnostics = match cx.check() {
        Ok(d) | Err(d) => d,
    };
    sort_in_source_order(&mut diagnostics, json.as_ref().map(|j| &j.report));
    LoweredDsl { vis: net.vis.clone(), name: net.name.clone(), ir, diagnostics, json }
}
