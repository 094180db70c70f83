//! The recurrence engine: the one implementation of the time loop, with its own backward pass.
//!
//! Everything that does not depend on the previous state (the input projection of every step,
//! noise, stimulus, tonic bias) is folded by the caller into one `drive` tensor `[T, B, H]`
//! computed with ordinary candle ops before the loop. What remains is
//!
//! ```text
//! leaky:  x_{t+1} = (1 - a) x_t + a (W phi(x_t) + d_t)      returns x_1..x_T and h_1..h_T
//! Elman:  h_{t+1} = phi(W h_t + d_t)                        returns h_1..h_T
//! ```
//!
//! run as a candle custom op: the forward loop runs without building an autograd graph, and the
//! backward runs the reverse recurrence (one `[B, H] x [H, H]` product per step) and computes the
//! weight gradient as one product over all steps. Gradients flow on into whatever produced `W`
//! (masks, `|W|`, signs: Dale's chain rule, applied once per call) and `drive` (input weights,
//! bias, stimulus), and into the initial state, through candle's autograd. candle's generic
//! backward of the same loop allocates `[H, H]` gradients per step and pads every per-step slice
//! to full size (O(T^2)); this does neither.
//!
//! On the CPU the loops run on host buffers ([`cpu`]): one GEMM and fused elementwise work per
//! step. On other devices they run as candle ops, the same arithmetic.

mod cpu;
pub mod fast_math;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Shape, Tensor};
use mrnn_ir::{Activation, Dynamics};

