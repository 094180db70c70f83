//! Malformed and hostile `.pth` files, built from bytes: a pickle writer for the opcodes torch.save
//! uses (and those it does not), a zip writer that can lie about sizes, and the table of cases
//! that `tests/pickle.rs` (the library) and `tests/faults/pth.rs` (the CLI) run.
#![allow(dead_code, unreachable_pub, reason = "each test binary uses a different subset")]

use std::path::PathBuf;

/// The real mRNNTorch checkpoint (saved on `cuda:0`).
pub fn reference_pth() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/reference/flip_flop_rnn_leaky.pth"
    ))
}

/// A pickle program, written opcode by opcode.
#[derive(Clone, Debug)]
pub struct Pickle(pub Vec<u8>);

impl Pickle {
    /// `PROTO 2`, as torch.save starts.
    pub fn new() -> Pickle {
        Pickle(vec![0x80, 2])
    }

    /// Raw opcodes and arguments.
    pub fn op(mut self, bytes: &[u8]) -> Pickle {
        self.0.extend_from_slice(bytes);
        self
    }

    /// The same bytes `n` times.
    pub fn repeat(mut self, bytes: &[u8], n: usize) -> Pickle {
        for _ in 0..n {
            self.0.extend_from_slice(bytes);
        }
        self
    }

    /// `GLOBAL module name`.
    pub fn global(self, module: &str, name: &str) -> Pickle {
        self.op(b"c").op(module.as_bytes()).op(b"\n").op(name.as_bytes()).op(b"\n")
    }

    /// `BINUNICODE`.
    pub fn str(self, s: &str) -> Pickle {
        let len = u32::try_from(s.len()).unwrap().to_le_bytes();
        self.op(b"X").op(&len).op(s.as_bytes())
    }

    /// An int, encoded as Python's pickler encodes it (`BININT1`, `BININT2`, `BININT` or `LONG1`).
    pub fn int(self, n: i64) -> Pickle {
        if let Ok(b) = u8::try_from(n) {
            self.op(&[b'K', b])
        } else if let Ok(h) = u16::try_from(n) {
            self.op(b"M").op(&h.to_le_bytes())
        } else if let Ok(i) = i32::try_from(n) {
            self.op(b"J").op(&i.to_le_bytes())
        } else {
            self.op(&[0x8a, 8]).op(&n.to_le_bytes())
        }
    }

    /// `MARK ints TUPLE`.
    pub fn ints(self, values: &[i64]) -> Pickle {
        values.iter().fold(self.op(b"("), |p, &v| p.int(v)).op(b"t")
    }

    /// `BINPUT id`.
    pub fn put(self, id: u8) -> Pickle {
        self.op(&[b'q', id])
    }

    /// `BINGET id`.
    pub fn get(self, id: u8) -> Pickle {
        self.op(&[b'h', id])
    }

    /// A tensor as torch.save writes it: `_rebuild_tensor_v2((storage pid), offset, size,
    /// stride, False, OrderedDict())`.
    pub fn tensor(self, t: &TensorDesc) -> Pickle {
        self.global("torch._utils", "_rebuild_tensor_v2")
            .op(b"((")
            .str("storage")
            .global("torch", t.dtype)
            .str(t.storage)
            .str("cuda:0")
            .int(t.numel)
            .op(b"tQ")
            .int(t.offset)
            .ints(&t.size)
            .ints(&t.stride)
            .op(&[0x89])
            .global("collections", "OrderedDict")
            .op(b")R")
            .op(b"tR")
    }

    /// `STOP`, and the bytes.
    pub fn stop(self) -> Vec<u8> {
        self.op(b".").0
    }
}

impl Default for Pickle {
    fn default() -> Pickle {
        Pickle::new()
    }
}

