//! The recurrence engine: the one implementation of the time loop, with its own backward pass.
//!
//! Everything that does not depend on the previous state (the input projection of every step,
//! noise, stimulus, tonic bias) is folded by the caller into one `drive` tensor `[T, B, H]`
//! computed before the loop ([`project`], [`add_bias`]). What remains is
//!
//! ```text
//! leaky:  x_{t+1} = (1 - a) x_t + a (W phi(x_t) + d_t)      returns x_1..x_T and h_1..h_T
//! Elman:  h_{t+1} = phi(W h_t + d_t)                        returns h_1..h_T
//! ```
//!
//! run as a candle custom op: the forward loop runs without building an autograd graph, and the
//! backward runs the reverse recurrence (one `[B, H] x [H, H]` product per step) and accumulates
//! the weight gradient in products of a few hundred rows as it goes. Gradients flow on into
//! whatever produced `W` (masks, `|W|`, signs: Dale's chain rule, applied once per call by
//! [`effective_weights`]) and `drive` (input weights, bias, stimulus), and into the initial
//! state, through candle's autograd. candle's generic backward of the same loop allocates
//! `[H, H]` gradients per step and pads every per-step slice to full size (O(T^2)); this does
//! neither.
//!
//! On the CPU (modules `cpu`, `gemm`, `pool`) the loops run inside the op's forward, on the
//! tensors' own buffers: one product per step by a matrix packed once per call (an AVX-512
//! microkernel where the CPU has it), fused elementwise loops, trials split over the threads.
//! With few inputs the input projection can run inside the loop too
//! ([`Recurrence::run_projected`]), so that the drive sequence and its gradient never exist.
//! On other devices they run as candle ops, the same arithmetic.
//!
//! Arithmetic is IEEE on every path (host kernel on every instruction set, fused or not, dense
//! or by blocks; candle ops): a NaN or an infinity in `W`, the drive or the initial state
//! propagates where the plain loop puts it, forward and backward, and is never clamped away
//! (`fast_math` says how the activations keep NaN; `cpu` how block products keep the NaN of
//! the `0 * NaN` terms they skip). Nothing is checked here: callers that must refuse a NaN
//! check their inputs (`mrnn simulate` does).

mod cpu;
pub mod fast_math;
mod gemm;
pub(crate) mod pool;
mod projection;
mod weights;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Shape, Tensor};
use mrnn_ir::{Activation, Dynamics};

use crate::Result;
use crate::activation;
pub use projection::{add_bias, project};
pub use weights::effective_weights;

/// Inputs up to this many (exclusive) have their projection run inside the loop by
/// [`Recurrence::run_projected`]. Measured at H = 1024: with 128 inputs the loop is still 9%
/// faster than a separate drive sequence (one large product, but a `[B, T, H]` sequence written,
/// read, and its gradient made by candle). With as many inputs as units the per-step products
/// by `W_in` would cost as much as those by `W`.
pub const PROJECTED_INPUTS: usize = 256;

/// One connected block of the recurrent matrix: destination rows, source columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// Destination units (rows of `W`).
    pub rows: std::ops::Range<usize>,
    /// Source units (columns of `W`).
    pub cols: std::ops::Range<usize>,
}

/// The state update of a network: leaky (with `alpha = dt / tau`) or Elman, and `phi`.
#[derive(Clone, Debug, PartialEq)]
pub struct Recurrence {
    update: Update,
    activation: Activation,
    /// Multiply by these blocks only (the rest of `W` is zero); `None`: the whole matrix.
    blocks: Option<std::sync::Arc<[Block]>>,
    /// Run CPU tensors through the tensor-op path too (tests compare the two paths).
    tensor_ops: bool,
    /// Sequences are `[B, T, H]` (set per run).
    batch_first: bool,
    /// Return the states `x` of leaky dynamics (see [`Recurrence::without_states`]).
    keep_states: bool,
}

/// Which state the loop carries.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Update {
    /// Pre-activations `x`, leaking with rate `alpha`.
    Leaky { alpha: f64 },
    /// Rates `h`.
    Elman,
}

/// The sequences a run produces, time major `[T, B, H]`.
#[derive(Clone, Debug)]
pub struct Sequences {
    /// Pre-activations `x_1..x_T` (leaky dynamics only).
    pub x: Option<Tensor>,
    /// Rates `h_1..h_T`.
    pub h: Tensor,
}

impl Recurrence {
    /// The recurrence of the given dynamics and activation.
    #[must_use]
    pub fn new(dynamics: Dynamics, activation: Activation) -> Self {
        let update = match dynamics {
            Dynamics::Leaky { .. } => Update::Leaky { alpha: dynamics.alpha() },
            Dynamics::Elman => Update::Elman,
        };
        Recurrence {
            update,
            activation,
            blocks: None,
            tensor_ops: false,
            batch_first: false,
            keep_states: true,
        }
    }

    /// Returns the rates only: [`Sequences::x`] is `None` for leaky dynamics too. The host
    /// kernel then never writes the `[T, B, H]` states (each step's overwrite the last but
    /// one), which saves their memory (as much as the rates'). For callers that read `h` only
    /// (a loss on the rates, a readout).
    #[must_use]
    pub fn without_states(mut self) -> Self {
        self.keep_states = false;
        self
    }

    /// Whether [`Sequences::x`] comes back for leaky dynamics (see
    /// [`Recurrence::without_states`]).
    #[must_use]
    pub fn keeps_states(&self) -> bool {
        self.keep_states
    }

