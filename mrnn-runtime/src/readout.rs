//! A linear readout `y = h W^T + b` from the hidden rates to task outputs (mRNNTorch examples
//! use `torch.nn.Linear` as `out_layer`).

use candle_core::{D, DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::pth::StateDict;
use crate::{Error, Result};

/// A linear map from `H` hidden units to `O` outputs.
#[derive(Clone, Debug)]
pub struct Readout {
    /// `[O, H]`, as `torch.nn.Linear` stores it.
    pub weight: Var,
    /// `[O]`.
    pub bias: Var,
}

impl Readout {
    /// A readout initialized as `torch.nn.Linear` does: weight and bias `U(-k, k)`,
    /// `k = 1 / sqrt(H)`, drawn with `seed`.
    pub fn new(hidden: usize, outputs: usize, seed: u64, device: &Device) -> Result<Readout> {
        let k = 1.0 / (hidden.max(1) as f64).sqrt();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut draw =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-k..k) as f32).collect() };
        let weight = Tensor::from_vec(draw(outputs * hidden), (outputs, hidden), device)?;
        let bias = Tensor::from_vec(draw(outputs), outputs, device)?;
        Readout::from_tensors(&weight, &bias)
    }

    /// A readout holding copies of `weight` `[O, H]` and `bias` `[O]`.
    pub fn from_tensors(weight: &Tensor, bias: &Tensor) -> Result<Readout> {
        let (o, _) = match weight.dims() {
            [o, h] => (*o, *h),
            _ => {
                return Err(Error::Shape {
                    what: "readout weight".into(),
                    expected: "[O, H]".into(),
                    got: weight.dims().to_vec(),
                });
            }
        };
        if bias.dims() != [o] {
            return Err(Error::Shape {
                what: "readout bias".into(),
                expected: format!("[{o}] ([O], O = {o} from the weight)"),
                got: bias.dims().to_vec(),
            });
        }
        let copy = |t: &Tensor| -> Result<Var> {
            Ok(Var::from_tensor(&t.to_dtype(DType::F32)?.to_device(weight.device())?.copy()?)?)
        };
        Ok(Readout { weight: copy(weight)?, bias: copy(bias)? })
    }

    /// Reads `{prefix}weight` and `{prefix}bias` (`prefix` such as `out_layer.`) from a
    /// state dict onto `device`. A NaN or an infinity in either is refused
    /// ([`Error::Checkpoint`], naming the tensor and the first bad index): every output would
    /// carry it.
    pub fn from_state_dict(sd: &StateDict, prefix: &str, device: &Device) -> Result<Readout> {
        let key = format!("{prefix}weight");
        let weight = sd.get(&key).ok_or_else(|| Error::Checkpoint {
            path: sd.source().to_owned(),
            message: format!(
                "no tensor `{key}` (the file has: {})",
                sd.keys().collect::<Vec<_>>().join(", ")
            ),
        })?;
        let o = weight.dims().first().copied().unwrap_or(0);
        let bias_key = format!("{prefix}bias");
        let bias = sd.require(&bias_key, &[o])?;
        for (key, t) in [(&key, weight), (&bias_key, &bias)] {
            if let Some(bad) = crate::finite::non_finite(t)? {
                return Err(Error::Checkpoint {
                    path: sd.source().to_owned(),
                    message: format!(
                        "readout tensor `{key}` holds {bad}; a readout must be finite"
                    ),
                });
            }
        }
        Readout::from_tensors(&weight.to_device(device)?, &bias.to_device(device)?)
    }

    /// Number of hidden units read.
    #[must_use]
    pub fn hidden_size(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Number of outputs.
    #[must_use]
    pub fn output_size(&self) -> usize {
        self.weight.dims()[0]
    }

    /// The learnable tensors, named as in a state dict: `weight`, `bias`.
    #[must_use]
    pub fn vars(&self) -> Vec<(String, Var)> {
        vec![("weight".to_owned(), self.weight.clone()), ("bias".to_owned(), self.bias.clone())]
    }

    /// `h W^T + b` for `h` `[..., H]`: returns `[..., O]`.
    pub fn forward(&self, h: &Tensor) -> Result<Tensor> {
        let hidden = self.hidden_size();
        if h.dims().last() != Some(&hidden) {
            return Err(Error::Shape {
                what: "readout input".into(),
                expected: format!("[..., {hidden}] (H = {hidden} last)"),
                got: h.dims().to_vec(),
            });
        }
        let mut out_dims = h.dims().to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = self.output_size();
        }
        let flat = h.to_dtype(DType::F32)?.flatten_to(D::Minus2)?;
        let y = flat.matmul(&self.weight.as_tensor().t()?)?.broadcast_add(self.bias.as_tensor())?;
        Ok(y.reshape(out_dims)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A readout read from a state dict must be finite: a NaN or infinite weight or bias is
    /// refused with the key, the index and the value, not loaded into every output.
    #[test]
    fn non_finite_parameters_are_refused_when_loaded() {
        let dev = Device::Cpu;
        let weight = |v: f32| Tensor::new(&[[0.5f32, -0.25, v], [0.0, 1.0, 2.0]], &dev).unwrap();
        let bias = |v: f32| Tensor::new(&[0.1f32, v], &dev).unwrap();
        let sd = |w: Tensor, b: Tensor| {
            StateDict::from_tensors(
                "r.pth",
                [("out.weight".to_owned(), w), ("out.bias".to_owned(), b)],
            )
        };
        assert!(Readout::from_state_dict(&sd(weight(1.0), bias(0.2)), "out.", &dev).is_ok());
        let cases = [
            (
                sd(weight(f32::NAN), bias(0.2)),
                "`out.weight` holds 1 non-finite value, the first NaN at index [0, 2]",
            ),
            (
                sd(weight(1.0), bias(f32::NEG_INFINITY)),
                "`out.bias` holds 1 non-finite value, the first -inf at index [1]",
            ),
        ];
        for (sd, expected) in cases {
            let err = Readout::from_state_dict(&sd, "out.", &dev).unwrap_err().to_string();
            assert!(err.contains(expected) && err.contains("r.pth"), "{err}");
        }
    }
}
