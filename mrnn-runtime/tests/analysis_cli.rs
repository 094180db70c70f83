//! `mrnn analyze` on mRNNTorch's flip-flop checkpoint: every subcommand writes its files with
//! the defaults, `fixed-points` reports the 8 memories, and bad input is an error (exit 1); and
//! on an 8-region relu loop (mRNNTorch's CBGTCL circuit scaled down to 140 units), whose
//! Jacobians stalled the previous eigensolver and whose initial state is all silent.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::reference;
use mrnn_runtime::plot;
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

/// A figure's pixels.
fn figure(path: &Path) -> image::RgbImage {
    assert_png(path);
    image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8()
}

fn has_color(image: &image::RgbImage, c: plotters::style::RGBColor) -> bool {
    image.pixels().any(|p| p.0 == [c.0, c.1, c.2])
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
    assert!(stdout.contains("#0: exc (21 units, 21 active)"), "{stdout}");
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
    assert!(stdout.contains("#0: exc,inhib (30 units, 30 active)"), "{stdout}");
    ok(&mrnn(&["flow", "--regions", "exc", "--others", "nearest", "--grid", "9"], &out));
    assert_eq!(json(&out.join("flow.json"))["units"].as_array().unwrap().len(), 21);
    let stdout = ok(&mrnn(&["currents"], &out));
    assert!(stdout.contains("mean current inhib <- exc"), "{stdout}");
    let currents = json(&out.join("currents.json"));
    assert_eq!(currents["targets"], serde_json::json!(["exc", "inhib"]));
    assert_eq!(currents["sources"].as_array().unwrap().len(), 3);
    assert_png(&out.join("currents.png"));
    assert!(out.join("currents.safetensors").exists());
    // The activity of each region (2 panels side by side) and each current's time course (a
    // grid of 2 targets by 3 sources).
    let activity = figure(&out.join("activity.png"));
    assert_eq!(activity.width(), 2 * 330);
    let grid = figure(&out.join("currents_over_time.png"));
    assert!(grid.width() > 3 * 180 && grid.height() > 2 * 120, "{:?}", grid.dimensions());
    for k in 0..3 {
        assert!(has_color(&grid, plot::category_color(k, 3)), "source {k} has its color");
    }
    // --regions picks the targets of both.
    ok(&mrnn(&["currents", "--regions", "inhib"], &out));
    assert_eq!(figure(&out.join("activity.png")).width(), 480);
}

/// An inputs file of 4 distinct trials of 30 steps; `condition` when given.
fn inputs_file(dir: &Path, name: &str, condition: Option<Vec<f32>>) -> std::path::PathBuf {
    let values: Vec<f32> = (0..4 * 30 * 3)
        .map(|i| {
            let (b, t, c) = (i / 90, (i / 3) % 30, i % 3);
            if t == 2 + 3 * b && c == b % 3 { if b % 2 == 0 { 1.0 } else { -1.0 } } else { 0.0 }
        })
        .collect();
    let mut tensors = std::collections::HashMap::new();
    let cpu = mrnn_runtime::Device::Cpu;
    tensors.insert(
        "input".to_owned(),
        mrnn_runtime::Tensor::from_vec(values, (4, 30, 3), &cpu).unwrap(),
    );
    if let Some(labels) = condition {
        let n = labels.len();
        tensors.insert(
            "condition".to_owned(),
            mrnn_runtime::Tensor::from_vec(labels, n, &cpu).unwrap(),
        );
    }
    let path = dir.join(format!("{name}.safetensors"));
    candle_core::safetensors::save(&tensors, &path).unwrap();
    path
}

#[test]
fn flow_colors_trajectories_by_condition() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a");
    // Four distinct input patterns: four conditions.
    let plain = inputs_file(dir.path(), "plain", None);
    ok(&mrnn(&["flow", "--grid", "9", "--inputs", plain.to_str().unwrap()], &out));
    let image = figure(&out.join("flow.png"));
    assert_eq!(image.dimensions(), (1120, 800));
    for k in 0..4 {
        assert!(has_color(&image, plot::category_color(k, 4)), "condition {k}");
    }
    // Labels in the file: two conditions, whatever the inputs.
    let labeled = inputs_file(dir.path(), "labeled", Some(vec![0.0, 1.0, 0.0, 1.0]));
    ok(&mrnn(&["flow", "--grid", "9", "--inputs", labeled.to_str().unwrap()], &out));
    let image = figure(&out.join("flow.png"));
    assert!(
        has_color(&image, plot::category_color(0, 2))
            && has_color(&image, plot::category_color(1, 2))
    );
    assert!(!has_color(&image, plot::category_color(2, 3)), "only two conditions");
    // A label per trial, or an error naming the tensor.
    let short = inputs_file(dir.path(), "short", Some(vec![0.0, 1.0, 2.0]));
    let o = mrnn(&["flow", "--grid", "9", "--inputs", short.to_str().unwrap()], &out);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("`condition`") && stderr.contains("[4]"), "{stderr}");
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

