//! A task of your own on a circuit of your own: interval reproduction (ready-set-go, as in
//! Jazayeri & Shadlen 2010) learned by a small cortico-basal ganglia-thalamic loop declared with
//! `mrnn!`. Shows everything a custom task needs: implement [`Task`] with the RNG the trainer
//! passes (re-exported by `mrnn_runtime::task`, so no `rand` dependency of your own), label each
//! trial's condition, and keep the network's generated type after training.
//!
//! `cargo run -p mrnn-examples --bin interval_timing -- [steps]` (default 1200 steps: held-out
//! timing accuracy 1.0 in about half a minute on 2 cores). Writes
//! `runs/interval_timing_example/checkpoint.safetensors`.

use mrnn_runtime::task::{ChaCha8Rng, Rng, Task, Trials};
use mrnn_runtime::train::{Model, ReadoutFrom, TrainConfig, Trainer};
use mrnn_runtime::{DType, Device, Error, Result, Tensor, mrnn};

mrnn! {
    /// Cortex (excitatory and inhibitory) projects to striatum; striatum inhibits the tonically
    /// active GPi, which inhibits thalamus; thalamus closes the loop onto cortex.
    pub Loop {
        dynamics: leaky(dt = 10.0, tau = 100.0),
        activation: relu,
        dale: recurrent + input,
        seed: 3,
        input cues[2]: exc;
        region ctx_e[40]: exc in cortex;
        region ctx_i[10]: inh in cortex;
        region str[20]: inh;
        region gpi[10]: inh, base_firing = 0.5, learnable_bias;
        region thal[20]: exc;
        ctx_e -> ctx_e, ctx_i, str (sparsity = 0.5);
        ctx_i -> ctx_e, ctx_i;
        str -> gpi;
        gpi -> thal;
        thal -> ctx_e, ctx_i;
        cues -> ctx_e;
    }
}

/// Ready-set-go: a `ready` pulse, then a `set` pulse an interval later; the readout must stay at
/// 0 and rise to 1 one interval after `set` (reproduce the interval), then hold.
#[derive(Debug)]
struct ReadySetGo {
    /// The intervals drawn per trial, in steps.
    intervals: Vec<usize>,
    /// Step of the `ready` pulse.
    ready: usize,
    /// Steps per trial.
    steps: usize,
    /// How far from the target time a response still counts as correct, in steps.
    tolerance: usize,
}

impl ReadySetGo {
    fn go_time(&self, interval: usize) -> usize {
        self.ready + 2 * interval
    }
}

impl Task for ReadySetGo {
    fn name(&self) -> &'static str {
        "ready-set-go"
    }

    fn input_size(&self) -> usize {
        2
    }

    fn output_size(&self) -> usize {
        1
    }

    fn steps(&self) -> usize {
        self.steps
    }

    fn sample(&self, batch: usize, rng: &mut ChaCha8Rng, device: &Device) -> Result<Trials> {
        let t_len = self.steps;
        let mut input = vec![0f32; batch * t_len * 2];
        let mut target = vec![0f32; batch * t_len];
        let mut conditions = Vec::with_capacity(batch);
        for b in 0..batch {
            let interval = self.intervals[rng.random_range(0..self.intervals.len())];
            input[(b * t_len + self.ready) * 2] = 1.0;
            input[(b * t_len + self.ready + interval) * 2 + 1] = 1.0;
            for t in self.go_time(interval)..t_len {
                target[b * t_len + t] = 1.0;
            }
            conditions.push(format!("interval={interval}"));
        }
        let input = Tensor::from_vec(input, (batch, t_len, 2), device)?;
        let target = Tensor::from_vec(target, (batch, t_len, 1), device)?;
        let mask = Tensor::ones((batch, t_len, 1), DType::F32, device)?;
        Trials::new(input, target, mask)?.with_conditions(conditions)
    }

    /// The fraction of trials whose readout first crosses 0.5 within the tolerance of the
    /// target time.
    fn accuracy(&self, output: &Tensor, trials: &Trials) -> Result<f64> {
        let output: Vec<Vec<Vec<f32>>> = output.to_dtype(DType::F32)?.to_vec3()?;
        let target: Vec<Vec<Vec<f32>>> = trials.target.to_vec3()?;
        let first = |rows: &Vec<Vec<f32>>| rows.iter().position(|r| r[0] > 0.5);
        let hits = output
            .iter()
            .zip(&target)
            .filter(|(out, want)| match (first(out), first(want)) {
                (Some(t), Some(goal)) => t.abs_diff(goal) <= self.tolerance,
                _ => false,
            })
            .count();
        Ok(hits as f64 / output.len().max(1) as f64)
    }

    fn accuracy_name(&self) -> &'static str {
        "timing_accuracy"
    }
}

