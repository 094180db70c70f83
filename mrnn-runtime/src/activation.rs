//! The nonlinearities `phi` that map pre-activations to rates, on candle tensors with gradients
//! (the path of devices other than the CPU, of the analysis, and of the engine's tests).
//!
//! NaN and infinities go through as IEEE arithmetic takes them, as on the host kernels
//! ([`crate::engine::fast_math`]): relu(NaN) = NaN (candle's own `relu` is `max(x, 0)`, which
//! returns 0 for NaN), tanh(+-inf) = +-1, sigmoid(-inf) = 0, softplus(inf) = inf.

use candle_core::Tensor;
use mrnn_ir::Activation;

use crate::Result;

/// Applies `phi` elementwise. Every branch is differentiable through candle's autograd.
pub fn apply(activation: Activation, x: &Tensor) -> Result<Tensor> {
    Ok(match activation {
        Activation::Relu => relu(x)?,
        Activation::Tanh => x.tanh()?,
        // candle-nn's sigmoid has its own backward; `1 / (1 + exp(-x))` built from primitives
        // would give 0 * inf = NaN gradients for very negative x.
        Activation::Sigmoid => candle_nn::ops::sigmoid(x)?,
        // ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|): never overflows, and its derivative through
        // these primitives is the sigmoid everywhere (1/2 at 0).
        Activation::Softplus => (relu(x)? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?,
        Activation::Linear => x.clone(),
    })
}

/// `phi'(x)` elementwise, as a function of the pre-activation `x`, NaN where `x` is NaN (relu:
/// 1 above 0, 0 below and at 0).
pub fn slope(activation: Activation, x: &Tensor) -> Result<Tensor> {
    Ok(match activation {
        Activation::Relu => relu_slope(x)?,
        Activation::Tanh => x.tanh()?.sqr()?.affine(-1.0, 1.0)?,
        Activation::Sigmoid => {
            let s = candle_nn::ops::sigmoid(x)?;
            (&s * s.affine(-1.0, 1.0)?)?
        }
        // d/dx ln(1 + e^x) = sigmoid(x).
        Activation::Softplus => candle_nn::ops::sigmoid(x)?,
        Activation::Linear => x.ones_like()?,
    })
}

/// relu's slope at `x` (or at `h = relu(x)`, the same): 1 above 0, 0 at and below, NaN for NaN
/// (`x > 0` alone is false for NaN, a slope of 0 that would hide it).
pub(crate) fn relu_slope(x: &Tensor) -> Result<Tensor> {
    let step = x.gt(0.0)?.to_dtype(x.dtype())?;
    Ok(x.ne(x)?.where_cond(x, &step)?)
}

/// `max(x, 0)` that keeps NaN (candle's `relu` and `maximum` return 0 for it): 0 where `x < 0`,
/// else `x`. Its gradient passes where `x >= 0` (and NaN), as candle's relu's does at 0.
fn relu(x: &Tensor) -> Result<Tensor> {
    Ok(x.lt(0.0)?.where_cond(&x.zeros_like()?, x)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn values(a: Activation, xs: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let v = Var::from_slice(xs, xs.len(), &Device::Cpu).unwrap();
        let y = apply(a, v.as_tensor()).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let g = grads.get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        (y.to_vec1::<f32>().unwrap(), g)
    }

    /// NaN and the infinities give what IEEE arithmetic gives, values and slopes (relu(NaN)
    /// was 0 through candle's `relu`).
    #[test]
    fn special_values_follow_ieee() {
        let (nan, inf) = (f32::NAN, f32::INFINITY);
        let xs = [nan, inf, -inf, -2.0, 0.0, 3.0];
        let want = |a: Activation| -> [f32; 6] {
            let s = |x: f32| 1.0 / (1.0 + (-x).exp());
            match a {
                Activation::Relu => [nan, inf, 0.0, 0.0, 0.0, 3.0],
                Activation::Tanh => [nan, 1.0, -1.0, (-2f32).tanh(), 0.0, 3f32.tanh()],
                Activation::Sigmoid => [nan, 1.0, 0.0, s(-2.0), 0.5, s(3.0)],
                Activation::Softplus => {
                    [nan, inf, 0.0, (-2f32).exp().ln_1p(), 2f32.ln(), 3.0 + (-3f32).exp().ln_1p()]
                }
                Activation::Linear => xs,
            }
        };
        let t = Tensor::new(&xs, &candle_core::Device::Cpu).unwrap();
        for a in Activation::ALL {
            let got = apply(a, &t).unwrap().to_vec1::<f32>().unwrap();
            for ((x, g), w) in xs.iter().zip(&got).zip(want(a)) {
                let ok = (g.is_nan() && w.is_nan())
                    || (g - w).abs() <= 1e-6
                    || g.to_bits() == w.to_bits();
                assert!(ok, "{a:?}({x}) = {g}, expected {w}");
            }
            let slopes = slope(a, &t).unwrap().to_vec1::<f32>().unwrap();
            assert!(slopes[0].is_nan() || a == Activation::Linear, "{a:?}'(NaN) = {}", slopes[0]);
            assert!(slopes[1..].iter().all(|s| s.is_finite()), "{a:?}': {slopes:?}");
        }
    }

    #[test]
    fn values_and_derivatives() {
        let xs = [-100.0f32, -1.0, 0.5, 100.0];
        let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
        let (y, g) = values(Activation::Softplus, &xs);
        for ((x, y), g) in xs.iter().zip(&y).zip(&g) {
            let want = if *x > 20.0 { *x } else { x.exp().ln_1p() };
            assert!((y - want).abs() < 1e-5, "softplus({x}) = {y}, want {want}");
            assert!((g - sig(*x)).abs() < 1e-6, "softplus'({x}) = {g}");
        }
        let (y, g) = values(Activation::Sigmoid, &xs);
        for ((x, y), g) in xs.iter().zip(&y).zip(&g) {
            assert!((y - sig(*x)).abs() < 1e-6);
            assert!((g - sig(*x) * (1.0 - sig(*x))).abs() < 1e-6 && g.is_finite());
        }
        let (y, _) = values(Activation::Relu, &xs);
        assert_eq!(y, vec![0.0, 0.0, 0.5, 100.0]);
        let (y, g) = values(Activation::Linear, &xs);
        assert_eq!((y, g), (xs.to_vec(), vec![1.0; 4]));
        let (y, _) = values(Activation::Tanh, &[0.5]);
        assert!((y[0] - 0.5f32.tanh()).abs() < 1e-7);
    }
}
