//! `mrnn simulate` as users run it: mRNNTorch's real flip-flop checkpoint through the binary
//! reproduces the reference trajectory and readout; bad inputs exit 1 with a clear message.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{Device, Tensor};
use common::{assert_close, load};

/// A reference file's path, as a command-line argument.
fn reference(name: &str) -> String {
    common::reference(name).display().to_string()
}

fn mrnn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mrnn")).args(args).output().expect("the mrnn binary runs")
}

#[test]
fn simulate_reproduces_the_flip_flop_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out: PathBuf = dir.path().join("out.safetensors");
    let run = mrnn(&[
        "simulate",
        &reference("flip_flop.json"),
        "--weights",
        &reference("flip_flop_rnn_leaky.pth"),
        "--prefix",
        "rnn.",
        "--readout",
        "out_layer.",
        "--input",
        &reference("flip_flop_leaky_expected.safetensors"),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
    let got = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    let want = load("flip_flop_leaky_expected.safetensors");
    for (ours, theirs) in [("h", "expected_h"), ("output", "expected_output")] {
        let (a, b) = (&got[ours], &want[theirs]);
        assert_eq!(a.dims(), b.dims(), "{ours}");
        assert_close(ours, a, b);
    }
    assert!(got.contains_key("x"), "leaky dynamics also write x");
    let agree = got["output"].mul(&want["target"]).unwrap().gt(0f64).unwrap();
    let accuracy = agree
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((accuracy - 1.0).abs() < 1e-6, "sign accuracy {accuracy}");
}

#[test]
fn simulate_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let bad_input = dir.path().join("bad.safetensors");
    let t = Tensor::zeros((2, 5, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("input".to_owned(), t)]),
        &bad_input,
    )
    .unwrap();
    let no_input = dir.path().join("none.safetensors");
    let t = Tensor::zeros((2, 5, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("u".to_owned(), t)]),
        &no_input,
    )
    .unwrap();
    let base = |input: &Path, prefix: &str| {
        mrnn(&[
            "simulate",
            &reference("flip_flop.json"),
            "--weights",
            &reference("flip_flop_rnn_leaky.pth"),
            "--prefix",
            prefix,
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ])
    };
    let cases = [
        (base(&bad_input, "rnn."), "input has shape [2, 5, 4], expected [B, T, 3]"),
        (base(&no_input, "rnn."), "has no tensor `input`"),
        (base(&bad_input, "model."), "model.W_rec"),
    ];
    for (run, expected) in cases {
        let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
        assert_eq!(run.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "expected `{expected}` in:\n{stderr}");
    }
    assert!(!out.exists(), "a failed simulation writes nothing");
}

/// Writes `tensors` to a safetensors file.
fn save(path: &Path, tensors: Vec<(&str, Tensor)>) {
    let map: std::collections::HashMap<String, Tensor> =
        tensors.into_iter().map(|(k, t)| (k.to_owned(), t)).collect();
    candle_core::safetensors::save(&map, path).unwrap();
}

/// `n` ordinary values, with `value` at `at`.
fn with_value(dims: &[usize], at: usize, value: f32) -> Tensor {
    let n: usize = dims.iter().product();
    let mut v: Vec<f32> = (0..n).map(|k| (k as f32 * 0.37).sin() * 0.5).collect();
    v[at] = value;
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

/// `mrnn simulate` of the flip-flop checkpoint on `input` (with `extra` arguments).
fn simulate_flip_flop(weights: &str, input: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "simulate",
        &reference_owned("flip_flop.json"),
        "--weights",
        weights,
        "--prefix",
        "rnn.",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    mrnn(&args)
}

fn reference_owned(name: &str) -> String {
    reference(name)
}

/// A case of a simulation: the tensors of its input file, extra arguments, and what the
/// message must name.
type Case<'a> = (Vec<(&'a str, Tensor)>, &'a [&'a str], &'a [&'a str]);