fn main() -> Result<()> {
    mrnn_runtime::ensure_threads();
    let steps = std::env::args()
        .nth(1)
        .map_or(Ok(1200), |s| s.parse())
        .map_err(|e| Error::Invalid(format!("the number of steps must be a whole number: {e}")))?;
    let device = Device::Cpu;
    let task = ReadySetGo { intervals: vec![10, 15, 20, 25], ready: 5, steps: 70, tolerance: 3 };
    assert_eq!(Loop::INPUT, task.input_size(), "the task's cues drive the `cues` input region");
    let network = Loop::new(&device)?.into();
    // The readout reads the excitatory units only, as under Dale's law a projection would.
    let model = Model::new(network, task.output_size(), ReadoutFrom::Excitatory, 3)?;
    let config = TrainConfig { steps, batch: 32, lr: 0.005, seed: 3, ..TrainConfig::default() };
    let mut trainer = Trainer::new(model, task, config)?;
    while !trainer.finished() {
        let report = trainer.step()?;
        if report.step % 50 == 0 || report.step == 1 {
            println!(
                "step {:4}  loss {:.5}  timing accuracy {:.3}",
                report.step, report.loss, report.accuracy
            );
        }
    }
    let eval = trainer.evaluate(256, 0)?;
    println!("held-out timing accuracy {:.3} (loss {:.5})", eval.accuracy, eval.loss);

    // Activity by condition: the striatum's mean rate at `set` per interval, read with the
    // generated range constant.
    let (trials, _) = trainer.examples(8)?;
    let (trajectory, _) = trainer.model.run(&trials.input, None)?;
    let striatum = trajectory.h.narrow(2, Loop::STR.start, Loop::STR.len())?.mean(2)?;
    let striatum: Vec<Vec<f32>> = striatum.to_vec2()?;
    for (rates, condition) in striatum.iter().zip(&trials.conditions) {
        let mean = rates.iter().sum::<f32>() / rates.len() as f32;
        println!("{condition:12} mean striatal rate {mean:.3}");
    }

    let out = std::path::Path::new("runs/interval_timing_example");
    std::fs::create_dir_all(out)
        .map_err(|e| Error::Io { path: out.display().to_string(), source: e })?;
    trainer.save(&out.join("checkpoint.safetensors"))?;
    // The trained network keeps its generated type (sizes, region constants) after training.
    let trained = Loop::try_from(trainer.into_model().network)?;
    println!(
        "saved {}; thalamus units {:?} of {}",
        out.join("checkpoint.safetensors").display(),
        Loop::THAL,
        trained.hidden_size()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use mrnn_runtime::task::SeedableRng;

    use super::*;

    #[test]
    fn trials_are_labelled_and_the_target_scores_one() {
        let task = ReadySetGo { intervals: vec![10, 20], ready: 5, steps: 50, tolerance: 0 };
        let trials = task.sample(16, &mut ChaCha8Rng::seed_from_u64(1), &Device::Cpu).unwrap();
        let target: Vec<Vec<Vec<f32>>> = trials.target.to_vec3().unwrap();
        for (rows, label) in target.iter().zip(&trials.conditions) {
            let interval: usize = label.strip_prefix("interval=").unwrap().parse().unwrap();
            let go = rows.iter().position(|r| r[0] > 0.5).unwrap();
            assert_eq!(go, task.go_time(interval), "{label}");
        }
        assert!((task.accuracy(&trials.target, &trials).unwrap() - 1.0).abs() < 1e-12);
        let silent = trials.target.zeros_like().unwrap();
        assert!(task.accuracy(&silent, &trials).unwrap() < 1e-12);
    }
}
