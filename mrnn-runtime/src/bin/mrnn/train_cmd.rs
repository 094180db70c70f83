//! `mrnn train flip-flop | decision`: trains a network (a JSON config, or the built-in E/I
//! network) on a task, with a progress bar, periodic atomic checkpoints, `--resume`, and the run's
//! metrics and figures written to `--out`.
//!
//! Every flag is checked before anything runs (values, then the memory the run needs); `--out`
//! is locked for the life of the process; a resumed run must be the same run (each difference
//! is named by its flag), while optimizer settings may change and are recorded; a divergence
//! saves the last good (finite) state and says so.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use mrnn_runtime::plot::{self, Series, TrialPanel};
use mrnn_runtime::task::{FlipFlop, PerceptualDecision, Task};
use mrnn_runtime::train::{
    self, Difference, Model, Problem, ReadoutFrom, SavedRun, TrainConfig, Trainer,
};
use mrnn_runtime::{Architecture, Device, Error, Network, Overrides, Tensor, builtin, memory};

use crate::Failure;

#[derive(Debug, Subcommand)]
pub(crate) enum TaskCommand {
    /// The N-bit flip-flop: hold the sign of each channel's last pulse.
    FlipFlop {
        #[command(flatten)]
        common: CommonArgs,
        /// Number of bits (input and output channels).
        #[arg(long, default_value_t = 3, allow_negative_numbers = true)]
        bits: usize,
        /// Steps per trial.
        #[arg(long, default_value_t = 64, allow_negative_numbers = true)]
        time: usize,
        /// Probability of a pulse per step and bit.
        #[arg(long, default_value_t = 0.05, allow_hyphen_values = true)]
        p: f64,
    },
    /// Perceptual decision making: report the sign of noisy evidence after a go cue.
    Decision {
        #[command(flatten)]
        common: CommonArgs,
        /// Standard deviation of the evidence noise.
        #[arg(long, default_value_t = 0.5, allow_hyphen_values = true)]
        evidence_noise: f64,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ReadoutKind {
    /// Every hidden unit.
    All,
    /// Excitatory units only (as PsychRNN does under Dale's law).
    Excitatory,
}

#[derive(Debug, Args)]
pub(crate) struct CommonArgs {
    /// Network config (mRNNTorch JSON); default: the built-in 80/20 excitatory/inhibitory network.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Hidden units of the built-in network [default: 64] (a --config sets its own).
    #[arg(long, conflicts_with = "config", allow_negative_numbers = true)]
    hidden: Option<usize>,
    /// Optimizer steps in total (a resumed run stops there too).
    #[arg(long, default_value_t = 1500, allow_negative_numbers = true)]
    steps: usize,
    /// Trials per step.
    #[arg(long, default_value_t = 64, allow_negative_numbers = true)]
    batch: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 0.01, allow_hyphen_values = true)]
    lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    weight_decay: f64,
    /// Gradient-norm clipping (0: none).
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    clip: f64,
    /// L2 penalty on rates.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    rate_l2: f64,
    /// L2 penalty on effective recurrent weights.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    weight_l2: f64,
    /// Train without state and input noise.
    #[arg(long)]
    no_noise: bool,
    /// Seed of the weights, the trials and the noise.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    seed: u64,
    /// Which units the readout reads.
    #[arg(long, value_enum, default_value_t = ReadoutKind::All)]
    readout: ReadoutKind,
    /// Directory for the checkpoint, metrics and figures.
    #[arg(long, default_value = "runs/train")]
    out: PathBuf,
    /// Continue the run saved in `--out`: the same task, network, readout, batch, noise and seed;
    /// `--steps` may grow, and the optimizer settings (--lr, --weight-decay, --clip, --rate-l2,
    /// --weight-l2) may change (recorded in the checkpoint and metrics.json).
    #[arg(long)]
    resume: bool,
    /// Save a checkpoint every this many steps (and at the end).
    #[arg(long, default_value_t = 100, allow_negative_numbers = true)]
    checkpoint_every: usize,
    /// Held-out trials for the final evaluation.
    #[arg(long, default_value_t = 512, allow_negative_numbers = true)]
    eval_trials: usize,
    /// Run on `cpu` or `cuda` (needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// The hidden units of the built-in network when `--hidden` is not given.
const DEFAULT_HIDDEN: usize = 64;

/// The lock file in `--out` that a run holds while it runs.
const LOCK_FILE: &str = "train.lock";

/// Picks a candle device by name.
pub(crate) fn device(name: &str) -> Result<Device, Failure> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Device::new_cuda(0).map_err(|e| {
            Failure::Invalid(format!(
                "error: cannot use the GPU: {e} (is this binary built with `--features cuda`, and is a GPU present?)"
            ))
        }),
        other => Err(Failure::Usage(format!("unknown device `{other}`, expected `cpu` or `cuda`"))),
    }
}

