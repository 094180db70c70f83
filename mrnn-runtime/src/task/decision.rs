//! Perceptual decision making (random-dot motion, as in Mante et al. 2013 and NeuroGym): during
//! a fixation period the network must stay quiet; a noisy stimulus then carries weak evidence
//! for one of two directions; when the fixation cue goes off, the readout must report the
//! direction (+1 or -1) and hold it.

use candle_core::{Device, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::{Task, Trials, ensure_trials_fit, expect_output_shape, tensor3};
use crate::train::{Problem, number};
use crate::{Error, Result};

/// The two-alternative perceptual decision task.
///
/// Inputs: channel 0 is the fixation cue (1 until the response period), channel 1 the evidence
/// `direction * coherence + noise` during the stimulus period. Output: one channel, target 0
/// before the response period and `direction` during it.
#[derive(Clone, Debug, PartialEq)]
pub struct PerceptualDecision {
    /// Steps of fixation before the stimulus.
    pub fixation: usize,
    /// Steps of stimulus.
    pub stimulus: usize,
    /// Steps between stimulus offset and the go cue.
    pub delay: usize,
    /// Steps of response.
    pub response: usize,
    /// Coherences drawn uniformly per trial (evidence strength).
    pub coherences: Vec<f64>,
    /// Standard deviation of the evidence noise per step.
    pub noise: f64,
}

impl Default for PerceptualDecision {
    fn default() -> Self {
        PerceptualDecision {
            fixation: 10,
            stimulus: 30,
            delay: 5,
            response: 15,
            coherences: vec![0.05, 0.1, 0.2, 0.4],
            noise: 0.5,
        }
    }
}

impl PerceptualDecision {
    /// Every parameter out of its range: an empty stimulus or response period, periods whose
    /// total overflows, no coherence, or a coherence or noise level that is negative, not a
    /// number, or so large that the evidence would not be finite in `f32`.
    #[must_use]
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for (name, value) in [("stimulus", self.stimulus), ("response", self.response)] {
            if value == 0 {
                out.push(Problem::new(name, value, "the period needs at least 1 step"));
            }
        }
        let total = [self.fixation, self.stimulus, self.delay, self.response]
            .into_iter()
            .try_fold(0usize, usize::checked_add);
        if total.is_none() {
            out.push(Problem::new(
                "fixation",
                self.fixation,
                "the four periods must add up to a number of steps that fits in memory",
            ));
        }
        // Evidence is `coherence + noise * N(0, 1)` in f32: ten standard deviations of headroom
        // keep every draw finite.
        let finite = |x: f64| x.is_finite() && x >= 0.0 && x < f64::from(f32::MAX) / 20.0;
        if self.coherences.is_empty() {
            out.push(Problem::new("coherences", "[]", "at least one coherence"));
        } else if let Some(c) = self.coherences.iter().find(|c| !finite(**c)) {
            out.push(Problem::new(
                "coherences",
                number(*c),
                "coherences must be non-negative numbers small enough for f32 evidence",
            ));
        }
        if !finite(self.noise) {
            out.push(Problem::new(
                "noise",
                number(self.noise),
                "the evidence noise must be 0 or a positive number small enough for f32 evidence",
            ));
        }
        out
    }

    fn response_start(&self) -> usize {
        // Saturating: `validate` refuses periods that overflow, before anything runs.
        self.fixation.saturating_add(self.stimulus).saturating_add(self.delay)
    }
}

