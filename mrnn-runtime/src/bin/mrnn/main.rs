//! The `mrnn` command-line tool: the compiler (check, expand, dot, convert) for people who do not
//! write Rust, and the runtime (simulate, train, analyze, bench) on JSON configs and checkpoints.
//! The commands that run a network take an mrnn checkpoint alone (it carries its architecture),
//! or a JSON config with `--weights`.
//!
//! Exit codes: 0 success, 1 invalid input (a config, checkpoint or tensor file that is wrong),
//! 2 usage error (unknown flags, missing arguments: clap's own code).
//!
//! A closed stdout (`mrnn dot net.json | head -1`) ends a command quietly with success, as Unix
//! tools do: the reader has what it wanted. Commands that print through [`print_stdout`] see it
//! as an error value; a `println!` anywhere else panics on it, and `main` turns that one panic
//! (and only that one) into the same quiet end, after unwinding (so temporary files are cleaned
//! up as on any early return).

mod analyze_cmd;
mod bench_cmd;
mod compile_cmds;
mod network_args;
mod simulate_cmd;
mod train_cmd;

use std::process::ExitCode;

// Every tensor op allocates its result; glibc returns large blocks to the OS on free, so each
// op paid for fresh zeroed pages (8 ms of a 45 ms backward pass at H = 256, measured). mimalloc
// keeps them for reuse (see `keep_freed_memory`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tells mimalloc never to hand freed memory back to the OS. By default it purges freed memory
/// after a delay, and later results then fault in fresh pages that the kernel must zero first:
/// 24% of the samples of a fwd+bwd pass at H = 1024 (perf), 10-15% of its time (`mrnn bench`,
/// 9233 page faults in 10 runs, 481 without purging). The process keeps its peak memory
/// instead, which a training or analysis run reaches every step anyway.
fn keep_freed_memory() {
    // SAFETY: sets a process-wide option; called first thing in `main`.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// `mi_option_purge_delay`: its position in mimalloc.h's `mi_option_e` (the Rust bindings do not
/// name it). A test checks it against the option's documented default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

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
    /// Print the `mrnn!` source equivalent to a JSON config, or the mRNNTorch config of the
    /// `mrnn!` network of a Rust file.
    Convert(compile_cmds::ConvertArgs),
    /// Run a network (an mrnn checkpoint alone, or a config + weights) on inputs from a
    /// safetensors file; write x, h (and the readout's output).
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
    /// Stdout was closed by its reader: stop quietly, exit code 0.
    ClosedStdout,
}

/// Writes `text` to stdout (and flushes it). A closed pipe is [`Failure::ClosedStdout`]; any
/// other write error (a full disk) is invalid output, exit code 1.
pub(crate) fn print_stdout(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::ClosedStdout),
        Err(e) => Err(Failure::Invalid(format!("error: cannot write to stdout: {e}"))),
    }
}

/// Writes `text` to stderr; there is nowhere left to report a failure to write it.
pub(crate) fn print_stderr(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Whether a panic message is the standard library's for `print!` on a closed pipe
/// (`failed printing to stdout: Broken pipe (os error 32)`; EPIPE is 32 on Linux and macOS).
fn is_closed_pipe_panic(message: &str) -> bool {
    (message.starts_with("failed printing to stdout")
        || message.starts_with("failed printing to stderr"))
        && (message.contains("Broken pipe") || message.contains("os error 32"))
}

/// Silences the default panic message for a print to a closed pipe (`main` ends such a run
/// quietly); every other panic is reported as before.
fn quiet_closed_pipe_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if panic_message(info.payload()).is_some_and(is_closed_pipe_panic) {
            return;
        }
        default(info);
    }));
}

/// The message of a panic, when it is text (`panic!("..")` and `panic!("{x}")` both are).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
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
                print_stderr(&format!("{}\n", message.trim_end()));
                ExitCode::from(1)
            }
            Failure::Usage(message) => {
                print_stderr(&format!("error: {}\n", message.trim_end()));
                ExitCode::from(2)
            }
            Failure::ClosedStdout => ExitCode::SUCCESS,
        }
    }
}

fn main() -> ExitCode {
    // Before any candle call: candle's matmul re-reads /proc/cpuinfo without it.
    mrnn_runtime::ensure_threads();
    keep_freed_memory();
    quiet_closed_pipe_panics();
    let cli = Cli::parse();
    // Unwind safety: nothing observes the command's state after a panic; it is dropped.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli)));
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(failure)) => failure.exit(),
        Err(payload) => {
            if panic_message(payload.as_ref()).is_some_and(is_closed_pipe_panic) {
                return ExitCode::SUCCESS;
            }
            std::panic::resume_unwind(payload)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Check(args) => compile_cmds::check(&args),
        Command::Expand(args) => compile_cmds::expand(&args),
        Command::Dot(args) => compile_cmds::dot(&args),
        Command::Convert(args) => compile_cmds::convert(&args),
        Command::Simulate(args) => simulate_cmd::simulate(&args),
        Command::Train(command) => train_cmd::train(command),
        Command::Bench(args) => bench_cmd::bench(&args),
        Command::Analyze(command) => analyze_cmd::analyze(command),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_closed_pipe_panics_are_quiet() {
        assert!(is_closed_pipe_panic("failed printing to stdout: Broken pipe (os error 32)"));
        assert!(is_closed_pipe_panic("failed printing to stderr: Broken pipe (os error 32)"));
        assert!(!is_closed_pipe_panic(
            "failed printing to stdout: No space left on device (os error 28)"
        ));
        assert!(!is_closed_pipe_panic("index out of bounds: Broken pipe"));
    }

    /// The option index is mimalloc's purge delay: 1000 ms by default (mimalloc 3's
    /// options.c), then never.
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reads and sets a process-wide option.
        unsafe {
            assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY), 1000);
            keep_freed_memory();
            assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY), -1);
        }
    }
}
