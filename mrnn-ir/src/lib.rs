//! The mrnn compiler as a plain library.
//!
//! ```text
//!  mrnn! { DSL }  --syntax-->  syntax tree  --lower-->  Ir (petgraph)  --check-->  --layout-->  Architecture
//!  config.json   --spec---->  Spec         --lower-->        ^                                     |
//!                                                                                   codegen (quote) v
//! ```
//!
//! Two front doors (the `mrnn!` DSL, behind the `syntax` feature, and mRNNTorch's JSON configs),
//! one IR, one set of checks. The result, an [`Architecture`], is what `mrnn-runtime` builds a
//! network from; `mrnn!` writes the same value as a `const` (feature `codegen`).
//!
//! ```
//! let json = r#"{
//!     "recurrent_regions": [{"name": "exc", "num_units": 8, "sign": "pos"},
//!                           {"name": "inh", "num_units": 2, "sign": "neg"}],
//!     "input_regions": [{"name": "u", "num_units": 3, "sign": "pos"}],
//!     "recurrent_connections": [{"src_region": "exc", "dst_region": "inh"},
//!                               {"src_region": "inh", "dst_region": "exc"}],
//!     "input_connections": [{"src_region": "u", "dst_region": "exc"}]
//! }"#;
//! let compiled = mrnn_ir::compile_json(json, "ei.json").unwrap();
//! assert_eq!(compiled.architecture.hidden_size(), 10);
//! assert_eq!(compiled.architecture.region("inh").unwrap().offset, 8);
//!
//! let broken = json.replace("\"dst_region\": \"inh\"", "\"dst_region\": \"inhib\"");
//! let report = mrnn_ir::compile_json(&broken, "ei.json").unwrap_err();
//! assert!(report.to_string().contains("unknown region `inhib`"));
//! ```
#![warn(missing_docs)]

pub mod check;
pub mod diag;
pub mod dot;
pub mod ir;
pub mod json_map;
pub mod layout;
pub mod lower;
pub mod model;
pub mod report;
pub mod spec;

#[cfg(feature = "codegen")]
pub mod codegen;
pub mod convert;
#[cfg(feature = "codegen")]
pub mod expand;
#[cfg(feature = "syntax")]
pub mod syntax;

#[cfg(feature = "codegen")]
pub mod source_file;

#[cfg(feature = "codegen")]
pub use expand::{LoweredDsl, expand, expand_pretty, generate, lower_dsl};

pub use check::Purpose;
pub use diag::{Ctxt, Diagnostic, Loc, Note, Severity};
pub use ir::{Ir, Located};
pub use model::{
    Activation, Architecture, Connection, Dale, Dynamics, InputRegion, Noise, Product, Region,
    Settings, Sign, Source,
};
pub use report::Report;
pub use spec::Spec;

/// A checked architecture and the warnings found on the way.
#[derive(Debug)]
pub struct Compiled {
    /// The checked, laid-out network.
    pub architecture: Architecture,
    /// Warnings (the network is still valid), renderable against the source.
    pub warnings: Report,
}

/// Reads an mRNNTorch config without checking it (for tools that edit a config before compiling
/// it, such as command-line overrides of the `"model"` object).
pub fn read_spec(text: &str, file: &str) -> Result<Spec, Report> {
    let cx = Ctxt::new();
    let spec = Spec::read(&cx, text);
    match (cx.check(), spec) {
        (Ok(_), Some(spec)) => Ok(spec),
        (Err(diagnostics) | Ok(diagnostics), _) => Err(Report::new(file, text, diagnostics)),
    }
}

/// Compiles an mRNNTorch JSON config: read, lower, check, lay out. The network is named after
/// the file's stem. Every problem is in the returned report, located by line, column and JSON path.
pub fn compile_json(text: &str, file: &str) -> Result<Compiled, Report> {
    compile_json_for(text, file, Purpose::Runtime)
}

/// Compiles an mRNNTorch JSON config for a purpose: [`Purpose::Codegen`] adds the rules that
/// generated code needs (distinct constant names), so that what it accepts expands to Rust that
/// compiles (`mrnn check`, `expand`, `dot` and `convert` compile for it).
pub fn compile_json_for(text: &str, file: &str, purpose: Purpose) -> Result<Compiled, Report> {
    let cx = Ctxt::new();
    let spec = Spec::read(&cx, text);
    let Some(spec) = spec else {
        let diagnostics = cx.check().err().unwrap_or_default();
        return Err(Report::new(file, text, diagnostics));
    };
    compile_into(cx, &spec, file, text, purpose)
}

/// Compiles a config file from disk (see [`compile_json`]).
pub fn compile_json_file(path: &std::path::Path) -> Result<Compiled, Report> {
    compile_json_file_for(path, Purpose::Runtime)
}

/// Compiles a config file from disk for a purpose (see [`compile_json_for`]).
pub fn compile_json_file_for(path: &std::path::Path, purpose: Purpose) -> Result<Compiled, Report> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Report::single_error(&file, format!("cannot read `{file}`: {e}")))?;
    compile_json_for(&text, &file, purpose)
}

/// Compiles a config held in memory (built in code, or read and then edited). `file` and `text`
/// are used to locate diagnostics; pass the text the spec was read from, or `""`.
pub fn compile_spec(spec: &Spec, file: &str, text: &str) -> Result<Compiled, Report> {
    compile_into(Ctxt::new(), spec, file, text, Purpose::Runtime)
}

fn compile_into(
    cx: Ctxt,
    spec: &Spec,
    file: &str,
    text: &str,
    purpose: Purpose,
) -> Result<Compiled, Report> {
    let ir = lower::from_spec(&cx, spec, Located::new(network_name_from_file(file), Loc::Unknown));
    check::check(&cx, &ir, purpose);
    match cx.check() {
        Ok(warnings) => Ok(Compiled {
            architecture: layout::layout(&ir),
            warnings: Report::new(file, text, warnings),
        }),
        Err(diagnostics) => Err(Report::new(file, text, diagnostics)),
    }
}

/// Lowers and checks a spec, returning the IR even when it has errors (for tools such as `mrnn
/// dot` that show a network as written) together with every diagnostic.
#[must_use]
pub fn lower_spec(spec: &Spec, name: &str, purpose: Purpose) -> (Ir, Vec<Diagnostic>) {
    let cx = Ctxt::new();
    let ir = lower::from_spec(&cx, spec, Located::new(name.to_owned(), Loc::Unknown));
    check::check(&cx, &ir, purpose);
    let diagnostics = match cx.check() {
        Ok(d) | Err(d) => d,
    };
    (ir, diagnostics)
}

/// The network name for a config file: its stem (`configs/CBGTCL.json` -> `CBGTCL`).
#[must_use]
pub fn network_name_from_file(file: &str) -> String {
    std::path::Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("Network")
        .to_owned()
}
