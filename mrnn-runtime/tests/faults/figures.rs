//! Faults around the figures of `mrnn analyze`: a figure's path taken by a directory, trial
//! conditions that do not fit the trials, NaN in the inputs, a single trial of a single step.
//! Each ends in a clear error or in figures drawn from what is finite.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mrnn_runtime::{Device, Tensor};

use crate::harness::mrnn;

fn reference(file: &str) -> String {
    format!("{}/../../shared/reference/{file}", env!("CARGO_MANIFEST_DIR"))
}

/// `mrnn analyze COMMAND` on the flip-flop checkpoint, results in `out`.
fn analyze(command: &str, out: &Path, extra: &[&str]) -> crate::harness::Case {
    let mut args = vec![
        "analyze".to_owned(),
        command.to_owned(),
        reference("flip_flop.json"),
        "--weights".to_owned(),
        reference("flip_flop_rnn_leaky.pth"),
        "--prefix".to_owned(),
        "rnn.".to_owned(),
        "--out".to_owned(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    mrnn(&args)
}

/// A safetensors file of `input` `[B, T, 3]` (with `nan` at one entry when asked) and, when
/// given, a `condition` tensor.
fn inputs(
    dir: &Path,
    name: &str,
    b: usize,
    t: usize,
    nan: bool,
    condition: Option<Tensor>,
) -> PathBuf {
    let mut values: Vec<f32> = (0..b * t * 3).map(|i| if i % 7 == 0 { 1.0 } else { 0.0 }).collect();
    if nan {
        let middle = values.len() / 2;
        values[middle] = f32::NAN;
    }
    let mut tensors = HashMap::new();
    tensors.insert("input".to_owned(), Tensor::from_vec(values, (b, t, 3), &Device::Cpu).unwrap());
    if let Some(c) = condition {
        tensors.insert("condition".to_owned(), c);
    }
    let path = dir.join(format!("{name}.safetensors"));
    candle_core::safetensors::save(&tensors, &path).unwrap();
    path
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[1..4], b"PNG", "{}", path.display());
}

#[test]
fn a_figure_path_taken_by_a_directory_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("activity.png")).unwrap();
    std::fs::write(out.join("activity.png").join("keep"), b"mine").unwrap();
    analyze("currents", &out, &[]).run().assert_error(&["activity.png"]);
    assert_eq!(std::fs::read(out.join("activity.png").join("keep")).unwrap(), b"mine");
}

#[test]
fn conditions_that_do_not_fit_the_trials_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let cpu = Device::Cpu;
    let cases = [
        ("short", Tensor::new(&[0f32, 1.0], &cpu).unwrap(), "[4]"),
        ("matrix", Tensor::new(&[[0f32, 1.0], [0.0, 1.0]], &cpu).unwrap(), "[4]"),
        ("nan", Tensor::new(&[0f32, f32::NAN, 1.0, 0.0], &cpu).unwrap(), "NaN"),
        ("infinite", Tensor::new(&[0f64, f64::INFINITY, 1.0, 0.0], &cpu).unwrap(), "inf"),
    ];
    for (name, condition, needle) in cases {
        let file = inputs(dir.path(), name, 4, 20, false, Some(condition));
        analyze("flow", &out, &["--grid", "5", "--inputs", file.to_str().unwrap()])
            .run()
            .assert_error(&["`condition`", needle]);
    }
    // Integer labels of any dtype are fine.
    let labels = Tensor::new(&[3u32, 3, 7, 7], &cpu).unwrap();
    let file = inputs(dir.path(), "u32", 4, 20, false, Some(labels));
    analyze("flow", &out, &["--grid", "5", "--inputs", file.to_str().unwrap()]).run().assert_ok();
    assert_png(&out.join("flow.png"));
}

#[test]
fn nan_in_the_inputs_is_reported_and_the_figures_draw_what_is_finite() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let file = inputs(dir.path(), "nan", 2, 12, true, None);
    let run = analyze("currents", &out, &["--inputs", file.to_str().unwrap()]).run();
    run.assert_ok();
    assert!(run.stdout_text().contains("NaN"), "NaN is not hidden: {}", run.stdout_text());
    for figure in ["activity.png", "currents_over_time.png", "currents.png"] {
        assert_png(&out.join(figure));
    }
}

#[test]
fn one_trial_of_one_step() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let file = inputs(dir.path(), "one", 1, 1, false, None);
    analyze("currents", &out, &["--inputs", file.to_str().unwrap()]).run().assert_ok();
    for figure in ["activity.png", "currents_over_time.png"] {
        assert_png(&out.join(figure));
    }
}
