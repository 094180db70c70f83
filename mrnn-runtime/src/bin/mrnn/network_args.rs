//! The arguments that name a network to run (a JSON config, overrides of its `"model"`
//! settings, and a weights file), shared by `simulate` and `analyze`, and their loading.

use std::path::PathBuf;

use clap::Args;
use mrnn_runtime::{Device, Network, Overrides, StateDict, checkpoint};

use crate::Failure;
use crate::train_cmd::device;

#[derive(Debug, Args)]
pub(crate) struct NetworkArgs {
    /// Network config (mRNNTorch JSON); its `"model"` object sets the dynamics.
    pub(crate) config: PathBuf,
    /// Weights: an mRNNTorch state dict (`.pth` or `.safetensors`) or an mrnn checkpoint.
    #[arg(long)]
    pub(crate) weights: PathBuf,
    /// Key prefix of the network's tensors in the state dict (`rnn.` for `rnn.W_rec`).
    #[arg(long, default_value = "")]
    pub(crate) prefix: String,
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
    /// Run on `cpu` or `cuda`.
    #[arg(long, default_value = "cpu")]
    pub(crate) device: String,
}

impl NetworkArgs {
    /// The device, the network with its weights, and the weights file's tensors (for a readout).
    pub(crate) fn load(&self) -> Result<(Device, Network, StateDict), Failure> {
        let device = device(&self.device)?;
        let overrides = Overrides {
            dynamics: self.elman.then(|| "elman".to_owned()),
            dt: self.dt,
            tau: self.tau,
            activation: self.activation.clone(),
            rec_constrained: self.rec_constrained,
            inp_constrained: self.inp_constrained,
            batch_first: self.batch_first,
            seed: None,
        };
        let mut network = Network::from_json_file(&self.config, &overrides, &device)?;
        let weights = StateDict::read(&self.weights)?;
        if checkpoint::is_checkpoint(&self.weights) {
            network.load_weights(&self.weights)?;
        } else {
            network.import_state_dict(&weights, &self.prefix)?;
        }
        Ok((device, network, weights))
    }
}
