//! Training: a network and its readout (a [`Model`]) learn a [`Task`] with AdamW, gradient-norm
//! clipping, optional L2 penalties on rates and weights, and noise during training only.
//!
//! Every step draws its trials and its noise from seeds derived from `(seed, step)`, and the
//! optimizer's moments are saved with the weights, so a run resumed from a checkpoint continues
//! exactly as if it had never stopped. A NaN or infinite loss, gradient, or updated parameter
//! stops training before the parameters are touched ([`Error::Diverged`]), so the last good
//! state is never lost, and a checkpoint is only ever written from finite values.
//!
//! Settings are checked before anything runs ([`TrainConfig::validate`], [`Task::validate`],
//! and the memory a step needs, [`step_bytes`]); a resumed run is checked to be the same run
//! ([`SavedRun::differences`]), while the optimizer's settings may change and are recorded
//! ([`SettingChange`]).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::optim::{AdamW, ParamsAdamW, all_finite, clip_grad_norm};
use crate::task::{Task, Trials};
use crate::{
    Error, Forward, Network, Readout, Result, Sign, StateDict, Trajectory, compat, memory,
};
use mrnn_ir::Architecture;

/// Which hidden units the readout sees.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum ReadoutFrom {
    /// Every hidden unit.
    #[default]
    All,
    /// The units of these regions (parents expand to their children), in this order.
    Regions(Vec<String>),
    /// Only excitatory units (as PsychRNN does under Dale's law).
    Excitatory,
}

/// A network with a linear readout from some of its units: everything that is trained.
#[derive(Debug)]
pub struct Model {
    /// The recurrent network.
    pub network: Network,
    /// The linear readout.
    pub readout: Readout,
    from: ReadoutFrom,
    /// Hidden units read, in order; `None` for all of them (no gather needed).
    columns: Option<Tensor>,
}

impl Model {
    /// A model reading `outputs` channels from the units `from` selects; the readout is
    /// initialized from `seed`.
    pub fn new(network: Network, outputs: usize, from: ReadoutFrom, seed: u64) -> Result<Model> {
        let units = readout_units(&network, &from)?;
        let readout = Readout::new(
            units.as_ref().map_or(network.hidden_size(), Vec::len),
            outputs,
            seed,
            network.device(),
        )?;
        Model::with_readout(network, readout, from)
    }

    /// A model with a given readout; its input size must match the units `from` selects.
    pub fn with_readout(network: Network, readout: Readout, from: ReadoutFrom) -> Result<Model> {
        let units = readout_units(&network, &from)?;
        let n = units.as_ref().map_or(network.hidden_size(), Vec::len);
        if readout.hidden_size() != n {
            return Err(Error::Shape {
                what: "readout weight".to_owned(),
                expected: format!("[O, {n}] (the {n} units the readout reads)"),
                got: readout.weight.dims().to_vec(),
            });
        }
        let columns = units.map(|u| Tensor::from_vec(u, n, network.device())).transpose()?;
        Ok(Model { network, readout, from, columns })
    }

    /// Which units the readout reads.
    #[must_use]
    pub fn readout_from(&self) -> &ReadoutFrom {
        &self.from
    }

    /// Every learnable quantity, once, with its checkpoint name: the network's (`network.W_rec`,
    /// `network.W_inp`, `network.base_firing` when some region learns its bias) and the
    /// readout's (`readout.weight`, `readout.bias`). The optimizer and the checkpoint both take
    /// this list, so neither can miss a parameter.
    #[must_use]
    pub fn parameters(&self) -> Vec<(String, Var)> {
        let network =
            self.network.trainable_vars().into_iter().map(|(n, v)| (format!("network.{n}"), v));
        let readout = self.readout.vars().into_iter().map(|(n, v)| (format!("readout.{n}"), v));
        network.chain(readout).collect()
    }

    /// Runs the network on `input` and reads it out: the trajectory and the output `[B, T, O]`
    /// (batch first, whatever the network's layout). The trajectory holds the rates only
    /// ([`Forward::rates_only`]: training and evaluation read nothing else).
    pub fn run(&self, input: &Tensor, noise_seed: Option<u64>) -> Result<(Trajectory, Tensor)> {
        let batch_first = self.network.architecture().settings().batch_first;
        let input =
            if batch_first { input.clone() } else { input.transpose(0, 1)?.contiguous()? };
        let mut options = Forward::new().rates_only();
        if let Some(seed) = noise_seed {
            options = options.noise(seed);
        }
        let trajectory = self.network.forward(&input, &options)?;
        let h = if batch_first {
            trajectory.h.clone()
        } else {
            trajectory.h.transpose(0, 1)?.contiguous()?
        };
        let read = match &self.columns {
            Some(cols) => h.index_select(cols, 2)?,
            None => h,
        };
        Ok((trajectory, self.readout.forward(&read)?))
    }
}

