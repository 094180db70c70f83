//! Checkpoints given to the commands that run a network: `mrnn train`'s own checkpoint alone, a
//! network's checkpoint alone, checkpoints against configs that do not describe them, and
//! damaged, hostile or non-finite files. Each is a result or a clear error naming the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use mrnn_runtime::Network;

use crate::harness::mrnn;

fn reference(file: &str) -> String {
    format!("{}/../../shared/reference/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Trains `mrnn train flip-flop` for 3 steps into `dir/run`, with `extra` arguments; returns
/// the training checkpoint it wrote.
fn train(dir: &Path, extra: &[&str]) -> PathBuf {
    let out = dir.join("run");
    let mut args = vec![
        "train",
        "flip-flop",
        "--steps",
        "3",
        "--batch",
        "4",
        "--time",
        "20",
        "--eval-trials",
        "4",
        "--out",
        arg(&out),
    ];
    args.extend_from_slice(extra);
    mrnn(&args).run().assert_ok();
    out.join("checkpoint.safetensors")
}

/// A safetensors file with `input` `[2, 20, 3]` (one pulse), for simulate.
fn input(dir: &Path) -> PathBuf {
    let mut data = vec![0f32; 2 * 20 * 3];
    data[0] = 1.0;
    let t = Tensor::from_vec(data, (2, 20, 3), &Device::Cpu).unwrap();
    let path = dir.join("input.safetensors");
    candle_core::safetensors::save(&HashMap::from([("input".to_owned(), t)]), &path).unwrap();
    path
}

/// The tensors of a safetensors file written by `mrnn simulate`.
fn outputs(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

/// Rewrites a safetensors file with `edit` applied to its tensors and metadata.
fn rewrite(
    path: &Path,
    edit: impl FnOnce(&mut HashMap<String, Tensor>, &mut HashMap<String, String>),
) {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut metadata = header.metadata().clone().unwrap_or_default();
    let mut tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    edit(&mut tensors, &mut metadata);
    std::fs::write(path, safetensors::serialize(tensors, Some(metadata)).unwrap()).unwrap();
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    use std::fmt::Write as _;
    sha2::Sha256::digest(text.as_bytes()).iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// An edit of a checkpoint's metadata.
type Edit = Box<dyn Fn(&mut HashMap<String, String>)>;

#[test]
fn the_training_checkpoint_alone_runs_simulate_and_analyze() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = train(dir.path(), &["--hidden", "16", "--readout", "excitatory"]);
    let input = input(dir.path());
    let out = dir.path().join("out.safetensors");
    let sim = |extra: &[&str]| {
        let mut args = vec!["simulate", arg(&ckpt), "--input", arg(&input), "--output", arg(&out)];
        args.extend_from_slice(extra);
        mrnn(&args).run()
    };
    sim(&[]).assert_ok();
    let got = outputs(&out);
    assert_eq!(got["h"].dims(), &[2, 20, 16]);
    assert_eq!(got["x"].dims(), &[2, 20, 16]);
    // The readout of the excitatory units was used, automatically.
    assert_eq!(got["output"].dims(), &[2, 20, 3]);
    // Its own prefix is accepted, another is named; the checkpoint needs no --weights.
    sim(&["--prefix", "network."]).assert_ok();
    sim(&["--prefix", "rnn."]).assert_error(&["--prefix `rnn.`", "`network.`"]);
    sim(&["--readout", "out_layer."]).assert_error(&["brings its own readout"]);
    sim(&["--weights", &reference("flip_flop_rnn_leaky.pth")])
        .assert_error(&["is an mrnn checkpoint", "drop --weights"]);
    // Options that agree with the checkpoint pass; others are named.
    sim(&["--activation", "tanh"]).assert_ok();
    sim(&["--activation", "relu", "--batch-first", "false"])
        .assert_error(&["activation", "batch_first"]);

    let analysis = dir.path().join("analysis");
    let run = mrnn(&[
        "analyze",
        "fixed-points",
        arg(&ckpt),
        "--out",
        arg(&analysis),
        "--candidates",
        "16",
        "--max-iters",
        "300",
    ])
    .run();
    run.assert_ok();
    let points: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(analysis.join("fixed_points.json")).unwrap())
            .unwrap();
    let first = &points.as_array().expect("a list of fixed points")[0];
    assert_eq!(first["readout"].as_array().map(Vec::len), Some(3), "{first}");
    mrnn(&["analyze", "currents", arg(&ckpt), "--out", arg(&analysis), "--trials", "2"])
        .run()
        .assert_ok();
    assert!(analysis.join("currents.json").is_file());
}

#[test]
fn a_network_checkpoint_alone_and_checked_against_configs() {
    let dir = tempfile::tempdir().unwrap();
    let net = Network::from_json_file(
        reference("flip_flop.json"),
        &mrnn_runtime::Overrides::default(),
        &Device::Cpu,
    )
    .unwrap();
    let saved = dir.path().join("net.safetensors");
    net.save(&saved).unwrap();
    let input = input(dir.path());
    let out = dir.path().join("out.safetensors");
    let sim = |network: &str, extra: &[&str]| {
        let mut args = vec!["simulate", network, "--input", arg(&input), "--output", arg(&out)];
        args.extend_from_slice(extra);
        mrnn(&args).run()
    };
    sim(arg(&saved), &[]).assert_ok();
    assert!(!outputs(&out).contains_key("output"), "a network's checkpoint has no readout");
    sim(arg(&saved), &["--readout", "out_layer."]).assert_error(&["holds no readout"]);
    // With the config it was saved from: checked, and run.
    sim(&reference("flip_flop.json"), &["--weights", arg(&saved)]).assert_ok();
    // With another config: every difference named.
    sim(&reference("CBGTCL.json"), &["--weights", arg(&saved)])
        .assert_error(&["is not a network of the config", "recurrent regions"]);
    sim(&reference("flip_flop.json"), &["--weights", arg(&saved), "--elman"])
        .assert_error(&["dynamics"]);

    // The training checkpoint of the same config, against it and against another.
    let ckpt = train(dir.path(), &["--config", &reference("flip_flop.json")]);
    sim(&reference("flip_flop.json"), &["--weights", arg(&ckpt)]).assert_ok();
    assert_eq!(outputs(&out)["output"].dims(), &[2, 20, 3]);
    sim(&reference("flip_flop.json"), &["--weights", arg(&ckpt), "--activation", "relu"])
        .assert_error(&["activation"]);

    // State dicts and configs alone say what they need.
    sim(&reference("flip_flop_rnn_leaky.pth"), &[]).assert_error(&["state dict", "config"]);
    sim(&reference("ei_elman_tanh.safetensors"), &[]).assert_error(&["state dict", "config"]);
    sim(&reference("flip_flop.json"), &[]).assert_error(&["--weights"]);
    let analysis = dir.path().join("analysis");
    mrnn(&["analyze", "currents", &reference("flip_flop.json"), "--out", arg(&analysis)])
        .run()
        .assert_error(&["--weights"]);
}

#[test]
fn damaged_and_hostile_checkpoints_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = train(dir.path(), &["--hidden", "16"]);
    let pristine = std::fs::read(&ckpt).unwrap();
    let input = input(dir.path());
    let out = dir.path().join("out.safetensors");
    let sim =
        || mrnn(&["simulate", arg(&ckpt), "--input", arg(&input), "--output", arg(&out)]).run();
    let header_len =
        usize::try_from(u64::from_le_bytes(pristine[..8].try_into().unwrap())).unwrap();

    // Truncated: in the data, in the header, in the length itself, empty.
    for (cut, expected) in [
        (pristine.len() - 100, "damaged"),
        (8 + header_len / 2, "truncated"),
        (5, "not an mrnn checkpoint"),
        (0, "not an mrnn checkpoint"),
    ] {
        std::fs::write(&ckpt, &pristine[..cut]).unwrap();
        sim().assert_error(&[expected]);
    }
    // Corrupted header bytes, and a header claiming more than safetensors allows.
    let mut bytes = pristine.clone();
    bytes[8 + header_len / 3] = b'\xff';
    std::fs::write(&ckpt, &bytes).unwrap();
    sim().assert_error(&["damaged safetensors header"]);
    for claim in [1u64 << 62, 0, 1] {
        let mut bytes = pristine.clone();
        bytes[..8].copy_from_slice(&claim.to_le_bytes());
        std::fs::write(&ckpt, &bytes).unwrap();
        sim().assert_error(&["header claims"]);
    }
    // A header that claims a tensor of [1e9, 1e9] (8 bytes of data) and one past the file's end.
    for claim in [
        r#"{"__metadata__":{"format":"mrnn-checkpoint/1"},"network.W_rec":{"dtype":"F32","shape":[1000000000,1000000000],"data_offsets":[0,8]}}"#,
        r#"{"__metadata__":{"format":"mrnn-checkpoint/1"},"network.W_rec":{"dtype":"F32","shape":[2],"data_offsets":[0,1000000000000000]}}"#,
    ] {
        let mut bytes = (claim.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(claim.as_bytes());
        bytes.extend_from_slice(&[0u8; 8]);
        std::fs::write(&ckpt, &bytes).unwrap();
        sim().assert_error(&[arg(&ckpt)]);
    }
    // A flipped mask entry: the masks no longer follow the architecture.
    std::fs::write(&ckpt, &pristine).unwrap();
    rewrite(&ckpt, |t, _| {
        let mask = &t["network.W_rec_mask"];
        let mut v = mask.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        v[1] = 1.0 - v[1];
        t.insert(
            "network.W_rec_mask".into(),
            Tensor::from_vec(v, mask.dims(), &Device::Cpu).unwrap(),
        );
    });
    sim().assert_error(&["W_rec"]);

    assert!(!out.exists(), "no failed run wrote an output");
}

#[test]
fn checkpoints_with_wrong_metadata_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = train(dir.path(), &["--hidden", "16"]);
    let pristine = std::fs::read(&ckpt).unwrap();
    let input = input(dir.path());
    let out = dir.path().join("out.safetensors");
    let sim =
        || mrnn(&["simulate", arg(&ckpt), "--input", arg(&input), "--output", arg(&out)]).run();
    // Wrong metadata, one entry at a time.
    let spec = {
        let bytes = &pristine;
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
        header.metadata().clone().unwrap()["spec"].clone()
    };
    let bigger = spec.replacen("\"num_units\":", "\"num_units\":5", 1);
    let edits: Vec<(&str, Edit, &str)> = vec![
        (
            "another format",
            Box::new(|m| {
                m.insert("format".into(), "mrnn-checkpoint/9".into());
            }),
            "mrnn-checkpoint/9",
        ),
        (
            "no hash",
            Box::new(|m| {
                m.remove("spec_sha256");
            }),
            "spec_sha256",
        ),
        (
            "an edited spec",
            Box::new(|m| {
                m.insert("spec".into(), m["spec"].replace("exc", "exd"));
            }),
            "SHA-256",
        ),
        (
            "a spec of other sizes",
            Box::new(move |m| {
                m.insert("spec".into(), bigger.clone());
                m.insert("spec_sha256".into(), sha256_hex(&bigger));
            }),
            "expected",
        ),
        (
            "a spec that is not JSON",
            Box::new(|m| {
                m.insert("spec".into(), "{not json".into());
                m.insert("spec_sha256".into(), sha256_hex("{not json"));
            }),
            "builtin-ei",
        ),
        (
            "a bad seed",
            Box::new(|m| {
                m.insert("seed".into(), "-1".into());
            }),
            "seed",
        ),
        (
            "a bad step",
            Box::new(|m| {
                m.insert("train.step".into(), "many".into());
            }),
            "train.step",
        ),
        (
            "a bad readout choice",
            Box::new(|m| {
                m.insert("train.readout_from".into(), "\"Inhibitory\"".into());
            }),
            "train.readout_from",
        ),
        (
            "a readout of unknown regions",
            Box::new(|m| {
                m.insert("train.readout_from".into(), r#"{"Regions":["thal"]}"#.into());
            }),
            "thal",
        ),
    ];
    for (what, edit, expected) in edits {
        std::fs::write(&ckpt, &pristine).unwrap();
        rewrite(&ckpt, |_, m| edit(m));
        let run = sim();
        assert!(run.stderr.contains(expected), "{what}: {}", run.stderr);
        run.assert_error(&[expected]);
    }
    // A readout of another size than the units it reads.
    std::fs::write(&ckpt, &pristine).unwrap();
    rewrite(&ckpt, |t, _| {
        let w = Tensor::zeros((3, 5), DType::F32, &Device::Cpu).unwrap();
        t.insert("readout.weight".into(), w);
    });
    sim().assert_error(&["readout weight", "[3, 5]"]);
    assert!(!out.exists(), "no failed run wrote an output");
}

#[test]
fn non_finite_checkpoints_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = train(dir.path(), &["--hidden", "16"]);
    let pristine = std::fs::read(&ckpt).unwrap();
    let input = input(dir.path());
    let out = dir.path().join("out.safetensors");
    for (key, value) in [
        ("network.W_rec", f32::NAN),
        ("network.W_inp", f32::INFINITY),
        ("network.base_firing", f32::NAN),
        ("readout.weight", f32::NEG_INFINITY),
        ("readout.bias", f32::NAN),
    ] {
        std::fs::write(&ckpt, &pristine).unwrap();
        rewrite(&ckpt, |t, _| {
            let old = &t[key];
            let mut v = old.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            v[0] = value;
            t.insert(key.to_owned(), Tensor::from_vec(v, old.dims(), &Device::Cpu).unwrap());
        });
        mrnn(&["simulate", arg(&ckpt), "--input", arg(&input), "--output", arg(&out)])
            .run()
            .assert_error(&[key, "non-finite"]);
        mrnn(&["analyze", "currents", arg(&ckpt), "--out", arg(&dir.path().join("a"))])
            .run()
            .assert_error(&[key, "non-finite"]);
    }
    assert!(!out.exists());
}

#[test]
fn networks_too_large_for_memory_are_refused_with_the_estimate() {
    let dir = tempfile::tempdir().unwrap();
    // 50000 + 30000 units: `check` accepts it; building it needs ~200 GB.
    let config = dir.path().join("big.json");
    std::fs::write(
        &config,
        r#"{"recurrent_regions": [{"name": "ctx", "num_units": 50000, "sign": "pos"},
                                  {"name": "inh", "num_units": 30000, "sign": "neg"}],
            "input_regions": [{"name": "u", "num_units": 3, "sign": "pos"}],
            "recurrent_connections": [{"src_region": "ctx", "dst_region": "inh"},
                                      {"src_region": "inh", "dst_region": "ctx"}],
            "input_connections": [{"src_region": "u", "dst_region": "ctx"}]}"#,
    )
    .unwrap();
    mrnn(&["check", arg(&config)]).run().assert_ok();
    let input = input(dir.path());
    let out = dir.path().join("out.safetensors");
    for run in [
        mrnn(&[
            "simulate",
            arg(&config),
            "--weights",
            &reference("flip_flop_rnn_leaky.pth"),
            "--input",
            arg(&input),
            "--output",
            arg(&out),
        ]),
        mrnn(&["bench", "--config", arg(&config), "--B", "1", "--T", "1"]),
    ] {
        run.env("MRNN_MEMORY_LIMIT", "8G").run().assert_error(&[
            "80000 units",
            "needs about",
            "8.0 GiB",
            "MRNN_MEMORY_LIMIT",
        ]);
    }
}

