//! Training end to end on CPU, CI-sized: the loss falls, a resumed run continues exactly, a
//! divergence (of the loss, a gradient, or the update itself) stops training without touching
//! the parameters or the last checkpoint, checkpoints hold only finite values, settings are
//! validated before anything runs, and a resumed run must be the same run.

use std::cell::Cell;
use std::path::Path;

use mrnn_runtime::task::{FlipFlop, PerceptualDecision, Task, Trials};
use mrnn_runtime::train::{Model, ReadoutFrom, SavedRun, SettingChange, TrainConfig, Trainer};
use mrnn_runtime::{Architecture, Device, Error, Network, Tensor, builtin};
use rand_chacha::ChaCha8Rng;

fn arch(hidden: usize) -> Architecture {
    let spec = builtin::excitatory_inhibitory(hidden, 3);
    mrnn_ir::compile_spec(&spec, "ei.json", "").unwrap().architecture
}

fn model(hidden: usize, seed: u64) -> Model {
    let network = Network::with_seed(arch(hidden), seed, &Device::Cpu).unwrap();
    Model::new(network, 3, ReadoutFrom::All, seed).unwrap()
}

/// Resumes the run of `model(hidden, _)` saved in `path`.
fn resume<T: Task>(
    path: &Path,
    hidden: usize,
    task: T,
    config: TrainConfig,
) -> mrnn_runtime::Result<Trainer<T>> {
    Trainer::resume(path, &arch(hidden), &ReadoutFrom::All, task, config, &Device::Cpu)
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
    let mut resumed = resume(&path, 16, task(), config(12)).unwrap();
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
fn resuming_another_run_is_refused_naming_each_difference() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    let mut trainer = Trainer::new(model(16, 3), task(), config(2)).unwrap();
    trainer.step().unwrap();
    trainer.save(&path).unwrap();
    let err = |r: mrnn_runtime::Result<Trainer<FlipFlop>>| r.unwrap_err().to_string();

    // The task's parameters, the batch, the noise and the seed define the run.
    let other_task = FlipFlop::new(3, 8, 0.5).unwrap();
    let other = TrainConfig { batch: 4, noise: false, seed: 9, ..config(2) };
    let e = err(resume(&path, 16, other_task, other));
    for needle in [
        "n_time 8 vs 32 saved",
        "p 0.5 vs 0.1 saved",
        "batch 4 vs 16 saved",
        "noise false vs true saved",
        "seed 9 vs 5 saved",
    ] {
        assert!(e.contains(needle), "`{needle}` missing from: {e}");
    }
    // So do the network and the readout.
    let e = err(resume(&path, 20, task(), config(2)));
    assert!(e.contains("network `ei` (20 units") && e.contains("vs `ei` (16 units"), "{e}");
    assert!(e.contains("region `exc` has 16 units, expected 13"), "{e}");
    let e = err(Trainer::resume(
        &path,
        &arch(16),
        &ReadoutFrom::Excitatory,
        task(),
        config(2),
        &Device::Cpu,
    ));
    assert!(e.contains("readout excitatory vs all saved"), "{e}");
    // And the task itself.
    let e = Trainer::resume(
        &path,
        &arch(16),
        &ReadoutFrom::All,
        PerceptualDecision::default(),
        config(2),
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("task decision vs flip-flop saved"), "{e}");
    // The checkpoint tells what differs without building anything.
    let saved = SavedRun::read(&path).unwrap();
    assert_eq!(saved.step(), 1);
    let d = saved.differences(
        &arch(16),
        &ReadoutFrom::All,
        &FlipFlop::new(3, 32, 0.2).unwrap(),
        &config(2),
    );
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].setting.as_str(), d[0].requested.as_str(), d[0].saved.as_str()),
        ("task.p", "0.2", "0.1")
    );
}

