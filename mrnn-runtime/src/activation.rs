//! The nonlinearities `phi` that map pre-activations to rates, on candle tensors with gradients.

use candle_core::Tensor;
use mrnn_ir::Activation;

use crate::Result;

/// Applies `phi` elementwise. Every branch is differentiable through candle's autograd.
pub fn apply(activation: Activation, x: &Tensor) -> Result<Tensor> {
    Ok(match activation {
        Activation::Relu => x.relu()?,
        Activation::Tanh => x.tanh()?,
        // candle-nn's sigmoid has its own backward; `1 / (1 + exp(-x))` built from primitives
        // would give 0 * inf = NaN gradients for very negative x.
        Activation::Sigmoid => candle_nn::ops::sigmoid(x)?,
        // ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|): never overflows, and its derivative through
        // these primitives is the sigmoid everywhere (1/2 at 0).
        Activation::Softplus => (x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?,
        Activation::Linear => x.clone(),
    })
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
