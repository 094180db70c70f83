//! The `mrnn` command-line tool: the compiler (check, expand, dot, convert) for people who do not
//! write Rust, and the runtime (simulate, train, analyze, bench) on JSON configs and checkpoints.
//!
//! Exit codes: 0 success, 1 invalid input (a config, checkpoint or tensor file that is wrong),
//! 2 usage error (unknown flags, missing arguments: clap's own code).

mod analyze_cmd;
mod bench_cmd;
mod compile_cmds;
mod network_args;
mod simulate_cmd;
mod train_cmd;

use std::process::ExitCode;

// Every tensor op allocates its result; glibc returns large blocks to the OS on free, so each
// op paid for fresh zeroed pages (8 ms of a 45 ms backward pass at H = 256, measured). mimalloc
// keeps them for reuse.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run a network (config + weights) on inputs from a safetensors file; write x, h (and output).
    Simulate(simulate_cmd::SimulateArgs),
    /// Time forward, forward+backward or training steps; print one JSON line (`torch_baseline.py`'s format).
    Bench(bench_cmd::BenchArgs),
    /// Train a network on a task; checkpoint, metrics and figures go to `--out`.
    #[command(subcommand)]
    Train(train_cmd::TaskCommand),
    /// Dissect a trained network: fixed points, linearizations, flow fields, currents.
    #[command(subcommand)]
    Analyze(analyze_cmd::AnalyzeCommand),
}

/// A failure of a command: what to print, and the exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Invalid input: exit code 1.
    Invalid(String),
    /// Usage error: exit code 2.
    Usage(String),
}

impl From<mrnn_runtime::Error> for Failure {
    fn from(e: mrnn_runtime::Error) -> Self {
        Failure::Invalid(format!("error: {e}"))
    }
}

impl From<mrnn_ir::Report> for Failure {
    fn from(report: mrnn_ir::Report) -> Self {
        Failure::Invalid(report.to_string())
    }
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
    // Before any candle call: candle's matmul re-reads /proc/cpuinfo without it.
    mrnn_runtime::ensure_threads();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => compile_cmds::check(&args),
        Command::Expand(args) => compile_cmds::expand(&args),
        Command::Dot(args) => compile_cmds::dot(&args),
        Command::Convert(args) => compile_cmds::convert(&args),
        Command::Simulate(args) => simulate_cmd::simulate(&args),
        Command::Train(command) => train_cmd::train(command),
        Command::Bench(args) => bench_cmd::bench(&args),
        Command::Analyze(command) => analyze_cmd::analyze(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.exit(),
    }
}
