//! The `mrnn` command-line tool: the compiler (check, expand, dot, convert) for people who do not
//! write Rust, and the runtime (simulate, train, analyze, bench) on JSON configs and checkpoints.
//!
//! Exit codes: 0 success, 1 invalid input (a config, checkpoint or tensor file that is wrong),
//! 2 usage error (unknown flags, missing arguments: clap's own code).

mod compile_cmds;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Multi-regional RNNs: check, inspect, simulate, train and dissect them.
#[derive(Debug, Parser)]
#[command(name = "mrnn", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a JSON config or the `mrnn!` networks of a Rust file; print every error and warning.
    Check(compile_cmds::FileArgs),
    /// Print the Rust code `mrnn!` generates for a JSON config or for each network of a Rust file.
    Expand(compile_cmds::ExpandArgs),
    /// Print the region graph as Graphviz DOT (regions with size and sign, edges with sparsity).
    Dot(compile_cmds::FileArgs),
    /// Print the `mrnn!` source equivalent to a JSON config.
    Convert(compile_cmds::ConvertArgs),
}

/// A failure of a command: what to print, and the exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Invalid input: exit code 1.
    Invalid(String),
    /// Usage error: exit code 2.
    Usage(String),
}

impl Failure {
    fn exit(self) -> ExitCode {
        match self {
            Failure::Invalid(message) => {
                eprintln!("{}", message.trim_end());
                ExitCode::from(1)
            }
            Failure::Usage(message) => {
                eprintln!("error: {}", message.trim_end());
                ExitCode::from(2)
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => compile_cmds::check(&args),
        Command::Expand(args) => compile_cmds::expand(&args),
        Command::Dot(args) => compile_cmds::dot(&args),
        Command::Convert(args) => compile_cmds::convert(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.exit(),
    }
}