    /// Multiplies by these blocks of `W` only: every entry outside them should be zero (the
    /// network passes its connections when the compiler chose [`mrnn_ir::Product::Blocks`]);
    /// a run whose matrix holds anything else there (a NaN raw weight times a mask of 0 is NaN)
    /// multiplies by the whole matrix. Gradients with respect to `W` are then computed on the
    /// blocks only (zero elsewhere, where the mask zeroes them anyway; NaN where the dense
    /// gradient would be NaN or infinite, which the mask's 0 would not zero). The results are
    /// those of the dense product, NaN and infinities included: a NaN or infinite rate reaches
    /// every unit through the dense product's `0 * NaN`, and does through the blocks too.
    /// Blocks apply to the host kernel; other devices multiply by the whole matrix.
    #[must_use]
    pub fn with_blocks(mut self, blocks: Vec<Block>) -> Self {
        self.blocks = Some(blocks.into());
        self
    }

    /// Runs the recurrence. `w` is the effective recurrent matrix `[H, H]` (destination rows),
    /// `drive` the per-step input `[T, B, H]` (`[B, T, H]` when `batch_first`), `init` the
    /// initial state `[B, H]` (`x_0` for leaky dynamics, with `h_0 = phi(x_0)`; `h_0` for
    /// Elman). The sequences come back in the drive's layout. Differentiable with respect to all
    /// three arguments, through both returned sequences.
    pub fn run(
        &self,
        w: &Tensor,
        drive: &Tensor,
        init: &Tensor,
        batch_first: bool,
    ) -> Result<Sequences> {
        let mut this = self.clone();
        this.batch_first = batch_first;
        this.run_in_layout(w, drive, init)
    }

    /// Runs the recurrence on the drive `u W_in^T + b` ([`project`]: `u` `[T, B, I]`, or
    /// `[B, T, I]` when `batch_first`; `w_in` `[H, I]`, `bias` `[H]`). The same results and
    /// gradients as [`Recurrence::run`] on the projected drive, but on the host, with fewer
    /// than [`PROJECTED_INPUTS`] inputs and `u` carrying no gradient, the projection runs
    /// inside the loop: the `[B, T, H]` drive is never written, and its gradient never exists
    /// (the weight and bias gradients are summed step by step). Otherwise the drive is
    /// projected first.
    pub fn run_projected(
        &self,
        w: &Tensor,
        (u, w_in, bias): (&Tensor, &Tensor, &Tensor),
        init: &Tensor,
        batch_first: bool,
    ) -> Result<Sequences> {
        let inputs = u.dims().last().copied().unwrap_or(0);
        let hidden = w.dims().first().copied().unwrap_or(0);
        let fits = u.rank() == 3 && w_in.dims() == [hidden, inputs] && bias.dims() == [hidden];
        if !self.host_kernel(w)
            || !fits
            || u.track_op()
            || inputs == 0
            || inputs >= PROJECTED_INPUTS
            || u.dtype() != DType::F32
        {
            // `project` names a shape mismatch.
            return self.run(w, &project(u, w_in, bias)?, init, batch_first);
        }
        let weights = Tensor::cat(&[w, w_in, &bias.unsqueeze(1)?], 1)?;
        let mut this = self.clone();
        this.batch_first = batch_first;
        this.run_on_host(&weights, u, init, Some(inputs))
    }

    fn run_in_layout(&self, w: &Tensor, drive: &Tensor, init: &Tensor) -> Result<Sequences> {
        if self.host_kernel(w) {
            return self.run_on_host(w, drive, init, None);
        }
        let Computed { states, rates } =
            self.forward_tensors(&w.detach(), &drive.detach(), &init.detach())?;
        let states = if w.track_op() || drive.track_op() || init.track_op() {
            let op = RecurrenceOp {
                recurrence: self.clone(),
                precomputed: Some(states),
                host: HostRun::default(),
                inputs: None,
            };
            w.apply_op3_arc(drive, init, std::sync::Arc::new(Box::new(op)))?
        } else {
            states
        };
        Ok(match rates {
            // Leaky: h = phi(x) is a second op whose output is already computed; candle's chain
            // rule adds its gradient into the gradient of x.
            Some(rates) => {
                let h = if states.track_op() {
                    states.apply_op1_arc(std::sync::Arc::new(Box::new(ActivationOp {
                        activation: self.activation,
                        rates,
                    })))?
                } else {
                    rates
                };
                Sequences { x: self.keep_states.then_some(states), h }
            }
            None => Sequences { x: None, h: states },
        })
    }

    /// The run on the host: the loop runs inside the op's CPU forward, on the tensors' own
    /// buffers, and the op's output is the rates `h` (what a loss almost always reads). For leaky
    /// dynamics `x` comes out of a second op, [`StatesOp`], whose backward hands `dL/dx` to the
    /// recurrence's: no `h = phi(x)` op, no copy of the rates, and the `phi'` of the backward is
    /// fused into the reverse loop.
    ///
    /// With `inputs`, `drive` is the input `u` and `w` is `[W | W_in | b]` (`[H, H + I + 1]`):
    /// the projection runs in the loop ([`Recurrence::run_projected`]).
    fn run_on_host(
        &self,
        w: &Tensor,
        drive: &Tensor,
        init: &Tensor,
        inputs: Option<usize>,
    ) -> Result<Sequences> {
        let (w, drive, init) = (w.contiguous()?, drive.contiguous()?, init.contiguous()?);
        let host = HostRun::default();
        let recurrence = self.clone();
        let op = RecurrenceOp { recurrence, precomputed: None, host: host.clone(), inputs };
        let h = w.apply_op3_arc(&drive, &init, std::sync::Arc::new(Box::new(op)))?;
        let x = match self.update {
            Update::Elman => None,
            Update::Leaky { .. } if !self.keep_states => None,
            Update::Leaky { .. } if h.track_op() => {
                Some(h.apply_op1_arc(std::sync::Arc::new(Box::new(StatesOp { host })))?)
            }
            Update::Leaky { .. } => {
                let states = host.take_states()?;
                Some(Tensor::from_vec(states, h.shape(), &Device::Cpu)?)
            }
        };
        Ok(Sequences { x, h })
    }

