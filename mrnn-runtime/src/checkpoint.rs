//! Checkpoints: the network's own safetensors format (raw weights, masks, signs, bias, and the
//! architecture as a JSON config in the metadata), training checkpoints read back with their
//! readout ([`Checkpoint`]), import of mRNNTorch state dicts and export to them. A checkpoint
//! is self-describing: [`Checkpoint::load`] and [`Network::load`] need nothing but the file.
//! Every write goes through [`write_atomic`] (see [`crate::output`]).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use mrnn_ir::{Architecture, Spec};
use sha2::{Digest, Sha256};

use crate::masks::{HostMatrix, Matrix};
use crate::network::{DTYPE, Parts};
pub use crate::output::write_atomic;
use crate::pth::StateDict;
use crate::train::{Model, ReadoutFrom};
use crate::{Error, Network, Readout, Result, Sign, compat, masks, memory};

/// The value of the `format` metadata entry of this crate's checkpoints.
pub const FORMAT: &str = "mrnn-checkpoint/1";

/// The names of the tensors of a network, in checkpoints and in mRNNTorch's state dicts.
const W_REC: &str = "W_rec";
const W_INP: &str = "W_inp";
const BIAS: &str = "base_firing";

fn mask_key(m: Matrix) -> String {
    format!("{}_mask", m.name())
}

fn sign_key(m: Matrix) -> String {
    format!("{}_sign_matrix", m.name())
}

