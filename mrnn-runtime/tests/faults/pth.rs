//! Hostile and malformed `.pth` files given to the CLI as weights (`mrnn simulate`, `mrnn
//! analyze`) and as inputs: each is a clear error naming the problem, fast, with no output file
//! written; the real checkpoint still works beside them.

#[path = "../hostile_pth/mod.rs"]
mod hostile_pth;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::mrnn;

fn reference(name: &str) -> String {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference"))
        .join(name)
        .display()
        .to_string()
}

fn simulate(weights: &Path, input: &str, out: &Path) -> Vec<String> {
    [
        "simulate",
        &reference("flip_flop.json"),
        "--weights",
        &weights.display().to_string(),
        "--prefix",
        "rnn.",
        "--input",
        input,
        "--output",
        &out.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

#[test]
fn hostile_weights_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let input = reference("flip_flop_leaky_expected.safetensors");
    for case in hostile_pth::cases() {
        let bad = dir.path().join(format!("{}.pth", case.name));
        std::fs::write(&bad, &case.bytes).unwrap();
        // A limit well below this machine's memory: a file may not make the reader ask for more.
        mrnn(&simulate(&bad, &input, &out))
            .env("MRNN_MEMORY_LIMIT", "512M")
            .timeout(Duration::from_secs(20))
            .run()
            .assert_error(case.needles);
        assert!(!out.exists(), "{}: an output was written", case.name);
    }
}

#[test]
fn hostile_inputs_and_analysis_weights_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let by_name = |name: &str| hostile_pth::cases().into_iter().find(|c| c.name == name).unwrap();
    for name in ["deep_list", "billion_laughs", "shape_4_tib", "os_system"] {
        let case = by_name(name);
        let bad = dir.path().join(format!("{name}.pth"));
        std::fs::write(&bad, &case.bytes).unwrap();
        // As the input file of `simulate`, beside good weights.
        let good = reference("flip_flop_rnn_leaky.pth");
        mrnn(&simulate(Path::new(&good), &bad.display().to_string(), &out))
            .run()
            .assert_error(case.needles);
        assert!(!out.exists(), "{name}: an output was written");
        // As the weights of `analyze`.
        let analysis = dir.path().join("analysis");
        let bad = bad.display().to_string();
        let config = reference("flip_flop.json");
        let analyze =
            ["analyze", "linearize", &config, "--weights", &bad, "--prefix", "rnn.", "--out"];
        let mut analyze: Vec<String> = analyze.map(str::to_owned).to_vec();
        analyze.push(analysis.display().to_string());
        mrnn(&analyze).run().assert_error(case.needles);
    }
    // The real checkpoint beside them still runs.
    let good = reference("flip_flop_rnn_leaky.pth");
    mrnn(&simulate(Path::new(&good), &reference("flip_flop_leaky_expected.safetensors"), &out))
        .run()
        .assert_ok();
    assert!(out.exists());
}

#[test]
fn a_safetensors_file_larger_than_the_memory_limit_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.safetensors");
    let t =
        candle_core::Tensor::zeros((512, 1024), candle_core::DType::F32, &candle_core::Device::Cpu)
            .unwrap();
    candle_core::safetensors::save(&std::collections::HashMap::from([("input", t)]), &big).unwrap();
    let out = dir.path().join("out.safetensors");
    let good = reference("flip_flop_rnn_leaky.pth");
    mrnn(&simulate(Path::new(&good), &big.display().to_string(), &out))
        .env("MRNN_MEMORY_LIMIT", "3M")
        .run()
        .assert_error(&["reading", "big.safetensors", "needs about 4.0 MiB", "MRNN_MEMORY_LIMIT"]);
    assert!(!out.exists());
}
