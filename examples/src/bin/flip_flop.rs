//! Trains a Dale's-law network declared with `mrnn!` on the 3-bit flip-flop, end to end:
//! the macro checks the architecture while this file compiles, the trainer does the rest.
//!
//! `cargo run -p mrnn-examples --bin flip_flop -- [steps]` (default 1500; about a minute on 2
//! cores). Writes `runs/flip_flop_example/checkpoint.safetensors`.

use mrnn_runtime::task::{FlipFlop, Task};
use mrnn_runtime::train::{Model, ReadoutFrom, TrainConfig, Trainer};
use mrnn_runtime::{Device, mrnn};

mrnn! {
    /// 64 leaky tanh units, 80 % excitatory and 20 % inhibitory, with Dale's law on the
    /// recurrent weights and sparse excitatory-to-excitatory projections (half of each
    /// excitatory unit's weights onto excitatory units are zero).
    pub FlipFlopNet {
        dynamics: leaky(dt = 1.0, tau = 2.0),
        activation: tanh,
        dale: recurrent,
        seed: 1,
        input pulses[3]: exc;
        region exc[51]: exc, learnable_bias;
        region inh[13]: inh, learnable_bias;
        exc -> exc (sparsity = 0.5);
        exc -> inh;
        inh -> exc, inh;
        pulses -> exc, inh;
    }
}

fn main() -> mrnn_runtime::Result<()> {
    mrnn_runtime::ensure_threads();
    let steps = std::env::args().nth(1).map_or(Ok(1500), |s| s.parse()).map_err(|e| {
        mrnn_runtime::Error::Invalid(format!("the number of steps must be a whole number: {e}"))
    })?;
    let device = Device::Cpu;
    let task = FlipFlop::default();
    // The generated type knows its sizes statically: the task must fit it.
    assert_eq!(FlipFlopNet::INPUT, task.input_size());
    let network = FlipFlopNet::new(&device)?.into_network();
    let model = Model::new(network, task.output_size(), ReadoutFrom::All, 1)?;
    let config = TrainConfig { steps, batch: 64, lr: 0.01, seed: 1, ..TrainConfig::default() };
    let mut trainer = Trainer::new(model, task, config)?;
    while !trainer.finished() {
        let report = trainer.step()?;
        if report.step % 100 == 0 || report.step == 1 {
            println!(
                "step {:5}  loss {:.5}  sign accuracy {:.3}",
                report.step, report.loss, report.accuracy
            );
        }
    }
    let eval = trainer.evaluate(512, 0)?;
    println!("held-out sign accuracy {:.4} (loss {:.5}) on 512 trials", eval.accuracy, eval.loss);
    // The excitatory population's activity, sliced with the generated range constant.
    let (trials, _) = trainer.examples(1)?;
    let (trajectory, _) = trainer.model.run(&trials.input, None)?;
    let exc = trajectory.h.narrow(2, FlipFlopNet::EXC.start, FlipFlopNet::EXC.len())?;
    println!(
        "mean excitatory rate on a held-out trial: {:.3}",
        exc.mean_all()?.to_scalar::<f32>()?
    );
    let out = std::path::Path::new("runs/flip_flop_example");
    std::fs::create_dir_all(out)
        .map_err(|e| mrnn_runtime::Error::Io { path: out.display().to_string(), source: e })?;
    trainer.save(&out.join("checkpoint.safetensors"))?;
    println!("saved {}", out.join("checkpoint.safetensors").display());
    Ok(())
}
