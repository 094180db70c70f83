//! The arguments that name a network to run, shared by `simulate` and `analyze`, and their
//! loading: an mrnn checkpoint alone (it carries its architecture; a training checkpoint also
//! its readout), or a JSON config with a weights file (an mrnn checkpoint, checked against the
//! config, or an mRNNTorch state dict).

use std::path::{Path, PathBuf};

use clap::Args;
use mrnn_ir::Spec;
use mrnn_runtime::checkpoint::{self, Checkpoint, FileKind, TrainedReadout};
use mrnn_runtime::{Device, Network, Overrides, Readout, StateDict, compat, config};

use crate::Failure;
use crate::train_cmd::device;

#[derive(Debug, Args)]
pub(crate) struct NetworkArgs {
    /// The network: an mrnn checkpoint alone (`runs/x/checkpoint.safetensors` from `mrnn train`,
    /// or a file of `Network::save`: it holds its architecture, and a training checkpoint its
    /// readout), or an mRNNTorch JSON config, whose weights `--weights` then gives.
    #[arg(value_name = "CHECKPOINT|CONFIG")]
    pub(crate) network: PathBuf,
    /// Weights for a JSON config: an mRNNTorch state dict (`.pth` or `.safetensors`), or an mrnn
    /// checkpoint (its architecture must be the config's). Not needed with a checkpoint alone.
    #[arg(long)]
    pub(crate) weights: Option<PathBuf>,
    /// Key prefix of the network's tensors in an mRNNTorch state dict (`rnn.` for
    /// `rnn.W_rec`). mrnn checkpoints know their own.
    #[arg(long)]
    pub(crate) prefix: Option<String>,
    /// Readout prefix in an mRNNTorch state dict (`out_layer.` for `out_layer.weight` and
    /// `out_layer.bias`); default `out_layer.` when the file has `out_layer.weight`. A training
    /// checkpoint's own readout is used without it.
    #[arg(long)]
    pub(crate) readout: Option<String>,
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

/// A network ready to run, with the readout that goes with it (if any).
pub(crate) struct Loaded {
    pub(crate) device: Device,
    pub(crate) network: Network,
    pub(crate) readout: Option<TrainedReadout>,
}

impl NetworkArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            dynamics: self.elman.then(|| "elman".to_owned()),
            dt: self.dt,
            tau: self.tau,
            activation: self.activation.clone(),
            rec_constrained: self.rec_constrained,
            inp_constrained: self.inp_constrained,
            batch_first: self.batch_first,
            seed: None,
        }
    }

    /// The device, the network with its weights, and its readout: a training checkpoint's
    /// own, or one read from an mRNNTorch state dict (`--readout`, or `out_layer.` when present).
    pub(crate) fn load(&self) -> Result<Loaded, Failure> {
        let device = device(&self.device)?;
        let kind = checkpoint::file_kind(&self.network)?;
        let name = self.network.display();
        match (kind, &self.weights) {
            (FileKind::Network | FileKind::Training, None) => self.load_checkpoint(device, kind),
            (FileKind::Network | FileKind::Training, Some(w)) => Err(Failure::Usage(format!(
                "`{name}` is an mrnn checkpoint: it holds its architecture and weights, so drop --weights `{}` (or give a JSON config first to check the checkpoint against it: `CONFIG --weights {name}`)",
                w.display()
            ))),
            (FileKind::Safetensors | FileKind::Pth, _) => Err(Failure::Usage(format!(
                "`{name}` is a state dict (weights without an architecture): give the network's JSON config first and the weights with --weights: `CONFIG --weights {name}`"
            ))),
            (FileKind::Other, None) => Err(Failure::Usage(format!(
                "`{name}` is not an mrnn checkpoint, so it is read as a JSON config, which needs its weights: add --weights FILE (an mRNNTorch state dict or an mrnn checkpoint)"
            ))),
            (FileKind::Other, Some(weights)) => self.load_config_and_weights(device, weights),
        }
    }

    /// A checkpoint alone; overrides of the `"model"` settings must agree with it.
    fn load_checkpoint(&self, device: Device, kind: FileKind) -> Result<Loaded, Failure> {
        self.expect_checkpoint_options(&self.network, kind)?;
        let ckpt = Checkpoint::load(&self.network, &device)?;
        if self.overrides() != Overrides::default() {
            // The checkpoint's architecture with the overrides, compiled as any config is.
            let mut spec = Spec::from_architecture(ckpt.network.architecture());
            self.overrides().apply(&mut spec);
            let file = format!("{} (with the options given)", self.network.display());
            let wanted = mrnn_ir::compile_spec(&spec, &file, "")?.architecture;
            let diffs = compat::differences(ckpt.network.architecture(), &wanted);
            if !diffs.is_empty() {
                return Err(Failure::Invalid(format!(
                    "error: the checkpoint `{}` was trained with other settings than the options ask for: {}",
                    self.network.display(),
                    diffs.join("; ")
                )));
            }
        }
        Ok(Loaded { device, network: ckpt.network, readout: ckpt.readout })
    }

    /// `--prefix` and `--readout` with an mrnn checkpoint: it knows where its network is, and a
    /// training checkpoint brings its readout.
    fn expect_checkpoint_options(&self, path: &Path, kind: FileKind) -> Result<(), Failure> {
        if let Some(p) = &self.prefix
            && p != kind.network_prefix()
        {
            return Err(Failure::Usage(format!(
                "--prefix `{p}` does not apply to the mrnn checkpoint `{}`: its network is stored under {}, found without --prefix",
                path.display(),
                match kind.network_prefix() {
                    "" => "no prefix".to_owned(),
                    own => format!("`{own}`"),
                }
            )));
        }
        if self.readout.is_some() {
            return Err(Failure::Usage(format!(
                "--readout names a readout in an mRNNTorch state dict; the mrnn checkpoint `{}` {}",
                path.display(),
                if kind == FileKind::Training {
                    "brings its own readout, which is used"
                } else {
                    "holds no readout (the training checkpoints of `mrnn train` do)"
                }
            )));
        }
        Ok(())
    }

    /// A JSON config (with overrides) and a weights file.
    fn load_config_and_weights(&self, device: Device, weights: &Path) -> Result<Loaded, Failure> {
        let kind = checkpoint::file_kind(weights)?;
        if kind.is_checkpoint() {
            self.expect_checkpoint_options(weights, kind)?;
            let config = config::compile_json_file(&self.network, &self.overrides())?;
            let ckpt = Checkpoint::load(weights, &device)?;
            // The config only checks the checkpoint: the error names every difference.
            let diffs = compat::differences(ckpt.network.architecture(), &config.architecture);
            if !diffs.is_empty() {
                return Err(Failure::Invalid(format!(
                    "error: the checkpoint `{}` is not a network of the config `{}`: {}",
                    weights.display(),
                    self.network.display(),
                    diffs.join("; ")
                )));
            }
            return Ok(Loaded { device, network: ckpt.network, readout: ckpt.readout });
        }
        let mut network = Network::from_json_file(&self.network, &self.overrides(), &device)?;
        let state = StateDict::read(weights)?;
        network.import_state_dict(&state, self.prefix.as_deref().unwrap_or(""))?;
        let prefix = match &self.readout {
            Some(prefix) => Some(prefix.as_str()),
            None => state.get("out_layer.weight").is_some().then_some("out_layer."),
        };
        let readout = prefix
            .map(|p| {
                let r = Readout::from_state_dict(&state, p, &device)?;
                TrainedReadout::all(r, network.hidden_size())
            })
            .transpose()?;
        Ok(Loaded { device, network, readout })
    }
}
