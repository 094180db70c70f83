//! Optimization: AdamW with the update rule and parameters of candle-nn's `AdamW`
//! ([`ParamsAdamW`]), whose moment estimates can be saved and restored (candle-nn keeps them
//! private, and an exact `--resume` needs them), and gradient-norm clipping.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
pub use candle_nn::ParamsAdamW;

use crate::{Error, Result};

/// One optimized parameter and its moment estimates.
#[derive(Debug)]
struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
}

/// AdamW over named variables (decoupled weight decay, bias-corrected moments), step for step
/// the same arithmetic as `candle_nn::AdamW`.
#[derive(Debug)]
pub struct AdamW {
    params: ParamsAdamW,
    step: u64,
    slots: Vec<Slot>,
}

impl AdamW {
    /// An optimizer over `vars` (names are used to save and restore its state).
    pub fn new(vars: Vec<(String, Var)>, params: ParamsAdamW) -> Result<Self> {
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                let m = var.as_tensor().zeros_like()?;
                let v = var.as_tensor().zeros_like()?;
                Ok(Slot { name, var, m, v })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AdamW { params, step: 0, slots })
    }

    /// Steps taken so far.
    #[must_use]
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The hyper-parameters.
    #[must_use]
    pub fn params(&self) -> &ParamsAdamW {
        &self.params
    }

    /// Changes the learning rate (schedules).
    pub fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr;
    }

    /// The variables being optimized, with their names.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.slots.iter().map(|s| (s.name.as_str(), &s.var))
    }

    /// Applies one update from `grads`; variables without a gradient are left alone.
    ///
    /// All or nothing: every new value is computed first, and when one would not be finite (a
    /// learning rate so large that the step overflows, a gradient whose square overflows `f32`)
    /// nothing changes and the error ([`Error::Diverged`], at this optimizer step) names the
    /// variable. Finite loss and gradients do not make finite parameters, so the check is here,
    /// where the parameters change.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let step = self.step + 1;
        let p = &self.params;
        let t = i32::try_from(step).unwrap_or(i32::MAX);
        let scale_m = 1.0 / (1.0 - p.beta1.powi(t));
        let scale_v = 1.0 / (1.0 - p.beta2.powi(t));
        let mut updates = Vec::with_capacity(self.slots.len());
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(g) = grads.get(slot.var.as_tensor()) else { continue };
            let m = ((&slot.m * p.beta1)? + (g * (1.0 - p.beta1))?)?;
            let v = ((&slot.v * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let adjusted = ((&m * scale_m)? / ((&v * scale_v)?.sqrt()? + p.eps)?)?;
            let theta =
                ((slot.var.as_tensor() * (1.0 - p.lr * p.weight_decay))? - (adjusted * p.lr)?)?;
            for (what, value) in
                [("its value", &theta), ("its first moment", &m), ("its second moment", &v)]
            {
                if !all_finite(value)? {
                    return Err(Error::Diverged {
                        step: step as usize,
                        what: format!(
                            "the update of `{}` would make {what} non-finite (learning rate {}, weight decay {})",
                            slot.name,
                            crate::train::number(p.lr),
                            crate::train::number(p.weight_decay)
                        ),
                    });
                }
            }
            updates.push((i, theta, m, v));
        }
        for (i, theta, m, v) in updates {
            let slot = &mut self.slots[i];
            slot.var.set(&theta)?;
            slot.m = m;
            slot.v = v;
        }
        self.step = step;
        Ok(())
    }

    /// The optimizer's state as tensors named `adamw.m.<var>` and `adamw.v.<var>` (for
    /// checkpoints), with the step count returned separately.
    #[must_use]
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.slots
            .iter()
            .flat_map(|s| {
                [
                    (format!("adamw.m.{}", s.name), s.m.clone()),
                    (format!("adamw.v.{}", s.name), s.v.clone()),
                ]
            })
            .collect()
    }

    /// Restores a state saved by [`AdamW::state`] at step `step`; every variable's moments must
    /// be present with the variable's shape.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, step: u64) -> Result<()> {
        for slot in &mut self.slots {
            for (kind, target) in [("m", &mut slot.m), ("v", &mut slot.v)] {
                let key = format!("adamw.{kind}.{}", slot.name);
                let t = tensors
                    .get(&key)
                    .ok_or_else(|| Error::Invalid(format!("optimizer state has no `{key}`")))?;
                if t.dims() != slot.var.dims() {
                    return Err(Error::Shape {
                        what: key,
                        expected: format!("{:?} (the shape of `{}`)", slot.var.dims(), slot.name),
                        got: t.dims().to_vec(),
                    });
                }
                *target = t.to_device(slot.var.device())?.to_dtype(slot.var.dtype())?;
            }
        }
        self.step = step;
        Ok(())
    }
}