#[test]
fn optimizer_settings_may_change_on_resume_and_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    let mut trainer = Trainer::new(model(16, 3), task(), config(6)).unwrap();
    trainer.step().unwrap();
    trainer.step().unwrap();
    trainer.save(&path).unwrap();
    let changed = TrainConfig {
        lr: 0.001,
        clip_grad_norm: 0.5,
        weight_decay: 0.01,
        rate_l2: 0.1,
        weight_l2: 0.2,
        ..config(6)
    };
    let mut resumed = resume(&path, 16, task(), changed.clone()).unwrap();
    let change = |setting: &str, from: f64, to: f64| SettingChange {
        step: 2,
        setting: setting.to_owned(),
        from,
        to,
    };
    let expected = [
        change("lr", 0.02, 0.001),
        change("weight_decay", 0.0, 0.01),
        change("clip_grad_norm", 1.0, 0.5),
        change("rate_l2", 0.0, 0.1),
        change("weight_l2", 0.0, 0.2),
    ];
    assert_eq!(resumed.setting_changes(), expected);
    // `steps` counts from the start of the run: fewer than already trained is refused.
    let err = resume(&path, 16, task(), TrainConfig { steps: 1, ..changed.clone() }).unwrap_err();
    assert!(err.to_string().contains("2 steps are already trained"), "{err}");
    assert_eq!(resumed.config(), &changed);
    resumed.step().unwrap();
    resumed.save(&path).unwrap();
    // The record survives the next resume, which adds its own.
    let again = resume(&path, 16, task(), TrainConfig { lr: 0.002, ..changed }).unwrap();
    assert_eq!(again.setting_changes()[..5], expected);
    assert_eq!(
        again.setting_changes()[5],
        SettingChange { step: 3, setting: "lr".into(), from: 0.001, to: 0.002 }
    );
    assert_eq!(SavedRun::read(&path).unwrap().setting_changes(), expected);
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
    fn parameters(&self) -> Vec<(String, String)> {
        self.inner.parameters()
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
    let resumed = resume(&path, 16, task(), config(10)).unwrap();
    assert_eq!(resumed.step_count(), 3);
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Every parameter and optimizer moment of a trainer, by name, as the checkpoint holds them.
fn snapshot(path: &Path) -> Vec<(String, Vec<f32>)> {
    let sd = mrnn_runtime::StateDict::read(path).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = sd
        .iter()
        .filter(|(k, _)| !k.starts_with("train."))
        .map(|(k, t)| (k.to_owned(), values(&t.to_dtype(mrnn_runtime::DType::F32).unwrap())))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A step whose loss and gradients are finite can still make the parameters non-finite (a huge
/// learning rate): the step is refused whole, the trainer keeps the last good state, and that
/// state saves, finite, and resumes with a sane learning rate.
#[test]
fn an_update_that_would_make_parameters_non_finite_is_a_divergence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    let mut trainer = Trainer::new(model(16, 4), task(), config(6)).unwrap();
    trainer.step().unwrap();
    trainer.save(&path).unwrap();
    let good = snapshot(&path);
    drop(trainer);
    let mut wild = resume(&path, 16, task(), TrainConfig { lr: 1e39, ..config(6) }).unwrap();
    match wild.step() {
        Err(Error::Diverged { step, what }) => {
            assert_eq!(step, 2);
            assert!(what.contains("would make its value non-finite"), "{what}");
            assert!(what.contains("learning rate 1e39"), "{what}");
        }
        other => panic!("expected a divergence at step 2, got {other:?}"),
    }
    assert_eq!(wild.step_count(), 1);
    assert_eq!(wild.losses().len(), 1);
    // What it still holds is the good state, and it saves as such.
    wild.save(&path).unwrap();
    assert_eq!(snapshot(&path), good);
    for (name, v) in snapshot(&path) {
        assert!(v.iter().all(|x| x.is_finite()), "`{name}` is not finite");
    }
    let mut calm = resume(&path, 16, task(), TrainConfig { lr: 1e-3, ..config(6) }).unwrap();
    calm.step().unwrap();
    let last = SettingChange { step: 1, setting: "lr".into(), from: 1e39, to: 1e-3 };
    assert_eq!(calm.setting_changes().last(), Some(&last));
}

/// However a parameter became non-finite, `save` refuses to write it, and the file on disk is
/// left as it was.
#[test]
fn a_checkpoint_is_never_written_from_non_finite_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    let trainer = Trainer::new(model(16, 4), task(), config(6)).unwrap();
    trainer.save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    let bias = trainer.model.network.bias_var();
    let mut broken = values(bias.as_tensor());
    broken[3] = f32::INFINITY;
    trainer
        .model
        .network
        .set_base_firing(&Tensor::new(broken.as_slice(), &Device::Cpu).unwrap())
        .unwrap();
    let err = trainer.save(&path).unwrap_err().to_string();
    assert!(err.contains("refusing to write") && err.contains("`network.base_firing`"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let w = trainer.model.readout.weight.as_tensor().clone();
    trainer.model.readout.weight.set(&(w * f64::NAN).unwrap()).unwrap();
    assert!(trainer.save(&dir.path().join("other.safetensors")).is_err());
    assert!(!dir.path().join("other.safetensors").exists());
}

#[test]
fn settings_are_validated_before_anything_runs() {
    let bad = [
        (TrainConfig { steps: 0, ..config(5) }, "`steps` = 0"),
        (TrainConfig { batch: 0, ..config(5) }, "`batch` = 0"),
        (TrainConfig { lr: f64::NAN, ..config(5) }, "`lr` = NaN"),
        (TrainConfig { lr: -1.0, ..config(5) }, "`lr` = -1"),
        (TrainConfig { lr: f64::INFINITY, ..config(5) }, "`lr` = inf"),
        (TrainConfig { clip_grad_norm: f64::NAN, ..config(5) }, "`clip_grad_norm` = NaN"),
        (TrainConfig { clip_grad_norm: -1.0, ..config(5) }, "`clip_grad_norm` = -1"),
        (TrainConfig { clip_grad_norm: f64::INFINITY, ..config(5) }, "`clip_grad_norm` = inf"),
        (TrainConfig { rate_l2: -1e6, ..config(5) }, "`rate_l2` = -1e6"),
        (TrainConfig { rate_l2: 1e300, ..config(5) }, "`rate_l2` = 1e300"),
        (TrainConfig { weight_l2: f64::NAN, ..config(5) }, "`weight_l2` = NaN"),
        (TrainConfig { weight_decay: -0.5, ..config(5) }, "`weight_decay` = -0.5"),
        (TrainConfig { weight_decay: 100.0, ..config(5) }, "below 1"),
    ];
    for (config, needle) in bad {
        let err = Trainer::new(model(8, 0), task(), config.clone()).unwrap_err().to_string();
        assert!(err.contains(needle), "{config:?}: `{needle}` missing from {err}");
    }
    // Every problem at once.
    let all = TrainConfig { batch: 0, lr: f64::NAN, clip_grad_norm: -1.0, ..config(5) };
    let settings: Vec<&str> = all.problems().iter().map(|p| p.setting).collect();
    assert_eq!(settings, ["batch", "lr", "clip_grad_norm"]);
    // Task parameters are checked too, even when the fields were set directly.
    let broken = FlipFlop { n_time: 0, ..task() };
    let err = Trainer::new(model(8, 0), broken, config(5)).unwrap_err().to_string();
    assert!(err.contains("`n_time` = 0"), "{err}");
    // A model that is already broken cannot be trained.
    let m = model(8, 0);
    let w = m.network.w_rec().as_tensor().clone();
    m.network.set_w_rec(&(w * f64::NAN).unwrap()).unwrap();
    let err = Trainer::new(m, task(), config(5)).unwrap_err().to_string();
    assert!(err.contains("`network.W_rec` holds NaN"), "{err}");
}

/// Sizes too large for any machine are refused with the estimate and the limit, before any
/// allocation (the process would otherwise abort).
#[test]
fn absurd_sizes_are_refused_before_allocating() {
    let huge_batch = TrainConfig { batch: 1 << 40, ..config(5) };
    match Trainer::new(model(8, 0), task(), huge_batch) {
        Err(Error::TooLarge { what, needed, limit }) => {
            assert!(what.contains("batches of 1099511627776 trials"), "{what}");
            assert!(needed > limit);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let long = FlipFlop::new(3, 1 << 40, 0.1).unwrap();
    assert!(matches!(Trainer::new(model(8, 0), long, config(5)), Err(Error::TooLarge { .. })));
    let trainer = Trainer::new(model(8, 0), task(), config(5)).unwrap();
    let err = trainer.evaluate(1 << 40, 0).unwrap_err();
    assert!(
        matches!(&err, Error::TooLarge { what, .. } if what.contains("1099511627776 held-out trials")),
        "{err}"
    );
    let err = trainer.evaluate(0, 0).unwrap_err().to_string();
    assert!(err.contains("at least 1 trial"), "{err}");
    assert!(trainer.examples(1 << 40).is_err());
}

/// The estimates grow with each size and cover at least what certainly exists: the model's
/// weights, and the rates of every trial and step.
#[test]
fn memory_estimates_cover_the_rates_and_the_weights() {
    use mrnn_runtime::train::{evaluation_bytes, model_bytes, step_bytes};
    let a = arch(64);
    let rates = |b: u64, t: u64| b * t * 64 * 4;
    assert!(model_bytes(&a, 3) >= 2 * 64 * 64 * 4);
    assert!(step_bytes(&a, 3, 32, 50) >= 4 * rates(32, 50));
    assert!(step_bytes(&a, 3, 64, 50) > step_bytes(&a, 3, 32, 50));
    assert!(step_bytes(&a, 3, 32, 100) > step_bytes(&a, 3, 32, 50));
    assert!(step_bytes(&arch(128), 3, 32, 50) > step_bytes(&a, 3, 32, 50));
    assert!(evaluation_bytes(&a, 3, 1000, 50) >= rates(1000, 50));
    assert_eq!(step_bytes(&a, 3, usize::MAX, usize::MAX), u64::MAX, "saturates, never wraps");
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
