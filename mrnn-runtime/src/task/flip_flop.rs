//! The N-bit flip-flop (Sussillo & Barak 2013): each input channel emits occasional pulses of +1
//! or -1; the matching output must hold the sign of the last pulse until the next one.

use candle_core::{Device, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{Task, Trials, ensure_trials_fit, expect_output_shape, tensor3};
use crate::Result;
use crate::train::{Problem, number};

/// The N-bit flip-flop task.
#[derive(Clone, Debug, PartialEq)]
pub struct FlipFlop {
    /// Number of independent bits (input and output channels).
    pub n_bits: usize,
    /// Steps per trial.
    pub n_time: usize,
    /// Probability of a pulse per step and bit (the first step always has one).
    pub p: f64,
}

impl Default for FlipFlop {
    /// mRNNTorch's example: 3 bits, 64 steps, pulse probability 0.05.
    fn default() -> Self {
        FlipFlop { n_bits: 3, n_time: 64, p: 0.05 }
    }
}

impl FlipFlop {
    /// A flip-flop task; fails on zero bits or steps, or `p` outside `[0, 1]`
    /// ([`FlipFlop::problems`]).
    pub fn new(n_bits: usize, n_time: usize, p: f64) -> Result<Self> {
        let task = FlipFlop { n_bits, n_time, p };
        task.validate()?;
        Ok(task)
    }

    /// Every parameter out of its range: no bits, no steps, or a pulse probability that is not a
    /// number in `[0, 1]`.
    #[must_use]
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.n_bits == 0 {
            out.push(Problem::new("n_bits", self.n_bits, "the flip-flop needs at least 1 bit"));
        }
        if self.n_time == 0 {
            out.push(Problem::new("n_time", self.n_time, "a trial needs at least 1 step"));
        }
        if !(0.0..=1.0).contains(&self.p) {
            out.push(Problem::new("p", number(self.p), "the pulse probability must be in [0, 1]"));
        }
        out
    }
}

