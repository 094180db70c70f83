//! `mrnn check | expand | dot | convert`: the compiler on JSON configs and Rust files.
//!
//! All four compile for code generation ([`Purpose::Codegen`]): a config that `check` accepts
//! expands to Rust that compiles, and `expand`, `dot` and `convert` accept it too.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use mrnn_ir::source_file::{FileCheck, check_file, manifest_dir_of};
use mrnn_ir::{Purpose, Report, compile_json_file_for, convert, dot};

use crate::{Failure, print_stderr, print_stdout};

#[derive(Debug, Args)]
pub(crate) struct FileArgs {
    /// A JSON config (mRNNTorch format) or a Rust file containing `mrnn!` invocations.
    file: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct ExpandArgs {
    /// A JSON config (mRNNTorch format) or a Rust file containing `mrnn!` invocations.
    file: PathBuf,
    /// Name of the generated type for a JSON config (default: from the file name).
    #[arg(long)]
    name: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ConvertArgs {
    /// A JSON config (mRNNTorch format), printed as `mrnn!` source; or a Rust file, whose
    /// `mrnn!` network is printed as an mRNNTorch config (with its `"model"` object).
    file: PathBuf,
    /// For a JSON config: the name of the generated type (default: from the file name,
    /// `flip_flop.json` -> `FlipFlop`). For a Rust file with several networks: the one to convert.
    #[arg(long)]
    name: Option<String>,
}

enum Kind {
    Json,
    Rust,
}

fn kind_of(path: &Path) -> Result<Kind, Failure> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => Ok(Kind::Json),
        Some("rs") => Ok(Kind::Rust),
        _ => Err(Failure::Usage(format!(
            "`{}`: expected a JSON config (.json) or a Rust file (.rs)",
            path.display()
        ))),
    }
}

fn read(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|e| Failure::Invalid(format!("error: cannot read `{}`: {e}", path.display())))
}

fn type_name_for(path: &Path, name: Option<&str>) -> String {
    name.map_or_else(
        || convert::type_name_for(&mrnn_ir::network_name_from_file(&path.display().to_string())),
        ToOwned::to_owned,
    )
}

/// Prints warnings (never fatal) to stderr.
fn print_warnings(report: &Report) {
    print_stderr(&report.render_diagnostics());
}

/// Compiles a JSON config for code generation, its warnings printed.
fn compile_json(path: &Path) -> Result<mrnn_ir::Compiled, Failure> {
    let compiled = compile_json_file_for(path, Purpose::Codegen)?;
    print_warnings(&compiled.warnings);
    Ok(compiled)
}

/// Checks every network of a Rust file, its warnings printed.
fn check_rust(path: &Path) -> Result<FileCheck, Failure> {
    let text = read(path)?;
    let result = check_file(&text, &path.display().to_string(), &manifest_dir_of(path));
    if result.report.has_errors() {
        return Err(Failure::Invalid(result.report.to_string()));
    }
    print_warnings(&result.report);
    Ok(result)
}

pub(crate) fn check(args: &FileArgs) -> Result<(), Failure> {
    let file = args.file.display();
    match kind_of(&args.file)? {
        Kind::Json => {
            let compiled = compile_json(&args.file)?;
            print_stdout(&format!("{file}: ok: {}\n", compiled.architecture))
        }
        Kind::Rust => {
            let mut out = String::new();
            for lowered in &check_rust(&args.file)?.lowered {
                let _ = writeln!(out, "{file}: ok: {}", mrnn_ir::layout::layout(&lowered.ir));
            }
            print_stdout(&out)
        }
    }
}

pub(crate) fn expand(args: &ExpandArgs) -> Result<(), Failure> {
    match kind_of(&args.file)? {
        Kind::Json => {
            let compiled = compile_json(&args.file)?;
            let name = type_name_for(&args.file, args.name.as_deref());
            let docs = [format!(" Generated from `{}`.", args.file.display())];
            let code = mrnn_ir::codegen::expand_architecture(&compiled.architecture, &name, &docs)
                .map_err(|e| Failure::Usage(format!("{e}; pass another with --name")))?;
            print_stdout(&format!("{code}\n"))
        }
        Kind::Rust => {
            let mut out = String::new();
            for l in &check_rust(&args.file)?.lowered {
                let _ = writeln!(out, "{}", mrnn_ir::codegen::pretty(&mrnn_ir::generate(l)));
            }
            print_stdout(&out)
        }
    }
}

pub(crate) fn dot(args: &FileArgs) -> Result<(), Failure> {
    match kind_of(&args.file)? {
        Kind::Json => {
            let text = read(&args.file)?;
            let file = args.file.display().to_string();
            let spec = mrnn_ir::read_spec(&text, &file)?;
            let (ir, diagnostics) = mrnn_ir::lower_spec(
                &spec,
                &mrnn_ir::network_name_from_file(&file),
                Purpose::Codegen,
            );
            let report = Report::new(file, text, diagnostics);
            if report.has_errors() {
                return Err(report.into());
            }
            print_warnings(&report);
            print_stdout(&format!("{}\n", dot::to_dot(&ir)))
        }
        Kind::Rust => {
            let mut out = String::new();
            for l in &check_rust(&args.file)?.lowered {
                let _ = writeln!(out, "{}", dot::to_dot(&l.ir));
            }
            print_stdout(&out)
        }
    }
}

pub(crate) fn convert(args: &ConvertArgs) -> Result<(), Failure> {
    match kind_of(&args.file)? {
        Kind::Json => {
            let compiled = compile_json(&args.file)?;
            let name = type_name_for(&args.file, args.name.as_deref());
            let source =
                convert::to_dsl(&compiled.architecture, &name, &args.file.display().to_string())
                    .map_err(Failure::Usage)?;
            print_stdout(&source)
        }
        Kind::Rust => {
            let checked = check_rust(&args.file)?;
            let lowered = pick_network(&checked, args.name.as_deref(), &args.file)?;
            let json = convert::to_json(&mrnn_ir::layout::layout(&lowered.ir));
            print_stdout(&format!("{json}\n"))
        }
    }
}

/// The network of a Rust file to convert: the one named `--name`, or the only one.
fn pick_network<'a>(
    checked: &'a FileCheck,
    name: Option<&str>,
    file: &Path,
) -> Result<&'a mrnn_ir::LoweredDsl, Failure> {
    let names: Vec<&str> = checked.lowered.iter().map(|l| l.ir.name.value.as_str()).collect();
    let listed = mrnn_ir::diag::list(&names);
    match name {
        Some(name) => checked.lowered.iter().find(|l| l.ir.name.value == name).ok_or_else(|| {
            Failure::Usage(format!(
                "`{}` has no network named `{name}`; its networks: {listed}",
                file.display()
            ))
        }),
        None => match checked.lowered.as_slice() {
            [one] => Ok(one),
            _ => Err(Failure::Usage(format!(
                "`{}` declares {} networks ({listed}): pick one with --name",
                file.display(),
                names.len()
            ))),
        },
    }
}
