//! `mrnn analyze`: every numeric option with NaN, infinities, negatives, zero where zero is
//! meaningless, and absurd sizes. Each is refused before any search starts, with the option's
//! name (or the memory estimate and the limit) in the message.

use std::time::Duration;

use crate::harness::{Case, Run, mrnn};

/// The flip-flop reference network (30 units, 3 inputs, tanh, leaky), its weights and an
/// output directory, for `analyze <command>`; then `extra`.
fn analyze(command: &str, out: &std::path::Path, extra: &[&str]) -> Case {
    let reference = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference");
    let mut args: Vec<String> = vec![
        "analyze".into(),
        command.into(),
        format!("{reference}/flip_flop.json"),
        "--weights".into(),
        format!("{reference}/flip_flop_rnn_leaky.pth"),
        "--prefix".into(),
        "rnn.".into(),
        "--out".into(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    mrnn(&args)
}

fn run(command: &str, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    analyze(command, &dir.path().join("out"), extra).run()
}

const COMMANDS: [&str; 4] = ["fixed-points", "linearize", "flow", "currents"];

#[test]
fn non_finite_inputs_are_errors_in_every_command() {
    for command in COMMANDS {
        for bad in ["NaN,0,0", "0,inf,0", "0,0,-inf", "1e400,0,0"] {
            run(command, &["--input", bad]).assert_error(&["--input", "finite"]);
        }
    }
}

#[test]
fn trajectory_options_are_checked() {
    for command in COMMANDS {
        for bad in ["NaN", "-0.5", "1.5", "inf"] {
            run(command, &["--pulse-prob", bad]).assert_error(&["--pulse-prob"]);
        }
        run(command, &["--trials", "0"]).assert_error(&["--trials"]);
        run(command, &["--steps", "0"]).assert_error(&["--steps"]);
        // 10^18 steps of pulses: refused with the estimate, not attempted.
        run(command, &["--trials", "1000000000", "--steps", "1000000000"]).assert_error(&[
            "trials",
            "needs about",
            "limit",
        ]);
    }
}

#[test]
fn search_options_are_checked_before_the_search() {
    let cases: [(&str, &[&str]); 7] = [
        ("--noise", &["NaN", "-1", "inf"]),
        ("--lr", &["NaN", "0", "-0.1", "inf"]),
        ("--tol-q", &["NaN", "0", "-1"]),
        ("--tol-dq", &["NaN", "-1", "inf"]),
        ("--tol-unique", &["NaN", "-1"]),
        ("--max-q", &["NaN", "0", "-1"]),
        ("--outlier-distance", &["NaN", "0", "-3"]),
    ];
    for (option, values) in cases {
        for value in values {
            // A long search, if one started, would show as a hang against this limit.
            let dir = tempfile::tempdir().unwrap();
            analyze(
                "fixed-points",
                &dir.path().join("out"),
                &[option, value, "--max-iters", "100000"],
            )
            .timeout(Duration::from_secs(60))
            .run()
            .assert_error(&[option]);
        }
    }
    run("fixed-points", &["--candidates", "0"]).assert_error(&["--candidates"]);
    // Negative counts name the option too (not "unexpected argument").
    for (option, value) in [("--candidates", "-5"), ("--max-iters", "-1"), ("--newton-steps", "-2")]
    {
        run("fixed-points", &[option, value]).assert_error(&[option]);
    }
}

#[test]
fn absurd_sizes_are_refused_with_the_estimate() {
    // 10^8 candidates of 30 units: the search would need ~400 GB.
    run("fixed-points", &["--candidates", "100000000"]).assert_error(&["candidate", "needs about"]);
    // A 100000 x 100000 grid: 10^10 full states.
    run("flow", &["--grid", "100000"]).assert_error(&["grid", "needs about"]);
    for grid in ["0", "1", "-3"] {
        run("flow", &["--grid", grid]).assert_error(&["--grid"]);
    }
    for samples in ["0", "-8"] {
        run("linearize", &["--samples", samples]).assert_error(&["--samples"]);
    }
    // A fixed point index past the file's end, or negative, before the field is computed.
    let dir = tempfile::tempdir().unwrap();
    let points = dir.path().join("points.json");
    std::fs::write(&points, format!("[{:?}]", vec![0.0; 30])).unwrap();
    let file = points.to_str().unwrap();
    for index in ["1", "-1"] {
        run("flow", &["--fixed-points", file, "--linearize-at", index])
            .assert_error(&["--linearize-at"]);
    }
    for seed in ["-1", "NaN"] {
        run("currents", &["--seed", seed]).assert_error(&["--seed"]);
    }
    // Under a small memory limit, the search is refused before it starts.
    let dir = tempfile::tempdir().unwrap();
    analyze("fixed-points", &dir.path().join("out"), &["--candidates", "4096"])
        .env("MRNN_MEMORY_LIMIT", "4M")
        .run()
        .assert_error(&["fixed-point search", "needs about", "MRNN_MEMORY_LIMIT"]);
    assert!(!dir.path().join("out").join("fixed_points.json").exists());
}

#[test]
fn meaningful_edge_values_work() {
    // No Adam iterations (Newton from the candidates), no noise, no rerun, a huge sample count
    // (all the trajectory's states, at most).
    run("fixed-points", &["--max-iters", "0", "--noise", "0", "--candidates", "8", "--no-rerun"])
        .assert_ok();
    run("linearize", &["--samples", "100000", "--trials", "1", "--steps", "5"]).assert_ok();
    run("flow", &["--grid", "2"]).assert_ok();
}