/// A NaN or an infinity in `input`, `x0`, `h0` or `stim` is refused before anything runs
/// (it exited 0 with NaN in `x` and none in `h`): the message names the tensor, the first bad
/// index in the tensor's layout, and how many there are; nothing is written.
#[test]
fn simulate_refuses_non_finite_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let weights = reference("flip_flop_rnn_leaky.pth");
    let (b, t, i, h) = (2, 5, 3, 30);
    let (nan, inf) = (f32::NAN, f32::INFINITY);
    let ordinary = |dims: &[usize]| with_value(dims, 0, 0.25);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![("input", with_value(&[b, t, i], t * i + 2 * i + 1, nan))],
            &[],
            &["`input`", "NaN", "[1, 2, 1]", "[B, T, I]"],
        ),
        (vec![("input", with_value(&[b, t, i], 0, -inf))], &[], &["`input`", "-inf", "[0, 0, 0]"]),
        (
            vec![("input", with_value(&[t, b, i], b * i + i + 2, inf))],
            &["--batch-first", "false"],
            &["`input`", "inf", "[1, 1, 2]", "[T, B, I], time first"],
        ),
        (
            vec![("input", ordinary(&[b, t, i])), ("x0", with_value(&[b, h], h + 7, nan))],
            &[],
            &["`x0`", "NaN", "[1, 7]", "[B, H]"],
        ),
        (
            vec![("input", ordinary(&[b, t, i])), ("h0", with_value(&[b, h], 3, inf))],
            &[],
            &["`h0`", "inf", "[0, 3]"],
        ),
        (
            vec![
                ("input", ordinary(&[b, t, i])),
                ("stim", with_value(&[b, t, h], 4 * h + 29, nan)),
            ],
            &[],
            &["`stim`", "NaN", "[0, 4, 29]", "[B, T, H]"],
        ),
        // Two bad values: both counted, the first named.
        (
            vec![("input", {
                let mut v = vec![0f32; b * t * i];
                v[5] = nan;
                v[20] = inf;
                Tensor::from_vec(v, (b, t, i), &Device::Cpu).unwrap()
            })],
            &[],
            &["2 non-finite values", "NaN", "[0, 1, 2]"],
        ),
        // Finite in f64, infinite as the f32 the network runs in.
        (
            vec![(
                "input",
                with_value(&[b, t, i], 4, 0.0)
                    .to_dtype(candle_core::DType::F64)
                    .unwrap()
                    .affine(1.0, 0.0)
                    .unwrap()
                    .broadcast_add(&Tensor::new(&[1e300f64, 0.0, 0.0], &Device::Cpu).unwrap())
                    .unwrap(),
            )],
            &[],
            &["`input`", "inf", "[0, 0, 0]"],
        ),
    ];
    for (n, (tensors, extra, needles)) in cases.into_iter().enumerate() {
        for activation in ["tanh", "relu"] {
            let input = dir.path().join(format!("in{n}.safetensors"));
            save(&input, tensors.clone());
            let mut args = extra.to_vec();
            args.extend(["--activation", activation]);
            let run = simulate_flip_flop(&weights, &input, &out, &args);
            let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
            assert_eq!(run.status.code(), Some(1), "case {n} {activation}: {stderr}");
            for needle in needles {
                assert!(stderr.contains(needle), "case {n} {activation}: `{needle}` in:\n{stderr}");
            }
            assert!(stderr.contains("must be finite"), "{stderr}");
            assert!(!out.exists(), "case {n}: a refused simulation writes nothing");
        }
    }
}

/// The flip-flop state dict with `value` planted in tensor `key` at `at`, as safetensors.
fn flip_flop_with(dir: &Path, key: &str, at: usize, value: f32) -> String {
    let sd = mrnn_runtime::StateDict::read(reference("flip_flop_rnn_leaky.pth")).unwrap();
    let tensors: Vec<(&str, Tensor)> = sd
        .iter()
        .map(|(k, t)| {
            let t = t.to_dtype(candle_core::DType::F32).unwrap();
            if k == key {
                let mut v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                v[at] = value;
                (k, Tensor::from_vec(v, t.shape(), &Device::Cpu).unwrap())
            } else {
                (k, t)
            }
        })
        .collect();
    assert!(sd.get(key).is_some(), "the reference has `{key}`");
    let path = dir.join(format!("{key}-{at}.safetensors"));
    save(&path, tensors);
    path.display().to_string()
}

