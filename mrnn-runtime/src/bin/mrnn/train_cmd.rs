//! `mrnn train flip-flop | decision`: trains a network (a JSON config, or the built-in E/I
//! network) on a task, with a progress bar, periodic atomic checkpoints, `--resume`, and the run's
//! metrics and figures written to `--out`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use mrnn_runtime::plot::{self, Series, TrialPanel};
use mrnn_runtime::task::{FlipFlop, PerceptualDecision, Task};
use mrnn_runtime::train::{Model, ReadoutFrom, TrainConfig, Trainer};
use mrnn_runtime::{Device, Error, Network, Overrides, Tensor, builtin};

use crate::Failure;

#[derive(Debug, Subcommand)]
pub(crate) enum TaskCommand {
    /// The N-bit flip-flop: hold the sign of each channel's last pulse.
    FlipFlop {
        #[command(flatten)]
        common: CommonArgs,
        /// Number of bits (input and output channels).
        #[arg(long, default_value_t = 3)]
        bits: usize,
        /// Steps per trial.
        #[arg(long, default_value_t = 64)]
        time: usize,
        /// Probability of a pulse per step and bit.
        #[arg(long, default_value_t = 0.05)]
        p: f64,
    },
    /// Perceptual decision making: report the sign of noisy evidence after a go cue.
    Decision {
        #[command(flatten)]
        common: CommonArgs,
        /// Standard deviation of the evidence noise.
        #[arg(long, default_value_t = 0.5)]
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
    /// Hidden units of the built-in network.
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    /// Optimizer steps in total (a resumed run stops there too).
    #[arg(long, default_value_t = 1500)]
    steps: usize,
    /// Trials per step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Gradient-norm clipping (0: none).
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    /// L2 penalty on rates.
    #[arg(long, default_value_t = 0.0)]
    rate_l2: f64,
    /// L2 penalty on effective recurrent weights.
    #[arg(long, default_value_t = 0.0)]
    weight_l2: f64,
    /// Train without state and input noise.
    #[arg(long)]
    no_noise: bool,
    /// Seed of the weights, the trials and the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Which units the readout reads.
    #[arg(long, value_enum, default_value_t = ReadoutKind::All)]
    readout: ReadoutKind,
    /// Directory for the checkpoint, metrics and figures.
    #[arg(long, default_value = "runs/train")]
    out: PathBuf,
    /// Continue the run saved in `--out` (same settings; `--steps` may grow).
    #[arg(long)]
    resume: bool,
    /// Save a checkpoint every this many steps (and at the end).
    #[arg(long, default_value_t = 100)]
    checkpoint_every: usize,
    /// Held-out trials for the final evaluation.
    #[arg(long, default_value_t = 512)]
    eval_trials: usize,
    /// Run on `cpu` or `cuda` (needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    device: String,
}

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

pub(crate) fn train(command: TaskCommand) -> Result<(), Failure> {
    match command {
        TaskCommand::FlipFlop { common, bits, time, p } => {
            let task = FlipFlop::new(bits, time, p)?;
            run(task, &common)
        }
        TaskCommand::Decision { common, evidence_noise } => {
            let task =
                PerceptualDecision { noise: evidence_noise, ..PerceptualDecision::default() };
            task.validate()?;
            run(task, &common)
        }
    }
}

fn build_model(task: &impl Task, args: &CommonArgs, device: &Device) -> Result<Model, Failure> {
    let network = match &args.config {
        Some(path) => {
            let overrides = Overrides { seed: Some(args.seed), ..Overrides::default() };
            Network::from_json_file(path, &overrides, device)?
        }
        None => {
            if args.hidden < 2 {
                return Err(Failure::Usage(
                    "--hidden must be at least 2 (excitatory and inhibitory units)".into(),
                ));
            }
            let spec = builtin::excitatory_inhibitory(args.hidden, task.input_size());
            let arch = mrnn_ir::compile_spec(&spec, "builtin-ei.json", "")
                .map_err(|r| Failure::Invalid(r.to_string()))?
                .architecture;
            Network::with_seed(arch, args.seed, device)?
        }
    };
    if network.input_size() != task.input_size() {
        return Err(Failure::Invalid(format!(
            "error: the task `{}` has {} input channels, but the network has {} input units",
            task.name(),
            task.input_size(),
            network.input_size()
        )));
    }
    let from = match args.readout {
        ReadoutKind::All => ReadoutFrom::All,
        ReadoutKind::Excitatory => ReadoutFrom::Excitatory,
    };
    Model::new(network, task.output_size(), from, args.seed).map_err(Failure::from)
}

fn run<T: Task>(task: T, args: &CommonArgs) -> Result<(), Failure> {
    let device = device(&args.device)?;
    let config = TrainConfig {
        steps: args.steps,
        batch: args.batch,
        lr: args.lr,
        weight_decay: args.weight_decay,
        clip_grad_norm: args.clip,
        rate_l2: args.rate_l2,
        weight_l2: args.weight_l2,
        noise: !args.no_noise,
        seed: args.seed,
    };
    // Before training: a directory that cannot be written fails now, not at the first save.
    mrnn_runtime::output::prepare_dir(&args.out)?;
    let checkpoint = args.out.join("checkpoint.safetensors");
    let mut trainer = if args.resume {
        if !checkpoint.is_file() {
            return Err(Failure::Invalid(format!(
                "error: nothing to resume: `{}` does not exist",
                checkpoint.display()
            )));
        }
        Trainer::resume(&checkpoint, task, config, &device)?
    } else {
        if checkpoint.exists() {
            return Err(Failure::Invalid(format!(
                "error: `{}` already holds a run; pass --resume to continue it, or choose another --out",
                args.out.display()
            )));
        }
        let model = build_model(&task, args, &device)?;
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
    let mut last_saved = start_step;
    while !trainer.finished() {
        let report = match trainer.step() {
            Ok(r) => r,
            Err(e @ Error::Diverged { .. }) => {
                bar.abandon();
                let kept = if last_saved > 0 && checkpoint.is_file() {
                    format!(
                        "the last good checkpoint (step {last_saved}) is intact at `{}`",
                        checkpoint.display()
                    )
                } else {
                    "no checkpoint had been written yet".to_owned()
                };
                return Err(Failure::Invalid(format!(
                    "error: {e}\n{kept}; lower --lr or raise --clip, then --resume"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        bar.set_position(report.step as u64);
        bar.set_message(format!("loss {:.4}  acc {:.3}", report.loss, report.accuracy));
        if report.step % args.checkpoint_every.max(1) == 0 {
            trainer.save(&checkpoint)?;
            last_saved = report.step;
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
