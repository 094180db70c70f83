//! `mrnn simulate`: runs a network from a JSON config and a weights file (an mRNNTorch `.pth` or
//! `.safetensors` state dict, or an mrnn checkpoint) on inputs read from a safetensors file, and
//! writes the trajectory (and a readout's output) to another.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::Args;
use mrnn_runtime::{Error, Forward, Network, Overrides, Readout, StateDict, Tensor};

use crate::Failure;
use crate::train_cmd::device;

#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// Network config (mRNNTorch JSON); its `"model"` object sets the dynamics.
    config: PathBuf,
    /// Weights: an mRNNTorch state dict (`.pth` or `.safetensors`) or an mrnn checkpoint.
    #[arg(long)]
    weights: PathBuf,
    /// Key prefix of the network's tensors in the state dict (`rnn.` for `rnn.W_rec`).
    #[arg(long, default_value = "")]
    prefix: String,
    /// Also apply the linear readout stored under this prefix (`out_layer.` for
    /// `out_layer.weight`/`out_layer.bias`) and write its `output`.
    #[arg(long)]
    readout: Option<String>,
    /// Safetensors file with `input` ([B, T, I] batch first) and optionally `x0`, `h0` ([B, H])
    /// and `stim` (the input's layout with H features).
    #[arg(long)]
    input: PathBuf,
    /// Safetensors file to write: `x` (leaky), `h`, and `output` with `--readout`.
    #[arg(long)]
    output: PathBuf,
    /// Elman dynamics instead of the config's.
    #[arg(long)]
    elman: bool,
    /// Integration step of leaky dynamics.
    #[arg(long)]
    dt: Option<f64>,
    /// Time constant of leaky dynamics.
    #[arg(long)]
    tau: Option<f64>,
    /// Activation: relu, tanh, sigmoid, softplus or linear.
    #[arg(long)]
    activation: Option<String>,
    /// Dale's law on recurrent weights.
    #[arg(long)]
    rec_constrained: Option<bool>,
    /// Dale's law on input weights.
    #[arg(long)]
    inp_constrained: Option<bool>,
    /// `[B, T, ..]` tensors (true) or `[T, B, ..]` (false).
    #[arg(long)]
    batch_first: Option<bool>,
    /// Add noise (the config's levels) drawn with this seed.
    #[arg(long)]
    noise_seed: Option<u64>,
    /// Run on `cpu` or `cuda`.
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub(crate) fn simulate(args: &SimulateArgs) -> Result<(), Failure> {
    let device = device(&args.device)?;
    let overrides = Overrides {
        dynamics: args.elman.then(|| "elman".to_owned()),
        dt: args.dt,
        tau: args.tau,
        activation: args.activation.clone(),
        rec_constrained: args.rec_constrained,
        inp_constrained: args.inp_constrained,
        batch_first: args.batch_first,
        seed: None,
    };
    let mut network = Network::from_json_file(&args.config, &overrides, &device)?;
    let weights = StateDict::read(&args.weights)?;
    if is_mrnn_checkpoint(&args.weights) {
        network.load_weights(&args.weights)?;
    } else {
        network.import_state_dict(&weights, &args.prefix)?;
    }
    let readout = args
        .readout
        .as_deref()
        .map(|prefix| Readout::from_state_dict(&weights, prefix, &device))
        .transpose()?;
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
    mrnn_runtime::checkpoint::write_atomic(&args.output, &bytes)?;
    eprintln!(
        "simulated {} for {} steps; wrote {}",
        network.architecture(),
        input.dims().get(1).copied().unwrap_or(0),
        args.output.display()
    );
    Ok(())
}

/// Whether a file is one of this crate's checkpoints (its metadata names the format).
fn is_mrnn_checkpoint(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else { return false };
    safetensors::SafeTensors::read_metadata(&bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().clone())
        .is_some_and(|m| m.get("format").is_some_and(|f| f == mrnn_runtime::checkpoint::FORMAT))
}

fn list<'a>(keys: impl Iterator<Item = &'a str>) -> String {
    let keys: Vec<String> = keys.map(|k| format!("`{k}`")).collect();
    if keys.is_empty() { "nothing".to_owned() } else { keys.join(", ") }
}