/// The hidden units a readout reads, or `None` for all.
fn readout_units(network: &Network, from: &ReadoutFrom) -> Result<Option<Vec<u32>>> {
    let units: Vec<usize> = match from {
        ReadoutFrom::All => return Ok(None),
        ReadoutFrom::Regions(names) => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            network.hidden_units(&names)?
        }
        ReadoutFrom::Excitatory => network
            .architecture()
            .regions()
            .iter()
            .filter(|r| r.sign == Sign::Exc)
            .flat_map(mrnn_ir::Region::range)
            .collect(),
    };
    if units.is_empty() {
        return Err(Error::Invalid(format!("the readout would read no unit ({from:?})")));
    }
    Ok(Some(units.into_iter().map(|u| u as u32).collect()))
}

/// Hyper-parameters of a training run.
///
/// [`TrainConfig::validate`] checks every field up front ([`Trainer::new`] calls it). On
/// resume, `steps` may grow and the optimizer's settings (`lr`, `weight_decay`,
/// `clip_grad_norm`, `rate_l2`, `weight_l2`) may change, recorded as [`SettingChange`]s;
/// `batch`, `noise` and `seed` define the run and may not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Optimizer steps in total (a resumed run stops at the same step).
    pub steps: usize,
    /// Trials per step.
    pub batch: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Gradients are scaled so that their joint norm is at most this (0: no clipping).
    pub clip_grad_norm: f64,
    /// L2 penalty on rates: `rate_l2 * mean(h^2)`.
    pub rate_l2: f64,
    /// L2 penalty on effective recurrent weights: `weight_l2 * mean(W_rec_eff^2)`.
    pub weight_l2: f64,
    /// Noise on the state and the input during training (levels from the architecture).
    pub noise: bool,
    /// Seed of the trial and noise streams.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 1000,
            batch: 64,
            lr: 1e-2,
            weight_decay: 0.0,
            clip_grad_norm: 1.0,
            rate_l2: 0.0,
            weight_l2: 0.0,
            noise: true,
            seed: 0,
        }
    }
}

impl TrainConfig {
    /// Every field out of its range, in field order (empty when all are valid).
    ///
    /// A learning rate may be any positive finite number: one too large for the arithmetic is
    /// caught at the step it breaks ([`Error::Diverged`]). The penalties and the weight decay
    /// multiply `f32` tensors, so they must also be finite in `f32`.
    #[must_use]
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.steps == 0 {
            out.push(Problem::new("steps", self.steps, "train at least 1 step"));
        }
        if self.batch == 0 {
            out.push(Problem::new("batch", self.batch, "at least 1 trial per step"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            out.push(Problem::new(
                "lr",
                number(self.lr),
                "the learning rate must be a positive number",
            ));
        }
        if !f32_finite_non_negative(self.weight_decay) {
            out.push(Problem::new(
                "weight_decay",
                number(self.weight_decay),
                "the weight decay must be 0 or a positive number finite in f32",
            ));
        } else if self.lr.is_finite() && self.lr * self.weight_decay >= 1.0 {
            out.push(Problem::new(
                "weight_decay",
                number(self.weight_decay),
                format!(
                    "the weight decay times the learning rate ({}) must be below 1: each step multiplies the weights by 1 - lr * weight_decay",
                    number(self.lr * self.weight_decay)
                ),
            ));
        }
        if !(self.clip_grad_norm.is_finite() && self.clip_grad_norm >= 0.0) {
            out.push(Problem::new(
                "clip_grad_norm",
                self.clip_grad_norm,
                "the clipping norm must be a positive number, or 0 for no clipping",
            ));
        }
        for (name, value) in [("rate_l2", self.rate_l2), ("weight_l2", self.weight_l2)] {
            if !f32_finite_non_negative(value) {
                out.push(Problem::new(
                    name,
                    number(value),
                    "a penalty must be 0 or a positive number finite in f32",
                ));
            }
        }
        out
    }

    /// Fails, listing every field out of range ([`TrainConfig::problems`]), before anything
    /// runs.
    pub fn validate(&self) -> Result<()> {
        Problem::check("training settings", &self.problems())
    }
}

/// A number for messages: `0.001`, `1e39` (not the 40 digits `Display` writes for `1e39`).
#[must_use]
pub fn number(x: f64) -> String {
    if x != 0.0 && x.is_finite() && !(1e-4..1e6).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}

/// Whether `x` is finite, not negative, and finite once rounded to `f32` (the tensors' type).
fn f32_finite_non_negative(x: f64) -> bool {
    x.is_finite() && x >= 0.0 && (x as f32).is_finite()
}

/// A setting out of its range, found by a `problems()` check ([`TrainConfig::problems`],
/// [`crate::task::FlipFlop::problems`], ...): which setting (the field's name), its value, and
/// what it must be. The command line names its own flags from `setting`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The field (`clip_grad_norm`, `n_time`).
    pub setting: &'static str,
    /// Its value, as given (`NaN`, `-1`).
    pub value: String,
    /// What it must be, in words.
    pub expected: String,
}