#[test]
fn simulate_bounds_the_outputs_of_a_long_input() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = train(dir.path(), &["--hidden", "16"]);
    // A [1, 200000, 3] input (2.4 MB) makes [1, 200000, 16] states: refused under 8 MB.
    let t = Tensor::zeros((1, 200_000, 3), DType::F32, &Device::Cpu).unwrap();
    let input = dir.path().join("long.safetensors");
    candle_core::safetensors::save(&HashMap::from([("input".to_owned(), t)]), &input).unwrap();
    let out = dir.path().join("out.safetensors");
    mrnn(&["simulate", arg(&ckpt), "--input", arg(&input), "--output", arg(&out)])
        .env("MRNN_MEMORY_LIMIT", "8M")
        .run()
        .assert_error(&["simulation's outputs", "[1, 200000, 16]", "needs about"]);
    assert!(!out.exists());
}

#[test]
fn special_files_as_networks_weights_and_configs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()));
    // A sparse file of 65 MiB: too large to be a config, and never read.
    let huge = dir.path().join("huge.json");
    std::fs::File::create(&huge).unwrap().set_len(65 << 20).unwrap();
    let input = input(dir.path());
    let out = dir.path().join("out.safetensors");
    let limit = std::time::Duration::from_secs(30);
    let special = "not a regular file";
    for (network, weights, expected) in [
        ("/dev/zero", None, ["a character device", special]),
        (arg(&fifo), None, ["a FIFO", special]),
        (arg(dir.path()), None, ["a directory", special]),
        ("/dev/zero", Some(reference("flip_flop_rnn_leaky.pth")), ["a character device", special]),
        (arg(&huge), Some(reference("flip_flop_rnn_leaky.pth")), ["huge.json", "too large"]),
        (&reference("flip_flop.json"), Some(arg(&fifo).to_owned()), ["a FIFO", special]),
    ] {
        let mut args = vec!["simulate", network, "--input", arg(&input), "--output", arg(&out)];
        if let Some(w) = &weights {
            args.extend(["--weights", w]);
        }
        mrnn(&args).timeout(limit).run().assert_error(&expected);
    }
    // Inputs (a state dict of tensors) too: a FIFO would block, a device never end.
    for bad_input in [arg(&fifo), "/dev/zero"] {
        let weights = reference("flip_flop_rnn_leaky.pth");
        let config = reference("flip_flop.json");
        let args = [
            "simulate",
            &config,
            "--weights",
            &weights,
            "--prefix",
            "rnn.",
            "--input",
            bad_input,
            "--output",
            arg(&out),
        ];
        mrnn(&args).timeout(limit).run().assert_error(&[bad_input, special]);
    }
    for args in [
        vec!["bench", "--config", "/dev/zero"],
        vec!["train", "flip-flop", "--config", "/dev/zero", "--out", arg(&dir.path().join("r"))],
    ] {
        mrnn(&args).timeout(limit).run().assert_error(&["/dev/zero", "a character device"]);
    }
    assert!(!out.exists());
}