impl Network {
    /// Saves the network: raw weights, masks, sign matrices and the bias variable, with the
    /// architecture (as the JSON config [`Spec::from_architecture`] writes) and its SHA-256 in
    /// the metadata. Atomic: the previous file survives any failure. Non-finite parameters are
    /// refused (such a file could not be loaded back), and the previous file is kept.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.ensure_finite_parameters(path.as_ref())?;
        write_safetensors(
            path.as_ref(),
            self.checkpoint_tensors(""),
            Some(self.checkpoint_metadata()?),
        )
    }

    /// The tensors [`Network::save`] writes, with `prefix` before their names (so that a
    /// training checkpoint can hold a network beside a readout and an optimizer).
    pub(crate) fn checkpoint_tensors(&self, prefix: &str) -> Vec<(String, Tensor)> {
        [
            (W_REC.to_owned(), self.w_rec.as_tensor().clone()),
            (W_INP.to_owned(), self.w_inp.as_tensor().clone()),
            (BIAS.to_owned(), self.bias.as_tensor().clone()),
            (mask_key(Matrix::Recurrent), self.rec_mask.clone()),
            (sign_key(Matrix::Recurrent), self.rec_sign.clone()),
            (mask_key(Matrix::Input), self.inp_mask.clone()),
            (sign_key(Matrix::Input), self.inp_sign.clone()),
        ]
        .into_iter()
        .map(|(k, t)| (format!("{prefix}{k}"), t))
        .collect()
    }

    /// The metadata [`Network::save`] writes: format, name, seed, the architecture and its hash.
    pub(crate) fn checkpoint_metadata(&self) -> Result<HashMap<String, String>> {
        let spec = serde_json::to_string(&Spec::from_architecture(&self.arch))
            .map_err(|e| Error::Invalid(format!("cannot serialize the architecture: {e}")))?;
        Ok(HashMap::from([
            ("format".to_owned(), FORMAT.to_owned()),
            ("name".to_owned(), self.arch.name().to_owned()),
            ("seed".to_owned(), self.seed.to_string()),
            ("spec_sha256".to_owned(), sha256_hex(&spec)),
            ("spec".to_owned(), spec),
        ]))
    }

    /// Loads the network of a checkpoint onto `device`, rebuilding it from the architecture in
    /// the metadata: a file of [`Network::save`], or the network of a training checkpoint (its
    /// readout comes with [`Checkpoint::load`]).
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Network> {
        let (sd, metadata) = read_safetensors(path.as_ref())?;
        Network::from_checkpoint(&sd, &metadata, network_prefix(&metadata), device)
    }

    /// Rebuilds a network from checkpoint tensors (names under `prefix`) and metadata. Shapes,
    /// masks and signs are checked against the architecture, and the weights and biases must
    /// be finite.
    pub(crate) fn from_checkpoint(
        sd: &StateDict,
        metadata: &HashMap<String, String>,
        prefix: &str,
        device: &Device,
    ) -> Result<Network> {
        let (arch, seed) = architecture_from_metadata(metadata, sd.source())?;
        let (h, i) = (arch.hidden_size(), arch.input_size());
        // The metadata may describe a network far larger than the tensors beside it: shapes
        // first (nothing allocated), then the memory, then the values.
        for (key, shape) in [
            (W_REC.to_owned(), [h, h]),
            (W_INP.to_owned(), [h, i]),
            (mask_key(Matrix::Recurrent), [h, h]),
            (mask_key(Matrix::Input), [h, i]),
        ] {
            sd.require(&format!("{prefix}{key}"), &shape)?;
        }
        let bias = sd.require(&format!("{prefix}{BIAS}"), &[h])?;
        Network::ensure_fits(&arch)?;
        let (w_rec, w_inp) = checked_weights(&arch, sd, prefix)?;
        ensure_finite(sd.source(), &format!("{prefix}{BIAS}"), &bias)?;
        let (rec, inp) = checked_masks(&arch, sd, prefix)?;
        let parts = Parts {
            w_rec,
            w_inp,
            rec_mask: rec.0,
            rec_sign: rec.1,
            inp_mask: inp.0,
            inp_sign: inp.1,
            base_firing: bias.clone(),
        };
        let net = Network::from_parts(arch, seed, device, &parts)?;
        // Entries of non-learnable regions must hold the declared base firing.
        net.set_base_firing(&bias.to_device(device)?)?;
        Ok(net)
    }

    /// Loads the weights, masks and bias of a checkpoint (a network's, or the network of a
    /// training checkpoint) into this network; refuses, naming what differs, a checkpoint saved
    /// from another architecture.
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let (sd, metadata) = read_safetensors(path)?;
        let (arch, seed) = architecture_from_metadata(&metadata, sd.source())?;
        let prefix = network_prefix(&metadata);
        let diffs = compat::differences(&self.arch, &arch);
        if !diffs.is_empty() {
            return Err(Error::Checkpoint {
                path: path.display().to_string(),
                message: format!(
                    "saved from another architecture (`{}`), not `{}`'s: {}",
                    arch.name(),
                    self.arch.name(),
                    diffs.join("; ")
                ),
            });
        }
        // Everything is checked before anything changes: a refused load leaves the network as
        // it was.
        let bias = sd.require(&format!("{prefix}{BIAS}"), &[self.hidden_size()])?;
        ensure_finite(sd.source(), &format!("{prefix}{BIAS}"), &bias)?;
        let bias = bias.to_device(&self.device)?;
        self.check_base_firing(&bias)?;
        self.adopt(&sd, prefix)?;
        self.set_base_firing(&bias)?;
        self.seed = seed;
        Ok(())
    }

    /// Imports an mRNNTorch state dict file (`.pth` saved on any device, or `.safetensors`):
    /// the tensors `{prefix}W_rec`, `{prefix}W_rec_mask`, `{prefix}W_rec_sign_matrix` and the
    /// same for `W_inp`. See [`Network::import_state_dict`].
    pub fn import_mrnntorch(&mut self, path: impl AsRef<Path>, prefix: &str) -> Result<()> {
        self.import_state_dict(&StateDict::read(path)?, prefix)
    }

    /// Imports raw weights and masks from a state dict. Shapes are checked, and the masks and
    /// sign matrices are checked against the architecture block by block (no weight outside a
    /// connection, dense blocks full, sparse blocks with exactly `ceil(s * n_dst)` zeros per
    /// column, signs = sign(source) * mask); the error names the first block that differs. On
    /// success the network adopts the file's weights **and** masks. mRNNTorch saves no tonic
    /// biases: the network keeps its own.
    pub fn import_state_dict(&mut self, sd: &StateDict, prefix: &str) -> Result<()> {
        self.adopt(sd, prefix)
    }

    /// Builds a network of architecture `arch` from an mRNNTorch state dict file.
    pub fn from_mrnntorch(
        arch: Architecture,
        path: impl AsRef<Path>,
        prefix: &str,
        device: &Device,
    ) -> Result<Network> {
        let mut net = Network::new(arch, device)?;
        net.import_mrnntorch(path, prefix)?;
        Ok(net)
    }

    /// Writes the weights in mRNNTorch's layout (`{prefix}W_rec`, `{prefix}W_rec_mask`,
    /// `{prefix}W_rec_sign_matrix`, and the same for `W_inp`) as safetensors, for
    /// `model.load_state_dict(safetensors.torch.load_file(path), strict=False)` in Python.
    /// Tonic biases are not part of mRNNTorch's state dict and are not written.
    pub fn export_mrnntorch(&self, path: impl AsRef<Path>, prefix: &str) -> Result<()> {
        self.ensure_finite_parameters(path.as_ref())?;
        let tensors = vec![
            (format!("{prefix}{W_REC}"), self.w_rec.as_tensor().clone()),
            (format!("{prefix}{}", mask_key(Matrix::Recurrent)), self.rec_mask.clone()),
            (format!("{prefix}{}", sign_key(Matrix::Recurrent)), self.rec_sign.clone()),
            (format!("{prefix}{W_INP}"), self.w_inp.as_tensor().clone()),
            (format!("{prefix}{}", mask_key(Matrix::Input)), self.inp_mask.clone()),
            (format!("{prefix}{}", sign_key(Matrix::Input)), self.inp_sign.clone()),
        ];
        let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
        write_safetensors(path.as_ref(), tensors, Some(metadata))
    }

    /// Fails, naming the parameter, unless the raw weights and the bias are finite: what a
    /// checkpoint at `path` may be written from.
    pub(crate) fn ensure_finite_parameters(&self, path: &Path) -> Result<()> {
        for (key, var) in [(W_REC, &self.w_rec), (W_INP, &self.w_inp), (BIAS, &self.bias)] {
            if let Some(what) = non_finite(key, var.as_tensor())? {
                return Err(Error::Checkpoint {
                    path: path.display().to_string(),
                    message: format!("not written: {what}; the previous file is kept"),
                });
            }
        }
        Ok(())
    }

    /// Checks and takes the raw weights and masks of `sd` (under `prefix`).
    fn adopt(&mut self, sd: &StateDict, prefix: &str) -> Result<()> {
        let (w_rec, w_inp) = checked_weights(&self.arch, sd, prefix)?;
        let (rec, inp) = checked_masks(&self.arch, sd, prefix)?;
        self.set_w_rec(&w_rec.to_device(&self.device)?)?;
        self.set_w_inp(&w_inp.to_device(&self.device)?)?;
        self.replace_masks(rec, inp)
    }
}

