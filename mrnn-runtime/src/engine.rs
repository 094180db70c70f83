//! The recurrence engine: the one implementation of the time loop, with its own backward pass.
//!
//! Everything that does not depend on the previous state (the input projection of every step,
//! noise, stimulus, tonic bias) is folded by the caller into one `drive` tensor `[T, B, H]`
//! computed with ordinary candle ops before the loop. What remains is
//!
//! ```text
//! leaky:  x_{t+1} = (1 - a) x_t + a (W phi(x_t) + d_t)      returns x_1..x_T
//! Elman:  h_{t+1} = phi(W h_t + d_t)                        returns h_1..h_T
//! ```
//!
//! run as a candle custom op: the forward loop runs without building an autograd graph, and the
//! backward runs the reverse recurrence (one `[B, H] x [H, H]` product per step) and computes the
//! weight gradient as a single `[H, T*B] x [T*B, H]` product over all steps. Gradients flow on into
//! whatever produced `W` (masks, `|W|`, signs: Dale's chain rule, applied once per call) and `drive`
//! (input weights, bias, stimulus), and into the initial state, through candle's autograd.
//! candle's generic backward of the same loop allocates `[H, H]` gradients per step and pads
//! every per-step slice to full size (O(T^2)); this does neither.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use mrnn_ir::{Activation, Dynamics};

use crate::Result;
use crate::activation;

/// The state update of a network: leaky (with `alpha = dt / tau`) or Elman, and `phi`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recurrence {
    update: Update,
    activation: Activation,
}

/// Which state the loop carries.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Update {
    /// Pre-activations `x`, leaking with rate `alpha`.
    Leaky { alpha: f64 },
    /// Rates `h`.
    Elman,
}

impl Recurrence {
    /// The recurrence of the given dynamics and activation.
    #[must_use]
    pub fn new(dynamics: Dynamics, activation: Activation) -> Self {
        let update = match dynamics {
            Dynamics::Leaky { .. } => Update::Leaky { alpha: dynamics.alpha() },
            Dynamics::Elman => Update::Elman,
        };
        Recurrence { update, activation }
    }

    /// Runs the recurrence. `w` is the effective recurrent matrix `[H, H]` (destination rows),
    /// `drive` the per-step input `[T, B, H]`, `init` the initial state `[B, H]` (`x_0` for leaky
    /// dynamics, `h_0` for Elman). Returns `[T, B, H]`: `x_1..x_T` (leaky) or `h_1..h_T` (Elman).
    /// Differentiable with respect to all three arguments.
    pub fn run(&self, w: &Tensor, drive: &Tensor, init: &Tensor) -> Result<Tensor> {
        let states = self.forward(&w.detach(), &drive.detach(), &init.detach())?;
        if !(w.track_op() || drive.track_op() || init.track_op()) {
            return Ok(states);
        }
        Ok(w.apply_op3_arc(
            drive,
            init,
            std::sync::Arc::new(Box::new(RecurrenceOp { recurrence: *self, states })),
        )?)
    }

    /// The forward loop on tensors that carry no gradient.
    fn forward(&self, w: &Tensor, drive: &Tensor, init: &Tensor) -> Result<Tensor> {
        let steps = drive.dim(0)?;
        // h W^T, with the leak folded into the matrix and the drive once for all steps.
        let w_t = w.t()?.contiguous()?;
        let mut states = Vec::with_capacity(steps);
        match self.update {
            Update::Leaky { alpha } => {
                let w_t = (w_t * alpha)?;
                let drive = (drive * alpha)?;
                let mut x = init.clone();
                let mut h = activation::apply(self.activation, &x)?;
                for t in 0..steps {
                    x = ((x * (1.0 - alpha))? + h.matmul(&w_t)?)?.add(&drive.get(t)?)?;
                    h = activation::apply(self.activation, &x)?;
                    states.push(x.clone());
                }
            }
            Update::Elman => {
                let mut h = init.clone();
                for t in 0..steps {
                    h = activation::apply(self.activation, &h.matmul(&w_t)?.add(&drive.get(t)?)?)?;
                    states.push(h.clone());
                }
            }
        }
        Ok(Tensor::stack(&states, 0)?)
    }