/// The arguments of one tensor in a state dict.
#[derive(Clone, Debug)]
pub struct TensorDesc {
    pub key: &'static str,
    /// The storage class: `FloatStorage`.
    pub dtype: &'static str,
    /// The storage's key (its entry is `archive/data/<key>`).
    pub storage: &'static str,
    /// The elements the storage declares.
    pub numel: i64,
    pub offset: i64,
    pub size: Vec<i64>,
    pub stride: Vec<i64>,
}

/// A [2, 3] f32 tensor `w` over storage `0` of 6 elements: a valid start for variations.
pub fn w() -> TensorDesc {
    TensorDesc {
        key: "w",
        dtype: "FloatStorage",
        storage: "0",
        numel: 6,
        offset: 0,
        size: vec![2, 3],
        stride: vec![3, 1],
    }
}

/// The pickle of `OrderedDict` of these tensors, as torch.save writes a state dict.
pub fn state_dict(tensors: &[TensorDesc]) -> Vec<u8> {
    let p = Pickle::new().global("collections", "OrderedDict").op(b")R").op(b"(");
    tensors.iter().fold(p, |p, t| p.str(t.key).tensor(t)).op(b"u").stop()
}

/// One entry of a zip archive.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub data: Vec<u8>,
    /// The uncompressed size the headers declare (the data's length unless set); above 4 GiB,
    /// a zip64 extra field declares it.
    pub declared: Option<u64>,
    /// 0 stored, 8 deflated.
    pub method: u16,
}

impl Entry {
    pub fn new(name: &str, data: &[u8]) -> Entry {
        Entry { name: name.to_owned(), data: data.to_vec(), declared: None, method: 0 }
    }

    pub fn declaring(mut self, size: u64) -> Entry {
        self.declared = Some(size);
        self
    }

    pub fn method(mut self, method: u16) -> Entry {
        self.method = method;
        self
    }
}

/// A zip archive of `entries` (headers say what the entries say, true or not).
pub fn zip(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let offset = u32::try_from(out.len()).unwrap();
        let crc = crc32(&e.data);
        let csize = u32::try_from(e.data.len()).unwrap();
        let declared = e.declared.unwrap_or(e.data.len() as u64);
        let (usize32, extra) = match u32::try_from(declared) {
            Ok(n) if n != u32::MAX || e.declared.is_some() => (n, Vec::new()),
            _ => {
                // zip64: the real size in an extra field (id 1), 0xFFFFFFFF in the header.
                let mut extra = vec![1, 0, 8, 0];
                extra.extend_from_slice(&declared.to_le_bytes());
                (u32::MAX, extra)
            }
        };
        let name = e.name.as_bytes();
        let common = |sig: u32, made_by: bool| {
            let mut h = sig.to_le_bytes().to_vec();
            if made_by {
                h.extend_from_slice(&45u16.to_le_bytes());
            }
            h.extend_from_slice(&45u16.to_le_bytes()); // version needed
            h.extend_from_slice(&0u16.to_le_bytes()); // flags
            h.extend_from_slice(&e.method.to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // time
            h.extend_from_slice(&0x21u16.to_le_bytes()); // date: 1980-01-01
            h.extend_from_slice(&crc.to_le_bytes());
            h.extend_from_slice(&csize.to_le_bytes());
            h.extend_from_slice(&usize32.to_le_bytes());
            h.extend_from_slice(&u16::try_from(name.len()).unwrap().to_le_bytes());
            h.extend_from_slice(&u16::try_from(extra.len()).unwrap().to_le_bytes());
            h
        };
        out.extend(common(0x0403_4b50, false));
        out.extend_from_slice(name);
        out.extend_from_slice(&extra);
        out.extend_from_slice(&e.data);
        central.extend(common(0x0201_4b50, true));
        central.extend_from_slice(&0u16.to_le_bytes()); // comment length
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name);
        central.extend_from_slice(&extra);
    }
    let cd_offset = u32::try_from(out.len()).unwrap();
    let cd_size = u32::try_from(central.len()).unwrap();
    let count = u16::try_from(entries.len()).unwrap();
    out.extend(central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]); // disks
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment length
    out
}