type MaskPair = (Tensor, Tensor);

/// Reads the raw weights `(W_rec, W_inp)` of `sd` (under `prefix`): the shapes of `arch`, and
/// finite values (a NaN would silently poison every forward pass).
fn checked_weights(arch: &Architecture, sd: &StateDict, prefix: &str) -> Result<(Tensor, Tensor)> {
    let (h, i) = (arch.hidden_size(), arch.input_size());
    let w_rec = sd.require(&format!("{prefix}{W_REC}"), &[h, h])?;
    let w_inp = sd.require(&format!("{prefix}{W_INP}"), &[h, i])?;
    for (key, t) in [(W_REC, &w_rec), (W_INP, &w_inp)] {
        ensure_finite(sd.source(), &format!("{prefix}{key}"), t)?;
    }
    Ok((w_rec, w_inp))
}

/// Reads and checks the masks and sign matrices of both matrices in `sd` against `arch`.
fn checked_masks(
    arch: &Architecture,
    sd: &StateDict,
    prefix: &str,
) -> Result<(MaskPair, MaskPair)> {
    Ok((
        checked_mask(arch, sd, prefix, Matrix::Recurrent)?,
        checked_mask(arch, sd, prefix, Matrix::Input)?,
    ))
}

fn checked_mask(
    arch: &Architecture,
    sd: &StateDict,
    prefix: &str,
    matrix: Matrix,
) -> Result<MaskPair> {
    let shape = [arch.hidden_size(), matrix.cols(arch)];
    let mask = sd.require(&format!("{prefix}{}", mask_key(matrix)), &shape)?;
    let sign = sd.require(&format!("{prefix}{}", sign_key(matrix)), &shape)?;
    masks::check(arch, matrix, &host(&mask)?, &host(&sign)?)
        .map_err(|message| Error::Checkpoint { path: sd.source().to_owned(), message })?;
    Ok((mask, sign))
}