    /// The reverse recurrence: gradients with respect to `w`, `drive` and `init` given the
    /// gradient of the loss with respect to the returned states.
    fn backward(
        &self,
        w: &Tensor,
        init: &Tensor,
        states: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (steps, batch, hidden) = states.dims3()?;
        let mut adjoints = Vec::with_capacity(steps);
        let (grad_w, grad_drive, grad_init);
        match self.update {
            Update::Leaky { alpha } => {
                // a_t = dL/dx_t in total: a_t = g_t + (1 - a) a_{t+1} + a phi'(x_t) * (a_{t+1} W).
                let w_a = (w * alpha)?;
                let slopes = self.slope_of_input(states)?;
                let mut a = grad.get(steps - 1)?;
                adjoints.push(a.clone());
                for t in (0..steps - 1).rev() {
                    let through_w = a.matmul(&w_a)?.mul(&slopes.get(t)?)?;
                    a = ((grad.get(t)? + (&a * (1.0 - alpha))?)? + through_w)?;
                    adjoints.push(a.clone());
                }
                adjoints.reverse();
                let a_all = Tensor::stack(&adjoints, 0)?; // a_1..a_T
                // x_{t+1} = ... + a d_t: dL/dd_t = a * a_{t+1}.
                grad_drive = (&a_all * alpha)?;
                // dL/dW = a sum_t a_{t+1}^T h_t, with h_0..h_{T-1}.
                let h0 = activation::apply(self.activation, init)?.unsqueeze(0)?;
                let h_prev = if steps > 1 {
                    let later =
                        activation::apply(self.activation, &states.narrow(0, 0, steps - 1)?)?;
                    Tensor::cat(&[&h0, &later], 0)?
                } else {
                    h0
                };
                grad_w = outer_sum(&grad_drive, &h_prev, steps * batch, hidden)?;
                let a1 = a_all.get(0)?;
                let slope0 = self.slope_of_input(init)?;
                grad_init = ((&a1 * (1.0 - alpha))? + a1.matmul(&w_a)?.mul(&slope0)?)?;
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
                grad_drive = Tensor::stack(&adjoints, 0)?; // delta_1..delta_T
                let h_prev =
                    Tensor::cat(&[&init.unsqueeze(0)?, &states.narrow(0, 0, steps - 1)?], 0)?;
                grad_w = outer_sum(&grad_drive, &h_prev, steps * batch, hidden)?;
                grad_init = grad_drive.get(0)?.matmul(w)?;
            }
        }
        Ok((grad_w, grad_drive, grad_init))
    }

    /// `phi'(x)` from pre-activations.
    fn slope_of_input(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self.activation {
            Activation::Relu => x.gt(0f64)?.to_dtype(x.dtype())?,
            Activation::Tanh => (1.0 - x.tanh()?.sqr()?)?,
            Activation::Sigmoid => {
                let s = candle_nn::ops::sigmoid(x)?;
                (&s * (1.0 - &s)?)?
            }
            Activation::Softplus => candle_nn::ops::sigmoid(x)?,
            Activation::Linear => x.ones_like()?,
        })
    }

    /// `phi'(z)` from the outputs `h = phi(z)` (Elman keeps only `h`): every activation's slope
    /// is a function of its value.
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

/// `sum_t a_t^T b_t` for `[T, B, H]` tensors, as one `[H, T*B] x [T*B, H]` product.
fn outer_sum(a: &Tensor, b: &Tensor, rows: usize, hidden: usize) -> Result<Tensor> {
    let a = a.reshape((rows, hidden))?;
    let b = b.reshape((rows, hidden))?;
    Ok(a.t()?.matmul(&b)?)
}

/// The custom op that connects a precomputed forward to candle's autograd. Its "forward" hands
/// back the states already computed by [`Recurrence::forward`] (on any device); its backward is
/// [`Recurrence::backward`].
struct RecurrenceOp {
    recurrence: Recurrence,
    states: Tensor,
}