impl Task for FlipFlop {
    fn name(&self) -> &'static str {
        "flip-flop"
    }

    fn input_size(&self) -> usize {
        self.n_bits
    }

    fn output_size(&self) -> usize {
        self.n_bits
    }

    fn steps(&self) -> usize {
        self.n_time
    }

    fn sample(&self, batch: usize, rng: &mut ChaCha8Rng, device: &Device) -> Result<Trials> {
        self.validate()?;
        let (t_len, n) = (self.n_time, self.n_bits);
        ensure_trials_fit(self.name(), batch, t_len, (n, n))?;
        let mut input = vec![0f32; batch * t_len * n];
        let mut target = vec![0f32; batch * t_len * n];
        for b in 0..batch {
            for bit in 0..n {
                let mut state = 0f32;
                for t in 0..t_len {
                    let i = (b * t_len + t) * n + bit;
                    if t == 0 || rng.random_bool(self.p) {
                        let pulse = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                        input[i] = pulse;
                        state = pulse;
                    }
                    target[i] = state;
                }
            }
        }
        // A trial's condition is the memory it ends in (`+-+`: the last pulse of each bit).
        let conditions = (0..batch)
            .map(|b| {
                let last = (b * t_len + t_len.saturating_sub(1)) * n;
                let bits = target.get(last..last + n).unwrap_or_default();
                bits.iter().map(|&s| if s > 0.0 { '+' } else { '-' }).collect()
            })
            .collect();
        let mask = Tensor::ones((batch, t_len, n), candle_core::DType::F32, device)?;
        Trials::new(
            tensor3(input, batch, t_len, n, device)?,
            tensor3(target, batch, t_len, n, device)?,
            mask,
        )?
        .with_conditions(conditions)
    }

    /// Sign accuracy: the fraction of (trial, step, bit) where the output has the target's sign.
    fn accuracy(&self, output: &Tensor, trials: &Trials) -> Result<f64> {
        expect_output_shape(output, trials)?;
        let agree = output.mul(&trials.target)?.gt(0f64)?.to_dtype(candle_core::DType::F32)?;
        Ok(f64::from(agree.mean_all()?.to_scalar::<f32>()?))
    }

    fn accuracy_name(&self) -> &'static str {
        "sign_accuracy"
    }

    fn validate(&self) -> Result<()> {
        Problem::check("flip-flop parameters", &self.problems())
    }

    fn parameters(&self) -> Vec<(String, String)> {
        vec![
            ("n_bits".to_owned(), self.n_bits.to_string()),
            ("n_time".to_owned(), self.n_time.to_string()),
            ("p".to_owned(), self.p.to_string()),
        ]
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp, reason = "inputs and targets are exactly 0 or +-1")]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn targets_hold_the_last_pulse() {
        let task = FlipFlop { n_bits: 2, n_time: 50, p: 0.2 };
        let trials = task.sample(4, &mut ChaCha8Rng::seed_from_u64(3), &Device::Cpu).unwrap();
        let input: Vec<Vec<Vec<f32>>> = trials.input.to_vec3().unwrap();
        let target: Vec<Vec<Vec<f32>>> = trials.target.to_vec3().unwrap();
        for b in 0..4 {
            for bit in 0..2 {
                assert!(input[b][0][bit].abs() == 1.0, "the first step always pulses");
                let mut last = 0.0;
                for t in 0..50 {
                    if input[b][t][bit] != 0.0 {
                        last = input[b][t][bit];
                    }
                    assert_eq!(target[b][t][bit], last);
                }
            }
            // The trial's condition is the memory it ends in.
            let end: String =
                target[b][49].iter().map(|&s| if s > 0.0 { '+' } else { '-' }).collect();
            assert_eq!(trials.conditions[b], end);
        }
        // A perfect readout scores 1, its negation 0.
        assert!((task.accuracy(&trials.target, &trials).unwrap() - 1.0).abs() < 1e-12);
        assert!(task.accuracy(&trials.target.neg().unwrap(), &trials).unwrap() < 1e-12);
    }

    #[test]
    fn same_seed_same_trials() {
        let task = FlipFlop::default();
        let a = task.sample(3, &mut ChaCha8Rng::seed_from_u64(9), &Device::Cpu).unwrap();
        let b = task.sample(3, &mut ChaCha8Rng::seed_from_u64(9), &Device::Cpu).unwrap();
        let c = task.sample(3, &mut ChaCha8Rng::seed_from_u64(10), &Device::Cpu).unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(flat(&a.input), flat(&b.input));
        assert_ne!(flat(&a.input), flat(&c.input));
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(FlipFlop::new(0, 10, 0.1).is_err());
        assert!(FlipFlop::new(3, 10, 1.5).is_err());
        let settings = |t: FlipFlop| t.problems().iter().map(|p| p.setting).collect::<Vec<_>>();
        assert_eq!(
            settings(FlipFlop { n_bits: 0, n_time: 0, p: f64::NAN }),
            ["n_bits", "n_time", "p"]
        );
        for p in [-0.1, 2.0, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(settings(FlipFlop { p, ..FlipFlop::default() }), ["p"], "{p}");
        }
        for p in [0.0, 1.0] {
            assert!(FlipFlop::new(1, 1, p).is_ok());
        }
        // Fields are public: sampling checks them too.
        let broken = FlipFlop { n_bits: 0, ..FlipFlop::default() };
        let err = broken.sample(2, &mut ChaCha8Rng::seed_from_u64(0), &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("`n_bits` = 0"), "{err}");
    }

    #[test]
    fn refuses_trials_larger_than_memory_before_allocating() {
        let task = FlipFlop { n_time: 1 << 40, ..FlipFlop::default() };
        let err = task.sample(1 << 20, &mut ChaCha8Rng::seed_from_u64(0), &Device::Cpu);
        let err = err.unwrap_err().to_string();
        assert!(err.contains("trials of `flip-flop`") && err.contains("needs about"), "{err}");
    }
}
