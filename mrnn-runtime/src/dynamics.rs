//! The update of one time step, leaky or Elman: the only place the model's math is written.
//! [`crate::Network::forward`] runs it over a sequence and [`crate::Network::step`] exposes it
//! for analysis (fixed points, linearizations), so both always agree.

use candle_core::Tensor;
use mrnn_ir::{Activation, Dynamics};

use crate::{Result, activation};

/// What a step needs besides the state: effective weights (pre-transposed, computed once per
/// forward pass) and the tonic bias.
#[derive(Debug)]
pub(crate) struct Kernel {
    pub(crate) dynamics: Dynamics,
    pub(crate) activation: Activation,
    /// `W_rec_eff^T`, `[H, H]`, contiguous: `h @ W^T` is then a plain row-major product.
    pub(crate) w_rec_t: Tensor,
    /// `W_inp_eff^T`, `[I, H]`; `None` when the network has no inputs.
    pub(crate) w_inp_t: Option<Tensor>,
    /// Tonic input `b`, `[H]`.
    pub(crate) bias: Tensor,
}

/// The state carried from step to step.
#[derive(Clone, Debug)]
pub(crate) struct State {
    /// Pre-activation `x` (leaky only).
    pub(crate) x: Option<Tensor>,
    /// Rates `h`.
    pub(crate) h: Tensor,
}

impl Kernel {
    pub(crate) fn new(
        dynamics: Dynamics,
        activation: Activation,
        w_rec_eff: &Tensor,
        w_inp_eff: Option<&Tensor>,
        bias: Tensor,
    ) -> Result<Kernel> {
        let w_rec_t = w_rec_eff.t()?.contiguous()?;
        let w_inp_t = w_inp_eff.map(|w| w.t()?.contiguous()).transpose()?;
        Ok(Kernel { dynamics, activation, w_rec_t, w_inp_t, bias })
    }

    /// One step. `u` is the input `[B, I]` with its noise already added (`None` without
    /// inputs); `extra` is what enters next to the bias: hidden noise plus stimulus, `[B, H]`.
    ///
    /// Leaky: `x' = x + alpha (-x + W h + W_in u + b + extra)`, `h' = phi(x')`.
    /// Elman: `h' = phi(W h + W_in u + b + extra)`.
    pub(crate) fn step(
        &self,
        state: &State,
        u: Option<&Tensor>,
        extra: Option<&Tensor>,
    ) -> Result<State> {
        let mut drive = state.h.matmul(&self.w_rec_t)?;
        if let (Some(u), Some(w)) = (u, &self.w_inp_t) {
            drive = (drive + u.matmul(w)?)?;
        }
        drive = drive.broadcast_add(&self.bias)?;
        if let Some(extra) = extra {
            drive = (drive + extra)?;
        }
        match self.dynamics {
            Dynamics::Leaky { dt, tau } => {
                let alpha = dt / tau;
                let x = state.x.as_ref().ok_or_else(|| {
                    crate::Error::Invalid("leaky dynamics need the pre-activation x".into())
                })?;
                // x + alpha (drive - x), as (1 - alpha) x + alpha drive in two scalings and a sum.
                let x = (x.affine(1.0 - alpha, 0.0)? + drive.affine(alpha, 0.0)?)?;
                let h = activation::apply(self.activation, &x)?;
                Ok(State { x: Some(x), h })
            }
            Dynamics::Elman => {
                Ok(State { x: None, h: activation::apply(self.activation, &drive)? })
            }
        }
    }
}