/// A task the command line trains: its parameters' checks, and the flag of each parameter.
trait CliTask: Task {
    /// The task's parameters out of range.
    fn problems(&self) -> Vec<Problem>;
    /// The flag that sets a parameter (a [`Problem::setting`] or [`Task::parameters`] name).
    fn flag(setting: &str) -> Option<&'static str>;
}

impl CliTask for FlipFlop {
    fn problems(&self) -> Vec<Problem> {
        FlipFlop::problems(self)
    }

    fn flag(setting: &str) -> Option<&'static str> {
        match setting {
            "n_bits" => Some("--bits"),
            "n_time" => Some("--time"),
            "p" => Some("--p"),
            _ => None,
        }
    }
}

impl CliTask for PerceptualDecision {
    fn problems(&self) -> Vec<Problem> {
        PerceptualDecision::problems(self)
    }

    fn flag(setting: &str) -> Option<&'static str> {
        (setting == "noise").then_some("--evidence-noise")
    }
}

/// The flag of a [`TrainConfig`] field.
fn config_flag(setting: &str) -> &str {
    match setting {
        "steps" => "--steps",
        "batch" => "--batch",
        "lr" => "--lr",
        "weight_decay" => "--weight-decay",
        "clip_grad_norm" => "--clip",
        "rate_l2" => "--rate-l2",
        "weight_l2" => "--weight-l2",
        "noise" => "--no-noise",
        "seed" => "--seed",
        other => other,
    }
}

pub(crate) fn train(command: TaskCommand) -> Result<(), Failure> {
    match command {
        TaskCommand::FlipFlop { common, bits, time, p } => {
            run(FlipFlop { n_bits: bits, n_time: time, p }, &common)
        }
        TaskCommand::Decision { common, evidence_noise } => run(
            PerceptualDecision { noise: evidence_noise, ..PerceptualDecision::default() },
            &common,
        ),
    }
}

fn train_config(args: &CommonArgs) -> TrainConfig {
    TrainConfig {
        steps: args.steps,
        batch: args.batch,
        lr: args.lr,
        weight_decay: args.weight_decay,
        clip_grad_norm: args.clip,
        rate_l2: args.rate_l2,
        weight_l2: args.weight_l2,
        noise: !args.no_noise,
        seed: args.seed,
    }
}

/// Every flag out of range, by its flag: the task's, the training settings', and the command's
/// own. Nothing has run yet.
fn check_flags<T: CliTask>(
    task: &T,
    config: &TrainConfig,
    args: &CommonArgs,
) -> Result<(), Failure> {
    let mut lines = Vec::new();
    for p in task.problems() {
        let flag = T::flag(p.setting)
            .map_or_else(|| format!("the {} task's `{}`", task.name(), p.setting), str::to_owned);
        lines.push(format!("{flag} {}: {}", p.value, p.expected));
    }
    for p in config.problems() {
        lines.push(format!("{} {}: {}", config_flag(p.setting), p.value, p.expected));
    }
    if args.hidden.is_some_and(|h| h < 2) {
        lines.push(format!(
            "--hidden {}: the built-in network needs at least 2 units (excitatory and inhibitory)",
            args.hidden.unwrap_or_default()
        ));
    }
    if args.checkpoint_every == 0 {
        lines.push("--checkpoint-every 0: save at least every 1 step".to_owned());
    }
    if args.eval_trials == 0 {
        lines.push("--eval-trials 0: the final evaluation needs at least 1 trial".to_owned());
    }
    if lines.is_empty() {
        return Ok(());
    }
    Err(Failure::Invalid(format!("error: {}", lines.join("\nerror: "))))
}

