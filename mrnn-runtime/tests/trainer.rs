//! Training end to end on CPU, CI-sized: the loss falls, a resumed run continues exactly, and a
//! divergence stops training without touching the parameters or the last checkpoint.

use std::cell::Cell;

use mrnn_runtime::task::{FlipFlop, Task, Trials};
use mrnn_runtime::train::{Model, ReadoutFrom, TrainConfig, Trainer};
use mrnn_runtime::{Device, Error, Network, Tensor, builtin};
use rand_chacha::ChaCha8Rng;

fn model(hidden: usize, seed: u64) -> Model {
    let spec = builtin::excitatory_inhibitory(hidden, 3);
    let arch = mrnn_ir::compile_spec(&spec, "ei.json", "").unwrap().architecture;
    let network = Network::with_seed(arch, seed, &Device::Cpu).unwrap();
    Model::new(network, 3, ReadoutFrom::All, seed).unwrap()
}

fn task() -> FlipFlop {
    FlipFlop::new(3, 32, 0.1).unwrap()
}

fn config(steps: usize) -> TrainConfig {
    TrainConfig { steps, batch: 16, lr: 0.02, seed: 5, ..TrainConfig::default() }
}

#[test]
fn the_loss_falls_by_half_in_a_short_run() {
    let mut trainer = Trainer::new(model(32, 1), task(), config(120)).unwrap();
    while !trainer.finished() {
        trainer.step().unwrap();
    }
    let losses = trainer.losses();
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let (first, last) = (mean(&losses[..10]), mean(&losses[losses.len() - 10..]));
    assert!(last <= 0.5 * first, "loss went from {first:.4} to {last:.4}");
    let eval = trainer.evaluate(64, 0).unwrap();
    assert!(eval.accuracy > 0.6, "held-out sign accuracy {}", eval.accuracy);
}

#[test]
fn a_resumed_run_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    let mut straight = Trainer::new(model(16, 2), task(), config(12)).unwrap();
    while !straight.finished() {
        straight.step().unwrap();
    }
    let mut first = Trainer::new(model(16, 2), task(), config(12)).unwrap();
    for _ in 0..5 {
        first.step().unwrap();
    }
    first.save(&path).unwrap();
    drop(first);
    let mut resumed = Trainer::resume(&path, task(), config(12), &Device::Cpu).unwrap();
    assert_eq!(resumed.step_count(), 5);
    while !resumed.finished() {
        resumed.step().unwrap();
    }
    assert_eq!(
        resumed.losses(),
        straight.losses(),
        "the resumed run must repeat the uninterrupted one"
    );
    let w = |t: &Trainer<FlipFlop>| {
        t.model.network.w_rec().as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    assert_eq!(w(&resumed), w(&straight));
}

#[test]
fn resuming_with_other_settings_or_another_task_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    let mut trainer = Trainer::new(model(16, 3), task(), config(2)).unwrap();
    trainer.step().unwrap();
    trainer.save(&path).unwrap();
    let other = TrainConfig { lr: 0.5, ..config(2) };
    let err = Trainer::resume(&path, task(), other, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("lr 0.02 vs 0.5"), "{err}");
    let err = Trainer::resume(
        &path,
        mrnn_runtime::task::PerceptualDecision::default(),
        config(2),
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("saved while training `flip-flop`"), "{err}");
}

/// A flip-flop whose `poison_at`-th batch has a NaN input.
#[derive(Debug)]
struct Poisoned {
    inner: FlipFlop,
    calls: Cell<usize>,
    poison_at: usize,
}

impl Task for Poisoned {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn input_size(&self) -> usize {
        self.inner.input_size()
    }
    fn output_size(&self) -> usize {
        self.inner.output_size()
    }
    fn steps(&self) -> usize {
        self.inner.steps()
    }
    fn sample(
        &self,
        batch: usize,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> mrnn_runtime::Result<Trials> {
        let mut trials = self.inner.sample(batch, rng, device)?;
        self.calls.set(self.calls.get() + 1);
        if self.calls.get() == self.poison_at {
            trials.input = (trials.input * f64::NAN)?;
        }
        Ok(trials)
    }
    fn accuracy(&self, output: &Tensor, trials: &Trials) -> mrnn_runtime::Result<f64> {
        self.inner.accuracy(output, trials)
    }
    fn accuracy_name(&self) -> &'static str {
        self.inner.accuracy_name()
    }
}

#[test]
fn a_nan_stops_training_and_keeps_the_last_good_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    let poisoned = Poisoned { inner: task(), calls: Cell::new(0), poison_at: 4 };
    let mut trainer = Trainer::new(model(16, 4), poisoned, config(10)).unwrap();
    for _ in 0..3 {
        trainer.step().unwrap();
    }
    trainer.save(&path).unwrap();
    let saved = std::fs::read(&path).unwrap();
    let before =
        trainer.model.network.w_rec().as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    match trainer.step() {
        Err(Error::Diverged { step, what }) => {
            assert_eq!(step, 4);
            assert!(what.contains("NaN"), "{what}");
        }
        other => panic!("expected a divergence at step 4, got {other:?}"),
    }
    let after =
        trainer.model.network.w_rec().as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(before, after, "no parameter may change at the diverged step");
    assert_eq!(trainer.step_count(), 3);
    assert_eq!(std::fs::read(&path).unwrap(), saved, "the last good checkpoint is intact");
    // The checkpoint still resumes.
    let resumed = Trainer::resume(&path, task(), config(10), &Device::Cpu).unwrap();
    assert_eq!(resumed.step_count(), 3);
}

#[test]
fn every_parameter_is_registered_once() {
    let model = model(16, 6);
    let names: Vec<String> = model.parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["network.W_rec", "network.W_inp", "network.base_firing", "readout.weight", "readout.bias"]
    );
}

#[test]
fn readouts_from_regions_or_excitatory_units() {
    let spec = builtin::excitatory_inhibitory(20, 3);
    let arch = mrnn_ir::compile_spec(&spec, "ei.json", "").unwrap().architecture;
    let net = || Network::with_seed(arch.clone(), 0, &Device::Cpu).unwrap();
    let exc = Model::new(net(), 3, ReadoutFrom::Excitatory, 0).unwrap();
    assert_eq!(exc.readout.hidden_size(), 16);
    let inh = Model::new(net(), 2, ReadoutFrom::Regions(vec!["inh".into()]), 0).unwrap();
    assert_eq!(inh.readout.hidden_size(), 4);
    let input = Tensor::zeros((2, 5, 3), mrnn_runtime::DType::F32, &Device::Cpu).unwrap();
    assert_eq!(inh.run(&input, None).unwrap().1.dims(), &[2, 5, 2]);
    let err = Model::new(net(), 2, ReadoutFrom::Regions(vec!["cortex".into()]), 0).unwrap_err();
    assert!(err.to_string().contains("unknown region `cortex`"), "{err}");
}
