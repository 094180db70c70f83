//! `mrnn simulate`: runs a network (an mrnn checkpoint alone, or a JSON config with a weights
//! file: an mRNNTorch `.pth` or `.safetensors` state dict, or an mrnn checkpoint) on inputs read
//! from a safetensors file, and writes the trajectory (and the readout's output) to another.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Args;
use mrnn_runtime::checkpoint::TrainedReadout;
use mrnn_runtime::{Error, Forward, StateDict, Tensor, memory, output};

use crate::Failure;
use crate::network_args::NetworkArgs;

#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    #[command(flatten)]
    network: NetworkArgs,
    /// Safetensors file with `input` ([B, T, I] batch first) and optionally `x0`, `h0` ([B, H])
    /// and `stim` (the input's layout with H features).
    #[arg(long)]
    input: PathBuf,
    /// Safetensors file to write: `x` (leaky), `h`, and `output` when the network has a readout
    /// (a training checkpoint's, or `--readout`'s). A regular file or a new one (a symbolic link
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
    let inputs = StateDict::read(&args.input)?;
    let input = inputs.get("input").ok_or_else(|| {
        Failure::Invalid(format!(
            "error: `{}` has no tensor `input` ([B, T, I]); it has: {}",
            args.input.display(),
            list(inputs.keys())
        ))
    })?;
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
            "warning: ignoring tensors {} in `{}` (expected input, x0, h0, stim)",
            list(unknown.into_iter()),
            args.input.display()
        );
    }
    // The input file bounds itself, but not what the run makes of it: [B, T, H] states and
    // rates (H may be far larger than I), each written out again when serialized.
    let (b, t) =
        (input.dims().first().copied().unwrap_or(0), input.dims().get(1).copied().unwrap_or(0));
    let (h, o) = (network.hidden_size(), readout.as_ref().map_or(0, TrainedReadout::output_size));
    let states = memory::f32_bytes(&[b, t, h]);
    memory::ensure_fits(
        format!(
            "the simulation's outputs (x and h of [{b}, {t}, {h}], and output of [{b}, {t}, {o}])"
        ),
        states.saturating_mul(6).saturating_add(memory::f32_bytes(&[2, b, t, o])),
    )?;
    let trajectory = network.forward(&on_device(input)?, &options)?;
    let mut out: HashMap<String, Tensor> = HashMap::new();
    if let Some(x) = &trajectory.x {
        out.insert("x".to_owned(), x.clone());
    }
    if let Some(readout) = &readout {
        out.insert("output".to_owned(), readout.forward(&trajectory.h)?);
    }
    out.insert("h".to_owned(), trajectory.h);
    let tensors: Vec<(String, Tensor)> = out.into_iter().collect();
    let bytes = safetensors::serialize(tensors, None)
        .map_err(|e| Failure::Invalid(format!("error: cannot serialize the output: {e}")))?;
    output::write_atomic(&args.output, &bytes)?;
    eprintln!(
        "simulated {} for {} steps; wrote {}",
        network.architecture(),
        input.dims().get(1).copied().unwrap_or(0),
        args.output.display()
    );
    Ok(())
}

fn list<'a>(keys: impl Iterator<Item = &'a str>) -> String {
    let keys: Vec<String> = keys.map(|k| format!("`{k}`")).collect();
    if keys.is_empty() { "nothing".to_owned() } else { keys.join(", ") }
}