fn host(t: &Tensor) -> Result<HostMatrix> {
    let (rows, cols) = t.dims2()?;
    Ok(HostMatrix { rows, cols, data: t.to_dtype(DTYPE)?.flatten_all()?.to_vec1::<f32>()? })
}

/// What a file given as a network is, judged from its header (see [`file_kind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// An mrnn checkpoint written by [`Network::save`]: a network and its architecture.
    Network,
    /// An mrnn training checkpoint (`Trainer::save`, `mrnn train`): the network under
    /// `network.`, its readout under `readout.`, the optimizer's state, and the architecture.
    Training,
    /// A safetensors file without mrnn metadata (an mRNNTorch state dict, or other tensors).
    Safetensors,
    /// A PyTorch zip archive (`torch.save`'s `.pth`).
    Pth,
    /// Anything else (a JSON config, a Rust file, text).
    Other,
}

impl FileKind {
    /// Whether the file carries its architecture (one of this crate's checkpoints).
    #[must_use]
    pub fn is_checkpoint(self) -> bool {
        matches!(self, FileKind::Network | FileKind::Training)
    }

    /// The key prefix of the network's tensors in a checkpoint of this kind.
    #[must_use]
    pub fn network_prefix(self) -> &'static str {
        if self == FileKind::Training { TRAINING_PREFIX } else { "" }
    }
}

/// Where a training checkpoint keeps the network's tensors (`network.W_rec`, ...).
const TRAINING_PREFIX: &str = "network.";
/// Where a training checkpoint keeps the readout's tensors (`readout.weight`, `readout.bias`).
const READOUT_PREFIX: &str = "readout.";
/// safetensors' own limit on the size of a header.
const MAX_HEADER: u64 = 100_000_000;

/// What `path` is, from its first bytes (and, for safetensors, its header only: the tensors are
/// not read). A safetensors header that cannot be read is an error naming the damage.
pub fn file_kind(path: impl AsRef<Path>) -> Result<FileKind> {
    use std::io::Read as _;
    let path = path.as_ref();
    let source = path.display().to_string();
    let io = |e: std::io::Error| Error::Io { path: source.clone(), source: e };
    let bad = |message: String| Error::Checkpoint { path: source.clone(), message };
    crate::output::regular_input(path)?;
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut head = Vec::with_capacity(9);
    file.by_ref().take(9).read_to_end(&mut head).map_err(io)?;
    if head.starts_with(b"PK") {
        return Ok(FileKind::Pth);
    }
    if head.len() < 9 || head[8] != b'{' {
        return Ok(FileKind::Other);
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&head[..8]);
    let n = u64::from_le_bytes(len);
    // The header starts with the `{` just read and ends with a `}`: at least 2 bytes.
    if !(2..=MAX_HEADER).contains(&n) {
        return Err(bad(format!(
            "damaged safetensors file: its header claims {n} bytes (safetensors allows 2 to {MAX_HEADER})"
        )));
    }
    let mut header = vec![b'{'];
    file.take(n - 1).read_to_end(&mut header).map_err(io)?;
    if header.len() as u64 != n {
        return Err(bad(format!(
            "truncated safetensors file: its header claims {n} bytes, the file has {}",
            header.len()
        )));
    }
    let header: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("damaged safetensors header: {e}")))?;
    let Some(metadata) = header.get("__metadata__").and_then(serde_json::Value::as_object) else {
        return Ok(FileKind::Safetensors);
    };
    match metadata.get("format").and_then(serde_json::Value::as_str) {
        Some(FORMAT) => {}
        // Another version of this crate's format is not a foreign state dict.
        Some(other) if other.starts_with("mrnn-checkpoint") => {
            return Err(bad(format!(
                "an mrnn checkpoint of format `{other}`; this version of mrnn reads `{FORMAT}`"
            )));
        }
        _ => return Ok(FileKind::Safetensors),
    }
    Ok(if metadata.keys().any(|k| k.starts_with("train.")) {
        FileKind::Training
    } else {
        FileKind::Network
    })
}

