//! The `.pth` reader: mRNNTorch's real checkpoints read as candle reads them; every dtype, view
//! and pickle protocol of fixtures written by Python's own pickler; and hostile files (deep nesting,
//! billion laughs, lying shapes and sizes, zip bombs, code execution) refused fast, with an error
//! naming the problem.

mod hostile_pth;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hostile_pth::{Pickle, TensorDesc, cases, one_storage, w, with_pickle};
use mrnn_runtime::{DType, Error, StateDict, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pth").join(name)
}

fn reference(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference")).join(name)
}

/// Writes `bytes` to a fresh file and reads it, timing the read.
fn read_bytes(dir: &Path, name: &str, bytes: &[u8]) -> (mrnn_runtime::Result<StateDict>, Duration) {
    let path = dir.join(format!("{name}.pth"));
    std::fs::write(&path, bytes).unwrap();
    let started = Instant::now();
    let read = StateDict::read(&path);
    (read, started.elapsed())
}

/// A tensor's values, exactly: integers as integers, floats by their f64 bits (every dtype read
/// here converts to f64 without rounding).
#[derive(Debug, PartialEq)]
enum Exact {
    Int(i64),
    Float(u64),
}

fn exact(t: &Tensor) -> Vec<Exact> {
    let t = t.flatten_all().unwrap();
    let ints = |v: Vec<i64>| v.into_iter().map(Exact::Int).collect();
    match t.dtype() {
        DType::U8 => ints(t.to_vec1::<u8>().unwrap().into_iter().map(i64::from).collect()),
        DType::I16 => ints(t.to_vec1::<i16>().unwrap().into_iter().map(i64::from).collect()),
        DType::I32 => ints(t.to_vec1::<i32>().unwrap().into_iter().map(i64::from).collect()),
        DType::I64 => ints(t.to_vec1::<i64>().unwrap()),
        _ => {
            let v = t.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
            v.into_iter().map(|x| Exact::Float(canonical(x))).collect()
        }
    }
}

/// The bits of `x`, with every NaN the same.
fn canonical(x: f64) -> u64 {
    if x.is_nan() { f64::NAN.to_bits() } else { x.to_bits() }
}

#[test]
fn reads_the_reference_checkpoints_as_candle_does() {
    for file in ["flip_flop_rnn_leaky.pth", "flip_flop_rnn_elman.pth"] {
        let path = reference(file);
        let ours = StateDict::read(&path).unwrap();
        let mut theirs = candle_core::pickle::read_all(&path).unwrap();
        theirs.sort_by(|a, b| a.0.cmp(&b.0));
        let keys: Vec<&str> = ours.keys().collect();
        let their_keys: Vec<&str> = theirs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, their_keys, "{file}");
        assert!(keys.contains(&"rnn.W_rec") && keys.contains(&"out_layer.weight"), "{keys:?}");
        for (key, theirs) in &theirs {
            let ours = ours.get(key).unwrap();
            assert_eq!(ours.dims(), theirs.dims(), "{file} {key}");
            assert_eq!(ours.dtype(), theirs.dtype(), "{file} {key}");
            assert_eq!(exact(ours), exact(theirs), "{file} {key}");
        }
    }
}