    /// The forward loop with tensor ops (devices other than the CPU), on tensors that carry no
    /// gradient.
    fn forward_tensors(&self, w: &Tensor, drive: &Tensor, init: &Tensor) -> Result<Computed> {
        let dims = self.dims(drive.shape())?;
        let steps = dims.steps;
        // Other devices: time-major tensor ops (transposed in and out for batch-first runs).
        let drive =
            if self.batch_first { drive.transpose(0, 1)?.contiguous()? } else { drive.clone() };
        let layout = |t: Tensor| -> Result<Tensor> {
            Ok(if self.batch_first { t.transpose(0, 1)?.contiguous()? } else { t })
        };
        // h W^T, with the leak folded into the matrix and the drive once for all steps.
        let w_t = w.t()?.contiguous()?;
        let mut states = Vec::with_capacity(steps);
        match self.update {
            Update::Leaky { alpha } => {
                let w_t = (w_t * alpha)?;
                let drive = (drive * alpha)?;
                let mut x = init.clone();
                let mut h = activation::apply(self.activation, &x)?;
                let mut rates = Vec::with_capacity(steps);
                for t in 0..steps {
                    x = ((x * (1.0 - alpha))? + h.matmul(&w_t)?)?.add(&drive.get(t)?)?;
                    h = activation::apply(self.activation, &x)?;
                    states.push(x.clone());
                    rates.push(h.clone());
                }
                Ok(Computed {
                    states: layout(Tensor::stack(&states, 0)?)?,
                    rates: Some(layout(Tensor::stack(&rates, 0)?)?),
                })
            }
            Update::Elman => {
                let mut h = init.clone();
                for t in 0..steps {
                    h = activation::apply(self.activation, &h.matmul(&w_t)?.add(&drive.get(t)?)?)?;
                    states.push(h.clone());
                }
                Ok(Computed { states: layout(Tensor::stack(&states, 0)?)?, rates: None })
            }
        }
    }

    /// The forward loop on the host, inside the op's CPU forward: returns the rates `h` (the
    /// op's output) and keeps the states `x` of a leaky run in `host` for [`StatesOp`].
    /// `shape` is the output's; with `inputs`, `drive` is `u` and `w` is `[W | W_in | b]`.
    fn forward_host(
        &self,
        (w, drive, init): (&[f32], &[f32], &[f32]),
        shape: &Shape,
        inputs: Option<usize>,
        host: &HostRun,
    ) -> Result<Vec<f32>> {
        let dims = self.dims(shape)?;
        let hidden = dims.hidden;
        let ld = hidden + inputs.map_or(0, |i| i + 1);
        let matrix = cpu::Matrix::new(w, self.blocks.as_deref(), hidden, ld);
        let input = inputs.map(|i| cpu::Input::new(drive, w, hidden, i));
        let drive = match &input {
            Some(input) => cpu::Drive::Projected(input),
            None => cpu::Drive::Given(drive),
        };
        let (update, activation, threads) = (self.update, self.activation, dims.threads());
        let out =
            cpu::forward(update, activation, &matrix, drive, init, dims, threads, self.keep_states);
        Ok(match self.update {
            Update::Leaky { .. } => {
                if self.keep_states {
                    *lock(&host.states) = Some(out.states);
                }
                out.rates
            }
            Update::Elman => out.states,
        })
    }

    /// The reverse recurrence: gradients with respect to `w`, `drive` and `init` given the
    /// gradient `grad` of the loss with respect to the op's output: after a host run the rates
    /// `h` (see [`Ran::Host`]), after a tensor-op run the states (`x` in total for leaky
    /// dynamics, `h` for Elman).
    /// With [`Ran::Host`]'s `inputs`, `drive` is `u`, `w` is `[W | W_in | b]` and the second
    /// gradient is `None` (`u` carries none).
    fn backward(
        &self,
        (w, drive, init): (&Tensor, &Tensor, &Tensor),
        output: &Tensor,
        grad: &Tensor,
        ran: Ran,
    ) -> Result<(Tensor, Option<Tensor>, Tensor)> {
        let dims = self.dims(output.shape())?;
        let (steps, batch, hidden) = (dims.steps, dims.batch, dims.hidden);
        if let Ran::Host { grad_x, inputs } = ran {
            let (grad, grad_x) = (grad.contiguous()?, grad_x.map(|g| g.contiguous()).transpose()?);
            let (w_host, init_host) = (HostSlice::of(w)?, HostSlice::of(init)?);
            let (rates, grad_host) = (HostSlice::of(output)?, HostSlice::of(&grad)?);
            let grad_x_host = grad_x.as_ref().map(HostSlice::of).transpose()?;
            let u_host = inputs.map(|_| HostSlice::of(drive)).transpose()?;
            let input = match (inputs, &u_host) {
                (Some(i), Some(u)) => Some(cpu::Input::new(u.values(), w_host.values(), hidden, i)),
                _ => None,
            };
            let ld = hidden + inputs.map_or(0, |i| i + 1);
            let blocks = self.blocks.as_deref();
            let matrix = cpu::Matrix::new(w_host.values(), blocks, hidden, ld);
            let args = cpu::Backward {
                init: init_host.values(),
                rates: rates.values(),
                grad_h: grad_host.values(),
                grad_x: grad_x_host.as_ref().map(HostSlice::values),
                input: input.as_ref(),
            };
            let threads = dims.threads();
            let grads = cpu::backward(self.update, self.activation, &matrix, &args, dims, threads);
            let grad_init = Tensor::from_vec(grads.init, (batch, hidden), &Device::Cpu)?;
            return Ok(match grads.input {
                // [dW | dW_in | db], row by row (the projection's gradients come as
                // `[I, H]` = dW_in^T and `[H]`).
                Some((w_in_t, bias)) => {
                    let i = inputs.unwrap_or(0);
                    let mut all = Vec::with_capacity(hidden * ld);
                    for (r, row) in grads.w.chunks_exact(hidden).enumerate() {
                        all.extend_from_slice(row);
                        all.extend((0..i).map(|c| w_in_t[c * hidden + r]));
                        all.push(bias[r]);
                    }
                    (Tensor::from_vec(all, (hidden, ld), &Device::Cpu)?, None, grad_init)
                }
                None => (
                    Tensor::from_vec(grads.w, (hidden, hidden), &Device::Cpu)?,
                    Some(Tensor::from_vec(grads.drive, output.shape(), &Device::Cpu)?),
                    grad_init,
                ),
            });
        }
        let states = output;
        // Other devices: time-major tensor ops; the drive's gradient goes back in its layout.
        let time_major = |t: &Tensor| -> Result<Tensor> {
            Ok(if self.batch_first { t.transpose(0, 1)?.contiguous()? } else { t.clone() })
        };
        let (states, grad) = (&time_major(states)?, &time_major(grad)?);
        let (gw, gd, gi) = self.backward_tensors(w, init, states, grad, (steps, batch, hidden))?;
        Ok((gw, Some(time_major(&gd)?), gi))
    }

