//! Training: a network and its readout (a [`Model`]) learn a [`Task`] with AdamW, gradient-norm
//! clipping, optional L2 penalties on rates and weights, and noise during training only.
//!
//! Every step draws its trials and its noise from seeds derived from `(seed, step)`, and the
//! optimizer's moments are saved with the weights, so a run resumed from a checkpoint continues
//! exactly as if it had never stopped. A NaN or infinite loss or gradient stops training before
//! the parameters are touched ([`Error::Diverged`]), so the last good state is never lost.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::optim::{AdamW, ParamsAdamW, clip_grad_norm};
use crate::task::{Task, Trials};
use crate::{Error, Forward, Network, Readout, Result, Sign, Trajectory};

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
}

impl<T: Task> Trainer<T> {
    /// A trainer at step 0. The model's input and output sizes must match the task's.
    pub fn new(model: Model, task: T, config: TrainConfig) -> Result<Self> {
        check_sizes(&model, &task)?;
        if config.batch == 0 {
            return Err(Error::Invalid("the batch size must be at least 1".to_owned()));
        }
        if !(config.lr.is_finite() && config.lr > 0.0) {
            return Err(Error::Invalid(format!(
                "the learning rate must be positive, got {}",
                config.lr
            )));
        }
        let params = ParamsAdamW {
            lr: config.lr,
            weight_decay: config.weight_decay,
            ..ParamsAdamW::default()
        };
        let optimizer = AdamW::new(model.parameters(), params)?;
        Ok(Trainer { model, task, config, optimizer, step: 0, losses: Vec::new() })
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

    /// Whether the configured number of steps is done.
    #[must_use]
    pub fn finished(&self) -> bool {
        self.step >= self.config.steps
    }

    /// One optimizer step on a fresh batch. On a non-finite loss or gradient, returns
    /// [`Error::Diverged`] without changing any parameter.
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
            let culprit = params
                .iter()
                .find(|(_, v)| grads.get(v.as_tensor()).is_some_and(|g| !all_finite(g)))
                .map_or_else(|| "a parameter".to_owned(), |(n, _)| format!("`{n}`"));
            return Err(Error::Diverged {
                step,
                what: format!("the gradient of {culprit} is not finite"),
            });
        }
        self.optimizer.step(&grads)?;
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
    /// without noise. `round` picks which held-out batch.
    pub fn evaluate(&self, batch: usize, round: u64) -> Result<Evaluation> {
        let device = self.model.network.device().clone();
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(self.config.seed, HELD_OUT, round));
        let trials = self.task.sample(batch, &mut rng, &device)?;
        let (_, output) = self.model.run(&trials.input, None)?;
        Ok(Evaluation {
            loss: scalar(&masked_mse(&output, &trials)?)?,
            accuracy: self.task.accuracy(&output, &trials)?,
        })
    }

    /// Example held-out trials with the model's output (for figures): `(trials, output)`.
    pub fn examples(&self, batch: usize) -> Result<(Trials, Tensor)> {
        let device = self.model.network.device().clone();
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(self.config.seed, HELD_OUT, u64::MAX));
        let trials = self.task.sample(batch, &mut rng, &device)?;
        let (_, output) = self.model.run(&trials.input, None)?;
        Ok((trials, output))
    }

    /// Saves everything needed to resume: the network, the readout, the optimizer's moments, the
    /// step, the loss history and the configuration. Atomic: the previous checkpoint survives any
    /// failure.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors = self.model.network.checkpoint_tensors("network.");
        tensors.extend(
            self.model
                .readout
                .vars()
                .into_iter()
                .map(|(n, v)| (format!("readout.{n}"), v.as_tensor().clone())),
        );
        tensors.extend(self.optimizer.state());
        let device = self.model.network.device();
        let history = Tensor::from_vec(self.losses.clone(), self.losses.len(), &Device::Cpu)?
            .to_device(device)?;
        tensors.push(("train.losses".to_owned(), history));
        let mut metadata = self.model.network.checkpoint_metadata()?;
        metadata.insert("train.step".to_owned(), self.step.to_string());
        metadata.insert("train.task".to_owned(), self.task.name().to_owned());
        metadata.insert("train.config".to_owned(), to_json(&self.config)?);
        metadata.insert("train.readout_from".to_owned(), to_json(&self.model.from)?);
        crate::checkpoint::write_safetensors(path, tensors, Some(metadata))
    }

    /// Resumes from a checkpoint written by [`Trainer::save`]: the model, the optimizer state, the
    /// step and the loss history come from the file; `config` may raise `steps` to train longer,
    /// but must otherwise be the configuration the run started with (else the resumed run would
    /// not continue the same one).
    pub fn resume(path: &Path, task: T, config: TrainConfig, device: &Device) -> Result<Self> {
        let (sd, metadata) = crate::checkpoint::read_safetensors(path)?;
        let network = Network::from_checkpoint(&sd, &metadata, "network.", device)?;
        let source = path.display().to_string();
        let bad = |message: String| Error::Checkpoint { path: source.clone(), message };
        let get = |key: &str| {
            metadata.get(key).ok_or_else(|| {
                bad(format!("not a training checkpoint: no `{key}` in its metadata"))
            })
        };
        let saved: TrainConfig = serde_json::from_str(get("train.config")?)
            .map_err(|e| bad(format!("bad `train.config`: {e}")))?;
        let from: ReadoutFrom = serde_json::from_str(get("train.readout_from")?)
            .map_err(|e| bad(format!("bad `train.readout_from`: {e}")))?;
        let step: usize =
            get("train.step")?.parse().map_err(|e| bad(format!("bad `train.step`: {e}")))?;
        let saved_task = get("train.task")?;
        if saved_task != task.name() {
            return Err(bad(format!("saved while training `{saved_task}`, not `{}`", task.name())));
        }
        let differences = config_differences(&saved, &config);
        if !differences.is_empty() {
            return Err(bad(format!(
                "saved with other training settings ({}); resume with the same settings (only --steps may change)",
                differences.join(", ")
            )));
        }
        let readout = Readout::from_state_dict(&sd, "readout.", device)?;
        let model = Model::with_readout(network, readout, from)?;
        let mut trainer = Trainer::new(model, task, config)?;
        let state: HashMap<String, Tensor> =
            sd.iter().map(|(k, t)| (k.to_owned(), t.clone())).collect();
        trainer.optimizer.load_state(&state, step as u64)?;
        let losses = sd.get("train.losses").ok_or_else(|| bad("no `train.losses`".to_owned()))?;
        trainer.losses = losses.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        if trainer.losses.len() != step {
            return Err(bad(format!("{} losses recorded for {step} steps", trainer.losses.len())));
        }
        trainer.step = step;
        Ok(trainer)
    }
}

/// The settings two runs must share to be one run (everything but the number of steps).
fn config_differences(a: &TrainConfig, b: &TrainConfig) -> Vec<String> {
    let mut out = Vec::new();
    let mut differ = |name: &str, x: String, y: String| {
        if x != y {
            out.push(format!("{name} {x} vs {y}"));
        }
    };
    differ("batch", a.batch.to_string(), b.batch.to_string());
    differ("lr", a.lr.to_string(), b.lr.to_string());
    differ("weight_decay", a.weight_decay.to_string(), b.weight_decay.to_string());
    differ("clip_grad_norm", a.clip_grad_norm.to_string(), b.clip_grad_norm.to_string());
    differ("rate_l2", a.rate_l2.to_string(), b.rate_l2.to_string());
    differ("weight_l2", a.weight_l2.to_string(), b.weight_l2.to_string());
    differ("noise", a.noise.to_string(), b.noise.to_string());
    differ("seed", a.seed.to_string(), b.seed.to_string());
    out
}

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

fn all_finite(t: &Tensor) -> bool {
    t.to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .is_ok_and(|v| v.iter().all(|x| x.is_finite()))
}

fn to_json(value: &impl Serialize) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::Invalid(format!("cannot serialize the training state: {e}")))
}
