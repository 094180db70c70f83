//! Reading torch state dicts: `.pth` files (the zip format `torch.save` writes) and `.safetensors` files, into named tensors on the host.
//!
//! A `.pth` file is a zip archive: `<name>/data.pkl`, a Python pickle of the state dict whose
//! tensors refer to storages by persistent ids, and one entry `<name>/data/<key>` per storage
//! (plus `<name>/byteorder`, `<name>/version`). The pickle is read by a machine of our own
//! (the `pickle` submodule), not by candle's `candle_core::pickle`, nor by the `serde-pickle`
//! crate, because a weights file is untrusted input and neither is bounded: candle's reader
//! recurses without a limit (a list nested 1,000,000 deep overflows the stack, which no
//! `catch_unwind` can stop), deep-copies memo entries (a 400-byte "billion laughs" pickle runs
//! 30-50 s and then aborts on allocation), allocates whatever a shape claims (4 TiB), and panics
//! on several malformed inputs; `serde-pickle` has no limits on depth, memo or work either, and
//! knows nothing of torch's storages. Ours reads only the subset `torch.save` writes for a state
//! dict (protocol 2, `OrderedDict`, `_rebuild_tensor_v2`, `torch.*Storage` persistent ids), refuses
//! every other opcode and global by name, and bounds depth, stack, memo and work; the archive
//! reader then checks each tensor's dtype, shape, strides and offset against the storage entry
//! actually in the archive, and the memory of the whole against [`crate::memory`], before
//! reading or allocating any tensor data.

mod archive;
mod pickle;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::{Error, Result};

/// The tensors of a state dict by key, on the CPU, with the file they came from (for messages).
#[derive(Clone, Debug)]
pub struct StateDict {
    source: String,
    tensors: BTreeMap<String, Tensor>,
}

impl StateDict {
    /// Reads a `.pth` (`torch.save`'s zip, tensors saved on any device: they are mapped to the CPU) or a
    /// `.safetensors` file; the format is recognized from the file's first bytes.
    ///
    /// A `.pth` holds a dict of tensors (`model.state_dict()`). Nested dicts are read too, with
    /// dotted keys (a training checkpoint `{'model': sd, 'epoch': 3}` gives `model.<key>` for
    /// each key of `sd`); values that are not tensors are skipped. dtypes: f32, f64, f16, bf16,
    /// i64, i32, i16 and u8 as they are, i8 as i16, bool as u8 (0 or 1). Anything else, a
    /// malformed or hostile file, or one that would need more memory than
    /// [`crate::memory::limit`], is an error naming the problem; nothing in the file is run.
    pub fn read(path: impl AsRef<Path>) -> Result<StateDict> {
        let path = path.as_ref();
        let source = path.display().to_string();
        let io = |e: std::io::Error| Error::Io { path: source.clone(), source: e };
        // A FIFO would block the read of the header, a device such as `/dev/zero` never end.
        crate::output::regular_input(path)?;
        let mut head = [0u8; 9];
        let mut file = std::fs::File::open(path).map_err(io)?;
        let n = read_up_to(&mut file, &mut head).map_err(io)?;
        let bad = |message: String| Error::Checkpoint { path: source.clone(), message };
        let tensors: Vec<(String, Tensor)> = if head[..n].starts_with(b"PK") {
            archive::read(path, &source)?
        } else if n == 9 && head[8] == b'{' {
            let len = file.metadata().map_err(io)?.len();
            crate::memory::ensure_fits(format!("reading {source}"), len.saturating_mul(2))?;
            let bytes = std::fs::read(path).map_err(io)?;
            let map = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
                .map_err(|e| bad(format!("cannot read as safetensors: {e}")))?;
            map.into_iter().collect()
        } else if n >= 2 && head[0] == 0x80 && head[1] <= 5 {
            // A bare pickle: torch.save before torch 1.6 (or with _use_new_zipfile_serialization=False).
            // Tested after safetensors, whose first byte is the low byte of its header's length
            // and may well be 0x80.
            return Err(bad("a PyTorch file in the legacy (pre-1.6) format, not the zip archive \
                 torch.save writes today: load it in Python and save it again with torch.save"
                .into()));
        } else {
            return Err(bad("neither a PyTorch zip file (.pth) nor a safetensors file".into()));
        };
        let tensors = tensors
            .into_iter()
            .map(|(k, t)| Ok((k, t.contiguous()?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        Ok(StateDict { source, tensors })
    }

    /// A state dict from tensors held in memory; `source` names it in messages.
    pub fn from_tensors(
        source: impl Into<String>,
        tensors: impl IntoIterator<Item = (String, Tensor)>,
    ) -> StateDict {
        StateDict { source: source.into(), tensors: tensors.into_iter().collect() }
    }

    /// Where the tensors came from.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The tensors with their keys, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors.iter().map(|(k, t)| (k.as_str(), t))
    }

    /// The keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The tensor under `key`, if any.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.tensors.get(key)
    }

    /// The tensor under `key` with exactly the dims `shape`; a missing key names the keys the
    /// file has, a wrong shape is an [`Error::Shape`] naming the key and the file.
    pub fn require(&self, key: &str, shape: &[usize]) -> Result<Tensor> {
        let Some(t) = self.tensors.get(key) else {
            let keys: Vec<&str> = self.keys().collect();
            return Err(Error::Checkpoint {
                path: self.source.clone(),
                message: format!("no tensor `{key}` (the file has: {})", keys.join(", ")),
            });
        };
        if t.dims() != shape {
            return Err(Error::Shape {
                what: format!("`{key}` in {}", self.source),
                expected: format!("{shape:?}"),
                got: t.dims().to_vec(),
            });
        }
        Ok(t.clone())
    }
}

/// Reads as many bytes as the file has, up to `buf.len()`.
fn read_up_to(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file begins with its header's length, little endian: any first byte is
    /// possible, `0x80` (a pickle's PROTO opcode) included. Every such file reads as
    /// safetensors, whatever its header's length.
    #[test]
    fn safetensors_are_recognized_whatever_their_header_length() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0x80usize, 0x180, 0x280, 0x380, 0x480, 0x580, 0x8008] {
            let json = r#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
            let header = format!("{json:<len$}");
            let mut bytes = (len as u64).to_le_bytes().to_vec();
            bytes.extend(header.as_bytes());
            bytes.extend(2.5f32.to_le_bytes());
            let path = dir.path().join(format!("h{len}.safetensors"));
            std::fs::write(&path, bytes).unwrap();
            let sd = StateDict::read(&path).unwrap_or_else(|e| panic!("header of {len}: {e}"));
            let t = sd.require("t", &[1]).unwrap();
            assert_eq!(t.to_vec1::<f32>().unwrap(), [2.5]);
        }
    }
}
