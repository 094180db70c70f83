//! `mrnn analyze` on mRNNTorch's flip-flop checkpoint: every subcommand writes its files with
//! the defaults, `fixed-points` reports the 8 memories, and bad input is an error (exit 1).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::reference;
use serde_json::Value;

fn mrnn(args: &[&str], out: &Path) -> Output {
    let config = reference("flip_flop.json");
    let weights = reference("flip_flop_rnn_leaky.pth");
    Command::new(env!("CARGO_BIN_EXE_mrnn"))
        .arg("analyze")
        .arg(args[0])
        .arg(&config)
        .arg("--weights")
        .arg(&weights)
        .args(["--prefix", "rnn.", "--out"])
        .arg(out)
        .args(&args[1..])
        .output()
        .unwrap()
}

fn ok(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "failed: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn assert_png(path: &Path) {
    assert!(std::fs::metadata(path).unwrap().len() > 10_000, "{}", path.display());
}

#[test]
fn fixed_points_with_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("analysis");
    let stdout = ok(&mrnn(&["fixed-points"], &out));
    assert!(stdout.contains("(8 stable,"), "{stdout}");
    let points = json(&out.join("fixed_points.json"));
    let points = points.as_array().unwrap();
    let stable: Vec<&Value> = points.iter().filter(|p| p["stable"] == true).collect();
    assert_eq!(stable.len(), 8);
    assert!(points.len() > 8, "saddles are found too");
    for p in points {
        assert_eq!(p["x"].as_array().unwrap().len(), 30);
        assert_eq!(p["h"].as_array().unwrap().len(), 30);
        assert!(p["q"].as_f64().unwrap() < 1e-12);
        let radius = p["max_abs_eigenvalue"].as_f64().unwrap();
        assert_eq!(p["stable"].as_bool().unwrap(), radius < 1.0);
    }
    for p in stable {
        // The readout (out_layer. of the same file) sits near a corner of the cube.
        let y: Vec<f64> =
            p["readout"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert!(y.iter().all(|v| (v.abs() - 1.0).abs() < 0.15), "{y:?}");
    }
    let summary = json(&out.join("fixed_points_summary.json"));
    assert_eq!(summary["stable"], 8);
    assert!(out.join("fixed_points.safetensors").exists());
    assert_png(&out.join("fixed_points.png"));
    assert_png(&out.join("eigenvalues.png"));

    // Linearize the excitatory region at each fixed point, the inhibitory one held fixed.
    let stdout = ok(&mrnn(
        &[
            "linearize",
            "--fixed-points",
            out.join("fixed_points.json").to_str().unwrap(),
            "--regions",
            "exc",
        ],
        &out,
    ));
    assert!(stdout.contains("#0: exc (21 units)"), "{stdout}");
    let lin = json(&out.join("linearization.json"));
    assert_eq!(lin.as_array().unwrap().len(), points.len());
    assert_eq!(lin[0]["units"].as_array().unwrap().len(), 21);
    assert_png(&out.join("linearization_eigenvalues.png"));

    // The flow with the fixed points marked and the linearized flow around the first.
    ok(&mrnn(
        &[
            "flow",
            "--fixed-points",
            out.join("fixed_points.json").to_str().unwrap(),
            "--linearize-at",
            "0",
        ],
        &out,
    ));
    assert_png(&out.join("flow.png"));
    assert_png(&out.join("flow_linear_0.png"));
    assert_eq!(json(&out.join("flow.json"))["xs"].as_array().unwrap().len(), 21);
}

#[test]
fn linearize_flow_and_currents_with_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a");
    let stdout = ok(&mrnn(&["linearize"], &out));
    assert!(stdout.contains("#0: exc,inhib (30 units)"), "{stdout}");
    ok(&mrnn(&["flow", "--regions", "exc", "--others", "nearest", "--grid", "9"], &out));
    assert_eq!(json(&out.join("flow.json"))["units"].as_array().unwrap().len(), 21);
    let stdout = ok(&mrnn(&["currents"], &out));
    assert!(stdout.contains("mean current inhib <- exc"), "{stdout}");
    let currents = json(&out.join("currents.json"));
    assert_eq!(currents["targets"], serde_json::json!(["exc", "inhib"]));
    assert_eq!(currents["sources"].as_array().unwrap().len(), 3);
    assert_png(&out.join("currents.png"));
    assert!(out.join("currents.safetensors").exists());
}

#[test]
fn bad_input_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a");
    let o = mrnn(&["flow", "--regions", "thalamus"], &out);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown region `thalamus`"));
    let o = mrnn(&["linearize", "--input", "1,2"], &out);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--input has 2 values"));
    let o = mrnn(&["linearize", "--state", "/nonexistent/state.json"], &out);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/state.json"));
    let o = mrnn(&["flow", "--others", "sideways"], &out);
    assert_eq!(o.status.code(), Some(2));
    let o = Command::new(env!("CARGO_BIN_EXE_mrnn"))
        .args(["analyze", "currents"])
        .arg(reference("flip_flop.json"))
        .args(["--weights", "/nonexistent/w.pth"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/w.pth"));
}
