//! `mrnn simulate`: runs a network (an mrnn checkpoint alone, or a JSON config with a weights
//! file: an mRNNTorch `.pth` or `.safetensors` state dict, or an mrnn checkpoint) on inputs read
//! from a safetensors file, and writes the trajectory (and the readout's output) to another.
//!
//! Non-finite values are refused before anything runs: a NaN or an infinity in `input`, `x0`,
//! `h0` or `stim`, in the network's weights or in the readout is an error (exit 1) naming the
//! tensor, the first bad index and the number of bad values; a simulation of a NaN would only
//! hand back NaN. Finite inputs whose dynamics overflow still write their trajectory (those are
//! the network's numbers), with a warning that counts the non-finite values and names the first.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Args;
use mrnn_runtime::checkpoint::TrainedReadout;
use mrnn_runtime::finite::non_finite;
use mrnn_runtime::{Error, Forward, Network, StateDict, Tensor, memory, output};

use crate::Failure;
use crate::network_args::NetworkArgs;

#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    #[command(flatten)]
    network: NetworkArgs,
    /// Safetensors file with `input` ([B, T, I] batch first, [T, B, I] time first) and
    /// optionally `x0`, `h0` ([B, H]) and `stim` (the input's layout with H features). All must
    /// be finite.
    #[arg(long)]
    input: PathBuf,
    /// Safetensors file to write, in the input's layout: `x` (leaky), `h`, and `output` when the
    /// network has a readout (a training checkpoint's, or `--readout`'s). A regular file or a new one (a symbolic link
    /// is written through); FIFOs, devices and directories are refused.
    #[arg(long)]
    output: PathBuf,
    /// Add noise (the config's levels) drawn with this seed.
    #[arg(long)]
    noise_seed: Option<u64>,
}

pub(crate) fn simulate(args: &SimulateArgs) -> Result<(), Failure> {
    // Before any work: a path that cannot be written fails now, not after the run.
    output::check_target(&args.output)?;
    let loaded = args.network.load()?;
    let (device, network, readout) = (loaded.device, loaded.network, loaded.readout);
    let batch_first = network.architecture().settings().batch_first;
    // The sequences' axes, in words, for messages.
    let (layout, axes) =
        if batch_first { ("batch first", "[B, T, ..]") } else { ("time first", "[T, B, ..]") };
    expect_finite_weights(args, &network)?;
    let inputs = StateDict::read(&args.input)?;
    let input_file = args.input.display();
    let input = inputs.get("input").ok_or_else(|| {
        let dims = if batch_first { "[B, T, I]" } else { "[T, B, I]" };
        Failure::Invalid(format!(
            "error: `{input_file}` has no tensor `input` ({dims}, {layout}); it has: {}",
            list(inputs.keys())
        ))
    })?;
    expect_finite_inputs(args, &inputs, batch_first)?;
    let on_device = |t: &Tensor| t.to_device(&device).map_err(|e| Failure::from(Error::from(e)));
    let mut options = Forward::default();
    if let Some(x0) = inputs.get("x0") {
        options = options.x0(on_device(x0)?);
    }
    if let Some(h0) = inputs.get("h0") {
        options = options.h0(on_device(h0)?);
    }
    if let Some(stim) = inputs.get("stim") {
        options = options.stim(on_device(stim)?);
    }
    if let Some(seed) = args.noise_seed {
        options = options.noise(seed);
    }
    let unknown: Vec<&str> =
        inputs.keys().filter(|k| !matches!(*k, "input" | "x0" | "h0" | "stim")).collect();
    if !unknown.is_empty() {
        eprintln!(
            "warning: ignoring tensors {} in `{input_file}` (expected input, x0, h0, stim)",
            list(unknown.into_iter()),
        );
    }
    // The input file bounds itself, but not what the run makes of it: [B, T, H] states and
    // rates (H may be far larger than I), each written out again when serialized.
    let axis = |i: usize| input.dims().get(i).copied().unwrap_or(0);
    let (b, t) = if batch_first { (axis(0), axis(1)) } else { (axis(1), axis(0)) };
    let (h, o) = (network.hidden_size(), readout.as_ref().map_or(0, TrainedReadout::output_size));
    let states = memory::f32_bytes(&[b, t, h]);
    memory::ensure_fits(
        format!(
            "the simulation's outputs (x and h of [{b}, {t}, {h}], and output of [{b}, {t}, {o}])"
        ),
        states.saturating_mul(6).saturating_add(memory::f32_bytes(&[2, b, t, o])),
    )?;
    let trajectory = network.forward(&on_device(input)?, &options)?;
    // The step axis: the second of a batch-first sequence, the first of a time-first one.
    let steps = trajectory.h.dims().get(usize::from(batch_first)).copied().unwrap_or(0);
    let mut out: HashMap<String, Tensor> = HashMap::new();
    if let Some(x) = &trajectory.x {
        out.insert("x".to_owned(), x.clone());
    }
    if let Some(readout) = &readout {
        out.insert("output".to_owned(), readout.forward(&trajectory.h)?);
    }
    out.insert("h".to_owned(), trajectory.h);
    let mut names: Vec<&String> = out.keys().collect();
    names.sort();
    for name in names {
        if let Some(bad) = non_finite(&out[name])? {
            eprintln!(
                "warning: the simulated `{name}` holds {bad} ({axes} {layout}): the dynamics \
                 overflowed from finite inputs and weights"
            );
        }
    }
    let tensors: Vec<(String, Tensor)> = out.into_iter().collect();
    let bytes = safetensors::serialize(tensors, None)
        .map_err(|e| Failure::Invalid(format!("error: cannot serialize the output: {e}")))?;
    output::write_atomic(&args.output, &bytes)?;
    eprintln!(
        "simulated {} for {steps} steps ({b} trials, {layout}); wrote {}",
        network.architecture(),
        args.output.display()
    );
    Ok(())
}