/// The architecture the flags ask for (a config with `--seed` applied, or the built-in network
/// with `--hidden` units), compiled but not built: sizes and resume checks need no weights.
fn architecture(task: &impl Task, args: &CommonArgs) -> Result<Architecture, Failure> {
    let arch = match &args.config {
        Some(path) => {
            let overrides = Overrides { seed: Some(args.seed), ..Overrides::default() };
            mrnn_runtime::config::compile_json_file(path, &overrides)?.architecture
        }
        None => {
            let hidden = args.hidden.unwrap_or(DEFAULT_HIDDEN);
            let spec = builtin::excitatory_inhibitory(hidden, task.input_size());
            mrnn_ir::compile_spec(&spec, BUILTIN_FILE, "")
                .map_err(|r| Failure::Invalid(r.to_string()))?
                .architecture
        }
    };
    if arch.input_size() != task.input_size() {
        return Err(Failure::Invalid(format!(
            "error: the task `{}` has {} input channels, but the network has {} input units",
            task.name(),
            task.input_size(),
            arch.input_size()
        )));
    }
    Ok(arch)
}

/// The name the built-in network compiles under (its architecture is named after it).
const BUILTIN_FILE: &str = "builtin-ei.json";

/// Refuses, before the network exists, a run whose network, training step or final evaluation
/// would not fit in memory.
fn check_memory(arch: &Architecture, task: &impl Task, args: &CommonArgs) -> Result<(), Failure> {
    let (outputs, steps) = (task.output_size(), task.steps());
    let model = train::model_bytes(arch, outputs);
    let not_enough = |e: Error| Failure::Invalid(format!("error: not enough memory: {e}"));
    memory::ensure_fits(
        format!(
            "training `{}` on a network of {} units (--hidden or --config) with batches of {} trials (--batch) of {steps} steps",
            task.name(),
            arch.hidden_size(),
            args.batch
        ),
        model.saturating_add(train::step_bytes(arch, outputs, args.batch, steps)),
    )
    .map_err(not_enough)?;
    memory::ensure_fits(
        format!("evaluating {} held-out trials (--eval-trials) of {steps} steps", args.eval_trials),
        model.saturating_add(train::evaluation_bytes(arch, outputs, args.eval_trials, steps)),
    )
    .map_err(not_enough)
}

