//! The effective weights `|W| * F` (Dale's law) or `W * F`, with `F` the masks times the signs:
//! one op, one pass forward and one pass backward, for `W` only (`F` is a constant). As candle
//! ops they took two passes forward and, at H = 1024, some eight over the 1M weights backward
//! (the sign of `W` through a comparison and a select, and a gradient for `F` that nothing
//! reads), every training step.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};

use super::{HostSlice, cpu_values};
use crate::{Error, Result};

/// `|w| * factor` when `dale`, else `w * factor`, for same-shaped `w` and `factor`.
/// Differentiable with respect to `w` (the gradient of `|w|` at 0 is taken as +1, as candle's).
pub fn effective_weights(w: &Tensor, factor: &Tensor, dale: bool) -> Result<Tensor> {
    if w.dims() != factor.dims() {
        return Err(Error::Invalid(format!(
            "effective weights of {:?} weights by a {:?} factor: expected the same shape",
            w.dims(),
            factor.dims()
        )));
    }
    let host =
        [w, factor].iter().all(|t| matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32);
    if !host {
        return Ok(if dale { (w.abs()? * factor)? } else { (w * factor)? });
    }
    let op = Effective { factor: factor.contiguous()?.detach(), dale };
    Ok(w.contiguous()?.apply_op1_arc(std::sync::Arc::new(Box::new(op)))?)
}

/// The custom op of [`effective_weights`] on the CPU.
struct Effective {
    factor: Tensor,
    dale: bool,
}

impl CustomOp1 for Effective {
    fn name(&self) -> &'static str {
        "mrnn-effective-weights"
    }

    fn cpu_fwd(&self, w: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let w = cpu_values(w, layout)?;
        let factor =
            HostSlice::of(&self.factor).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let out: Vec<f32> = if self.dale {
            w.iter().zip(factor.values()).map(|(w, f)| w.abs() * f).collect()
        } else {
            w.iter().zip(factor.values()).map(|(w, f)| w * f).collect()
        };
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, w: &Tensor, _out: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let msg = |e: Error| candle_core::Error::Msg(e.to_string());
        let grad = grad.contiguous()?;
        let (w_host, g, f) = (
            HostSlice::of(w).map_err(msg)?,
            HostSlice::of(&grad).map_err(msg)?,
            HostSlice::of(&self.factor).map_err(msg)?,
        );
        let pairs = g.values().iter().zip(f.values());
        let out: Vec<f32> = if self.dale {
            pairs
                .zip(w_host.values())
                .map(|((g, f), w)| if *w >= 0.0 { g * f } else { -g * f })
                .collect()
        } else {
            pairs.map(|(g, f)| g * f).collect()
        };
        Ok(Some(Tensor::from_vec(out, w.shape(), &Device::Cpu)?))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Var;

    use super::*;

    /// Forward and the gradient of `W` equal candle's `abs` and `mul`, with and without Dale's
    /// law, on weights of both signs and a factor with zeros (masked) and both signs.
    #[test]
    fn effective_weights_match_candle_ops() {
        let w = Var::from_vec(vec![0.5f32, -1.5, 2.0, -0.25, 0.75, -3.0], (2, 3), &Device::Cpu)
            .unwrap();
        let factor =
            Tensor::from_vec(vec![1f32, -1.0, 0.0, 1.0, -1.0, 1.0], (2, 3), &Device::Cpu).unwrap();
        let weights =
            Tensor::from_vec(vec![1f32, 2.0, 3.0, 4.0, 5.0, 6.0], (2, 3), &Device::Cpu).unwrap();
        for dale in [false, true] {
            let ours = effective_weights(w.as_tensor(), &factor, dale).unwrap();
            let reference = if dale {
                (w.as_tensor().abs().unwrap() * &factor).unwrap()
            } else {
                (w.as_tensor() * &factor).unwrap()
            };
            assert_eq!(ours.to_vec2::<f32>().unwrap(), reference.to_vec2::<f32>().unwrap());
            let g1 = ours.mul(&weights).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = reference.mul(&weights).unwrap().sum_all().unwrap().backward().unwrap();
            let (a, b) = (g1.get(w.as_tensor()).unwrap(), g2.get(w.as_tensor()).unwrap());
            assert_eq!(a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap(), "dale={dale}");
        }
    }

    #[test]
    fn mismatched_shapes_are_refused() {
        let w = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        let factor = Tensor::zeros((3, 2), DType::F32, &Device::Cpu).unwrap();
        let err = effective_weights(&w, &factor, true).unwrap_err().to_string();
        assert!(err.contains("[2, 3] weights by a [3, 2] factor"), "{err}");
    }
}
