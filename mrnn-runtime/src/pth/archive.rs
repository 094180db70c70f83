//! The `.pth` archive: finds `<name>/data.pkl` in `torch.save`'s zip, runs it through the bounded
//! [`pickle`] machine, checks every tensor against the storage entry it views, and only then
//! reads the storages (each once, never more bytes than its entry holds) into tensors on the CPU.
//!
//! The order matters: a pickle's numbers are claims. Sizes, offsets and strides are checked
//! against the entries actually in the archive, and the memory of all the tensors against
//! [`memory::ensure_fits`], before the first byte of tensor data is read or allocated.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use candle_core::{DType, Device, Tensor};
use zip::ZipArchive;

use super::pickle::{self, TensorSpec, Value};
use crate::{Error, Result, memory};

/// The largest `data.pkl` read: a state dict's pickle has ~120 bytes per tensor, so this is
/// four times what the pickle machine's work limit admits.
const MAX_PICKLE_BYTES: u64 = 16 << 20;

/// The longest tensor key accepted (with the prefixes of nested dicts).
const MAX_KEY: usize = 1024;

/// How a torch storage type's elements become a candle dtype's.
#[derive(Clone, Copy, Debug)]
struct Element {
    dtype: DType,
    /// Bytes per element in the file.
    size: usize,
    conversion: Conversion,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Conversion {
    /// The same bits (in the file's byte order).
    Same,
    /// `bool` to `u8`: 0 or 1.
    Bool,
    /// `i8` to `i16` (candle has no `i8`), value for value.
    WidenI8,
}

/// The storage types read, as candle's reader converts them, plus `Int`, `Short`, `Char` and
/// `Bool`, which it refuses.
const SUPPORTED: &str = "Float (f32), Double (f64), Half (f16), BFloat16 (bf16), Long (i64), \
                         Int (i32), Short (i16), Char (i8, read as i16), Byte (u8), Bool (as u8)";

fn element(type_name: &str) -> Option<Element> {
    let (dtype, size, conversion) = match type_name {
        "FloatStorage" => (DType::F32, 4, Conversion::Same),
        "DoubleStorage" => (DType::F64, 8, Conversion::Same),
        "HalfStorage" => (DType::F16, 2, Conversion::Same),
        "BFloat16Storage" => (DType::BF16, 2, Conversion::Same),
        "LongStorage" => (DType::I64, 8, Conversion::Same),
        "IntStorage" => (DType::I32, 4, Conversion::Same),
        "ShortStorage" => (DType::I16, 2, Conversion::Same),
        "CharStorage" => (DType::I16, 1, Conversion::WidenI8),
        "ByteStorage" => (DType::U8, 1, Conversion::Same),
        "BoolStorage" => (DType::U8, 1, Conversion::Bool),
        _ => return None,
    };
    Some(Element { dtype, size, conversion })
}

/// A tensor checked against its storage, ready to read.
#[derive(Debug)]
struct Plan {
    name: String,
    element: Element,
    /// The storage's archive entry.
    entry: usize,
    dims: Vec<usize>,
    /// In elements.
    strides: Vec<usize>,
    /// In elements.
    offset: usize,
    /// The storage's length in elements.
    storage_numel: usize,
    /// Bytes of the tensor once built.
    bytes: u64,
}

/// Reads the tensors of the `torch.save` zip at `path`; `source` names it in messages.
pub(crate) fn read(path: &Path, source: &str) -> Result<Vec<(String, Tensor)>> {
    let fail = |message: String| Error::Checkpoint { path: source.to_owned(), message };
    let file = File::open(path).map_err(|e| Error::Io { path: source.to_owned(), source: e })?;
    let mut zip = ZipArchive::new(BufReader::new(file))
        .map_err(|e| fail(format!("not a readable zip archive (truncated or damaged?): {e}")))?;
    if zip.has_duplicate_names() {
        return Err(fail("the zip archive holds two entries of the same name".into()));
    }
    let prefix = data_pkl_prefix(&zip).map_err(fail)?;
    let native_order = byte_order(&mut zip, &prefix).map_err(fail)?;

    let pkl = read_entry(&mut zip, &format!("{prefix}data.pkl"), MAX_PICKLE_BYTES).map_err(fail)?;
    let root = pickle::load(&pkl).map_err(|e| fail(format!("{prefix}data.pkl: {e}")))?;
    drop(pkl);
    let specs = tensors_of(&root).map_err(fail)?;

    let plans = specs
        .into_iter()
        .map(|(name, spec)| {
            plan(&zip, &prefix, &name, &spec)
                .map_err(|m| fail(format!("tensor `{}`: {m}", shown(name.as_bytes()))))
        })
        .collect::<Result<Vec<Plan>>>()?;
    // All the tensors, plus one storage and one gathered copy at a time.
    let largest_storage = plans.iter().map(storage_bytes).max().unwrap_or(0);
    let largest_tensor = plans.iter().map(|p| p.bytes).max().unwrap_or(0);
    let total = plans
        .iter()
        .fold(0u64, |n, p| n.saturating_add(p.bytes))
        .saturating_add(largest_storage)
        .saturating_add(largest_tensor);
    let what = pickle::count(plans.len(), "tensor", "tensors");
    memory::ensure_fits(format!("loading the {what} of {source}"), total)?;

    // Each storage is read once, for all the tensors that view it (tied weights, slices).
    let mut by_entry: BTreeMap<usize, Vec<&Plan>> = BTreeMap::new();
    for p in &plans {
        by_entry.entry(p.entry).or_default().push(p);
    }
    let mut tensors = Vec::with_capacity(plans.len());
    for (entry, views) in by_entry {
        let expected = storage_bytes(views[0]);
        let bytes = read_storage(&mut zip, entry, expected)
            .map_err(|m| fail(format!("tensor `{}`: {m}", shown(views[0].name.as_bytes()))))?;
        for p in views {
            tensors.push((p.name.clone(), build(p, &bytes, native_order)?));
        }
    }
    Ok(tensors)
}

/// The `<name>/` that `torch.save` put before `data.pkl` (exactly one such entry).
fn data_pkl_prefix<R: Read + std::io::Seek>(
    zip: &ZipArchive<R>,
) -> std::result::Result<String, String> {
    let mut found = Vec::new();
    for name in zip.file_names_raw() {
        let Some(prefix) = name.strip_suffix(b"data.pkl") else { continue };
        // `<name>/` with a printable UTF-8 name (it goes into messages), or nothing.
        let simple = prefix.is_empty()
            || (prefix.ends_with(b"/") && !prefix[..prefix.len() - 1].contains(&b'/'));
        match std::str::from_utf8(prefix) {
            Ok(prefix) if simple && !prefix.chars().any(char::is_control) => {
                found.push(prefix.to_owned());
            }
            _ => {}
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => {
            let names: Vec<String> = zip.file_names_raw().take(8).map(shown).collect();
            let more = if zip.len() > 8 {
                format!(", ... ({} entries)", zip.len())
            } else {
                String::new()
            };
            Err(format!(
                "no `<name>/data.pkl` in the zip archive, so not a file from torch.save (entries: {}{more})",
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            ))
        }
        n => Err(format!(
            "{n} `data.pkl` entries in the zip archive ({}): torch.save writes one",
            found.iter().take(4).map(|p| format!("{p}data.pkl")).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// An archive entry's name for messages: escaped, shortened.
fn shown(name: &[u8]) -> String {
    String::from_utf8_lossy(&name[..name.len().min(80)])
        .chars()
        .flat_map(char::escape_debug)
        .collect()
}

/// Whether the storages are in this machine's byte order, from `<name>/byteorder` (`little` or
/// `big`; files of torch before 1.10 have none and are little-endian).
fn byte_order<R: Read + std::io::Seek>(
    zip: &mut ZipArchive<R>,
    prefix: &str,
) -> std::result::Result<bool, String> {
    let name = format!("{prefix}byteorder");
    let little = if zip.index_for_name(&name).is_some() {
        let text = read_entry(zip, &name, 16)?;
        match text.trim_ascii() {
            b"little" => true,
            b"big" => false,
            other => {
                return Err(format!("{name} says `{}`, expected `little` or `big`", shown(other)));
            }
        }
    } else {
        true
    };
    Ok(little == cfg!(target_endian = "little"))
}

/// The bytes of entry `name`, refused if it declares (or turns out to hold) more than `limit`.
fn read_entry<R: Read + std::io::Seek>(
    zip: &mut ZipArchive<R>,
    name: &str,
    limit: u64,
) -> std::result::Result<Vec<u8>, String> {
    let index = zip.index_for_name(name).ok_or_else(|| format!("no entry {name}"))?;
    // Checked before the entry is opened: a compressed entry (a zip bomb) may declare terabytes.
    let declared = zip.by_index_data(index).map_err(|e| format!("entry {name}: {e}"))?.size();
    if declared > limit {
        return Err(format!(
            "{name} declares {} ({declared} bytes) uncompressed, more than the {} this reader \
             accepts for it",
            memory::human(declared),
            memory::human(limit),
        ));
    }
    let mut file = zip.by_index(index).map_err(|e| format!("cannot open {name}: {e}"))?;
    let mut bytes = buffer(declared, name)?;
    // The declared size is a claim: never read past it, whatever the data says.
    (&mut file)
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    if bytes.len() as u64 != declared {
        return Err(format!("{name} holds {} bytes but declares {declared}", bytes.len()));
    }
    Ok(bytes)
}

/// The tensors of a state dict: the pickle's root must be a dict; string keys with tensor values
/// are taken, nested dicts are taken with dotted keys (`{'model': {'w': t}}` gives `model.w`,
/// as in a training checkpoint), everything else (numbers, lists, an optimizer's int-keyed state)
/// is skipped. A dict without any tensor is an error.
fn tensors_of(root: &Value) -> std::result::Result<Vec<(String, Rc<TensorSpec>)>, String> {
    let Value::Dict(map) = root else {
        return Err(format!(
            "the pickle holds {}, not a state dict (a dict of tensors)",
            root.kind()
        ));
    };
    let mut walk = Walk::default();
    walk.dict(map, "")?;
    if walk.found.is_empty() {
        let more = if walk.skipped > walk.examples.len() {
            format!(", ... ({} in all)", walk.skipped)
        } else {
            String::new()
        };
        return Err(format!(
            "no tensors in the pickle's dict (it holds: {}{more}); a state dict maps names to tensors",
            if walk.examples.is_empty() { "nothing".to_owned() } else { walk.examples.join(", ") }
        ));
    }
    Ok(walk.found.into_iter().collect())
}

/// The most tensors a file may hold: the pickle machine's work limit admits some 30,000 in a
/// tree of dicts; more can only come from dicts shared under many keys (a "billion laughs" of
/// dicts, whose paths multiply).
const MAX_TENSORS: usize = 1 << 16;

/// The most dict entries the walk visits: each costs the pickle machine at least three units of
/// work, so a tree of dicts has fewer than this; more can only come from shared dicts.
const MAX_ENTRIES: usize = pickle::MAX_WORK / 2;

/// The walk of [`tensors_of`] through nested dicts, with its bounds: a dict shared under several
/// keys is walked once per key (`{'model': sd, 'ema': sd}`), so the entries visited are counted.
#[derive(Default)]
struct Walk {
    found: BTreeMap<String, Rc<TensorSpec>>,
    /// The first few entries skipped, for the message when no tensor is found.
    examples: Vec<String>,
    skipped: usize,
    visited: usize,
}

impl Walk {
    fn dict(&mut self, map: &pickle::Map, prefix: &str) -> std::result::Result<(), String> {
        // The pickle machine bounds the nesting (pickle::MAX_DEPTH), so this recursion is too.
        for (key, value) in &map.entries {
            self.visited += 1;
            if self.visited > MAX_ENTRIES {
                return Err(format!(
                    "the pickle's nested dicts hold more than {MAX_ENTRIES} entries, counted once \
                     per key they are found under: not a state dict"
                ));
            }
            let Value::Str(key) = key else {
                self.skip(|| format!("a key that is {}", key.kind()));
                continue;
            };
            // Keys reach messages and terminals: torch's are short dotted identifiers.
            let len = prefix.len() + key.len();
            if len > MAX_KEY {
                if let Value::Tensor(_) = value {
                    let start: String = prefix.chars().chain(key.chars()).take(80).collect();
                    return Err(format!(
                        "tensor key `{}...` is {len} bytes long (at most {MAX_KEY})",
                        shown(start.as_bytes())
                    ));
                }
                self.skip(|| format!("a key of {len} bytes"));
                continue;
            }
            // Names are made only for tensors and dicts: skipped values cost no allocation.
            match value {
                Value::Tensor(spec) => {
                    let name = format!("{prefix}{key}");
                    if name.chars().any(char::is_control) {
                        return Err(format!(
                            "tensor key `{}` holds control characters",
                            shown(name.as_bytes())
                        ));
                    }
                    if self.found.len() >= MAX_TENSORS {
                        return Err(format!(
                            "more than {MAX_TENSORS} tensors (dicts shared under many keys?)"
                        ));
                    }
                    if self.found.insert(name.clone(), spec.clone()).is_some() {
                        return Err(format!("two tensors named `{}`", shown(name.as_bytes())));
                    }
                }
                Value::Dict(inner) => self.dict(inner, &format!("{prefix}{key}."))?,
                other => self.skip(|| {
                    format!("`{}` ({})", shown(format!("{prefix}{key}").as_bytes()), other.kind())
                }),
            }
        }
        Ok(())
    }

    fn skip(&mut self, what: impl FnOnce() -> String) {
        self.skipped += 1;
        if self.examples.len() < 8 {
            self.examples.push(what());
        }
    }
}

/// Checks a tensor against its storage entry: dtype, sizes, strides and offset, with checked
/// arithmetic (numbers from the file never overflow or wrap around).
fn plan<R: Read + std::io::Seek>(
    zip: &ZipArchive<R>,
    prefix: &str,
    name: &str,
    spec: &TensorSpec,
) -> std::result::Result<Plan, String> {
    let storage = &spec.storage;
    let element = element(&storage.type_name).ok_or_else(|| {
        format!("dtype torch.{} is not supported (supported: {SUPPORTED})", storage.type_name)
    })?;
    let entry_name = format!("{prefix}data/{}", storage.key);
    let entry = zip
        .index_for_name(&entry_name)
        .ok_or_else(|| format!("its storage `{entry_name}` is not in the archive"))?;
    let entry_size =
        zip.by_index_data(entry).map_err(|e| format!("storage `{entry_name}`: {e}"))?.size();
    let storage_numel = usize::try_from(storage.numel)
        .map_err(|_| format!("storage `{entry_name}` declares {} elements", storage.numel))?;
    let storage_bytes = storage_numel.checked_mul(element.size).map(|b| b as u64);
    if storage_bytes != Some(entry_size) {
        return Err(format!(
            "storage `{entry_name}` declares {storage_numel} elements of {} bytes ({}), but the \
             archive's entry holds {entry_size} bytes",
            element.size,
            storage_bytes.map_or_else(|| "more than fit in memory".to_owned(), memory::human),
        ));
    }
    if spec.size.len() != spec.stride.len() {
        return Err(format!("{} sizes but {} strides", spec.size.len(), spec.stride.len()));
    }
    let nonnegative = |v: i64, what: &str| {
        usize::try_from(v).map_err(|_| format!("{what} {v} is negative (torch.save writes none)"))
    };
    let dims = spec
        .size
        .iter()
        .map(|&d| nonnegative(d, "size"))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let strides = spec
        .stride
        .iter()
        .map(|&s| nonnegative(s, "stride"))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let offset = nonnegative(spec.offset, "storage offset")?;
    let shape = format!("shape {dims:?} (offset {offset}, strides {strides:?})");
    let numel = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("{shape} has more elements than a machine can address"))?;
    let out_size = element.dtype.size_in_bytes();
    let bytes = numel
        .checked_mul(out_size)
        .map(|b| b as u64)
        .ok_or_else(|| format!("{shape} has more bytes than a machine can address"))?;
    let reach = if numel == 0 {
        Some(offset)
    } else {
        dims.iter().zip(&strides).try_fold(offset, |end, (&d, &s)| {
            (d - 1).checked_mul(s).and_then(|step| end.checked_add(step))
        })
    };
    let holds = format!(
        "storage `{entry_name}`, which holds {storage_numel} elements ({})",
        memory::human(entry_size)
    );
    match reach {
        Some(last) if (numel == 0 && last <= storage_numel) || last < storage_numel => {}
        Some(last) => {
            return Err(format!(
                "{shape} needs {} and reaches element {last} of {holds}",
                memory::human(bytes)
            ));
        }
        None => {
            return Err(format!("{shape} reaches past any address, far beyond {holds}"));
        }
    }
    Ok(Plan { name: name.to_owned(), element, entry, dims, strides, offset, storage_numel, bytes })
}

fn storage_bytes(p: &Plan) -> u64 {
    (p.storage_numel * p.element.size) as u64
}

/// An empty buffer with room for `bytes`, or an error (never an abort) when the allocator says no,
/// though [`memory::ensure_fits`] expected room.
fn buffer(bytes: u64, name: &str) -> std::result::Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    usize::try_from(bytes)
        .ok()
        .and_then(|n| buf.try_reserve_exact(n).ok())
        .ok_or_else(|| format!("cannot allocate {} for {name}", memory::human(bytes)))?;
    Ok(buf)
}

/// The bytes of a storage entry, exactly `expected` of them (checked against the entry before).
fn read_storage<R: Read + std::io::Seek>(
    zip: &mut ZipArchive<R>,
    entry: usize,
    expected: u64,
) -> std::result::Result<Vec<u8>, String> {
    let mut file = zip.by_index(entry).map_err(|e| format!("cannot open its storage: {e}"))?;
    let name = shown(file.name_raw());
    let mut bytes = buffer(expected, &name)?;
    (&mut file)
        .take(expected + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read its storage `{name}`: {e}"))?;
    if bytes.len() as u64 != expected {
        return Err(format!(
            "its storage `{name}` holds {} bytes, not the {expected} it declares (truncated?)",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// The tensor `p` from its storage's bytes: its view gathered in row-major order, converted to
/// candle's dtype in this machine's byte order.
fn build(p: &Plan, storage: &[u8], native_order: bool) -> Result<Tensor> {
    let size = p.element.size;
    let numel: usize = p.dims.iter().product();
    if numel == 0 {
        return Ok(Tensor::zeros(p.dims.as_slice(), p.element.dtype, &Device::Cpu)?);
    }
    let contiguous = {
        let mut expected = 1;
        let mut ok = true;
        for (&d, &s) in p.dims.iter().zip(&p.strides).rev() {
            ok &= d == 1 || s == expected;
            expected *= d;
        }
        ok
    };
    let mut bytes: Cow<'_, [u8]> = if contiguous {
        let start = p.offset * size;
        Cow::Borrowed(&storage[start..start + numel * size])
    } else {
        Cow::Owned(gather(storage, p, size, numel))
    };
    if !native_order && size > 1 {
        for chunk in bytes.to_mut().chunks_exact_mut(size) {
            chunk.reverse();
        }
    }
    match p.element.conversion {
        Conversion::Same => {}
        Conversion::Bool => {
            for b in bytes.to_mut() {
                *b = u8::from(*b != 0);
            }
        }
        Conversion::WidenI8 => {
            bytes = Cow::Owned(
                bytes.iter().flat_map(|&b| i16::from(b.cast_signed()).to_ne_bytes()).collect(),
            );
        }
    }
    Ok(Tensor::from_raw_buffer(&bytes, p.element.dtype, &p.dims, &Device::Cpu)?)
}

/// The elements of a strided view, in row-major order. `plan` checked that every index lies in
/// the storage, and that the view is not empty.
fn gather(storage: &[u8], p: &Plan, size: usize, numel: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(numel * size);
    let mut index = vec![0usize; p.dims.len()];
    let mut pos = p.offset;
    loop {
        out.extend_from_slice(&storage[pos * size..(pos + 1) * size]);
        // The odometer: the last dim turns fastest. Positions step past the view's end only
        // transiently, so wrapping arithmetic is exact here.
        let mut d = p.dims.len();
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            index[d] += 1;
            pos = pos.wrapping_add(p.strides[d]);
            if index[d] < p.dims[d] {
                break;
            }
            pos = pos.wrapping_sub(p.strides[d].wrapping_mul(p.dims[d]));
            index[d] = 0;
        }
    }
}