impl Task for PerceptualDecision {
    fn name(&self) -> &'static str {
        "decision"
    }

    fn input_size(&self) -> usize {
        2
    }

    fn output_size(&self) -> usize {
        1
    }

    fn steps(&self) -> usize {
        self.response_start().saturating_add(self.response)
    }

    fn sample(&self, batch: usize, rng: &mut ChaCha8Rng, device: &Device) -> Result<Trials> {
        self.validate()?;
        let t_len = self.steps();
        ensure_trials_fit(self.name(), batch, t_len, (2, 1))?;
        let go = self.response_start();
        let noise = Normal::new(0.0, self.noise).map_err(|e| Error::Invalid(e.to_string()))?;
        let mut input = vec![0f32; batch * t_len * 2];
        let mut target = vec![0f32; batch * t_len];
        let mut conditions = Vec::with_capacity(batch);
        for b in 0..batch {
            let direction = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            let coherence = self.coherences[rng.random_range(0..self.coherences.len())];
            for t in 0..t_len {
                let row = b * t_len + t;
                input[row * 2] = if t < go { 1.0 } else { 0.0 };
                if (self.fixation..self.fixation + self.stimulus).contains(&t) {
                    input[row * 2 + 1] = (direction * coherence + noise.sample(rng)) as f32;
                }
                if t >= go {
                    target[row] = direction as f32;
                }
            }
            conditions.push(format!("direction={direction:+} coherence={coherence}"));
        }
        let mask = Tensor::ones((batch, t_len, 1), candle_core::DType::F32, device)?;
        Trials::new(
            tensor3(input, batch, t_len, 2, device)?,
            tensor3(target, batch, t_len, 1, device)?,
            mask,
        )?
        .with_conditions(conditions)
    }

    /// Choice accuracy: the fraction of trials whose mean readout over the response period has
    /// the sign of the correct direction.
    fn accuracy(&self, output: &Tensor, trials: &Trials) -> Result<f64> {
        expect_output_shape(output, trials)?;
        let go = self.response_start();
        let choice = output.narrow(1, go, self.response)?.mean(1)?;
        let truth = trials.target.narrow(1, go, 1)?.squeeze(1)?;
        let correct = choice.mul(&truth)?.gt(0f64)?.to_dtype(candle_core::DType::F32)?;
        Ok(f64::from(correct.mean_all()?.to_scalar::<f32>()?))
    }

    fn accuracy_name(&self) -> &'static str {
        "choice_accuracy"
    }

    fn validate(&self) -> Result<()> {
        Problem::check("decision task parameters", &self.problems())
    }

    fn parameters(&self) -> Vec<(String, String)> {
        let coherences: Vec<String> = self.coherences.iter().map(f64::to_string).collect();
        vec![
            ("fixation".to_owned(), self.fixation.to_string()),
            ("stimulus".to_owned(), self.stimulus.to_string()),
            ("delay".to_owned(), self.delay.to_string()),
            ("response".to_owned(), self.response.to_string()),
            ("coherences".to_owned(), coherences.join(",")),
            ("noise".to_owned(), self.noise.to_string()),
        ]
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp, reason = "inputs and targets are exactly 0 or +-1")]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn periods_and_targets() {
        let task = PerceptualDecision { noise: 0.0, ..PerceptualDecision::default() };
        let trials = task.sample(8, &mut ChaCha8Rng::seed_from_u64(1), &Device::Cpu).unwrap();
        let input: Vec<Vec<Vec<f32>>> = trials.input.to_vec3().unwrap();
        let target: Vec<Vec<Vec<f32>>> = trials.target.to_vec3().unwrap();
        let go = task.response_start();
        for b in 0..8 {
            let evidence = input[b][task.fixation][1];
            assert!(evidence != 0.0);
            for t in 0..task.steps() {
                assert_eq!(input[b][t][0], if t < go { 1.0 } else { 0.0 });
                let expected = if t >= go { evidence.signum() } else { 0.0 };
                assert_eq!(
                    target[b][t][0], expected,
                    "without noise the evidence has the answer's sign"
                );
            }
        }
        // Each trial is labelled with its direction and coherence.
        for (b, label) in trials.conditions.iter().enumerate() {
            let sign = if target[b][go][0] > 0.0 { "+1" } else { "-1" };
            assert!(label.starts_with(&format!("direction={sign} coherence=")), "{label}");
            let coherence: f64 = label.rsplit('=').next().unwrap().parse().unwrap();
            assert!(task.coherences.contains(&coherence), "{label}");
        }
        assert!((task.accuracy(&trials.target, &trials).unwrap() - 1.0).abs() < 1e-12);
        assert!(task.accuracy(&trials.target.neg().unwrap(), &trials).unwrap() < 1e-12);
    }

    #[test]
    fn rejects_bad_parameters() {
        let task = PerceptualDecision { coherences: vec![], ..PerceptualDecision::default() };
        assert!(task.sample(1, &mut ChaCha8Rng::seed_from_u64(1), &Device::Cpu).is_err());
        let settings =
            |t: PerceptualDecision| t.problems().iter().map(|p| p.setting).collect::<Vec<_>>();
        let base = PerceptualDecision::default;
        assert!(settings(base()).is_empty());
        assert_eq!(settings(PerceptualDecision { stimulus: 0, ..base() }), ["stimulus"]);
        assert_eq!(settings(PerceptualDecision { response: 0, ..base() }), ["response"]);
        assert_eq!(settings(PerceptualDecision { fixation: usize::MAX, ..base() }), ["fixation"]);
        for bad in [f64::NAN, -1.0, f64::INFINITY, 1e300, 1e38] {
            assert_eq!(settings(PerceptualDecision { noise: bad, ..base() }), ["noise"], "{bad}");
            let coherences = vec![0.1, bad];
            assert_eq!(
                settings(PerceptualDecision { coherences, ..base() }),
                ["coherences"],
                "{bad}"
            );
        }
        assert!(base().validate().is_ok());
        let err = PerceptualDecision { noise: f64::NAN, ..base() }.validate().unwrap_err();
        assert!(err.to_string().contains("`noise` = NaN"), "{err}");
    }
}