/// Whether `path` is one of this crate's checkpoints (a network's or a training run's: a
/// safetensors file whose metadata names [`FORMAT`]), as opposed to an mRNNTorch state dict.
#[must_use]
pub fn is_checkpoint(path: &Path) -> bool {
    file_kind(path).is_ok_and(FileKind::is_checkpoint)
}

/// Reads a safetensors file: its tensors (on the CPU) and its metadata. The file is read whole,
/// once its size is known to fit in memory.
pub(crate) fn read_safetensors(path: &Path) -> Result<(StateDict, HashMap<String, String>)> {
    let source = path.display().to_string();
    let bad = |message: String| Error::Checkpoint { path: source.clone(), message };
    let io = |e: std::io::Error| Error::Io { path: source.clone(), source: e };
    let size = crate::output::regular_input(path)?;
    // The bytes, then the tensors made from them.
    memory::ensure_fits(
        format!("reading `{source}` ({})", memory::human(size)),
        size.saturating_mul(2),
    )?;
    let bytes = std::fs::read(path).map_err(io)?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file, or a damaged or truncated one: {e}")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let map = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| bad(e.to_string()))?;
    Ok((StateDict::from_tensors(source.clone(), map), metadata))
}

/// The key prefix of the network's tensors in a checkpoint with this metadata: `network.` in a
/// training checkpoint, nothing in a network's.
fn network_prefix(metadata: &HashMap<String, String>) -> &'static str {
    if metadata.keys().any(|k| k.starts_with("train.")) { TRAINING_PREFIX } else { "" }
}

/// Fails unless every entry of `t` is finite: a NaN in a weight would poison every forward pass.
fn ensure_finite(source: &str, key: &str, t: &Tensor) -> Result<()> {
    non_finite(key, t)?.map_or(Ok(()), |what| {
        Err(Error::Checkpoint {
            path: source.to_owned(),
            message: format!("{what}: a diverged or damaged file"),
        })
    })
}

/// `Some(description)` when `t` has non-finite entries.
fn non_finite(key: &str, t: &Tensor) -> Result<Option<String>> {
    Ok(crate::finite::non_finite(t)?.map(|bad| format!("`{key}` holds {bad}")))
}

/// An mrnn checkpoint read back whole: the network, and for a training checkpoint the readout
/// it was trained with and where training stopped.
///
/// ```no_run
/// use mrnn_runtime::checkpoint::Checkpoint;
/// use mrnn_runtime::{Device, Forward, Tensor};
/// // What `mrnn train flip-flop --out runs/ff` wrote.
/// let ckpt = Checkpoint::load("runs/ff/checkpoint.safetensors", &Device::Cpu)?;
/// let input = Tensor::zeros((1, 50, ckpt.network.input_size()), mrnn_runtime::DType::F32, &Device::Cpu)?;
/// let h = ckpt.network.forward(&input, &Forward::default())?.h;
/// let output = ckpt.readout.as_ref().expect("a training checkpoint").forward(&h)?;
/// // Or the model to train further with the library:
/// let model = ckpt.into_model()?;
/// # Ok::<(), mrnn_runtime::Error>(())
/// ```
#[derive(Debug)]
pub struct Checkpoint {
    /// The network, rebuilt from the architecture in the metadata.
    pub network: Network,
    /// A training checkpoint's readout, reading the units it was trained on; `None` for the
    /// files of [`Network::save`].
    pub readout: Option<TrainedReadout>,
    /// Where a training checkpoint stopped; `None` for the files of [`Network::save`].
    pub training: Option<TrainingState>,
}