/// Whether every element of `t` is finite (no NaN, no infinity), with one scalar read back:
/// `t - t` is 0 where `t` is finite and NaN where it is not, and a NaN survives the sum.
pub fn all_finite(t: &Tensor) -> Result<bool> {
    let t = t.to_dtype(candle_core::DType::F32)?;
    Ok(t.sub(&t)?.sum_all()?.to_scalar::<f32>()?.is_finite())
}

/// Scales the gradients of `vars` so that their joint L2 norm is at most `max_norm`; returns
/// the norm before clipping, computed in `f64` (NaN or infinite only when a gradient is, which
/// callers treat as divergence).
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[&Var], max_norm: f64) -> Result<f64> {
    // Summed in f64: gradients that are each finite in f32 can have squares that overflow f32
    // (any entry beyond 1.8e19), and that is no reason to call them non-finite.
    let mut total = 0f64;
    for var in vars {
        if let Some(g) = grads.get(var.as_tensor()) {
            total += g.to_dtype(candle_core::DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
        }
    }
    let norm = total.sqrt();
    if norm.is_finite() && norm > max_norm && max_norm > 0.0 {
        let scale = max_norm / (norm + 1e-6);
        for var in vars {
            if let Some(g) = grads.remove(var.as_tensor()) {
                grads.insert(var.as_tensor(), (g * scale)?);
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};
    use candle_nn::Optimizer;

    use super::*;

    /// Same trajectory as candle-nn's AdamW on the same problem.
    #[test]
    fn matches_candle_nn_adamw() {
        let dev = Device::Cpu;
        let start = Tensor::new(&[[1.0f32, -2.0], [0.5, 3.0]], &dev).unwrap();
        let target = Tensor::new(&[[0.0f32, 1.0], [2.0, -1.0]], &dev).unwrap();
        let (a, b) = (Var::from_tensor(&start).unwrap(), Var::from_tensor(&start).unwrap());
        let params = ParamsAdamW { lr: 0.05, weight_decay: 0.1, ..ParamsAdamW::default() };
        let mut ours = AdamW::new(vec![("w".into(), a.clone())], params.clone()).unwrap();
        let mut theirs = candle_nn::AdamW::new(vec![b.clone()], params).unwrap();
        for _ in 0..20 {
            let ga = a
                .as_tensor()
                .sub(&target)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            ours.step(&ga).unwrap();
            let gb = b
                .as_tensor()
                .sub(&target)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            theirs.step(&gb).unwrap();
        }
        let diff = a
            .as_tensor()
            .sub(b.as_tensor())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-6, "differs from candle-nn by {diff}");
    }

    #[test]
    fn state_round_trips() {
        let dev = Device::Cpu;
        let var = Var::from_tensor(&Tensor::new(&[1.0f32, 2.0], &dev).unwrap()).unwrap();
        let mut opt = AdamW::new(vec![("w".into(), var.clone())], ParamsAdamW::default()).unwrap();
        let grads = var.as_tensor().sqr().unwrap().sum_all().unwrap().backward().unwrap();
        opt.step(&grads).unwrap();
        let saved: HashMap<String, Tensor> = opt.state().into_iter().collect();
        let mut fresh =
            AdamW::new(vec![("w".into(), var.clone())], ParamsAdamW::default()).unwrap();
        fresh.load_state(&saved, opt.steps()).unwrap();
        assert_eq!(fresh.steps(), 1);
        assert_eq!(
            fresh.state()[0].1.to_vec1::<f32>().unwrap(),
            opt.state()[0].1.to_vec1::<f32>().unwrap()
        );
        let mut missing = saved.clone();
        missing.remove("adamw.v.w");
        assert!(fresh.load_state(&missing, 1).is_err());
    }

    /// An update that would overflow changes nothing: not the variable, not the moments, not
    /// the step count.
    #[test]
    fn an_update_that_overflows_changes_nothing() {
        let dev = Device::Cpu;
        let var = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0], &dev).unwrap()).unwrap();
        let params = ParamsAdamW { lr: 1e39, ..ParamsAdamW::default() };
        let mut opt = AdamW::new(vec![("w".into(), var.clone())], params).unwrap();
        let grads = var.as_tensor().sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let before: HashMap<String, Tensor> = opt.state().into_iter().collect();
        let err = opt.step(&grads).unwrap_err().to_string();
        assert!(err.contains("`w` would make its value non-finite"), "{err}");
        assert!(err.contains("learning rate 1e39"), "{err}");
        assert_eq!(var.as_tensor().to_vec1::<f32>().unwrap(), [1.0, -2.0]);
        assert_eq!(opt.steps(), 0);
        for (name, t) in opt.state() {
            assert_eq!(t.to_vec1::<f32>().unwrap(), before[&name].to_vec1::<f32>().unwrap());
        }
        // A gradient whose square overflows f32 would make the second moment infinite.
        let mut opt = AdamW::new(vec![("w".into(), var.clone())], ParamsAdamW::default()).unwrap();
        let huge = (var.as_tensor().sum_all().unwrap() * 1e30).unwrap().backward().unwrap();
        let err = opt.step(&huge).unwrap_err().to_string();
        assert!(err.contains("its second moment non-finite"), "{err}");
        assert_eq!(var.as_tensor().to_vec1::<f32>().unwrap(), [1.0, -2.0]);
    }

    #[test]
    fn finiteness_is_checked_element_by_element() {
        let dev = Device::Cpu;
        let t = |v: &[f32]| Tensor::new(v, &dev).unwrap();
        assert!(all_finite(&t(&[0.0, -3.4e38, 3.4e38])).unwrap());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            assert!(!all_finite(&t(&[1.0, bad, 2.0])).unwrap(), "{bad}");
        }
    }

    /// Gradients finite in f32 whose squares are not: the norm is still finite, and clipping
    /// brings it down.
    #[test]
    fn the_norm_of_huge_finite_gradients_is_finite() {
        let dev = Device::Cpu;
        let var = Var::from_tensor(&Tensor::new(&[1.0f32, -1.0], &dev).unwrap()).unwrap();
        let mut grads = (var.as_tensor().sum_all().unwrap() * 1e30).unwrap().backward().unwrap();
        let norm = clip_grad_norm(&mut grads, &[&var], 1.0).unwrap();
        assert!((norm / (2f64.sqrt() * 1e30) - 1.0).abs() < 1e-6, "{norm}");
        let g = grads.get(var.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        assert!(g.iter().all(|x| (x.abs() - 0.5f32.sqrt()).abs() < 1e-4), "{g:?}");
    }

    #[test]
    fn clipping_bounds_the_norm() {
        let dev = Device::Cpu;
        let var = Var::from_tensor(&Tensor::new(&[3.0f32, 4.0], &dev).unwrap()).unwrap();
        // d/dw sum(w^2)/2 = w: norm 5.
        let mut grads =
            (var.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap().backward().unwrap();
        let before = clip_grad_norm(&mut grads, &[&var], 1.0).unwrap();
        assert!((before - 5.0).abs() < 1e-5);
        let g = grads.get(var.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        assert!(((g[0].powi(2) + g[1].powi(2)).sqrt() - 1.0).abs() < 1e-4, "{g:?}");
    }
}