/// CRC-32 (IEEE), by a table of the 256 bytes' remainders.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    !data.iter().fold(!0u32, |crc, &b| (crc >> 8) ^ TABLE[((crc ^ u32::from(b)) & 0xff) as usize])
}

/// `f32` storage bytes 0, 1, 2, ... (little-endian).
pub fn f32_storage(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect()
}

/// A torch.save archive: `archive/data.pkl`, `archive/byteorder`, the storages, `archive/version`.
pub fn archive(pickle: &[u8], storages: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut entries =
        vec![Entry::new("archive/data.pkl", pickle), Entry::new("archive/byteorder", b"little")];
    for (key, data) in storages {
        entries.push(Entry::new(&format!("archive/data/{key}"), data));
    }
    entries.push(Entry::new("archive/version", b"3\n"));
    zip(&entries)
}

/// An archive of a state dict with these tensors over one f32 storage `0` of `n` elements.
pub fn one_storage(tensors: &[TensorDesc], n: usize) -> Vec<u8> {
    archive(&state_dict(tensors), &[("0", f32_storage(n))])
}

/// An archive around a raw pickle, with storage `0` of 6 f32.
pub fn with_pickle(pickle: &[u8]) -> Vec<u8> {
    archive(pickle, &[("0", f32_storage(6))])
}

/// A hostile or malformed file, and what the error about it must say.
#[derive(Debug)]
pub struct Case {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    /// Each must appear in the error message (ignoring ASCII case).
    pub needles: &'static [&'static str],
}

