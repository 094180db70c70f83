//! `mrnn check | expand | dot | convert`: the compiler on JSON configs and Rust files.

use std::path::{Path, PathBuf};

use clap::Args;
use mrnn_ir::source_file::{check_file, manifest_dir_of};
use mrnn_ir::{Report, compile_json_file, convert, dot};

use crate::Failure;

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
    /// A JSON config (mRNNTorch format).
    file: PathBuf,
    /// Name of the generated type (default: from the file name, `flip_flop.json` -> `FlipFlop`).
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
    if !report.diagnostics.is_empty() {
        for d in &report.diagnostics {
            eprintln!("{}", report.render_one(d));
        }
    }
}

pub(crate) fn check(args: &FileArgs) -> Result<(), Failure> {
    match kind_of(&args.file)? {
        Kind::Json => {
            let compiled =
                compile_json_file(&args.file).map_err(|r| Failure::Invalid(r.to_string()))?;
            print_warnings(&compiled.warnings);
            println!("{}: ok: {}", args.file.display(), compiled.architecture);
            Ok(())
        }
        Kind::Rust => {
            let text = read(&args.file)?;
            let file = args.file.display().to_string();
            let result = check_file(&text, &file, &manifest_dir_of(&args.file));
            if result.report.has_errors() {
                return Err(Failure::Invalid(result.report.to_string()));
            }
            print_warnings(&result.report);
            for lowered in &result.lowered {
                println!("{file}: ok: {}", mrnn_ir::layout::layout(&lowered.ir));
            }
            Ok(())
        }
    }
}

pub(crate) fn expand(args: &ExpandArgs) -> Result<(), Failure> {
    let lowered = match kind_of(&args.file)? {
        Kind::Json => {
            // The JSON is expanded as the `from` form would be; its diagnostics keep their JSON
            // positions in this report.
            let compiled =
                compile_json_file(&args.file).map_err(|r| Failure::Invalid(r.to_string()))?;
            print_warnings(&compiled.warnings);
            let name = type_name_for(&args.file, args.name.as_deref());
            if !mrnn_ir::check::is_identifier(&name) {
                return Err(Failure::Usage(format!(
                    "`{name}` cannot be a type name; pass another with --name"
                )));
            }
            let docs = [format!(" Generated from `{}`.", args.file.display())];
            println!(
                "{}",
                mrnn_ir::codegen::expand_architecture(&compiled.architecture, &name, &docs)
            );
            return Ok(());
        }
        Kind::Rust => {
            let text = read(&args.file)?;
            let result =
                check_file(&text, &args.file.display().to_string(), &manifest_dir_of(&args.file));
            if result.report.has_errors() {
                return Err(Failure::Invalid(result.report.to_string()));
            }
            print_warnings(&result.report);
            result.lowered
        }
    };
    for l in &lowered {
        println!("{}", mrnn_ir::codegen::pretty(&mrnn_ir::generate(l)));
    }
    Ok(())
}

pub(crate) fn dot(args: &FileArgs) -> Result<(), Failure> {
    match kind_of(&args.file)? {
        Kind::Json => {
            let text = read(&args.file)?;
            let file = args.file.display().to_string();
            let spec =
                mrnn_ir::read_spec(&text, &file).map_err(|r| Failure::Invalid(r.to_string()))?;
            let (ir, diagnostics) =
                mrnn_ir::lower_spec(&spec, &mrnn_ir::network_name_from_file(&file));
            let report = Report::new(file, text, diagnostics);
            if report.has_errors() {
                return Err(Failure::Invalid(report.to_string()));
            }
            print_warnings(&report);
            println!("{}", dot::to_dot(&ir));
        }
        Kind::Rust => {
            let text = read(&args.file)?;
            let result =
                check_file(&text, &args.file.display().to_string(), &manifest_dir_of(&args.file));
            if result.report.has_errors() {
                return Err(Failure::Invalid(result.report.to_string()));
            }
            print_warnings(&result.report);
            for l in &result.lowered {
                println!("{}", dot::to_dot(&l.ir));
            }
        }
    }
    Ok(())
}

pub(crate) fn convert(args: &ConvertArgs) -> Result<(), Failure> {
    if !matches!(kind_of(&args.file)?, Kind::Json) {
        return Err(Failure::Usage("`mrnn convert` takes a JSON config".to_owned()));
    }
    let compiled = compile_json_file(&args.file).map_err(|r| Failure::Invalid(r.to_string()))?;
    print_warnings(&compiled.warnings);
    let name = type_name_for(&args.file, args.name.as_deref());
    let source = convert::to_dsl(&compiled.architecture, &name, &args.file.display().to_string())
        .map_err(|e| Failure::Invalid(format!("error: {e}")))?;
    print!("{source}");
    Ok(())
}