    /// [`Recurrence::backward`] with tensor ops, on time-major sequences.
    fn backward_tensors(
        &self,
        w: &Tensor,
        init: &Tensor,
        states: &Tensor,
        grad: &Tensor,
        (steps, batch, hidden): (usize, usize, usize),
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let mut adjoints = Vec::with_capacity(steps);
        match self.update {
            Update::Leaky { alpha } => {
                // a_t (dL/dx_t in total) = g_t + (1 - a) a_{t+1} + phi'(x_t) (a a_{t+1} W)
                let slopes = self.slope_of_output(&activation::apply(self.activation, states)?)?;
                let w_a = (w * alpha)?;
                let mut a = grad.get(steps - 1)?;
                adjoints.push(a.clone());
                for t in (0..steps - 1).rev() {
                    let inner = a.matmul(&w_a)?.mul(&slopes.get(t)?)?;
                    a = ((grad.get(t)? + (&a * (1.0 - alpha))?)? + inner)?;
                    adjoints.push(a.clone());
                }
                adjoints.reverse();
                let a_all = Tensor::stack(&adjoints, 0)?;
                let grad_drive = (&a_all * alpha)?;
                let h0 = activation::apply(self.activation, init)?;
                let h_prev = if steps > 1 {
                    let earlier =
                        activation::apply(self.activation, &states.narrow(0, 0, steps - 1)?)?;
                    Tensor::cat(&[&h0.unsqueeze(0)?, &earlier], 0)?
                } else {
                    h0.unsqueeze(0)?
                };
                let grad_w = outer_sum(&grad_drive, &h_prev, steps * batch, hidden)?;
                let a1 = a_all.get(0)?;
                let grad_init = ((&a1 * (1.0 - alpha))?
                    + a1.matmul(&w_a)?.mul(&self.slope_of_output(&h0)?)?)?;
                Ok((grad_w, grad_drive, grad_init))
            }
            Update::Elman => {
                // delta_t = dL/dz_t, z_t = W h_{t-1} + d_{t-1}; b_t = dL/dh_t in total.
                let slopes = self.slope_of_output(states)?;
                let mut delta = grad.get(steps - 1)?.mul(&slopes.get(steps - 1)?)?;
                adjoints.push(delta.clone());
                for t in (0..steps - 1).rev() {
                    let b = (grad.get(t)? + delta.matmul(w)?)?;
                    delta = b.mul(&slopes.get(t)?)?;
                    adjoints.push(delta.clone());
                }
                adjoints.reverse();
                let grad_drive = Tensor::stack(&adjoints, 0)?; // delta_1..delta_T
                let h_prev = if steps > 1 {
                    Tensor::cat(&[&init.unsqueeze(0)?, &states.narrow(0, 0, steps - 1)?], 0)?
                } else {
                    init.unsqueeze(0)?
                };
                let grad_w = outer_sum(&grad_drive, &h_prev, steps * batch, hidden)?;
                let grad_init = grad_drive.get(0)?.matmul(w)?;
                Ok((grad_w, grad_drive, grad_init))
            }
        }
    }

    /// The sizes of a sequence in this run's layout.
    fn dims(&self, seq: &Shape) -> Result<cpu::Dims> {
        let (a, batch_or_steps, hidden) = seq.dims3()?;
        let (steps, batch) =
            if self.batch_first { (batch_or_steps, a) } else { (a, batch_or_steps) };
        Ok(cpu::Dims { steps, batch, hidden, batch_first: self.batch_first })
    }

    /// Whether this run takes the host kernel: `f32` tensors on the CPU.
    fn host_kernel(&self, w: &Tensor) -> bool {
        !self.tensor_ops && matches!(w.device(), Device::Cpu) && w.dtype() == DType::F32
    }

    fn slope_of_output(&self, h: &Tensor) -> Result<Tensor> {
        slope_of_output(self.activation, h)
    }
}

/// `phi'(z)` from the outputs `h = phi(z)`: every activation's slope is a function of its value.
/// NaN where `h` is NaN (but for the linear activation), as on the host kernel.
fn slope_of_output(activation: Activation, h: &Tensor) -> Result<Tensor> {
    Ok(match activation {
        Activation::Relu => activation::relu_slope(h)?,
        Activation::Tanh => (1.0 - h.sqr()?)?,
        Activation::Sigmoid => (h * (1.0 - h)?)?,
        // softplus' = sigmoid(z) = 1 - exp(-softplus(z)).
        Activation::Softplus => (1.0 - h.neg()?.exp()?)?,
        Activation::Linear => h.ones_like()?,
    })
}

/// The values of a contiguous `f32` CPU tensor, borrowed from its storage (no copy).
struct HostSlice<G> {
    /// The storage's read guard (candle's lock type, not named here).
    storage: G,
    range: std::ops::Range<usize>,
}