impl Problem {
    /// A problem with `setting`, whose value is `value`: `expected` says what it must be.
    pub fn new(
        setting: &'static str,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Problem {
        Problem { setting, value: value.to_string(), expected: expected.into() }
    }

    /// `Ok` when `problems` is empty, else an [`Error::Invalid`] listing them all, about `what`.
    pub fn check(what: &str, problems: &[Problem]) -> Result<()> {
        if problems.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = problems.iter().map(Problem::to_string).collect();
        Err(Error::Invalid(format!("invalid {what}: {}", list.join("; "))))
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` = {}: {}", self.setting, self.value, self.expected)
    }
}

/// An optimizer setting changed on resume: recorded in the checkpoint and the run's metrics, so
/// that a run's history says which settings trained which steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SettingChange {
    /// The steps already trained when it changed: steps `step + 1` onwards used `to`.
    pub step: usize,
    /// The [`TrainConfig`] field (`lr`, `clip_grad_norm`).
    pub setting: String,
    /// The value before.
    pub from: f64,
    /// The value after.
    pub to: f64,
}

/// Something that defines a run and differs between a checkpoint and a resume request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// What differs: `task`, `task.<parameter>` (a parameter the task reports in
    /// [`Task::parameters`]), `network`, `readout`, `batch`, `noise`, `seed`, or `steps` (fewer
    /// than already trained).
    pub setting: String,
    /// The value asked for now.
    pub requested: String,
    /// The value in the checkpoint.
    pub saved: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} vs {} saved", self.setting, self.requested, self.saved)
    }
}

/// What one optimizer step measured.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The step number (1-based: the first step is 1).
    pub step: usize,
    /// Total loss (task loss plus penalties).
    pub loss: f64,
    /// Masked MSE against the target.
    pub task_loss: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// The task's accuracy on this step's (noisy) trials.
    pub accuracy: f64,
}

/// Loss and accuracy on held-out trials without noise.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Masked MSE.
    pub loss: f64,
    /// The task's accuracy.
    pub accuracy: f64,
}

/// Masked mean squared error: `sum(mask * (y - target)^2) / sum(mask)`, the fused
/// [`loss::masked_mse`](crate::loss::masked_mse).
pub fn masked_mse(output: &Tensor, trials: &Trials) -> Result<Tensor> {
    crate::loss::masked_mse(output, &trials.target, &trials.mask)
}

/// A seed for stream `stream` at position `index` (`SplitMix64` finalizer: nearby inputs give
/// unrelated outputs).
#[must_use]
pub fn derive_seed(seed: u64, stream: u64, index: u64) -> u64 {
    let mut z = seed
        ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ index.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const TRIALS: u64 = 1;
const NOISE: u64 = 2;
const HELD_OUT: u64 = 3;

/// Metadata keys of a training checkpoint (beside the network's own).
const STEP_KEY: &str = "train.step";
const TASK_KEY: &str = "train.task";
const TASK_PARAMETERS_KEY: &str = "train.task_parameters";
const CONFIG_KEY: &str = "train.config";
const READOUT_KEY: &str = "train.readout_from";
const CHANGES_KEY: &str = "train.changes";
const LOSSES: &str = "train.losses";

/// Trains a [`Model`] on a [`Task`].
#[derive(Debug)]
pub struct Trainer<T: Task> {
    /// The model being trained.
    pub model: Model,
    /// The task.
    pub task: T,
    config: TrainConfig,
    optimizer: AdamW,
    step: usize,
    losses: Vec<f64>,
    changes: Vec<SettingChange>,
}

impl<T: Task> Trainer<T> {
    /// A trainer at step 0. Checks everything before allocating: the configuration
    /// ([`TrainConfig::validate`]), the task's parameters ([`Task::validate`]), that the model's
    /// input and output sizes match the task's, that its parameters are finite, and that a
    /// training step fits in memory ([`step_bytes`] against [`memory::limit`]).
    pub fn new(model: Model, task: T, config: TrainConfig) -> Result<Self> {
        config.validate()?;
        task.validate()?;
        check_sizes(&model, &task)?;
        let arch = model.network.architecture();
        memory::ensure_fits(
            format!(
                "training `{}` on `{}` ({} units) with batches of {} trials of {} steps",
                task.name(),
                arch.name(),
                arch.hidden_size(),
                config.batch,
                task.steps()
            ),
            step_bytes(arch, task.output_size(), config.batch, task.steps()),
        )?;
        // Everything a checkpoint of the model would hold (fixed biases included): a run that
        // starts from a NaN can neither learn nor ever save.
        for (name, t) in model_tensors(&model) {
            if !all_finite(&t)? {
                return Err(Error::Invalid(format!(
                    "the model's `{name}` holds NaN or infinite values before training"
                )));
            }
        }
        let optimizer = AdamW::new(model.parameters(), adamw_params(&config))?;
        Ok(Trainer {
            model,
            task,
            config,
            optimizer,
            step: 0,
            losses: Vec::new(),
            changes: Vec::new(),
        })
    }

    /// The trained model, when training is done (its network converts back to the type
    /// `mrnn!` generated: `Net::try_from(trainer.into_model().network)`).
    #[must_use]
    pub fn into_model(self) -> Model {
        self.model
    }

    /// Steps taken so far.
    #[must_use]
    pub fn step_count(&self) -> usize {
        self.step
    }

    /// The run's hyper-parameters.
    #[must_use]
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The loss of every step so far (kept across resumes).
    #[must_use]
    pub fn losses(&self) -> &[f64] {
        &self.losses
    }

    /// The optimizer settings changed on resume, oldest first (kept across resumes).
    #[must_use]
    pub fn setting_changes(&self) -> &[SettingChange] {
        &self.changes
    }

    /// Whether the configured number of steps is done.
    #[must_use]
    pub fn finished(&self) -> bool {
        self.step >= self.config.steps
    }

    /// One optimizer step on a fresh batch. When the loss, a gradient, or a parameter or
    /// moment after the update would not be finite, returns [`Error::Diverged`] without
    /// changing anything: the trainer still holds the state after the last good step, and
    /// [`Trainer::save`] can write it.
    pub fn step(&mut self) -> Result<StepReport> {
        let step = self.step + 1;
        let device = self.model.network.device().clone();
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(self.config.seed, TRIALS, step as u64));
        let trials = self.task.sample(self.config.batch, &mut rng, &device)?;
        let noise = self.config.noise.then(|| derive_seed(self.config.seed, NOISE, step as u64));
        let (trajectory, output) = self.model.run(&trials.input, noise)?;
        let task_loss = masked_mse(&output, &trials)?;
        let mut loss = task_loss.clone();
        if self.config.rate_l2 > 0.0 {
            loss = (loss + (crate::loss::mean_square(&trajectory.h)? * self.config.rate_l2)?)?;
        }
        if self.config.weight_l2 > 0.0 {
            loss = (loss
                + (self.model.network.w_rec_eff()?.sqr()?.mean_all()? * self.config.weight_l2)?)?;
        }
        let loss_value = scalar(&loss)?;
        if !loss_value.is_finite() {
            return Err(Error::Diverged { step, what: format!("the loss is {loss_value}") });
        }
        let mut grads = loss.backward()?;
        let params = self.model.parameters();
        let vars: Vec<&Var> = params.iter().map(|(_, v)| v).collect();
        let max_norm = if self.config.clip_grad_norm > 0.0 {
            self.config.clip_grad_norm
        } else {
            f64::INFINITY
        };
        let grad_norm = clip_grad_norm(&mut grads, &vars, max_norm)?;
        if !grad_norm.is_finite() {
            let mut culprit = "a parameter".to_owned();
            for (name, var) in &params {
                if let Some(g) = grads.get(var.as_tensor())
                    && !all_finite(g)?
                {
                    culprit = format!("`{name}`");
                    break;
                }
            }
            return Err(Error::Diverged {
                step,
                what: format!("the gradient of {culprit} is not finite"),
            });
        }
        // All or nothing: a non-finite update leaves every parameter and moment as it was.
        self.optimizer.step(&grads).map_err(|e| match e {
            Error::Diverged { what, .. } => Error::Diverged { step, what },
            other => other,
        })?;
        let accuracy = self.task.accuracy(&output.detach(), &trials)?;
        self.step = step;
        self.losses.push(loss_value);
        Ok(StepReport {
            step,
            loss: loss_value,
            task_loss: scalar(&task_loss)?,
            grad_norm,
            accuracy,
        })
    }

    /// Loss and accuracy on `batch` held-out trials (a stream training never draws from),
    /// without noise. `round` picks which held-out batch. Refuses, before allocating, no trials
    /// or more than memory holds ([`Trainer::check_evaluation`]).
    pub fn evaluate(&self, batch: usize, round: u64) -> Result<Evaluation> {
        self.check_evaluation(batch)?;
        let device = self.model.network.device().clone();
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(self.config.seed, HELD_OUT, round));
        let trials = self.task.sample(batch, &mut rng, &device)?;
        let (_, output) = self.model.run(&trials.input, None)?;
        Ok(Evaluation {
            loss: scalar(&masked_mse(&output, &trials)?)?,
            accuracy: self.task.accuracy(&output, &trials)?,
        })
    }

    /// Checks, without running anything, that an evaluation on `batch` trials can run: at
    /// least one trial, and the memory it needs ([`evaluation_bytes`]).
    pub fn check_evaluation(&self, batch: usize) -> Result<()> {
        if batch == 0 {
            return Err(Error::Invalid("an evaluation needs at least 1 trial, got 0".to_owned()));
        }
        let arch = self.model.network.architecture();
        memory::ensure_fits(
            format!("evaluating {batch} held-out trials of {} steps", self.task.steps()),
            evaluation_bytes(arch, self.task.output_size(), batch, self.task.steps()),
        )
    }

    /// Example held-out trials with the model's output (for figures): `(trials, output)`.
    pub fn examples(&self, batch: usize) -> Result<(Trials, Tensor)> {
        self.check_evaluation(batch)?;
        let device = self.model.network.device().clone();
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(self.config.seed, HELD_OUT, u64::MAX));
        let trials = self.task.sample(batch, &mut rng, &device)?;
        let (_, output) = self.model.run(&trials.input, None)?;
        Ok((trials, output))
    }

    /// Saves everything needed to resume: the network, the readout, the optimizer's moments, the
    /// step, the loss history, the configuration, the task's parameters and the settings changed
    /// on resume. Atomic: the previous checkpoint survives any failure.
    ///
    /// Refuses, writing nothing, when a parameter or a moment is not finite: a checkpoint is the
    /// state a run resumes from, so it must never replace a good one with a broken one.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors = model_tensors(&self.model);
        tensors.extend(self.optimizer.state());
        let refuse = |what: String| {
            Err(Error::Invalid(format!(
                "refusing to write the checkpoint `{}`: {what} (any file already there is left as it was)",
                path.display()
            )))
        };
        for (name, t) in &tensors {
            if !all_finite(t)? {
                return refuse(format!("`{name}` holds NaN or infinite values"));
            }
        }
        if let Some(i) = self.losses.iter().position(|l| !l.is_finite()) {
            return refuse(format!("the loss of step {} is {}", i + 1, self.losses[i]));
        }
        let device = self.model.network.device();
        let history = Tensor::from_vec(self.losses.clone(), self.losses.len(), &Device::Cpu)?
            .to_device(device)?;
        tensors.push((LOSSES.to_owned(), history));
        let mut metadata = self.model.network.checkpoint_metadata()?;
        metadata.insert(STEP_KEY.to_owned(), self.step.to_string());
        metadata.insert(TASK_KEY.to_owned(), self.task.name().to_owned());
        metadata.insert(TASK_PARAMETERS_KEY.to_owned(), to_json(&self.task.parameters())?);
        metadata.insert(CONFIG_KEY.to_owned(), to_json(&self.config)?);
        metadata.insert(READOUT_KEY.to_owned(), to_json(&self.model.from)?);
        metadata.insert(CHANGES_KEY.to_owned(), to_json(&self.changes)?);
        crate::checkpoint::write_safetensors(path, tensors, Some(metadata))
    }

    /// Resumes the run saved in `path` by [`Trainer::save`]: the model, the optimizer state,
    /// the step, the loss history and the settings changes come from the file.
    ///
    /// The request must describe the same run: the network's `architecture` (as
    /// [`Network::expect_architecture`] compares them), the `readout`, the task and each of its
    /// [`Task::parameters`], and the configuration's `batch`, `noise` and `seed`; otherwise the
    /// error lists every [`Difference`]. `steps` may grow, and the optimizer's settings (`lr`,
    /// `weight_decay`, `clip_grad_norm`, `rate_l2`, `weight_l2`) may change: each change is
    /// recorded ([`Trainer::setting_changes`]).
    pub fn resume(
        path: &Path,
        architecture: &Architecture,
        readout: &ReadoutFrom,
        task: T,
        config: TrainConfig,
        device: &Device,
    ) -> Result<Self> {
        let saved = SavedRun::read(path)?;
        Trainer::resume_saved(saved, architecture, readout, task, config, device)
    }

    /// [`Trainer::resume`] from a checkpoint already read (after the caller looked at
    /// [`SavedRun::differences`] itself).
    pub fn resume_saved(
        saved: SavedRun,
        architecture: &Architecture,
        readout: &ReadoutFrom,
        task: T,
        config: TrainConfig,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        task.validate()?;
        let differences = saved.differences(architecture, readout, &task, &config);
        if !differences.is_empty() {
            let list: Vec<String> = differences.iter().map(Difference::to_string).collect();
            return Err(saved.bad(format!(
                "saved by another run: {}; a resumed run must be the same run (only `steps` may grow, and the optimizer settings `lr`, `weight_decay`, `clip_grad_norm`, `rate_l2` and `weight_l2` may change)",
                list.join(", ")
            )));
        }
        if config.steps < saved.step {
            return Err(saved.bad(format!(
                "{} steps are already trained; `steps` ({}) counts from the start of the run and cannot be fewer",
                saved.step, config.steps
            )));
        }
        for (name, t) in saved.sd.iter() {
            if !all_finite(t)? {
                return Err(saved.bad(format!(
                    "`{name}` holds NaN or infinite values: the file cannot be resumed"
                )));
            }
        }
        let network = Network::from_checkpoint(&saved.sd, &saved.metadata, "network.", device)?;
        let readout_layer = Readout::from_state_dict(&saved.sd, "readout.", device)?;
        let mut changes = saved.changes;
        changes.extend(config_changes(&saved.config, &config, saved.step));
        let model = Model::with_readout(network, readout_layer, saved.readout_from)?;
        let mut trainer = Trainer::new(model, task, config)?;
        let state: HashMap<String, Tensor> =
            saved.sd.iter().map(|(k, t)| (k.to_owned(), t.clone())).collect();
        trainer.optimizer.load_state(&state, saved.step as u64)?;
        let bad = |message: String| Error::Checkpoint { path: saved.path.clone(), message };
        let losses = saved.sd.get(LOSSES).ok_or_else(|| bad(format!("no `{LOSSES}`")))?;
        trainer.losses = losses.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        if trainer.losses.len() != saved.step {
            return Err(bad(format!(
                "{} losses recorded for {} steps",
                trainer.losses.len(),
                saved.step
            )));
        }
        trainer.step = saved.step;
        trainer.changes = changes;
        Ok(trainer)
    }
}

/// A training checkpoint read back (the file [`Trainer::save`] writes), before anything is
/// built from it: what the run was, to compare with a request to resume it.
#[derive(Debug)]
pub struct SavedRun {
    path: String,
    sd: StateDict,
    metadata: HashMap<String, String>,
    architecture: Architecture,
    step: usize,
    task: String,
    task_parameters: Vec<(String, String)>,
    config: TrainConfig,
    readout_from: ReadoutFrom,
    changes: Vec<SettingChange>,
}

impl SavedRun {
    /// Reads a training checkpoint (tensors on the CPU); fails, naming the key, when the file
    /// is not one.
    pub fn read(path: &Path) -> Result<SavedRun> {
        let (sd, metadata) = crate::checkpoint::read_safetensors(path)?;
        let source = path.display().to_string();
        let bad = |message: String| Error::Checkpoint { path: source.clone(), message };
        let get = |key: &str| {
            metadata.get(key).map(String::as_str).ok_or_else(|| {
                bad(format!("not a training checkpoint of this mrnn: no `{key}` in its metadata"))
            })
        };
        let step: usize =
            get(STEP_KEY)?.parse().map_err(|e| bad(format!("bad `{STEP_KEY}`: {e}")))?;
        let task = get(TASK_KEY)?.to_owned();
        let task_parameters = parse_json(get(TASK_PARAMETERS_KEY)?, TASK_PARAMETERS_KEY, &bad)?;
        let config = parse_json(get(CONFIG_KEY)?, CONFIG_KEY, &bad)?;
        let readout_from = parse_json(get(READOUT_KEY)?, READOUT_KEY, &bad)?;
        let changes = parse_json(get(CHANGES_KEY)?, CHANGES_KEY, &bad)?;
        // The architecture as the network's loader compiles it (which also checks its hash, when
        // the network is built from the file).
        let (name, spec_text) = (get("name")?, get("spec")?);
        let file = format!("{name}.json");
        let spec = mrnn_ir::read_spec(spec_text, &file)?;
        let architecture = mrnn_ir::compile_spec(&spec, &file, spec_text)?.architecture;
        Ok(SavedRun {
            path: source,
            sd,
            metadata,
            architecture,
            step,
            task,
            task_parameters,
            config,
            readout_from,
            changes,
        })
    }

    /// Steps already trained.
    #[must_use]
    pub fn step(&self) -> usize {
        self.step
    }

    /// The configuration of the run's last stretch.
    #[must_use]
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The network's architecture.
    #[must_use]
    pub fn architecture(&self) -> &Architecture {
        &self.architecture
    }

    /// Which units the readout reads.
    #[must_use]
    pub fn readout_from(&self) -> &ReadoutFrom {
        &self.readout_from
    }

    /// The task's name.
    #[must_use]
    pub fn task(&self) -> &str {
        &self.task
    }

    /// The task's parameters ([`Task::parameters`]).
    #[must_use]
    pub fn task_parameters(&self) -> &[(String, String)] {
        &self.task_parameters
    }

    /// The optimizer settings changed on earlier resumes.
    #[must_use]
    pub fn setting_changes(&self) -> &[SettingChange] {
        &self.changes
    }

    /// Everything that defines the run and differs in this request: the task and each of its
    /// parameters, the network, the readout, and the configuration's `batch`, `noise` and
    /// `seed` (not `steps` or the optimizer's settings, which may change). Empty when the
    /// request continues this run.
    #[must_use]
    pub fn differences(
        &self,
        architecture: &Architecture,
        readout: &ReadoutFrom,
        task: &impl Task,
        config: &TrainConfig,
    ) -> Vec<Difference> {
        let mut out = Vec::new();
        let mut differ = |setting: &str, requested: String, saved: String| {
            if requested != saved {
                out.push(Difference { setting: setting.to_owned(), requested, saved });
            }
        };
        differ("task", task.name().to_owned(), self.task.clone());
        if task.name() == self.task {
            let requested = task.parameters();
            let lookup = |list: &[(String, String)], name: &str| {
                list.iter()
                    .find(|(n, _)| n == name)
                    .map_or_else(|| "(none)".to_owned(), |(_, v)| v.clone())
            };
            let mut names: Vec<&String> = requested.iter().map(|(n, _)| n).collect();
            names.extend(
                self.task_parameters
                    .iter()
                    .map(|(n, _)| n)
                    .filter(|n| !requested.iter().any(|(r, _)| r == *n)),
            );
            for name in names {
                differ(
                    &format!("task.{name}"),
                    lookup(&requested, name),
                    lookup(&self.task_parameters, name),
                );
            }
        }
        let network = compat::differences(architecture, &self.architecture);
        if !network.is_empty() {
            let describe = |a: &Architecture| {
                let regions: Vec<String> =
                    a.regions().iter().map(|r| format!("{}[{}]", r.name, r.units)).collect();
                format!("`{}` ({} units: {})", a.name(), a.hidden_size(), regions.join(" "))
            };
            out.push(Difference {
                setting: "network".to_owned(),
                requested: format!("{} ({})", describe(architecture), network.join("; ")),
                saved: describe(&self.architecture),
            });
        }
        let mut differ = |setting: &str, requested: String, saved: String| {
            if requested != saved {
                out.push(Difference { setting: setting.to_owned(), requested, saved });
            }
        };
        differ("readout", describe_readout(readout), describe_readout(&self.readout_from));
        differ("batch", config.batch.to_string(), self.config.batch.to_string());
        differ("noise", config.noise.to_string(), self.config.noise.to_string());
        differ("seed", config.seed.to_string(), self.config.seed.to_string());
        out
    }

    fn bad(&self, message: String) -> Error {
        Error::Checkpoint { path: self.path.clone(), message }
    }
}

/// A JSON metadata entry, or an error naming the key.
fn parse_json<V: serde::de::DeserializeOwned>(
    text: &str,
    key: &str,
    bad: &dyn Fn(String) -> Error,
) -> Result<V> {
    serde_json::from_str(text).map_err(|e| bad(format!("bad `{key}`: {e}")))
}

/// `all`, `excitatory`, or `regions a, b`.
fn describe_readout(from: &ReadoutFrom) -> String {
    match from {
        ReadoutFrom::All => "all".to_owned(),
        ReadoutFrom::Excitatory => "excitatory".to_owned(),
        ReadoutFrom::Regions(names) => format!("regions {}", names.join(", ")),
    }
}

/// The optimizer settings that differ from `saved` to `new`, as changes made after `step` steps.
#[allow(clippy::float_cmp, reason = "any change at all is a change to record")]
fn config_changes(saved: &TrainConfig, new: &TrainConfig, step: usize) -> Vec<SettingChange> {
    [
        ("lr", saved.lr, new.lr),
        ("weight_decay", saved.weight_decay, new.weight_decay),
        ("clip_grad_norm", saved.clip_grad_norm, new.clip_grad_norm),
        ("rate_l2", saved.rate_l2, new.rate_l2),
        ("weight_l2", saved.weight_l2, new.weight_l2),
    ]
    .into_iter()
    .filter(|(_, from, to)| from != to)
    .map(|(setting, from, to)| SettingChange { step, setting: setting.to_owned(), from, to })
    .collect()
}

/// The model's tensors as a checkpoint names them: the network's (`network.W_rec`, masks,
/// signs, `network.base_firing`) and the readout's.
fn model_tensors(model: &Model) -> Vec<(String, Tensor)> {
    let mut tensors = model.network.checkpoint_tensors("network.");
    tensors.extend(
        model
            .readout
            .vars()
            .into_iter()
            .map(|(n, v)| (format!("readout.{n}"), v.as_tensor().clone())),
    );
    tensors
}

fn adamw_params(config: &TrainConfig) -> ParamsAdamW {
    ParamsAdamW { lr: config.lr, weight_decay: config.weight_decay, ..ParamsAdamW::default() }
}

/// Memory of the network and its readout as built: raw weights, masks, sign matrices and the
/// Dale factors of `W_rec` and `W_inp`, per-unit vectors, the readout. An estimate from the
/// sizes alone, for refusing a network too large before building it.
#[must_use]
pub fn model_bytes(arch: &Architecture, outputs: usize) -> u64 {
    let (h, i) = (arch.hidden_size(), arch.input_size());
    memory::f32_bytes(&[h, h])
        .saturating_add(memory::f32_bytes(&[h, i]))
        .saturating_mul(MODEL_COPIES)
        .saturating_add(memory::f32_bytes(&[h, 8]))
        .saturating_add(memory::f32_bytes(&[outputs, h + 1]))
}

/// Memory a training step allocates besides the model ([`model_bytes`]), for `batch` trials of
/// `steps` steps: per parameter its gradient, the optimizer's moments and the update's
/// temporaries; per step the trials, noise, rates, drive and their gradients. An estimate from
/// the sizes alone (measured against the peak resident memory of real runs; see the tests),
/// saturating instead of wrapping around.
#[must_use]
pub fn step_bytes(arch: &Architecture, outputs: usize, batch: usize, steps: usize) -> u64 {
    let (h, i) = (arch.hidden_size(), arch.input_size());
    let parameters = memory::f32_bytes(&[h, h])
        .saturating_add(memory::f32_bytes(&[h, i]))
        .saturating_add(memory::f32_bytes(&[outputs, h + 1]))
        .saturating_mul(OPTIMIZER_COPIES);
    let sequences = memory::f32_bytes(&[batch, steps, h]).saturating_mul(TRAINING_SEQUENCES);
    let channels = memory::f32_bytes(&[batch, steps, i.saturating_add(outputs)])
        .saturating_mul(TRAINING_CHANNELS);
    parameters.saturating_add(sequences).saturating_add(channels)
}

/// Memory an evaluation on `batch` trials of `steps` steps allocates besides the model: the
/// trials, the rates, the readout (no gradients, no noise). An estimate from the sizes alone.
#[must_use]
pub fn evaluation_bytes(arch: &Architecture, outputs: usize, batch: usize, steps: usize) -> u64 {
    let (h, i) = (arch.hidden_size(), arch.input_size());
    let sequences = memory::f32_bytes(&[batch, steps, h]).saturating_mul(EVALUATION_SEQUENCES);
    let channels = memory::f32_bytes(&[batch, steps, i.saturating_add(outputs)])
        .saturating_mul(EVALUATION_CHANNELS);
    sequences.saturating_add(channels).saturating_add(memory::f32_bytes(&[h, h]).saturating_mul(2))
}

// The multipliers below come from the peak resident memory of `mrnn train flip-flop` runs
// (`/usr/bin/time -f %M`, the process's ~28 MB at rest removed), rounded up:
//   H = 1024, 2048 (parameters dominate): 18-23 `[H, H]` matrices in all;
//   B = 2048, T = 200, H = 64 (sequences dominate): about 9.5 `[B, T, H]` sequences, and 12.5
//   with a rate penalty and a readout from some units (B = 1024, T = 100, H = 128);
//   evaluating 100,000 trials of 64 steps, H = 64: 1.3 `[B, T, H]` sequences with every unit
//   read, 2.1 with the excitatory ones.

/// `[H, H]` and `[H, I]` matrices of a network: raw weights, mask, sign matrix, Dale factor.
const MODEL_COPIES: u64 = 4;
/// `[H, H]` matrices of a step besides the model's: gradients, effective weights and their
/// gradients, the moments `m` and `v` with their new values, and the update's temporaries.
const OPTIMIZER_COPIES: u64 = 20;
/// `[B, T, H]` sequences alive at a training step's peak: noise, drive, rates, and gradients.
const TRAINING_SEQUENCES: u64 = 16;
/// `[B, T, I + O]` sequences of a training step: trials (host and tensor), noise, output,
/// masks, gradients.
const TRAINING_CHANNELS: u64 = 10;
/// `[B, T, H]` sequences of an evaluation: the rates, and the readout's selection of them.
const EVALUATION_SEQUENCES: u64 = 2;
/// `[B, T, I + O]` sequences of an evaluation: trials (host and tensor), output, accuracy.
const EVALUATION_CHANNELS: u64 = 8;

fn check_sizes(model: &Model, task: &impl Task) -> Result<()> {
    let (i, o) = (model.network.input_size(), model.readout.output_size());
    if i != task.input_size() || o != task.output_size() {
        return Err(Error::Invalid(format!(
            "the task `{}` has {} input and {} output channels, but the model has {i} inputs and {o} readout outputs",
            task.name(),
            task.input_size(),
            task.output_size()
        )));
    }
    Ok(())
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(f64::from(t.to_dtype(DType::F32)?.to_scalar::<f32>()?))
}

fn to_json(value: &impl Serialize) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::Invalid(format!("cannot serialize the training state: {e}")))
}