/// mRNNTorch's CBGTCL circuit scaled down to 140 units in 8 regions, relu and leaky
/// (`dt / tau = 0.1`: the leak alone gives eigenvalues 0.9), starting from x = 0, as an
/// untrained checkpoint: (config, weights).
fn cbgt_relu(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut spec = json(&reference("CBGTCL.json"));
    let units = [20, 20, 20, 20, 20, 16, 16, 8];
    for (region, n) in spec["recurrent_regions"].as_array_mut().unwrap().iter_mut().zip(units) {
        region["num_units"] = n.into();
        // Every unit starts at x = 0, as in the issue's network: all silent.
        region.as_object_mut().unwrap().remove("init");
    }
    spec["input_regions"][0]["num_units"] = 4.into();
    spec["model"] =
        serde_json::json!({"dynamics": "leaky", "dt": 1, "tau": 10, "activation": "relu"});
    let config = dir.join("cbgt140.json");
    std::fs::write(&config, spec.to_string()).unwrap();
    let arch = mrnn_ir::compile_json_file(&config).unwrap().architecture;
    assert_eq!(arch.hidden_size(), 140);
    let net = mrnn_runtime::Network::new(arch, &mrnn_runtime::Device::Cpu).unwrap();
    let weights = dir.join("cbgt140.safetensors");
    net.save(&weights).unwrap();
    (config, weights)
}

fn run_on(config: &Path, weights: &Path, args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mrnn"))
        .arg("analyze")
        .arg(args[0])
        .arg(config)
        .arg("--weights")
        .arg(weights)
        .arg("--out")
        .arg(out)
        .args(&args[1..])
        .output()
        .unwrap()
}

#[test]
fn the_relu_loop_of_the_issue_is_dissected_with_checked_eigenpairs() {
    let dir = tempfile::tempdir().unwrap();
    let (config, weights) = cbgt_relu(dir.path());
    let out = dir.path().join("a");
    // Fixed points: the eigendecompositions at the end of the search succeed, and every
    // point's worst residual is in the file.
    let args = ["fixed-points", "--candidates", "48", "--max-iters", "400"];
    let stdout = ok(&run_on(&config, &weights, &args, &out));
    assert!(stdout.contains("worst eigenpair residual"), "{stdout}");
    let points = json(&out.join("fixed_points.json"));
    assert!(!points.as_array().unwrap().is_empty(), "{stdout}");
    for p in points.as_array().unwrap() {
        assert!(p["eigen_residual"].as_f64().unwrap() <= 1e-8, "{p}");
        assert_eq!(p["eigen_accurate"], true);
        assert_eq!(p["eigenvalues"].as_array().unwrap().len(), 140);
    }
    let summary = json(&out.join("fixed_points_summary.json"));
    assert!(summary["max_eigen_residual"].as_f64().unwrap() <= 1e-8, "{summary}");
    assert_eq!(summary["inaccurate_eigenpairs"], 0);
    // The 40-unit cortex (alm) at those points, with eigenvectors.
    let fixed = out.join("fixed_points.json");
    let args = [
        "linearize",
        "--fixed-points",
        fixed.to_str().unwrap(),
        "--regions",
        "alm_exc,alm_inhib",
        "--eigenvectors",
    ];
    ok(&run_on(&config, &weights, &args, &out));
    for record in json(&out.join("linearization.json")).as_array().unwrap() {
        assert_eq!(record["units"].as_array().unwrap().len(), 24);
        assert_eq!(record["at"]["source"], "fixed_points");
        assert!(record["eigen_residual"].as_f64().unwrap() <= 1e-8, "{record}");
    }
    // A flow field of two basal-ganglia regions.
    ok(&run_on(&config, &weights, &["flow", "--regions", "gpe,stn", "--grid", "7"], &out));
    let flow = json(&out.join("flow.json"));
    assert!(flow["speed"].as_array().unwrap().iter().all(|v| v.as_f64().unwrap().is_finite()));
}

#[test]
fn linearize_defaults_to_states_the_network_visits() {
    let dir = tempfile::tempdir().unwrap();
    let (config, weights) = cbgt_relu(dir.path());
    let out = dir.path().join("a");
    let leak =
        |record: &Value| {
            record["eigenvalues"].as_array().unwrap().iter().all(|z| {
                (z[0].as_f64().unwrap() - 0.9).abs() < 1e-9 && z[1].as_f64().unwrap() == 0.0
            })
        };
    // At the initial state (x = 0) every relu unit is silent: the answer is the leak alone,
    // and the command says so.
    let o = run_on(&config, &weights, &["linearize", "--initial-state"], &out);
    let stdout = ok(&o);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("the network's initial state"), "{stderr}");
    assert!(stderr.contains("all silent"), "{stderr}");
    assert!(stdout.contains("(140 units, 0 active) stable max|lambda| 0.9000"), "{stdout}");
    let records = json(&out.join("linearization.json"));
    assert_eq!(records[0]["at"]["source"], "initial_state");
    assert!(leak(&records[0]));
    // The default: 8 states along the trajectories, named on stderr and in the file; there
    // the units are active and the spectrum is the circuit's, not the leak's.
    let o = run_on(&config, &weights, &["linearize"], &out);
    let stdout = ok(&o);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("linearizing at 8 states along the trajectories"), "{stderr}");
    assert!(stderr.contains("trial 1 step 4, trial 3 step 12"), "{stderr}");
    let records = json(&out.join("linearization.json"));
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 8, "{stdout}");
    for record in records {
        assert_eq!(record["at"]["source"], "trajectory");
        assert!(record["at"]["trial"].as_u64().unwrap() < 16);
        assert!(record["at"]["step"].as_u64().unwrap() < 64);
        assert!(record["active_units"].as_u64().unwrap() > 0, "{record}");
        assert!(!leak(record), "{record}");
        assert!(record["eigen_residual"].as_f64().unwrap() <= 1e-8);
    }
    // As many samples as asked for.
    ok(&run_on(&config, &weights, &["linearize", "--samples", "3"], &out));
    assert_eq!(json(&out.join("linearization.json")).as_array().unwrap().len(), 3);
}