impl HostSlice<()> {
    fn of(t: &Tensor) -> Result<HostSlice<impl std::ops::Deref<Target = candle_core::Storage>>> {
        let (storage, layout) = t.storage_and_layout();
        let range = match (&*storage, layout.contiguous_offsets()) {
            (candle_core::Storage::Cpu(CpuStorage::F32(_)), Some((start, end))) => start..end,
            _ => {
                return Err(crate::Error::Invalid(format!(
                    "the host kernel needs contiguous f32 CPU tensors, got {:?} on {:?}",
                    t.dtype(),
                    t.device().location()
                )));
            }
        };
        Ok(HostSlice { storage, range })
    }
}

impl<G: std::ops::Deref<Target = candle_core::Storage>> HostSlice<G> {
    fn values(&self) -> &[f32] {
        match &*self.storage {
            candle_core::Storage::Cpu(CpuStorage::F32(v)) => &v[self.range.clone()],
            _ => unreachable!("checked in HostSlice::of"),
        }
    }
}

/// The values of a contiguous `f32` slice of a custom op's CPU argument (the engine's ops and
/// the fused losses of [`crate::loss`]).
pub(crate) fn cpu_values<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((start, end))) => Ok(&v[start..end]),
        _ => Err(candle_core::Error::Msg(
            "the host kernel needs contiguous f32 arguments".to_owned(),
        )),
    }
}

/// `sum_t a_t^T b_t` for `[T, B, H]` tensors, as one `[H, T*B] x [T*B, H]` product.
fn outer_sum(a: &Tensor, b: &Tensor, rows: usize, hidden: usize) -> Result<Tensor> {
    let a = a.reshape((rows, hidden))?;
    let b = b.reshape((rows, hidden))?;
    Ok(a.t()?.matmul(&b)?)
}

/// A tensor-op forward's results: the states and, for leaky dynamics, the rates.
struct Computed {
    states: Tensor,
    rates: Option<Tensor>,
}

/// What a host run shares between its ops: the states `x` of a leaky run (computed by the
/// recurrence op's forward, handed out by [`StatesOp`]'s) and `dL/dx` (set by [`StatesOp`]'s
/// backward, read by the recurrence op's, which candle runs after it: `x` is computed from the
/// op's output).
#[derive(Clone, Default)]
struct HostRun {
    states: std::sync::Arc<std::sync::Mutex<Option<Vec<f32>>>>,
    grad_x: std::sync::Arc<std::sync::Mutex<Option<Tensor>>>,
}

impl HostRun {
    fn take_states(&self) -> Result<Vec<f32>> {
        lock(&self.states)
            .take()
            .ok_or_else(|| crate::Error::Invalid("the recurrence produced no states".to_owned()))
    }
}

/// How a run's forward went, for its backward.
enum Ran {
    /// On the host: the op's output is the rates; `grad_x` is `dL/dx` of a leaky run, when the
    /// loss reads the states; `inputs`: the projection ran in the loop.
    Host { grad_x: Option<Tensor>, inputs: Option<usize> },
    /// By tensor ops: the op's output is the states.
    TensorOps,
}

/// A mutex's value, poisoned or not (what it holds is always consistent: one assignment).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Copies a precomputed tensor's storage: the "forward" of both custom ops below, which hand
/// back results already computed.
fn copy_storage<S: BackendStorage>(
    t: &Tensor,
    pick: impl Fn(&candle_core::Storage) -> Option<&S>,
) -> candle_core::Result<(S, Shape)> {
    let (storage, layout) = t.storage_and_layout();
    let storage = pick(&storage).ok_or_else(|| {
        candle_core::Error::Msg("precomputed result on another device".to_owned())
    })?;
    Ok((storage.try_clone(layout)?, layout.shape().clone()))
}

fn cpu_of(s: &candle_core::Storage) -> Option<&CpuStorage> {
    match s {
        candle_core::Storage::Cpu(c) => Some(c),
        _ => None,
    }
}

#[cfg(feature = "cuda")]
fn cuda_of(s: &candle_core::Storage) -> Option<&candle_core::CudaStorage> {
    match s {
        candle_core::Storage::Cuda(c) => Some(c),
        _ => None,
    }
}

/// The custom op that connects the recurrence to candle's autograd: `(W, drive, init) ->
/// rates` on the CPU, where its forward runs the host loop; elsewhere `-> states`, computed by
/// tensor ops before the op was applied. [`Recurrence::backward`] is its backward.
struct RecurrenceOp {
    recurrence: Recurrence,
    /// The states, when computed by tensor ops before the op was applied.
    precomputed: Option<Tensor>,
    host: HostRun,
    /// `Some(I)`: the arguments are `([W | W_in | b], u, init)` and the projection runs in the
    /// loop ([`Recurrence::run_projected`]).
    inputs: Option<usize>,
}