impl RecurrenceOp {
    fn copy_states<S: BackendStorage>(
        &self,
        pick: impl Fn(&candle_core::Storage) -> Option<&S>,
    ) -> candle_core::Result<(S, Shape)> {
        let (storage, layout) = self.states.storage_and_layout();
        let storage = pick(&storage).ok_or_else(|| {
            candle_core::Error::Msg("recurrence states on another device".to_owned())
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
        self.copy_states(|s| match s {
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
        self.copy_states(|s| match s {
            candle_core::Storage::Cuda(c) => Some(c),
            _ => None,
        })
    }

    fn bwd(
        &self,
        w: &Tensor,
        _drive: &Tensor,
        init: &Tensor,
        states: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (gw, gd, gi) = self
            .recurrence
            .backward(&w.detach(), &init.detach(), &states.detach(), &grad.detach())
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Ok((Some(gw), Some(gd), Some(gi)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Var};

    use super::*;

    /// The reference: the same loop through candle's generic autograd.
    fn naive(rec: &Recurrence, w: &Tensor, drive: &Tensor, init: &Tensor) -> Tensor {
        let steps = drive.dim(0).unwrap();
        let mut out = Vec::new();
        match rec.update {
            Update::Leaky { alpha } => {
                let mut x = init.clone();
                for t in 0..steps {
                    let h = activation::apply(rec.activation, &x).unwrap();
                    let input =
                        (h.matmul(&w.t().unwrap()).unwrap() + drive.get(t).unwrap()).unwrap();
                    x = ((&x * (1.0 - alpha)).unwrap() + (input * alpha).unwrap()).unwrap();
                    out.push(x.clone());
                }
            }
            Update::Elman => {
                let mut h = init.clone();
                for t in 0..steps {
                    let z = (h.matmul(&w.t().unwrap()).unwrap() + drive.get(t).unwrap()).unwrap();
                    h = activation::apply(rec.activation, &z).unwrap();
                    out.push(h.clone());
                }
            }
        }
        Tensor::stack(&out, 0).unwrap()
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

    /// Forward and all three gradients equal candle autograd's, for every activation, leaky and
    /// Elman.
    #[test]
    fn gradients_match_candle_autograd() {
        let dev = Device::Cpu;
        for (t, b, h) in [(7, 3, 5), (1, 2, 4)] {
            for activation in Activation::ALL {
                for dynamics in [Dynamics::Leaky { dt: 1.0, tau: 4.0 }, Dynamics::Elman] {
                    let rec = Recurrence::new(dynamics, activation);
                    let w = Var::from_tensor(&(Tensor::randn(0f32, 0.4, (h, h), &dev).unwrap()))
                        .unwrap();
                    let d = Var::from_tensor(&Tensor::randn(0f32, 1.0, (t, b, h), &dev).unwrap())
                        .unwrap();
                    let x0 =
                        Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, h), &dev).unwrap()).unwrap();
                    let weights = Tensor::randn(0f32, 1.0, (t, b, h), &dev).unwrap();
                    let ours = rec.run(w.as_tensor(), d.as_tensor(), x0.as_tensor()).unwrap();
                    let theirs = naive(&rec, w.as_tensor(), d.as_tensor(), x0.as_tensor());
                    let what = format!("{activation:?} {dynamics:?}");
                    assert!(max_diff(&ours, &theirs) < 1e-5, "{what}: forward");
                    let g1 = ours.mul(&weights).unwrap().sum_all().unwrap().backward().unwrap();
                    let g2 = theirs.mul(&weights).unwrap().sum_all().unwrap().backward().unwrap();
                    for (name, var) in [("w", &w), ("drive", &d), ("init", &x0)] {
                        let (a, b) =
                            (g1.get(var.as_tensor()).unwrap(), g2.get(var.as_tensor()).unwrap());
                        let scale = b
                            .abs()
                            .unwrap()
                            .flatten_all()
                            .unwrap()
                            .max(0)
                            .unwrap()
                            .to_scalar::<f32>()
                            .unwrap()
                            .max(1.0);
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

    #[test]
    fn without_gradients_it_is_a_plain_loop() {
        let dev = Device::Cpu;
        let rec = Recurrence::new(Dynamics::Leaky { dt: 1.0, tau: 2.0 }, Activation::Tanh);
        let w = Tensor::randn(0f32, 0.3, (4, 4), &dev).unwrap();
        let d = Tensor::zeros((3, 2, 4), DType::F32, &dev).unwrap();
        let x0 = Tensor::ones((2, 4), DType::F32, &dev).unwrap();
        let out = rec.run(&w, &d, &x0).unwrap();
        assert!(!out.track_op());
        assert!(max_diff(&out, &naive(&rec, &w, &d, &x0)) < 1e-6);
    }
}
