//! Tasks: seeded generators of input/target trials and their accuracy metrics, the data side of
//! training. Every task draws from a `ChaCha` RNG the caller owns, so the same seed gives the same
//! trials on every machine (and a resumed run continues the same data stream).

mod decision;
mod flip_flop;

pub use decision::PerceptualDecision;
pub use flip_flop::FlipFlop;

use candle_core::{Device, Tensor};
// What a task's signature and body need, re-exported so that a user's crate implements
// [`Task`] with the very RNG type the trainer passes (no second `rand` version to match).
pub use rand::{Rng, SeedableRng};
pub use rand_chacha::ChaCha8Rng;

use crate::{Error, Result, memory};

/// A batch of trials, batch first: `input` `[B, T, I]`, `target` `[B, T, O]`, `mask`
/// `[B, T, O]` (1 where the loss counts, 0 where it does not), and one condition label per
/// trial.
///
/// ```
/// use mrnn_runtime::task::Trials;
/// use mrnn_runtime::{DType, Device, Tensor};
/// let zeros = |c| Tensor::zeros((2, 10, c), DType::F32, &Device::Cpu);
/// let trials = Trials::new(zeros(3)?, zeros(1)?, zeros(1)?)?
///     .with_conditions(vec!["left".into(), "right".into()])?;
/// assert_eq!((trials.batch(), trials.steps()), (2, 10));
/// // A label per trial, no more, no fewer.
/// assert!(trials.clone().with_conditions(vec!["left".into()]).is_err());
/// # Ok::<(), mrnn_runtime::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Trials {
    /// Network input.
    pub input: Tensor,
    /// Desired readout.
    pub target: Tensor,
    /// Loss weights (the time mask).
    pub mask: Tensor,
    /// The condition of each trial (`direction=+1 coherence=0.2`), for grouping trials in
    /// analyses and figures; empty strings when the task names none.
    pub conditions: Vec<String>,
}

impl Trials {
    /// Trials from their tensors, checked against each other: `input` `[B, T, I]`, `target` and
    /// `mask` `[B, T, O]`. No condition labels (empty strings).
    pub fn new(input: Tensor, target: Tensor, mask: Tensor) -> Result<Trials> {
        let (b, t, _) = input.dims3().map_err(|_| shape("task input", &input, "[B, T, I]"))?;
        let (tb, tt, o) = target.dims3().map_err(|_| shape("task target", &target, "[B, T, O]"))?;
        if (tb, tt) != (b, t) {
            return Err(shape("task target", &target, &format!("[{b}, {t}, O] (as the input)")));
        }
        if mask.dims() != [b, t, o] {
            return Err(shape("task mask", &mask, &format!("[{b}, {t}, {o}] (as the target)")));
        }
        Ok(Trials { input, target, mask, conditions: vec![String::new(); b] })
    }

    /// The same trials with a condition label for each.
    pub fn with_conditions(mut self, conditions: Vec<String>) -> Result<Trials> {
        if conditions.len() != self.batch() {
            return Err(Error::Invalid(format!(
                "{} condition labels for {} trials: one label per trial expected",
                conditions.len(),
                self.batch()
            )));
        }
        self.conditions = conditions;
        Ok(self)
    }

    /// The number of trials `B`.
    #[must_use]
    pub fn batch(&self) -> usize {
        self.input.dims().first().copied().unwrap_or(0)
    }

    /// Steps per trial `T`.
    #[must_use]
    pub fn steps(&self) -> usize {
        self.input.dims().get(1).copied().unwrap_or(0)
    }
}

fn shape(what: &str, t: &Tensor, expected: &str) -> Error {
    Error::Shape { what: what.to_owned(), expected: expected.to_owned(), got: t.dims().to_vec() }
}

/// A task the network can be trained on.
pub trait Task: std::fmt::Debug {
    /// Short name for logs and files (`flip-flop`).
    fn name(&self) -> &'static str;
    /// Input channels `I` the network must have.
    fn input_size(&self) -> usize;
    /// Readout channels `O`.
    fn output_size(&self) -> usize;
    /// Steps per trial.
    fn steps(&self) -> usize;
    /// Draws `batch` trials.
    fn sample(&self, batch: usize, rng: &mut ChaCha8Rng, device: &Device) -> Result<Trials>;
    /// Fraction of correct answers of `output` (`[B, T, O]`) on `trials`: the task's own
    /// accuracy (sign accuracy for the flip-flop, choice accuracy for decisions).
    fn accuracy(&self, output: &Tensor, trials: &Trials) -> Result<f64>;
    /// What [`Task::accuracy`] measures, for reports (`sign_accuracy`).
    fn accuracy_name(&self) -> &'static str;
    /// Checks the task's parameters (counts, probabilities, noise levels) before anything runs;
    /// [`crate::train::Trainer::new`] calls it. The default accepts everything.
    fn validate(&self) -> Result<()> {
        Ok(())
    }
    /// The parameters that define the task, by name, with their values as text: a checkpoint
    /// records them, and a run resumed with other values is refused, naming each one. The
    /// default is the whole `Debug` text (every field, under the name `parameters`); a task
    /// whose `Debug` shows state that changes while training must list its parameters itself.
    fn parameters(&self) -> Vec<(String, String)> {
        vec![("parameters".to_owned(), format!("{self:?}"))]
    }
}

/// Refuses, before the buffers exist, `batch` trials of `steps` steps with `inputs` input and
/// `outputs` output channels that would not fit in memory (input, target and mask, built on the
/// host and then made tensors).
fn ensure_trials_fit(
    name: &str,
    batch: usize,
    steps: usize,
    (inputs, outputs): (usize, usize),
) -> Result<()> {
    let per_copy =
        memory::f32_bytes(&[batch, steps, inputs.saturating_add(outputs.saturating_mul(2))]);
    memory::ensure_fits(
        format!("{batch} trials of `{name}` with {steps} steps"),
        per_copy.saturating_mul(2),
    )
}

/// Builds a `[B, T, C]` tensor from row-major values.
fn tensor3(
    values: Vec<f32>,
    batch: usize,
    steps: usize,
    channels: usize,
    device: &Device,
) -> Result<Tensor> {
    Ok(Tensor::from_vec(values, (batch, steps, channels), &Device::Cpu)?.to_device(device)?)
}

/// Checks that a readout has the task's shape before measuring it.
fn expect_output_shape(output: &Tensor, trials: &Trials) -> Result<()> {
    if output.dims() != trials.target.dims() {
        return Err(crate::Error::Shape {
            what: "task output".to_owned(),
            expected: format!("{:?} (the target's shape)", trials.target.dims()),
            got: output.dims().to_vec(),
        });
    }
    Ok(())
}