/// Takes the lock of `out` for the life of the process (the returned file must stay open).
/// The OS releases it when the process ends, however it ends, so a lock is never stale.
fn lock(out: &Path) -> Result<std::fs::File, Failure> {
    use std::io::{Read as _, Seek as _, Write as _};
    let path = out.join(LOCK_FILE);
    let fail = |what: String| Failure::Invalid(format!("error: {what}"));
    if let Ok(meta) = std::fs::symlink_metadata(&path)
        && !meta.file_type().is_file()
    {
        return Err(fail(format!(
            "`{}` is not a regular file; `mrnn train` keeps the lock of `{}` there",
            path.display(),
            out.display()
        )));
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| fail(format!("cannot open the lock `{}`: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {
            // Who holds it, for the message of a second run (best effort: the lock is what counts).
            let _ = file.set_len(0).and_then(|()| write!(file, "{}", std::process::id()));
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.rewind().and_then(|()| file.read_to_string(&mut holder));
            let holder = holder.trim();
            let by = if holder.is_empty() { String::new() } else { format!(" (process {holder})") };
            Err(fail(format!(
                "another `mrnn train`{by} is running in `{}`: it holds the lock `{}`; wait for it to finish, or choose another --out",
                out.display(),
                path.display()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
            eprintln!(
                "warning: this filesystem cannot lock `{}`: nothing stops a second run from writing `{}` at the same time",
                path.display(),
                out.display()
            );
            Ok(file)
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(fail(format!("cannot lock `{}`: {e}", path.display())))
        }
    }
}

/// Says, by flag, what a resume request would change in the saved run.
fn describe_difference<T: CliTask>(
    d: &Difference,
    args: &CommonArgs,
    arch: &Architecture,
    saved: &SavedRun,
) -> String {
    let builtin_name = BUILTIN_FILE.trim_end_matches(".json");
    match d.setting.as_str() {
        "task" => format!("the task `{}` vs `{}` saved", d.requested, d.saved),
        "network" => match &args.config {
            None if saved.architecture().name() == builtin_name => format!(
                "--hidden {} vs {} saved",
                arch.hidden_size(),
                saved.architecture().hidden_size()
            ),
            None => format!(
                "the built-in network vs `{}` saved (pass the run's --config): {} vs {} saved",
                saved.architecture().name(),
                d.requested,
                d.saved
            ),
            Some(path) => {
                format!("--config `{}`: {} vs {} saved", path.display(), d.requested, d.saved)
            }
        },
        "readout" => format!("--readout {} vs {} saved", d.requested, d.saved),
        "noise" => {
            let words = |on: &str| if on == "true" { "noise" } else { "--no-noise" };
            format!("{} vs {} saved", words(&d.requested), words(&d.saved))
        }
        setting => match setting.strip_prefix("task.") {
            Some(parameter) => match T::flag(parameter) {
                Some(flag) => format!("{flag} {} vs {} saved", d.requested, d.saved),
                None => format!("the task's `{parameter}` {} vs {} saved", d.requested, d.saved),
            },
            None => format!("{} {} vs {} saved", config_flag(setting), d.requested, d.saved),
        },
    }
}

fn readout_from(args: &CommonArgs) -> ReadoutFrom {
    match args.readout {
        ReadoutKind::All => ReadoutFrom::All,
        ReadoutKind::Excitatory => ReadoutFrom::Excitatory,
    }
}

/// Resumes the run in `checkpoint`, or refuses naming each flag that would change it.
fn resume<T: CliTask>(
    checkpoint: &Path,
    arch: &Architecture,
    task: T,
    config: TrainConfig,
    args: &CommonArgs,
    device: &Device,
) -> Result<Trainer<T>, Failure> {
    let saved = SavedRun::read(checkpoint)?;
    let readout = readout_from(args);
    let differences = saved.differences(arch, &readout, &task, &config);
    if !differences.is_empty() {
        let lines: Vec<String> = differences
            .iter()
            .map(|d| format!("  {}", describe_difference::<T>(d, args, arch, &saved)))
            .collect();
        return Err(Failure::Invalid(format!(
            "error: `{}` holds another run: resuming would change what defines it:\n{}\nresume with the run's own settings (--steps may grow; --lr, --weight-decay, --clip, --rate-l2 and --weight-l2 may change, and are recorded), or start a new run in another --out",
            args.out.display(),
            lines.join("\n")
        )));
    }
    if args.steps < saved.step() {
        return Err(Failure::Invalid(format!(
            "error: --steps {} is fewer than the {} steps already trained in `{}` (--steps counts from the start of the run)",
            args.steps,
            saved.step(),
            args.out.display()
        )));
    }
    let earlier = saved.setting_changes().len();
    let trainer = Trainer::resume_saved(saved, arch, &readout, task, config, device)?;
    for change in &trainer.setting_changes()[earlier..] {
        eprintln!(
            "{} changes from {} to {} after step {} (recorded in the checkpoint and metrics.json)",
            config_flag(&change.setting),
            train::number(change.from),
            train::number(change.to),
            change.step
        );
    }
    Ok(trainer)
}

fn run<T: CliTask>(task: T, args: &CommonArgs) -> Result<(), Failure> {
    let config = train_config(args);
    check_flags(&task, &config, args)?;
    let device = device(&args.device)?;
    let arch = architecture(&task, args)?;
    check_memory(&arch, &task, args)?;
    // Before training: a directory that cannot be written fails now, not at the first save.
    mrnn_runtime::output::prepare_dir(&args.out)?;
    let _lock = lock(&args.out)?;
    let checkpoint = args.out.join("checkpoint.safetensors");
    let mut trainer = if args.resume {
        if !checkpoint.is_file() {
            return Err(Failure::Invalid(format!(
                "error: nothing to resume: `{}` does not exist",
                checkpoint.display()
            )));
        }
        resume(&checkpoint, &arch, task, config, args, &device)?
    } else {
        if std::fs::symlink_metadata(&checkpoint).is_ok() {
            // A run that diverged at its first step leaves its untrained state: nothing is lost
            // by starting over.
            let untrained = SavedRun::read(&checkpoint).is_ok_and(|s| s.step() == 0);
            if !untrained {
                return Err(Failure::Invalid(format!(
                    "error: `{}` already holds a run; pass --resume to continue it, or choose another --out",
                    args.out.display()
                )));
            }
            eprintln!("replacing the untrained checkpoint (step 0) in `{}`", args.out.display());
        }
        let network = Network::with_seed(arch, args.seed, &device)?;
        let model = Model::new(network, task.output_size(), readout_from(args), args.seed)?;
        Trainer::new(model, task, config)?
    };
    let start_step = trainer.step_count();
    eprintln!(
        "training `{}` on {}: {} steps of {} trials{}",
        trainer.task.name(),
        trainer.model.network.architecture(),
        args.steps,
        args.batch,
        if start_step > 0 { format!(", resuming at step {start_step}") } else { String::new() }
    );
    let started = Instant::now();
    let bar = progress_bar(args.steps, start_step);
    let mut last_saved = args.resume.then_some(start_step);
    while !trainer.finished() {
        let report = match trainer.step() {
            Ok(r) => r,
            Err(e @ Error::Diverged { .. }) => {
                bar.abandon();
                return Err(diverged(&trainer, &e, &checkpoint, last_saved));
            }
            Err(e) => return Err(e.into()),
        };
        bar.set_position(report.step as u64);
        bar.set_message(format!("loss {:.4}  acc {:.3}", report.loss, report.accuracy));
        if report.step % args.checkpoint_every == 0 {
            trainer.save(&checkpoint)?;
            last_saved = Some(report.step);
        }
    }
    bar.finish();
    trainer.save(&checkpoint)?;
    let wall = started.elapsed().as_secs_f64();
    let eval = trainer.evaluate(args.eval_trials, 0)?;
    let trained_steps = trainer.step_count() - start_step;
    eprintln!(
        "held-out {} = {:.4} on {} trials, loss {:.5}; {trained_steps} steps in {wall:.1} s",
        trainer.task.accuracy_name(),
        eval.accuracy,
        args.eval_trials,
        eval.loss
    );
    write_outputs(&trainer, &args.out, eval, args.eval_trials, wall, start_step)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// The failure of a diverged run, after saving the last good state: a diverged step changes
/// nothing, so the trainer still holds the finite state after the last good step, and writing
/// it loses no finished step. The message says what is on disk, truthfully.
fn diverged<T: Task>(
    trainer: &Trainer<T>,
    error: &Error,
    checkpoint: &Path,
    last_saved: Option<usize>,
) -> Failure {
    let good = trainer.step_count();
    let (kept, resumable) = if last_saved == Some(good) {
        let kept = format!(
            "the checkpoint of step {good}, the last good state, is intact at `{}`",
            checkpoint.display()
        );
        (kept, true)
    } else {
        match trainer.save(checkpoint) {
            Ok(()) => {
                let kept = format!(
                    "the last good state (after step {good}, every value finite) is saved in `{}`",
                    checkpoint.display()
                );
                (kept, true)
            }
            Err(e) => match last_saved {
                Some(step) => (
                    format!(
                        "the last good state could not be saved ({e}); the checkpoint of step {step} is intact"
                    ),
                    true,
                ),
                None => (
                    format!(
                        "the last good state could not be saved ({e}); no checkpoint was written"
                    ),
                    false,
                ),
            },
        }
    };
    let next = if resumable {
        "lower --lr (or --clip), then --resume: changed optimizer settings are allowed and recorded"
    } else {
        "lower --lr (or --clip) and start again"
    };
    Failure::Invalid(format!("error: {error}\n{kept}; {next}"))
}

fn progress_bar(steps: usize, start: usize) -> ProgressBar {
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} step {pos}/{len} [{bar:30}] {msg}  {per_sec} ({eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_position(start as u64);
    bar.reset_eta();
    bar
}

fn write_outputs<T: Task>(
    trainer: &Trainer<T>,
    out: &Path,
    eval: mrnn_runtime::train::Evaluation,
    eval_trials: usize,
    wall: f64,
    start_step: usize,
) -> Result<(), Failure> {
    let losses = trainer.losses();
    let arch = trainer.model.network.architecture();
    let trained = trainer.step_count() - start_step;
    let metrics = serde_json::json!({
        "task": trainer.task.name(),
        "steps": trainer.step_count(),
        "final_loss": losses.last().copied().unwrap_or(f64::NAN),
        "eval_loss": eval.loss,
        trainer.task.accuracy_name(): eval.accuracy,
        "eval_trials": eval_trials,
        "wall_seconds": wall,
        "steps_this_run": trained,
        "steps_per_second": if wall > 0.0 { trained as f64 / wall } else { 0.0 },
        "resumed_from_step": start_step,
        "seed": trainer.config().seed,
        "batch": trainer.config().batch,
        "lr": trainer.config().lr,
        "weight_decay": trainer.config().weight_decay,
        "clip_grad_norm": trainer.config().clip_grad_norm,
        "rate_l2": trainer.config().rate_l2,
        "weight_l2": trainer.config().weight_l2,
        "setting_changes": trainer.setting_changes(),
        "network": {
            "name": arch.name(),
            "hidden": arch.hidden_size(),
            "inputs": arch.input_size(),
            "regions": arch.regions().iter().map(|r| format!("{}[{}] {}", r.name, r.units, r.sign.describe())).collect::<Vec<_>>(),
        },
    });
    let path = out.join("metrics.json");
    let text = serde_json::to_string_pretty(&metrics)
        .map_err(|e| Failure::Invalid(format!("error: {e}")))?;
    mrnn_runtime::checkpoint::write_atomic(&path, text.as_bytes())?;
    let mut csv = String::from("step,loss\n");
    for (i, l) in losses.iter().enumerate() {
        let _ = writeln!(csv, "{},{l}", i + 1);
    }
    let path = out.join("metrics.csv");
    mrnn_runtime::checkpoint::write_atomic(&path, csv.as_bytes())?;
    let raw = Series {
        label: "loss per step".into(),
        points: losses.iter().enumerate().map(|(i, &l)| ((i + 1) as f64, l)).collect(),
    };
    let window = 25usize;
    let smooth = Series {
        label: format!("mean of {window} steps"),
        points: losses
            .windows(window.min(losses.len()).max(1))
            .enumerate()
            .map(|(i, w)| ((i + w.len()) as f64, w.iter().sum::<f64>() / w.len() as f64))
            .collect(),
    };
    let title = format!("{}: training loss", trainer.task.name());
    plot::line_chart(&out.join("loss.png"), &title, "step", "loss (MSE)", &[raw, smooth], true)?;
    let (trials, output) = trainer.examples(4)?;
    let panels = (0..4)
        .map(|b| panel(&trials.input, &trials.target, &output, b))
        .collect::<Result<Vec<_>, Error>>()?;
    let title = format!(
        "{}: held-out trials after {} steps ({} {:.3})",
        trainer.task.name(),
        trainer.step_count(),
        trainer.task.accuracy_name(),
        eval.accuracy
    );
    plot::trials_figure(&out.join("trials.png"), &title, &panels)?;
    Ok(())
}

fn panel(input: &Tensor, target: &Tensor, output: &Tensor, b: usize) -> Result<TrialPanel, Error> {
    let rows = |t: &Tensor| -> Result<Vec<Vec<f32>>, Error> {
        Ok(t.get(b)?.to_dtype(mrnn_runtime::DType::F32)?.to_vec2::<f32>()?)
    };
    Ok(TrialPanel { input: rows(input)?, target: rows(target)?, output: rows(output)? })
}
