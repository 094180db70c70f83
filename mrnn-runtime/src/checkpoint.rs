//! Checkpoints: the network's own safetensors format (raw weights, masks, signs, bias, and the
//! architecture as a JSON config in the metadata), import of mRNNTorch state dicts and export
//! to them. Every write is atomic: a temporary file in the same directory, synced, then
//! renamed over the target, so a crash never destroys the previous checkpoint.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use mrnn_ir::{Architecture, Spec};
use sha2::{Digest, Sha256};

use crate::masks::{HostMatrix, Matrix};
use crate::network::{DTYPE, Parts};
use crate::pth::StateDict;
use crate::{Error, Network, Result, compat, masks};

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
    /// the metadata. Atomic: the previous file survives any failure.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
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

    /// Loads a checkpoint written by [`Network::save`] onto `device`, rebuilding the network from
    /// the architecture in its metadata.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Network> {
        let (sd, metadata) = read_safetensors(path.as_ref())?;
        Network::from_checkpoint(&sd, &metadata, "", device)
    }

    /// Rebuilds a network from checkpoint tensors (names under `prefix`) and metadata.
    pub(crate) fn from_checkpoint(
        sd: &StateDict,
        metadata: &HashMap<String, String>,
        prefix: &str,
        device: &Device,
    ) -> Result<Network> {
        let (arch, seed) = architecture_from_metadata(metadata, sd.source())?;
        let (rec, inp) = checked_masks(&arch, sd, prefix)?;
        let (h, i) = (arch.hidden_size(), arch.input_size());
        let bias = sd.require(&format!("{prefix}{BIAS}"), &[h])?;
        let parts = Parts {
            w_rec: sd.require(&format!("{prefix}{W_REC}"), &[h, h])?,
            w_inp: sd.require(&format!("{prefix}{W_INP}"), &[h, i])?,
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

    /// Loads the weights, masks and bias of a checkpoint into this network; refuses, naming what
    /// differs, a checkpoint saved from another architecture.
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let (sd, metadata) = read_safetensors(path)?;
        let (arch, seed) = architecture_from_metadata(&metadata, sd.source())?;
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
        let bias = sd.require(BIAS, &[self.hidden_size()])?.to_device(&self.device)?;
        self.check_base_firing(&bias)?;
        self.adopt(&sd, "")?;
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
        let values = t.to_dtype(DTYPE)?.flatten_all()?.to_vec1::<f32>()?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::Checkpoint {
                path: sd.source().to_owned(),
                message: format!("`{prefix}{key}` has NaN or infinite entries"),
            });
        }
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

/// Whether `path` is one of this crate's checkpoints (a safetensors file whose metadata names
/// [`FORMAT`]), as opposed to an mRNNTorch state dict.
#[must_use]
pub fn is_checkpoint(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else { return false };
    safetensors::SafeTensors::read_metadata(&bytes)
        .ok()
        .and_then(|(_, header)| header.metadata().clone())
        .is_some_and(|m| m.get("format").is_some_and(|f| f == FORMAT))
}

/// Reads a safetensors file: its tensors (on the CPU) and its metadata.
pub(crate) fn read_safetensors(path: &Path) -> Result<(StateDict, HashMap<String, String>)> {
    let source = path.display().to_string();
    let bad = |message: String| Error::Checkpoint { path: source.clone(), message };
    let bytes = std::fs::read(path).map_err(|e| Error::Io { path: source.clone(), source: e })?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let map = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| bad(e.to_string()))?;
    Ok((StateDict::from_tensors(source.clone(), map), metadata))
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

/// `path` with `.tmp` appended, in the same directory (so that the rename stays on one
/// filesystem and is atomic).
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, synced to disk, renamed over
/// `path`. On failure `path` is untouched and the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        // Persist the rename itself; not every platform can open a directory, so best effort.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().map_err(|e| {
        if tmp.is_file() {
            let _ = std::fs::remove_file(&tmp);
        }
        Error::Io { path: path.display().to_string(), source: e }
    })
}