/// The progress recorded in a training checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainingState {
    /// Optimizer steps taken.
    pub step: usize,
    /// The task's name (`flip-flop`, `decision`).
    pub task: String,
}

impl Checkpoint {
    /// Reads a checkpoint of either kind ([`Network::save`]'s or a training run's) onto
    /// `device`. Every tensor used is checked: shapes against the architecture, masks and signs
    /// block by block, weights, biases and the readout finite.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Checkpoint> {
        let path = path.as_ref();
        let (sd, metadata) = read_safetensors(path)?;
        let prefix = network_prefix(&metadata);
        let network = Network::from_checkpoint(&sd, &metadata, prefix, device)?;
        if prefix.is_empty() {
            return Ok(Checkpoint { network, readout: None, training: None });
        }
        let bad = |message: String| Error::Checkpoint { path: sd.source().to_owned(), message };
        let get = |key: &str| {
            metadata.get(key).ok_or_else(|| {
                bad(format!("a training checkpoint without `{key}` in its metadata (damaged?)"))
            })
        };
        let step = get("train.step")?
            .parse()
            .map_err(|e| bad(format!("bad `train.step` in the metadata: {e}")))?;
        let task = get("train.task")?.clone();
        let from: ReadoutFrom = serde_json::from_str(get("train.readout_from")?)
            .map_err(|e| bad(format!("bad `train.readout_from` in the metadata: {e}")))?;
        let readout = Readout::from_state_dict(&sd, READOUT_PREFIX, device)?;
        for (name, var) in readout.vars() {
            ensure_finite(sd.source(), &format!("{READOUT_PREFIX}{name}"), var.as_tensor())?;
        }
        let readout = TrainedReadout::new(&network, readout, from)?;
        Ok(Checkpoint {
            network,
            readout: Some(readout),
            training: Some(TrainingState { step, task }),
        })
    }

    /// The network and its readout as a [`Model`] (to train further, or to run with
    /// [`Model::run`]); a checkpoint without a readout ([`Network::save`]'s) is an error.
    pub fn into_model(self) -> Result<Model> {
        let Some(r) = self.readout else {
            return Err(Error::Invalid(format!(
                "the checkpoint of `{}` holds a network without a readout (saved by `Network::save`); `Model::new` adds one",
                self.network.architecture().name()
            )));
        };
        Model::with_readout(self.network, r.readout, r.from)
    }
}

/// A readout together with the hidden units it reads: a training run may read out some regions
/// only, or the excitatory units (see [`ReadoutFrom`]); [`TrainedReadout::forward`] takes all
/// the rates `[..., H]` and picks those units.
#[derive(Clone, Debug)]
pub struct TrainedReadout {
    /// The linear map.
    pub readout: Readout,
    /// Which units it reads.
    pub from: ReadoutFrom,
    /// The units read, in order, as an index tensor; `None` for all of them.
    columns: Option<Tensor>,
    hidden: usize,
}

impl TrainedReadout {
    /// `readout` reading the units of `network` that `from` selects; its input size must match.
    pub fn new(network: &Network, readout: Readout, from: ReadoutFrom) -> Result<TrainedReadout> {
        let units = readout_units(network, &from)?;
        let n = units.as_ref().map_or(network.hidden_size(), Vec::len);
        if readout.hidden_size() != n {
            return Err(Error::Shape {
                what: "readout weight".to_owned(),
                expected: format!(
                    "[O, {n}] (the {n} units of `{}` it reads: {from:?})",
                    network.architecture().name()
                ),
                got: readout.weight.dims().to_vec(),
            });
        }
        let columns = units.map(|u| Tensor::from_vec(u, n, network.device())).transpose()?;
        Ok(TrainedReadout { readout, from, columns, hidden: network.hidden_size() })
    }

