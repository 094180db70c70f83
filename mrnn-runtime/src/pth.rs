//! Reading torch state dicts: `.pth` files (the zip format `torch.save` writes) and `.safetensors` files, into named tensors on the host.

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
    pub fn read(path: impl AsRef<Path>) -> Result<StateDict> {
        let path = path.as_ref();
        let source = path.display().to_string();
        let io = |e: std::io::Error| Error::Io { path: source.clone(), source: e };
        let mut head = [0u8; 9];
        let mut file = std::fs::File::open(path).map_err(io)?;
        let n = read_up_to(&mut file, &mut head).map_err(io)?;
        let bad = |message: String| Error::Checkpoint { path: source.clone(), message };
        let tensors: Vec<(String, Tensor)> = if head[..n].starts_with(b"PK") {
            // candle's pickle reader is not hardened against malformed files; a panic inside it
            // must come back as an error about this file, not end the program.
            let read = std::panic::catch_unwind(|| candle_core::pickle::read_all(path));
            match read {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => return Err(bad(format!("cannot read as a PyTorch file: {e}"))),
                Err(_) => {
                    return Err(bad("cannot read as a PyTorch file: malformed pickle data".into()));
                }
            }
        } else if n == 9 && head[8] == b'{' {
            let bytes = std::fs::read(path).map_err(io)?;
            let map = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
                .map_err(|e| bad(format!("cannot read as safetensors: {e}")))?;
            map.into_iter().collect()
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