impl CustomOp3 for RecurrenceOp {
    fn name(&self) -> &'static str {
        "mrnn-recurrence"
    }

    fn cpu_fwd(
        &self,
        w: &CpuStorage,
        w_layout: &Layout,
        drive: &CpuStorage,
        drive_layout: &Layout,
        init: &CpuStorage,
        init_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if let Some(states) = &self.precomputed {
            return copy_storage(states, cpu_of);
        }
        let args = (
            cpu_values(w, w_layout)?,
            cpu_values(drive, drive_layout)?,
            cpu_values(init, init_layout)?,
        );
        // The output has the drive's shape, or the input's with H features.
        let shape = match self.inputs {
            None => drive_layout.shape().clone(),
            Some(_) => {
                let (a, b, _) = drive_layout.shape().dims3()?;
                Shape::from((a, b, w_layout.shape().dims2()?.0))
            }
        };
        let rates = self
            .recurrence
            .forward_host(args, &shape, self.inputs, &self.host)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Ok((CpuStorage::F32(rates), shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let states = self.precomputed.as_ref().ok_or_else(|| {
            candle_core::Error::Msg("the recurrence on CUDA is computed by tensor ops".to_owned())
        })?;
        copy_storage(states, cuda_of)
    }

    fn bwd(
        &self,
        w: &Tensor,
        drive: &Tensor,
        init: &Tensor,
        output: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let ran = match self.precomputed {
            None => Ran::Host { grad_x: lock(&self.host.grad_x).take(), inputs: self.inputs },
            Some(_) => Ran::TensorOps,
        };
        let args = (&w.detach(), &drive.detach(), &init.detach());
        let (gw, gd, gi) = self
            .recurrence
            .backward(args, &output.detach(), &grad.detach(), ran)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Ok((Some(gw), gd, Some(gi)))
    }
}

/// The states `x` of a leaky host run, from its rates `h` (the recurrence op's output): the
/// forward hands back the states the loop computed; the backward passes `dL/dx` to the
/// recurrence op's backward through [`HostRun`] and gives `h` a zero gradient of its own (candle
/// needs one on every node between the loss and the weights).
struct StatesOp {
    host: HostRun,
}

impl candle_core::CustomOp1 for StatesOp {
    fn name(&self) -> &'static str {
        "mrnn-states"
    }

    fn cpu_fwd(&self, _: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let states = self.host.take_states().map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Ok((CpuStorage::F32(states), layout.shape().clone()))
    }

    fn bwd(&self, h: &Tensor, _x: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let mut slot = lock(&self.host.grad_x);
        *slot = Some(match slot.take() {
            Some(earlier) => (earlier + grad)?,
            None => grad.detach(),
        });
        Ok(Some(h.zeros_like()?))
    }
}

/// `h = phi(x)` with `h` already computed by tensor ops: backward `dL/dx = dL/dh * phi'`.
struct ActivationOp {
    activation: Activation,
    rates: Tensor,
}

