//! Loads a real mRNNTorch checkpoint (the flip-flop network trained by mRNNTorch's example) into
//! a network declared with `mrnn!`, runs it, and inspects it by region: Dale's law in the loaded
//! weights, the blocks between populations, and the task accuracy.
//!
//! `cargo run -p mrnn-examples --bin inspect`

use mrnn_runtime::task::{ChaCha8Rng, FlipFlop, SeedableRng, Task};
use mrnn_runtime::{Device, Readout, StateDict, mrnn};

mrnn! {
    /// The architecture of `../shared/reference/flip_flop.json`, written in the DSL.
    pub MrnnTorchFlipFlop {
        dynamics: leaky(dt = 1.0, tau = 2.0),
        activation: tanh,
        dale: recurrent,
        input inp[3]: exc;
        region exc[21]: exc, learnable_bias;
        region inhib[9]: inh, learnable_bias;
        exc -> exc (sparsity = 0.9);
        exc -> inhib;
        inhib -> exc, inhib;
        inp -> exc, inhib;
    }
}

fn main() -> mrnn_runtime::Result<()> {
    mrnn_runtime::ensure_threads();
    let device = Device::Cpu;
    let path =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference/flip_flop_rnn_leaky.pth");
    let mut net = MrnnTorchFlipFlop::new(&device)?.into_network();
    net.import_mrnntorch(path, "rnn.")?;
    let readout = Readout::from_state_dict(&StateDict::read(path)?, "out_layer.", &device)?;
    let w = net.w_rec_eff()?;
    let from_exc = w.narrow(1, MrnnTorchFlipFlop::EXC.start, MrnnTorchFlipFlop::EXC.len())?;
    let from_inh = w.narrow(1, MrnnTorchFlipFlop::INHIB.start, MrnnTorchFlipFlop::INHIB.len())?;
    println!(
        "min weight out of exc:   {:+.4} (Dale: >= 0)",
        from_exc.flatten_all()?.min(0)?.to_scalar::<f32>()?
    );
    println!(
        "max weight out of inhib: {:+.4} (Dale: <= 0)",
        from_inh.flatten_all()?.max(0)?.to_scalar::<f32>()?
    );
    for (to, from) in [("exc", "exc"), ("inhib", "exc"), ("exc", "inhib"), ("inhib", "inhib")] {
        let block = net.projection(to, from)?;
        let nonzero =
            block.ne(0f64)?.to_dtype(mrnn_runtime::DType::F32)?.mean_all()?.to_scalar::<f32>()?;
        println!(
            "{from:>5} -> {to:<5} {:?} block, {:.0}% of weights nonzero",
            block.dims(),
            100.0 * nonzero
        );
    }
    let task = FlipFlop::default();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let trials = task.sample(64, &mut rng, &device)?;
    let h = net
        .forward(
            &trials.input,
            &mrnn_runtime::Forward::new().x0(mrnn_runtime::Tensor::zeros(
                (64, 30),
                mrnn_runtime::DType::F32,
                &device,
            )?),
        )?
        .h;
    let output = readout.forward(&h)?;
    println!(
        "flip-flop sign accuracy of the loaded checkpoint: {:.4}",
        task.accuracy(&output, &trials)?
    );
    Ok(())
}