#[test]
fn reads_every_dtype_view_and_protocol_of_the_fixtures() {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap();
    let expected = expected.as_object().unwrap();
    for file in ["state_p2.pth", "state_p2_big.pth", "state_p4.pth"] {
        let sd = StateDict::read(fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut keys: Vec<&str> = expected.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(sd.keys().collect::<Vec<_>>(), keys, "{file}: the tensors, and only they");
        for (key, want) in expected {
            let t = sd.get(key).unwrap();
            assert_eq!(
                format!("{:?}", t.dtype()).to_lowercase(),
                want["dtype"].as_str().unwrap(),
                "{file} {key}"
            );
            let shape: Vec<usize> = want["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(t.dims(), shape.as_slice(), "{file} {key}");
            let want: Vec<Exact> = want["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| match v {
                    serde_json::Value::String(f) => Exact::Float(canonical(f.parse().unwrap())),
                    n => Exact::Int(n.as_i64().unwrap()),
                })
                .collect();
            assert_eq!(exact(t), want, "{file} {key}");
        }
    }
}

fn floats(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn builder_files_that_torch_could_write_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let (sd, _) = read_bytes(dir.path(), "w", &one_storage(&[w()], 6));
    let sd = sd.unwrap();
    assert_eq!(floats(sd.get("w").unwrap()), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    // Two tensors over one storage: the transpose and a row.
    let t = TensorDesc { key: "t", size: vec![3, 2], stride: vec![1, 3], ..w() };
    let row = TensorDesc { key: "row", offset: 3, size: vec![3], stride: vec![1], ..w() };
    let (sd, _) = read_bytes(dir.path(), "views", &one_storage(&[t, row], 6));
    let sd = sd.unwrap();
    assert_eq!(floats(sd.get("t").unwrap()), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    assert_eq!(floats(sd.get("row").unwrap()), [3.0, 4.0, 5.0]);
    // A tensor saved as an nn.Parameter.
    let param = Pickle::new()
        .op(b"}")
        .str("p")
        .global("torch._utils", "_rebuild_parameter")
        .op(b"(")
        .tensor(&w())
        .op(&[0x88])
        .global("collections", "OrderedDict")
        .op(b")RtRs")
        .stop();
    let (sd, _) = read_bytes(dir.path(), "param", &with_pickle(&param));
    assert_eq!(sd.unwrap().get("p").unwrap().dims(), &[2, 3]);
}

#[test]
fn every_hostile_file_is_refused_fast_with_an_error_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let mut report = Vec::new();
    for case in cases() {
        let (read, took) = read_bytes(dir.path(), case.name, &case.bytes);
        let err = match read {
            Ok(sd) => panic!("{}: read as {:?}", case.name, sd.keys().collect::<Vec<_>>()),
            Err(e) => e,
        };
        assert!(
            matches!(err, Error::Checkpoint { .. } | Error::TooLarge { .. }),
            "{}: {err:?}",
            case.name
        );
        let message = err.to_string();
        for needle in case.needles {
            assert!(
                message.to_lowercase().contains(&needle.to_lowercase()),
                "{}: `{message}` lacks `{needle}`",
                case.name
            );
        }
        assert!(message.len() < 1000, "{}: a long message: {message}", case.name);
        report.push(format!("{:>8.1} ms  {}: {message}", took.as_secs_f64() * 1e3, case.name));
        // Generous for a loaded 2-core machine; each takes milliseconds.
        assert!(took < Duration::from_secs(1), "{}: took {took:?}", case.name);
    }
    println!("{}", report.join("\n"));
}

#[test]
fn every_cut_of_a_real_checkpoint_is_an_error() {
    let real = std::fs::read(reference("flip_flop_rnn_leaky.pth")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for cut in (0..real.len()).step_by(97) {
        let (read, _) = read_bytes(dir.path(), "cut", &real[..cut]);
        assert!(read.is_err(), "cut at {cut} of {}", real.len());
    }
}

#[test]
fn damaged_pickles_of_a_real_checkpoint_never_panic() {
    // Each byte of the real data.pkl changed in turn, then re-archived (with a correct CRC, so
    // the change reaches the pickle machine): every result is a state dict or an error.
    let file = std::fs::File::open(reference("flip_flop_rnn_leaky.pth")).unwrap();
    let mut zip = zip::ZipArchive::new(file).unwrap();
    let mut entry = |name: &str| {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut zip.by_name(name).unwrap(), &mut bytes).unwrap();
        bytes
    };
    let pkl = entry("flip_flop_rnn_leaky/data.pkl");
    let keys: Vec<String> = (0..8).map(|i| i.to_string()).collect();
    let storages: Vec<(&str, Vec<u8>)> = keys
        .iter()
        .map(|k| (k.as_str(), entry(&format!("flip_flop_rnn_leaky/data/{k}"))))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (mut read, mut refused) = (0, 0);
    for at in 0..pkl.len() {
        // One change per byte, of three kinds in turn: the low bit, the high bit, all bits.
        let mut bad = pkl.clone();
        bad[at] ^= [0x01, 0x80, 0xff][at % 3];
        let (result, _) = read_bytes(dir.path(), "damaged", &hostile_pth::archive(&bad, &storages));
        if result.is_ok() {
            read += 1;
        } else {
            refused += 1;
        }
    }
    assert!(refused > read, "{refused} refused, {read} read");
}