impl candle_core::CustomOp1 for ActivationOp {
    fn name(&self) -> &'static str {
        "mrnn-rates"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        copy_storage(&self.rates, cpu_of)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        copy_storage(&self.rates, cuda_of)
    }

    fn bwd(
        &self,
        _x: &Tensor,
        rates: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let slope = slope_of_output(self.activation, &rates.detach())
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Ok(Some(grad.mul(&slope)?))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Var};

    use super::*;

    /// Normal draws from a fixed-seed stream: every run sees the same inputs, so a test cannot
    /// pass or fail by chance (a relu input drawn within rounding of 0 would flip its slope
    /// between two correct summation orders). Shared by the engine's tests.
    pub(super) fn randn(shape: impl Into<candle_core::Shape>, std: f32) -> Tensor {
        use rand::SeedableRng;
        use rand_distr::Distribution;
        thread_local! {
            static RNG: std::cell::RefCell<rand_chacha::ChaCha8Rng> =
                std::cell::RefCell::new(rand_chacha::ChaCha8Rng::seed_from_u64(11));
        }
        let shape = shape.into();
        let normal = rand_distr::Normal::new(0f32, std).unwrap();
        let values: Vec<f32> = RNG.with(|r| {
            (0..shape.elem_count()).map(|_| normal.sample(&mut *r.borrow_mut())).collect()
        });
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    /// The reference: the same loop through candle's generic autograd, as (x, h).
    fn naive(
        rec: &Recurrence,
        w: &Tensor,
        drive: &Tensor,
        init: &Tensor,
    ) -> (Option<Tensor>, Tensor) {
        let steps = drive.dim(0).unwrap();
        let (mut xs, mut hs) = (Vec::new(), Vec::new());
        match rec.update {
            Update::Leaky { alpha } => {
                let mut x = init.clone();
                for t in 0..steps {
                    let h = activation::apply(rec.activation, &x).unwrap();
                    let input =
                        (h.matmul(&w.t().unwrap()).unwrap() + drive.get(t).unwrap()).unwrap();
                    x = ((&x * (1.0 - alpha)).unwrap() + (input * alpha).unwrap()).unwrap();
                    xs.push(x.clone());
                    hs.push(activation::apply(rec.activation, &x).unwrap());
                }
                (Some(Tensor::stack(&xs, 0).unwrap()), Tensor::stack(&hs, 0).unwrap())
            }
            Update::Elman => {
                let mut h = init.clone();
                for t in 0..steps {
                    let z = (h.matmul(&w.t().unwrap()).unwrap() + drive.get(t).unwrap()).unwrap();
                    h = activation::apply(rec.activation, &z).unwrap();
                    hs.push(h.clone());
                }
                (None, Tensor::stack(&hs, 0).unwrap())
            }
        }
    }

    /// Uniform draws in [-1, 1) from the stream `seed`, for the host kernels' tests.
    pub(super) fn values(len: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    pub(super) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        a.sub(b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    pub(super) fn max_abs(a: &Tensor) -> f32 {
        a.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    /// Forward and all three gradients, through both sequences, equal candle autograd's for every
    /// activation, leaky and Elman, on the host kernel and on the tensor-op path (the one other
    /// devices take).
    #[test]
    fn gradients_match_candle_autograd() {
        for tensor_ops in [false, true] {
            for (t, b, h) in [(7, 3, 5), (1, 2, 4)] {
                for activation in Activation::ALL {
                    for dynamics in [Dynamics::Leaky { dt: 1.0, tau: 4.0 }, Dynamics::Elman] {
                        let mut rec = Recurrence::new(dynamics, activation);
                        rec.tensor_ops = tensor_ops;
                        let var = |shape: &[usize], std: f32| {
                            Var::from_tensor(&randn(shape, std)).unwrap()
                        };
                        let (w, d, x0) =
                            (var(&[h, h], 0.4), var(&[t, b, h], 1.0), var(&[b, h], 1.0));
                        let (wx, wh) = (randn((t, b, h), 1.0), randn((t, b, h), 1.0));
                        let ours =
                            rec.run(w.as_tensor(), d.as_tensor(), x0.as_tensor(), false).unwrap();
                        let (x, hs) = naive(&rec, w.as_tensor(), d.as_tensor(), x0.as_tensor());
                        let what =
                            format!("{activation:?} {dynamics:?} tensor_ops={tensor_ops} T={t}");
                        assert!(max_diff(&ours.h, &hs) < 1e-5, "{what}: forward h");
                        if let (Some(a), Some(b)) = (&ours.x, &x) {
                            assert!(max_diff(a, b) < 1e-5, "{what}: forward x");
                        }
                        // A loss on the rates, on the states (leaky), and on both.
                        let reads = if x.is_some() {
                            &[(true, false), (false, true), (true, true)][..]
                        } else {
                            &[(true, false)][..]
                        };
                        for &(reads_h, reads_x) in reads {
                            let loss = |x: Option<&Tensor>, h: &Tensor| {
                                let mut terms = Vec::new();
                                if reads_h {
                                    terms.push(h.mul(&wh).unwrap().sum_all().unwrap());
                                }
                                if let (true, Some(x)) = (reads_x, x) {
                                    terms.push(x.mul(&wx).unwrap().sum_all().unwrap());
                                }
                                Tensor::stack(&terms, 0).unwrap().sum_all().unwrap()
                            };
                            let g1 = loss(ours.x.as_ref(), &ours.h).backward().unwrap();
                            let g2 = loss(x.as_ref(), &hs).backward().unwrap();
                            for (name, var) in [("w", &w), ("drive", &d), ("init", &x0)] {
                                let (a, b) = (
                                    g1.get(var.as_tensor()).unwrap(),
                                    g2.get(var.as_tensor()).unwrap(),
                                );
                                let scale = max_abs(b).max(1.0);
                                assert!(
                                    max_diff(a, b) / scale < 1e-5,
                                    "{what} (loss on h: {reads_h}, on x: {reads_x}): gradient \
                                     of {name} differs by {}",
                                    max_diff(a, b)
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn without_gradients_it_is_a_plain_loop() {
        let dev = Device::Cpu;
        let rec = Recurrence::new(Dynamics::Leaky { dt: 1.0, tau: 2.0 }, Activation::Tanh);
        let w = randn((4, 4), 0.3);
        let d = Tensor::zeros((3, 2, 4), DType::F32, &dev).unwrap();
        let x0 = Tensor::ones((2, 4), DType::F32, &dev).unwrap();
        let out = rec.run(&w, &d, &x0, false).unwrap();
        assert!(!out.h.track_op());
        assert!(max_diff(&out.h, &naive(&rec, &w, &d, &x0).1) < 1e-6);
    }

    /// With a block structure the host kernel multiplies by the connected blocks only: the same
    /// outputs and input/state gradients as the whole matrix (zero outside the blocks), and the
    /// same weight gradient on the blocks (zero elsewhere).
    #[test]
    fn block_products_match_the_dense_product() {
        let dev = Device::Cpu;
        let (t, b, h) = (6, 3, 7);
        let blocks = vec![
            Block { rows: 0..3, cols: 0..3 },
            Block { rows: 3..7, cols: 0..3 },
            Block { rows: 0..3, cols: 5..7 },
            Block { rows: 5..7, cols: 3..5 },
        ];
        let mut mask = vec![0f32; h * h];
        for blk in &blocks {
            for i in blk.rows.clone() {
                for j in blk.cols.clone() {
                    mask[i * h + j] = 1.0;
                }
            }
        }
        let mask = Tensor::from_vec(mask, (h, h), &dev).unwrap();
        for activation in Activation::ALL {
            for dynamics in [Dynamics::Leaky { dt: 1.0, tau: 3.0 }, Dynamics::Elman] {
                let raw = Var::from_tensor(&randn((h, h), 0.5)).unwrap();
                let d = Var::from_tensor(&randn((t, b, h), 1.0)).unwrap();
                let x0 = Var::from_tensor(&randn((b, h), 1.0)).unwrap();
                let weights = randn((t, b, h), 1.0);
                let run = |rec: &Recurrence| {
                    let w = raw.as_tensor().mul(&mask).unwrap();
                    let out = rec.run(&w, d.as_tensor(), x0.as_tensor(), false).unwrap();
                    let grads = out.h.mul(&weights).unwrap().sum_all().unwrap().backward().unwrap();
                    let g = |v: &Var| grads.get(v.as_tensor()).unwrap().clone();
                    (out.h, g(&raw), g(&d), g(&x0))
                };
                let dense = Recurrence::new(dynamics, activation);
                let sparse = dense.clone().with_blocks(blocks.clone());
                let (a, b) = (run(&dense), run(&sparse));
                let what = format!("{activation:?} {dynamics:?}");
                assert!(max_diff(&a.0, &b.0) < 1e-5, "{what}: forward");
                for (name, x, y) in [("W", &a.1, &b.1), ("drive", &a.2, &b.2), ("init", &a.3, &b.3)]
                {
                    assert!(
                        max_diff(x, y) / max_abs(x).max(1.0) < 1e-5,
                        "{what}: gradient of {name}"
                    );
                }
            }
        }
    }

    /// Batch-first sequences give the same numbers as time-major ones, transposed, on both
    /// paths, gradients included.
    #[test]
    fn batch_first_is_the_transposed_time_major_run() {
        let (t, b, h) = (5, 3, 4);
        for tensor_ops in [false, true] {
            for dynamics in [Dynamics::Leaky { dt: 1.0, tau: 2.0 }, Dynamics::Elman] {
                let mut rec = Recurrence::new(dynamics, Activation::Tanh);
                rec.tensor_ops = tensor_ops;
                let w = Var::from_tensor(&randn((h, h), 0.5)).unwrap();
                let d = Var::from_tensor(&randn((t, b, h), 1.0)).unwrap();
                let x0 = Var::from_tensor(&randn((b, h), 1.0)).unwrap();
                let weights = randn((t, b, h), 1.0);
                let tm = rec.run(w.as_tensor(), d.as_tensor(), x0.as_tensor(), false).unwrap();
                let d_bf = d.as_tensor().transpose(0, 1).unwrap().contiguous().unwrap();
                let bf = rec.run(w.as_tensor(), &d_bf, x0.as_tensor(), true).unwrap();
                let back = bf.h.transpose(0, 1).unwrap();
                assert!(max_diff(&tm.h, &back) < 1e-6, "{dynamics:?} tensor_ops={tensor_ops}");
                let g1 = tm.h.mul(&weights).unwrap().sum_all().unwrap().backward().unwrap();
                let g2 = back.mul(&weights).unwrap().sum_all().unwrap().backward().unwrap();
                for v in [&w, &d, &x0] {
                    let (a, b) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
                    assert!(max_diff(a, b) < 1e-5, "{dynamics:?} tensor_ops={tensor_ops}");
                }
            }
        }
    }

    /// Asserts that `a` and `b` are the same IEEE results: NaN where the other is NaN, the same
    /// infinity where it is infinite, finite values within `tol` (relative above 1).
    pub(super) fn assert_same_values(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
        assert_eq!(a.dims(), b.dims(), "{what}: shapes");
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (i, (&x, &y)) in a.iter().zip(&b).enumerate() {
            let same = if x.is_finite() && y.is_finite() {
                (x - y).abs() <= tol * y.abs().max(1.0)
            } else {
                (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()
            };
            assert!(same, "{what}: element {i} is {x}, expected {y}");
        }
    }

    /// A NaN or infinity in the drive, the initial state or the matrix (inside the blocks, or
    /// outside them, as a NaN raw weight times a mask of 0 is) gives what the plain loop gives:
    /// on the host kernel, dense and by blocks, and on the tensor-op path, for every activation,
    /// leaky and Elman; and the gradients of the three paths agree, NaN for NaN (the blocks skip
    /// the `0 * NaN` terms of the dense product, and must not lose their NaN).
    #[test]
    fn nan_and_infinities_propagate_on_every_path() {
        let dev = Device::Cpu;
        let (t, b, h) = (5, 3, 7);
        let blocks = vec![
            Block { rows: 0..3, cols: 0..3 },
            Block { rows: 3..7, cols: 0..3 },
            Block { rows: 0..3, cols: 5..7 },
            Block { rows: 5..7, cols: 3..5 },
        ];
        let mut mask = vec![0f32; h * h];
        for blk in &blocks {
            for i in blk.rows.clone() {
                for j in blk.cols.clone() {
                    mask[i * h + j] = 1.0;
                }
            }
        }
        let mask = Tensor::from_vec(mask, (h, h), &dev).unwrap();
        let (nan, inf) = (f32::NAN, f32::INFINITY);
        // (what, tensor (0 drive, 1 init, 2 raw W), flat index, value).
        let cases = [
            ("NaN drive", 0, b * h + 4, nan),
            ("inf drive", 0, (2 * b + 1) * h + 1, inf),
            ("-inf drive", 0, 2 * h + 6, -inf),
            ("NaN drive, unconnected unit", 0, (b + 1) * h + 3, nan),
            ("NaN init", 1, h + 5, nan),
            ("inf init", 1, 2, inf),
            ("NaN weight in a block", 2, 1, nan),
            ("NaN weight outside the blocks", 2, 4 * h + 6, nan),
        ];
        let base = [randn((t, b, h), 1.0), randn((b, h), 1.0), randn((h, h), 0.4)];
        let weights = randn((t, b, h), 1.0);
        for (case, which, at, value) in cases {
            let mut planted = base.clone();
            let mut values = planted[which].flatten_all().unwrap().to_vec1::<f32>().unwrap();
            values[at] = value;
            planted[which] = Tensor::from_vec(values, base[which].shape(), &dev).unwrap();
            for activation in Activation::ALL {
                for dynamics in [Dynamics::Leaky { dt: 1.0, tau: 4.0 }, Dynamics::Elman] {
                    let what = format!("{case}: {activation:?} {dynamics:?}");
                    let var = |t: &Tensor| Var::from_tensor(t).unwrap();
                    let (d, x0, raw) = (var(&planted[0]), var(&planted[1]), var(&planted[2]));
                    let w = raw.as_tensor().mul(&mask).unwrap();
                    let plain = Recurrence::new(dynamics, activation);
                    let reference = naive(&plain, &w.detach(), d.as_tensor(), x0.as_tensor());
                    let mut paths = Vec::new();
                    for (tensor_ops, by_blocks) in [(false, false), (false, true), (true, false)] {
                        let mut rec = plain.clone();
                        rec.tensor_ops = tensor_ops;
                        if by_blocks {
                            rec = rec.with_blocks(blocks.clone());
                        }
                        let what = format!("{what} tensor_ops={tensor_ops} blocks={by_blocks}");
                        let out = rec.run(&w, d.as_tensor(), x0.as_tensor(), false).unwrap();
                        assert_same_values(&out.h, &reference.1, 1e-4, &format!("{what}: h"));
                        if let (Some(x), Some(want)) = (&out.x, &reference.0) {
                            assert_same_values(x, want, 1e-4, &format!("{what}: x"));
                        }
                        let grads = out.h.mul(&weights).unwrap().sum_all().unwrap();
                        let grads = grads.backward().unwrap();
                        let g = |v: &Var| grads.get(v.as_tensor()).unwrap().clone();
                        paths.push((what, [g(&raw), g(&d), g(&x0)]));
                    }
                    let (first, want) = &paths[0];
                    for (what, got) in &paths[1..] {
                        for (name, (a, b)) in
                            ["W", "drive", "init"].iter().zip(got.iter().zip(want))
                        {
                            let what = format!("{what}: gradient of {name} (vs {first})");
                            assert_same_values(a, b, 1e-3, &what);
                        }
                    }
                }
            }
        }
    }
}
