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