use crate::Result;
use crate::activation;

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
        Recurrence { update, activation, blocks: None, tensor_ops: false }
    }

    /// Multiplies by these blocks of `W` only: every entry outside them must be zero (the
    /// network passes its connections when the compiler chose [`mrnn_ir::Product::Blocks`]).
    /// Gradients with respect to `W` are then computed on the blocks only (zero elsewhere, where
    /// the mask zeroes them anyway). Blocks apply to the host kernel; other devices multiply by
    /// the whole matrix.
    #[must_use]
    pub fn with_blocks(mut self, blocks: Vec<Block>) -> Self {
        self.blocks = Some(blocks.into());
        self
    }

    /// Runs the recurrence. `w` is the effective recurrent matrix `[H, H]` (destination rows),
    /// `drive` the per-step input `[T, B, H]`, `init` the initial state `[B, H]` (`x_0` for leaky
    /// dynamics, with `h_0 = phi(x_0)`; `h_0` for Elman). Differentiable with respect to all
    /// three arguments, through both returned sequences.
    pub fn run(&self, w: &Tensor, drive: &Tensor, init: &Tensor) -> Result<Sequences> {
        let out = self.forward(&w.detach(), &drive.detach(), &init.detach())?;
        let out = if w.track_op() || drive.track_op() || init.track_op() {
            w.apply_op3_arc(
                drive,
                init,
                std::sync::Arc::new(Box::new(RecurrenceOp { recurrence: self.clone(), out })),
            )?
        } else {
            out
        };
        Ok(match self.update {
            // Stacked [2, T, B, H] so that one op carries both sequences (and both gradients).
            Update::Leaky { .. } => Sequences { x: Some(out.get(0)?), h: out.get(1)? },
            Update::Elman => Sequences { x: None, h: out },
        })
    }

    /// The forward loop on tensors that carry no gradient: `[2, T, B, H]` (x then h) for leaky
    /// dynamics, `[T, B, H]` for Elman.
    fn forward(&self, w: &Tensor, drive: &Tensor, init: &Tensor) -> Result<Tensor> {
        let (steps, batch, hidden) = drive.dims3()?;
        if self.host_kernel(w) {
            let dims = cpu::Dims { steps, batch, hidden };
            let w = host(w)?;
            let matrix = cpu::Matrix { w: &w, blocks: self.blocks.as_deref(), hidden };
            let out = cpu::forward(
                self.update,
                self.activation,
                &matrix,
                &host(drive)?,
                &host(init)?,
                dims,
            );
            return Ok(match self.update {
                Update::Leaky { .. } => {
                    let mut both = out.states;
                    both.extend_from_slice(&out.rates);
                    Tensor::from_vec(both, (2, steps, batch, hidden), &Device::Cpu)?
                }
                Update::Elman => {
                    Tensor::from_vec(out.states, (steps, batch, hidden), &Device::Cpu)?
                }
            });
        }
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
                Ok(Tensor::stack(&[Tensor::stack(&states, 0)?, Tensor::stack(&rates, 0)?], 0)?)
            }
            Update::Elman => {
                let mut h = init.clone();
                for t in 0..steps {
                    h = activation::apply(self.activation, &h.matmul(&w_t)?.add(&drive.get(t)?)?)?;
                    states.push(h.clone());
                }
                Ok(Tensor::stack(&states, 0)?)
            }
        }
    }

    /// The reverse recurrence: gradients with respect to `w`, `drive` and `init` given the
    /// gradient of the loss with respect to the output of [`Recurrence::forward`].
    fn backward(
        &self,
        w: &Tensor,
        init: &Tensor,
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (steps, batch, hidden) = match self.update {
            Update::Leaky { .. } => out.get(0)?.dims3()?,
            Update::Elman => out.dims3()?,
        };
        if self.host_kernel(w) {
            let dims = cpu::Dims { steps, batch, hidden };
            let (out, grad) = (host(out)?, host(grad)?);
            let n = steps * batch * hidden;
            let (states, rates, grad_states, grad_rates) = match self.update {
                Update::Leaky { .. } => {
                    (out[..n].to_vec(), out[n..].to_vec(), &grad[..n], &grad[n..])
                }
                Update::Elman => (out, Vec::new(), &grad[..], &[][..]),
            };
            let forward = cpu::Forward { states, rates };
            let (w_host, init_host) = (host(w)?, host(init)?);
            let matrix = cpu::Matrix { w: &w_host, blocks: self.blocks.as_deref(), hidden };
            let args = cpu::Backward { init: &init_host, out: &forward, grad_states, grad_rates };
            let (gw, gd, gi) = cpu::backward(self.update, self.activation, &matrix, &args, dims);
            return Ok((
                Tensor::from_vec(gw, (hidden, hidden), &Device::Cpu)?,
                Tensor::from_vec(gd, (steps, batch, hidden), &Device::Cpu)?,
                Tensor::from_vec(gi, (batch, hidden), &Device::Cpu)?,
            ));
        }
        let mut adjoints = Vec::with_capacity(steps);
        match self.update {
            Update::Leaky { alpha } => {
                // a_t (dL/dx_t in total) = (1 - a) a_{t+1} + gx_t + phi'(x_t) (gh_t + a a_{t+1} W)
                let hs = out.get(1)?;
                let (gx, gh) = (grad.get(0)?, grad.get(1)?);
                let w_a = (w * alpha)?;
                let slopes = self.slope_of_output(&hs)?;
                let mut a =
                    (gx.get(steps - 1)? + gh.get(steps - 1)?.mul(&slopes.get(steps - 1)?)?)?;
                adjoints.push(a.clone());
                for t in (0..steps - 1).rev() {
                    let inner = (gh.get(t)? + a.matmul(&w_a)?)?.mul(&slopes.get(t)?)?;
                    a = ((gx.get(t)? + (&a * (1.0 - alpha))?)? + inner)?;
                    adjoints.push(a.clone());
                }
                adjoints.reverse();
                let a_all = Tensor::stack(&adjoints, 0)?;
                let grad_drive = (&a_all * alpha)?;
                let h0 = activation::apply(self.activation, init)?.unsqueeze(0)?;
                let h_prev = if steps > 1 {
                    Tensor::cat(&[&h0, &hs.narrow(0, 0, steps - 1)?], 0)?
                } else {
                    h0
                };
                let grad_w = outer_sum(&grad_drive, &h_prev, steps * batch, hidden)?;
                let a1 = a_all.get(0)?;
                let slope0 = self.slope_of_output(&activation::apply(self.activation, init)?)?;
                let grad_init = ((&a1 * (1.0 - alpha))? + a1.matmul(&w_a)?.mul(&slope0)?)?;
                Ok((grad_w, grad_drive, grad_init))
            }
            Update::Elman => {
                // delta_t = dL/dz_t, z_t = W h_{t-1} + d_{t-1}; b_t = dL/dh_t in total.
                let slopes = self.slope_of_output(out)?;
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
                    Tensor::cat(&[&init.unsqueeze(0)?, &out.narrow(0, 0, steps - 1)?], 0)?
                } else {
                    init.unsqueeze(0)?
                };
                let grad_w = outer_sum(&grad_drive, &h_prev, steps * batch, hidden)?;
                let grad_init = grad_drive.get(0)?.matmul(w)?;
                Ok((grad_w, grad_drive, grad_init))
            }
        }
    }

    /// Whether this run takes the host kernel: `f32` tensors on the CPU.
    fn host_kernel(&self, w: &Tensor) -> bool {
        !self.tensor_ops && matches!(w.device(), Device::Cpu) && w.dtype() == DType::F32
    }

    /// `phi'(z)` from the outputs `h = phi(z)`: every activation's slope is a function of its
    /// value.
    fn slope_of_output(&self, h: &Tensor) -> Result<Tensor> {
        Ok(match self.activation {
            Activation::Relu => h.gt(0f64)?.to_dtype(h.dtype())?,
            Activation::Tanh => (1.0 - h.sqr()?)?,
            Activation::Sigmoid => (h * (1.0 - h)?)?,
            // softplus' = sigmoid(z) = 1 - exp(-softplus(z)).
            Activation::Softplus => (1.0 - h.neg()?.exp()?)?,
            Activation::Linear => h.ones_like()?,
        })
    }
}