fn case(name: &'static str, bytes: Vec<u8>, needles: &'static [&'static str]) -> Case {
    Case { name, bytes, needles }
}

/// `w()` with a change.
fn w_with(change: impl FnOnce(&mut TensorDesc)) -> TensorDesc {
    let mut t = w();
    change(&mut t);
    t
}

/// Every hostile case. Each must end in an error naming the problem, fast, without a panic.
#[allow(clippy::too_many_lines, reason = "a table of cases")]
pub fn cases() -> Vec<Case> {
    let million = 1_000_000;
    let real = std::fs::read(reference_pth()).expect("the reference checkpoint");
    let laughs = |levels: u8| {
        // Level 0: ten ints; level i: ten references to level i-1, memoized after filling.
        let mut p = Pickle::new().op(b"](").repeat(b"K\x01", 10).op(b"e").put(0);
        for i in 1..levels {
            p = p.op(b"](").repeat(&[b'h', i - 1], 10).op(b"e").put(i);
        }
        p.op(b"}").str("laughs").get(levels - 1).op(b"s").stop()
    };
    // Dicts shared under ten keys each, eight levels deep: 10^8 paths to one tensor (or int).
    let shared_dicts = |leaf: &dyn Fn(Pickle) -> Pickle| {
        let mut p = leaf(Pickle::new().op(b"}").str("leaf")).op(b"s").put(0);
        for level in 1..=8u8 {
            p = p.op(b"}(");
            for k in 0..10 {
                p = p.str(&k.to_string()).get(level - 1);
            }
            p = p.op(b"u").put(level);
        }
        p.stop()
    };
    let mut memo_flood = Pickle::new().op(b"N");
    for id in 0..(1u32 << 20) + 10 {
        memo_flood = memo_flood.op(b"r").op(&id.to_le_bytes());
    }
    let sd = state_dict(&[w()]);
    vec![
        case(
            "deep_list",
            with_pickle(&Pickle::new().repeat(b"]", million).repeat(b"a", million).stop()),
            &["values on the pickle's stack"],
        ),
        case(
            "deep_tuple",
            with_pickle(&Pickle::new().op(b"N").repeat(&[0x85], million).stop()),
            &["nested more than 64 deep"],
        ),
        case(
            "deep_dict",
            with_pickle(
                &Pickle::new().repeat(b"}X\x01\x00\x00\x00k", million).repeat(b"s", million).stop(),
            ),
            &["values on the pickle's stack"],
        ),
        case(
            "deep_marks",
            with_pickle(&Pickle::new().repeat(b"(", million).stop()),
            &["open MARKs"],
        ),
        case(
            "billion_laughs",
            with_pickle(&laughs(10)),
            &["no tensors", "`laughs` (a list of 10 items)"],
        ),
        case("billion_laughs_30_levels", with_pickle(&laughs(30)), &["no tensors", "laughs"]),
        case(
            "copy_on_write_bomb",
            with_pickle(
                &Pickle::new()
                    .op(b"](")
                    .repeat(b"N", 1000)
                    .op(b"e")
                    .put(0)
                    .repeat(b"h\x00Na", 10_000)
                    .stop(),
            ),
            &["steps", "billion laughs"],
        ),
        case(
            "shared_dicts_of_a_tensor",
            with_pickle(&shared_dicts(&|p| p.tensor(&w()))),
            &["more than 65536 tensors"],
        ),
        case(
            "shared_dicts_of_an_int",
            with_pickle(&shared_dicts(&|p| p.int(1))),
            &["nested dicts hold more than 1048576 entries"],
        ),
        case("memo_flood", with_pickle(&memo_flood.stop()), &["steps"]),
        case(
            "memo_id_far_away",
            with_pickle(&Pickle::new().op(b"Nr\xff\xff\xff\xff").stop()),
            &["memo id 4294967295 is beyond"],
        ),
        case(
            "shape_4_tib",
            one_storage(
                &[w_with(|t| {
                    t.size = vec![1 << 20, 1 << 20];
                    t.stride = vec![1 << 20, 1];
                })],
                6,
            ),
            &["tensor `w`", "4.0 TiB", "holds 6 elements"],
        ),
        case(
            "storage_smaller_than_shape",
            one_storage(
                &[w_with(|t| {
                    t.size = vec![3, 3];
                })],
                6,
            ),
            &["tensor `w`", "reaches element 8", "holds 6 elements"],
        ),
        case(
            "offset_past_storage",
            one_storage(&[w_with(|t| t.offset = 1)], 6),
            &["tensor `w`", "reaches element 6"],
        ),
        case(
            "negative_stride",
            one_storage(&[w_with(|t| t.stride = vec![-3, 1])], 6),
            &["tensor `w`", "stride -3 is negative"],
        ),
        case(
            "negative_size",
            one_storage(&[w_with(|t| t.size = vec![-2, 3])], 6),
            &["tensor `w`", "size -2 is negative"],
        ),
        case(
            "negative_offset",
            one_storage(&[w_with(|t| t.offset = -1)], 6),
            &["tensor `w`", "storage offset -1 is negative"],
        ),
        case(
            "overflowing_stride",
            one_storage(
                &[w_with(|t| {
                    t.size = vec![3, 3];
                    t.stride = vec![i64::MAX, 1];
                })],
                6,
            ),
            &["tensor `w`", "reaches past any address"],
        ),
        case(
            "overflowing_shape",
            one_storage(
                &[w_with(|t| {
                    t.size = vec![1 << 40, 1 << 40, 1 << 40];
                    t.stride = vec![0, 0, 0];
                })],
                6,
            ),
            &["tensor `w`", "more elements than a machine can address"],
        ),
        case(
            "overflowing_offset",
            one_storage(&[w_with(|t| t.offset = i64::MAX)], 6),
            &["tensor `w`", "reaches element 9223372036854775812"],
        ),
        case(
            "sizes_and_strides_differ",
            one_storage(&[w_with(|t| t.stride = vec![1])], 6),
            &["tensor `w`", "2 sizes but 1 strides"],
        ),
        case(
            "storage_numel_mismatch",
            one_storage(&[w_with(|t| t.numel = 7)], 6),
            &["declares 7 elements", "holds 24 bytes"],
        ),
        case(
            "negative_storage_numel",
            one_storage(&[w_with(|t| t.numel = -6)], 6),
            &["declares -6 elements"],
        ),
        case("truncated_archive", real[..real.len() / 2].to_vec(), &["not a readable zip archive"]),
        case(
            "truncated_end_of_archive",
            real[..real.len() - 10].to_vec(),
            &["not a readable zip archive"],
        ),
        case(
            "not_a_zip",
            b"PK\x03\x04 definitely not a zip archive".to_vec(),
            &["not a readable zip archive"],
        ),
        case(
            "legacy_format",
            Pickle::new().op(&[0x8a, 10]).op(b"l\xfc\x9cF\xf9 j\xa8P\x19.").0,
            &["legacy"],
        ),
        case("garbage", b"not a checkpoint at all".to_vec(), &["neither a PyTorch zip file"]),
        case(
            "zip_without_data_pkl",
            zip(&[
                Entry::new("archive/data/0", &f32_storage(6)),
                Entry::new("archive/version", b"3\n"),
            ]),
            &["no `<name>/data.pkl`", "archive/data/0"],
        ),
        case(
            "two_data_pkl",
            zip(&[Entry::new("a/data.pkl", &sd), Entry::new("b/data.pkl", &sd)]),
            &["2 `data.pkl` entries"],
        ),
        case(
            "duplicate_entries",
            zip(&[Entry::new("archive/data.pkl", &sd), Entry::new("archive/data.pkl", &sd)]),
            &["two entries of the same name"],
        ),
        case(
            "missing_storage",
            archive(&state_dict(&[w_with(|t| t.storage = "1")]), &[("0", f32_storage(6))]),
            &["tensor `w`", "archive/data/1", "not in the archive"],
        ),
        case(
            "unknown_dtype",
            one_storage(&[w_with(|t| t.dtype = "ComplexFloatStorage")], 6),
            &["tensor `w`", "torch.ComplexFloatStorage is not supported"],
        ),
        case(
            "pickle_declares_4_gib",
            zip(&[
                Entry::new("archive/data.pkl", &sd).declaring(u64::from(u32::MAX) - 1),
                Entry::new("archive/data/0", &f32_storage(6)),
            ]),
            &["archive/data.pkl declares 4.0 GiB"],
        ),
        case(
            "storage_declares_4_tib",
            zip(&[
                Entry::new(
                    "archive/data.pkl",
                    &state_dict(&[w_with(|t| {
                        t.numel = 1 << 40;
                        t.size = vec![1 << 40];
                        t.stride = vec![1];
                    })]),
                ),
                Entry::new("archive/data/0", &f32_storage(6)).declaring(4 << 40),
            ]),
            &["needs about", "TiB", "MRNN_MEMORY_LIMIT"],
        ),
        case(
            "storage_declares_more_than_its_id",
            zip(&[
                Entry::new("archive/data.pkl", &sd),
                Entry::new("archive/data/0", &f32_storage(6)).declaring(4 << 40),
            ]),
            &["declares 6 elements", "4398046511104 bytes"],
        ),
        case(
            "storage_shorter_than_declared",
            zip(&[
                Entry::new("archive/data.pkl", &sd),
                Entry::new("archive/data/0", &f32_storage(6)).declaring(24).truncated_to(8),
            ]),
            &["tensor `w`", "storage"],
        ),
        case(
            "compressed_pickle",
            zip(&[
                Entry::new("archive/data.pkl", &sd).method(8),
                Entry::new("archive/data/0", &f32_storage(6)),
            ]),
            &["archive/data.pkl", "compression"],
        ),
        case(
            "pickle_truncated",
            with_pickle(&sd[..sd.len() / 2]),
            &["archive/data.pkl", "ends inside"],
        ),
        case("pickle_without_stop", with_pickle(&sd[..sd.len() - 1]), &["without a STOP"]),
        case(
            "huge_string_length",
            with_pickle(&Pickle::new().op(b"X\xff\xff\xff\xff").stop()),
            &["ends inside BINUNICODE"],
        ),
        case(
            "bad_byteorder",
            zip(&[
                Entry::new("archive/data.pkl", &sd),
                Entry::new("archive/byteorder", b"middle"),
                Entry::new("archive/data/0", &f32_storage(6)),
            ]),
            &["byteorder says `middle`"],
        ),
        case(
            "list_of_tensors",
            with_pickle(&Pickle::new().op(b"](").tensor(&w()).op(b"e").stop()),
            &["the pickle holds a list of 1 item, not a state dict"],
        ),
        case(
            "dict_of_ints",
            with_pickle(&Pickle::new().op(b"}").str("epoch").int(3).op(b"s").stop()),
            &["no tensors", "`epoch` (the int 3)"],
        ),
        case(
            "tensor_call_with_bad_arguments",
            with_pickle(
                &Pickle::new()
                    .op(b"}")
                    .str("w")
                    .global("torch._utils", "_rebuild_tensor_v2")
                    .op(b"(K\x01tRs")
                    .stop(),
            ),
            &["_rebuild_tensor_v2 takes", "the int 1"],
        ),
        case(
            "bad_persistent_id",
            with_pickle(
                &Pickle::new()
                    .op(b"(")
                    .str("storage")
                    .str("FloatStorage")
                    .str("0")
                    .str("cpu")
                    .int(6)
                    .op(b"tQ.")
                    .0,
            ),
            &["persistent id must be"],
        ),
        case(
            "tensor_key_with_terminal_escapes",
            one_storage(&[w_with(|t| t.key = "w\u{1b}[2J\u{1b}[31m")], 6),
            &["tensor key `w\\u{1b}[2J", "holds control characters"],
        ),
        case(
            "tensor_key_of_a_megabyte",
            with_pickle(
                &Pickle::new().op(b"}").str(&"k".repeat(1 << 20)).tensor(&w()).op(b"s").stop(),
            ),
            &["is 1048576 bytes long (at most 1024)"],
        ),
        case(
            "storage_key_with_a_path",
            one_storage(&[w_with(|t| t.storage = "../../etc/passwd")], 6),
            &["storage key `../../etc/passwd` is not a simple name"],
        ),
        case(
            "os_system",
            with_pickle(
                &Pickle::new().global("posix", "system").str("echo pwned").op(b"\x85R").stop(),
            ),
            &["global `posix.system` is not allowed"],
        ),
        case(
            "builtins_eval_by_stack_global",
            with_pickle(
                &Pickle(vec![0x80, 4])
                    .op(b"\x8c\x08builtins\x8c\x04eval\x93")
                    .op(b"\x8c\x011\x85R")
                    .stop(),
            ),
            &["global `builtins.eval` is not allowed"],
        ),
        case(
            "torchscript_module",
            with_pickle(&Pickle::new().global("__torch__", "Module").op(b")R").stop()),
            &["`__torch__.Module`", "TorchScript"],
        ),
        case(
            "newobj",
            with_pickle(&Pickle::new().global("collections", "OrderedDict").op(b")\x81").stop()),
            &["opcode NEWOBJ (0x81)"],
        ),
        case(
            "inst",
            with_pickle(&Pickle::new().op(b"(ios\nsystem\n").stop()),
            &["opcode INST (0x69)"],
        ),
        case(
            "unknown_opcode",
            with_pickle(&Pickle::new().op(b"\xff").stop()),
            &["unknown opcode 0xff"],
        ),
        case("protocol_99", with_pickle(&[0x80, 99, b'N', b'.']), &["pickle protocol 99"]),
    ]
}

impl Entry {
    /// Keeps only the first `n` bytes of the data (the headers still declare the rest).
    pub fn truncated_to(mut self, n: usize) -> Entry {
        let declared = self.declared.unwrap_or(self.data.len() as u64);
        self.data.truncate(n);
        self.declared = Some(declared);
        self
    }
}