/// Refuses a network whose weights or tonic inputs hold a NaN or an infinity.
fn expect_finite_weights(args: &SimulateArgs, network: &Network) -> Result<(), Failure> {
    let network_file = args.network.network.display();
    let weights_file = args
        .network
        .weights
        .as_ref()
        .map_or_else(|| format!("`{network_file}`"), |w| format!("`{}`", w.display()));
    let bias_source = format!("the base_firing of `{network_file}` or {weights_file}");
    for (name, t, source) in [
        ("W_rec", network.w_rec().as_tensor().clone(), weights_file.clone()),
        ("W_inp", network.w_inp().as_tensor().clone(), weights_file.clone()),
        ("base_firing", network.bias()?, bias_source),
    ] {
        if let Some(bad) = non_finite(&t)? {
            return Err(Failure::Invalid(format!(
                "error: the network's `{name}` (from {source}) holds {bad}; weights must be \
                 finite"
            )));
        }
    }
    Ok(())
}

/// Refuses inputs, initial states and stimuli that hold a NaN or an infinity, naming the first.
fn expect_finite_inputs(
    args: &SimulateArgs,
    inputs: &StateDict,
    batch_first: bool,
) -> Result<(), Failure> {
    // What each tensor's axes are, for the index of a bad value.
    let shapes = [
        ("input", if batch_first { "[B, T, I], batch first" } else { "[T, B, I], time first" }),
        ("x0", "[B, H]"),
        ("h0", "[B, H]"),
        ("stim", if batch_first { "[B, T, H], batch first" } else { "[T, B, H], time first" }),
    ];
    for (name, dims) in shapes {
        if let Some(t) = inputs.get(name)
            && let Some(bad) = non_finite(t)?
        {
            return Err(Failure::Invalid(format!(
                "error: `{name}` in `{}` holds {bad} (index {dims}); inputs must be finite",
                args.input.display()
            )));
        }
    }
    Ok(())
}

fn list<'a>(keys: impl Iterator<Item = &'a str>) -> String {
    let keys: Vec<String> = keys.map(|k| format!("`{k}`")).collect();
    if keys.is_empty() { "nothing".to_owned() } else { keys.join(", ") }
}