/// A CPU tensor's values, row-major.
fn host(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// `sum_t a_t^T b_t` for `[T, B, H]` tensors, as one `[H, T*B] x [T*B, H]` product.
fn outer_sum(a: &Tensor, b: &Tensor, rows: usize, hidden: usize) -> Result<Tensor> {
    let a = a.reshape((rows, hidden))?;
    let b = b.reshape((rows, hidden))?;
    Ok(a.t()?.matmul(&b)?)
}

/// The custom op that connects a precomputed forward to candle's autograd. Its "forward" hands
/// back the output already computed by [`Recurrence::forward`] (on any device); its backward is
/// [`Recurrence::backward`].
struct RecurrenceOp {
    recurrence: Recurrence,
    out: Tensor,
}

impl RecurrenceOp {
    fn copy_out<S: BackendStorage>(
        &self,
        pick: impl Fn(&candle_core::Storage) -> Option<&S>,
    ) -> candle_core::Result<(S, Shape)> {
        let (storage, layout) = self.out.storage_and_layout();
        let storage = pick(&storage).ok_or_else(|| {
            candle_core::Error::Msg("recurrence output on another device".to_owned())
        })?;
        Ok((storage.try_clone(layout)?, layout.shape().clone()))
    }
}

impl CustomOp3 for RecurrenceOp {
    fn name(&self) -> &'static str {
        "mrnn-recurrence"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.copy_out(|s| match s {
            candle_core::Storage::Cpu(c) => Some(c),
            _ => None,
        })
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
        self.copy_out(|s| match s {
            candle_core::Storage::Cuda(c) => Some(c),
            _ => None,
        })
    }

    fn bwd(
        &self,
        w: &Tensor,
        _drive: &Tensor,
        init: &Tensor,
        out: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (gw, gd, gi) = self
            .recurrence
            .backward(&w.detach(), &init.detach(), &out.detach(), &grad.detach())
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Ok((Some(gw), Some(gd), Some(gi)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Var};

    use super::*;

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

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
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

    fn max_abs(a: &Tensor) -> f32 {
        a.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    /// Forward and all three gradients, through both sequences, equal candle autograd's for every
    /// activation, leaky and Elman, on the host kernel and on the tensor-op path (the one other
    /// devices take).
    #[test]
    fn gradients_match_candle_autograd() {
        let dev = Device::Cpu;
        for tensor_ops in [false, true] {
            for (t, b, h) in [(7, 3, 5), (1, 2, 4)] {
                for activation in Activation::ALL {
                    for dynamics in [Dynamics::Leaky { dt: 1.0, tau: 4.0 }, Dynamics::Elman] {
                        let mut rec = Recurrence::new(dynamics, activation);
                        rec.tensor_ops = tensor_ops;
                        let var = |shape: &[usize], std: f32| {
                            Var::from_tensor(&Tensor::randn(0f32, std, shape, &dev).unwrap())
                                .unwrap()
                        };
                        let (w, d, x0) =
                            (var(&[h, h], 0.4), var(&[t, b, h], 1.0), var(&[b, h], 1.0));
                        let (wx, wh) = (
                            Tensor::randn(0f32, 1.0, (t, b, h), &dev).unwrap(),
                            Tensor::randn(0f32, 1.0, (t, b, h), &dev).unwrap(),
                        );
                        let ours = rec.run(w.as_tensor(), d.as_tensor(), x0.as_tensor()).unwrap();
                        let (x, hs) = naive(&rec, w.as_tensor(), d.as_tensor(), x0.as_tensor());
                        let what =
                            format!("{activation:?} {dynamics:?} tensor_ops={tensor_ops} T={t}");
                        assert!(max_diff(&ours.h, &hs) < 1e-5, "{what}: forward h");
                        let loss = |x: Option<&Tensor>, h: &Tensor| {
                            let lh = h.mul(&wh).unwrap().sum_all().unwrap();
                            match x {
                                Some(x) => (lh + x.mul(&wx).unwrap().sum_all().unwrap()).unwrap(),
                                None => lh,
                            }
                        };
                        if let (Some(a), Some(b)) = (&ours.x, &x) {
                            assert!(max_diff(a, b) < 1e-5, "{what}: forward x");
                        }
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
                                "{what}: gradient of {name} differs by {}",
                                max_diff(a, b)
                            );
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
        let w = Tensor::randn(0f32, 0.3, (4, 4), &dev).unwrap();
        let d = Tensor::zeros((3, 2, 4), DType::F32, &dev).unwrap();
        let x0 = Tensor::ones((2, 4), DType::F32, &dev).unwrap();
        let out = rec.run(&w, &d, &x0).unwrap();
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
                let raw =
                    Var::from_tensor(&Tensor::randn(0f32, 0.5, (h, h), &dev).unwrap()).unwrap();
                let d =
                    Var::from_tensor(&Tensor::randn(0f32, 1.0, (t, b, h), &dev).unwrap()).unwrap();
                let x0 =
                    Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, h), &dev).unwrap()).unwrap();
                let weights = Tensor::randn(0f32, 1.0, (t, b, h), &dev).unwrap();
                let run = |rec: &Recurrence| {
                    let w = raw.as_tensor().mul(&mask).unwrap();
                    let out = rec.run(&w, d.as_tensor(), x0.as_tensor()).unwrap();
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
}
