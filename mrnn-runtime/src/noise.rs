//! Process noise of a noisy forward pass: hidden and input noise, drawn up front for the whole
//! sequence from a seeded `ChaCha8` RNG so that a seed reproduces a run on any device.

use candle_core::{Device, Tensor};
use mrnn_ir::Settings;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::Result;

/// The standard deviation `c = (1 / alpha) * sqrt(2 * alpha * sigma^2)` of the noise added inside
/// the update, so that the noise on the state after one step, `alpha * c`, is
/// `sqrt(2 alpha) sigma`. Elman dynamics use `alpha = 1`.
#[must_use]
pub fn scale(alpha: f64, sigma: f64) -> f64 {
    (2.0 * alpha * sigma * sigma).sqrt() / alpha
}

/// The noise of one forward pass, time major: `hidden` `[T, B, H]`, `input` `[T, B, I]` (absent
/// when the network has no inputs).
#[derive(Debug)]
pub(crate) struct Draws {
    pub(crate) hidden: Tensor,
    pub(crate) input: Option<Tensor>,
}

impl Draws {
    /// The same draws in the batch-first layout (`[B, T, ..]`).
    pub(crate) fn batch_first(self) -> Result<Draws> {
        let swap = |t: Tensor| -> Result<Tensor> { Ok(t.transpose(0, 1)?.contiguous()?) };
        Ok(Draws { hidden: swap(self.hidden)?, input: self.input.map(swap).transpose()? })
    }

    /// Draws all hidden noise, then all input noise, from one RNG seeded with `seed`.
    pub(crate) fn new(
        seed: u64,
        settings: &Settings,
        (t, b, h, i): (usize, usize, usize, usize),
        device: &Device,
    ) -> Result<Draws> {
        let alpha = settings.dynamics.alpha();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut normal = |n: usize, c: f64| -> Vec<f32> {
            (0..n).map(|_| (rng.sample::<f64, _>(StandardNormal) * c) as f32).collect()
        };
        let hidden = Tensor::from_vec(
            normal(t * b * h, scale(alpha, settings.noise.act)),
            (t, b, h),
            device,
        )?;
        let input = if i == 0 {
            None
        } else {
            Some(Tensor::from_vec(
                normal(t * b * i, scale(alpha, settings.noise.inp)),
                (t, b, i),
                device,
            )?)
        };
        Ok(Draws { hidden, input })
    }
}