    /// A readout of every unit of a network of `hidden` units (an mRNNTorch `out_layer`).
    pub fn all(readout: Readout, hidden: usize) -> Result<TrainedReadout> {
        if readout.hidden_size() != hidden {
            return Err(Error::Shape {
                what: "readout weight".to_owned(),
                expected: format!("[O, {hidden}] (the network's {hidden} units)"),
                got: readout.weight.dims().to_vec(),
            });
        }
        Ok(TrainedReadout { readout, from: ReadoutFrom::All, columns: None, hidden })
    }

    /// Number of outputs.
    #[must_use]
    pub fn output_size(&self) -> usize {
        self.readout.output_size()
    }

    /// The output `[..., O]` for the rates `h` `[..., H]` of all the network's units.
    pub fn forward(&self, h: &Tensor) -> Result<Tensor> {
        let rank = h.rank();
        if rank == 0 || h.dims()[rank - 1] != self.hidden {
            return Err(Error::Shape {
                what: "readout input".to_owned(),
                expected: format!("[..., {}] (the rates of every unit)", self.hidden),
                got: h.dims().to_vec(),
            });
        }
        match &self.columns {
            Some(cols) => self.readout.forward(&h.index_select(cols, rank - 1)?),
            None => self.readout.forward(h),
        }
    }
}

/// The hidden units a readout reads, or `None` for all: the rule of the training checkpoint's
/// `train.readout_from` (the same as `train::Model`'s, which a test holds them to).
fn readout_units(network: &Network, from: &ReadoutFrom) -> Result<Option<Vec<u32>>> {
    let units: Vec<usize> = match from {
        ReadoutFrom::All => return Ok(None),
        ReadoutFrom::Regions(names) => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            network.hidden_units(&names)?
        }
        ReadoutFrom::Excitatory => network
            .architecture()
            .regions()
            .iter()
            .filter(|r| r.sign == Sign::Exc)
            .flat_map(mrnn_ir::Region::range)
            .collect(),
    };
    if units.is_empty() {
        return Err(Error::Invalid(format!("the readout would read no unit ({from:?})")));
    }
    Ok(Some(units.into_iter().map(|u| u as u32).collect()))
}

/// The architecture (hash checked, compiled by the same compiler as any config) and the seed
/// recorded in one of this crate's checkpoints.
fn architecture_from_metadata(
    meta: &HashMap<String, String>,
    source: &str,
) -> Result<(Architecture, u64)> {
    let bad = |message: String| Error::Checkpoint { path: source.to_owned(), message };
    let get = |key: &str| {
        meta.get(key).ok_or_else(|| {
            bad(format!(
                "no `{key}` in the metadata: not an mrnn checkpoint (an mRNNTorch state_dict is read with `import_mrnntorch`)"
            ))
        })
    };
    let format = get("format")?;
    if format != FORMAT {
        return Err(bad(format!("format `{format}`, expected `{FORMAT}`")));
    }
    let spec_text = get("spec")?;
    if sha256_hex(spec_text) != *get("spec_sha256")? {
        return Err(bad(
            "the architecture in the metadata does not match its SHA-256: the file is damaged"
                .into(),
        ));
    }
    let name = get("name")?;
    let seed: u64 =
        get("seed")?.parse().map_err(|e| bad(format!("bad seed in the metadata: {e}")))?;
    let file = format!("{name}.json");
    let spec = mrnn_ir::read_spec(spec_text, &file)?;
    let arch = mrnn_ir::compile_spec(&spec, &file, spec_text)?.architecture;
    Ok((arch, seed))
}

fn sha256_hex(text: &str) -> String {
    use std::fmt::Write as _;
    Sha256::digest(text.as_bytes()).iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub(crate) fn write_safetensors(
    path: &Path,
    tensors: Vec<(String, Tensor)>,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let bytes = safetensors::serialize(tensors, metadata).map_err(|e| Error::Checkpoint {
        path: path.display().to_string(),
        message: format!("cannot serialize: {e}"),
    })?;
    write_atomic(path, &bytes)
}