/// Non-finite weights of the network or of the readout are refused with the tensor's name
/// and the first bad index, before anything runs.
#[test]
fn simulate_refuses_non_finite_weights_and_readouts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let input = dir.path().join("in.safetensors");
    save(&input, vec![("input", with_value(&[2, 5, 3], 0, 0.5))]);
    // The network's own tensors are refused when imported (naming the key), the readout's with
    // the index and value too.
    let cases: [(&str, usize, f32, &[&str]); 4] = [
        ("rnn.W_rec", 31, f32::NAN, &["rnn.W_rec", "NaN"]),
        ("rnn.W_inp", 2, f32::INFINITY, &["rnn.W_inp", "inf at index [0, 2]"]),
        ("out_layer.weight", 30, f32::NAN, &["`out_layer.weight`", "NaN at index [1, 0]"]),
        ("out_layer.bias", 2, f32::INFINITY, &["`out_layer.bias`", "inf at index [2]"]),
    ];
    for (key, at, value, needles) in cases {
        let weights = flip_flop_with(dir.path(), key, at, value);
        let run = simulate_flip_flop(&weights, &input, &out, &["--readout", "out_layer."]);
        let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
        assert_eq!(run.status.code(), Some(1), "{key}: {stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "{key} = {value}: `{needle}` in:\n{stderr}");
        }
        assert!(!out.exists(), "{key}: a refused simulation writes nothing");
    }
    // A tonic input finite in the config's f64 but infinite in f32: refused (by the config's
    // check, or by simulate's of the network's tensors), never simulated.
    let config = std::fs::read_to_string(reference("flip_flop.json")).unwrap().replace(
        r#"{"name": "inhib", "num_units": 9, "sign": "neg", "learnable_bias": true}"#,
        r#"{"name": "inhib", "num_units": 9, "sign": "neg", "base_firing": 1e300}"#,
    );
    assert!(config.contains("1e300"), "the reference config changed");
    let config_path = dir.path().join("huge_bias.json");
    std::fs::write(&config_path, config).unwrap();
    let run = mrnn(&[
        "simulate",
        config_path.to_str().unwrap(),
        "--weights",
        &reference("flip_flop_rnn_leaky.pth"),
        "--prefix",
        "rnn.",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("base_firing"), "{stderr}");
    assert!(!out.exists(), "a refused simulation writes nothing");
}

/// The summary counts the steps on the step axis of either layout (time first, it printed
/// the batch size), and the trajectory comes back in the input's layout.
#[test]
fn simulate_counts_steps_in_either_layout() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let weights = reference("flip_flop_rnn_leaky.pth");
    let (b, t) = (2, 7);
    for (batch_first, dims, h_dims) in
        [("true", [b, t, 3], [b, t, 30]), ("false", [t, b, 3], [t, b, 30])]
    {
        let input = dir.path().join(format!("in-{batch_first}.safetensors"));
        save(&input, vec![("input", with_value(&dims, 0, 0.5))]);
        let run = simulate_flip_flop(&weights, &input, &out, &["--batch-first", batch_first]);
        let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
        assert_eq!(run.status.code(), Some(0), "{stderr}");
        let layout = if batch_first == "true" { "batch first" } else { "time first" };
        let summary = format!("for {t} steps ({b} trials, {layout})");
        assert!(stderr.contains(&summary), "`{summary}` in:\n{stderr}");
        let got = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
        assert_eq!(got["h"].dims(), h_dims, "batch_first={batch_first}");
        assert_eq!(got["x"].dims(), h_dims, "batch_first={batch_first}");
    }
    // A time-first input given to a batch-first network: the shape error names the layout.
    let input = dir.path().join("in-false.safetensors");
    let run = simulate_flip_flop(&weights, &input, &out, &[]);
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert_eq!(run.status.code(), Some(0), "[7, 2, 3] is also a batch of 7: {stderr}");
    assert!(stderr.contains("for 2 steps (7 trials, batch first)"), "{stderr}");
}

/// Finite inputs whose dynamics overflow are simulated (the numbers are the network's), and a
/// warning names the non-finite values.
#[test]
fn simulate_warns_when_finite_inputs_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let input = dir.path().join("in.safetensors");
    let big = Tensor::full(3e38f32, (1, 4, 3), &Device::Cpu).unwrap();
    save(&input, vec![("input", big)]);
    let weights = reference("flip_flop_rnn_leaky.pth");
    let run = simulate_flip_flop(&weights, &input, &out, &["--activation", "linear"]);
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("warning: the simulated `h` holds"), "{stderr}");
    assert!(stderr.contains("non-finite value"), "{stderr}");
    let got = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    let h = got["h"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(h.iter().any(|v| !v.is_finite()), "the overflow is in the file, not hidden");
}
