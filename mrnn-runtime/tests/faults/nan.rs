//! Non-finite numbers and wrong layouts through `mrnn simulate`: NaN and infinities in the
//! inputs, initial states, stimulus, weights and readout are refused with the tensor and the
//! first bad index (never simulated into a file with NaN in `x` and none in `h`); tensors in
//! the wrong layout or of the wrong size are named; odd but valid files run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::harness::{Run, mrnn};

/// A file of `../shared/reference`, as an argument.
fn reference(name: &str) -> String {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference"))
        .join(name)
        .display()
        .to_string()
}

/// The flip-flop network's sizes: 3 inputs, 30 units.
const I: usize = 3;
const H: usize = 30;

fn save(path: &Path, tensors: Vec<(&str, Tensor)>) {
    let map: HashMap<String, Tensor> =
        tensors.into_iter().map(|(k, t)| (k.to_owned(), t)).collect();
    candle_core::safetensors::save(&map, path).unwrap();
}

/// Ordinary values of `dims`, with `value` at flat index `at`.
fn tensor(dims: &[usize], at: Option<(usize, f32)>) -> Tensor {
    let n: usize = dims.iter().product();
    let mut v: Vec<f32> = (0..n).map(|k| (k as f32 * 0.53).cos() * 0.5).collect();
    if let Some((at, value)) = at {
        v[at] = value;
    }
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

/// `mrnn simulate` of the flip-flop network on `tensors`, with `extra` arguments; checks that
/// a failed run left no output behind.
fn simulate(dir: &Path, tensors: Vec<(&str, Tensor)>, weights: &str, extra: &[&str]) -> Run {
    let input = dir.join("in.safetensors");
    let out = dir.join("out.safetensors");
    let _ = std::fs::remove_file(&out);
    save(&input, tensors);
    let mut args = vec![
        "simulate".to_owned(),
        reference("flip_flop.json"),
        "--weights".to_owned(),
        weights.to_owned(),
        "--prefix".to_owned(),
        "rnn.".to_owned(),
        "--input".to_owned(),
        input.display().to_string(),
        "--output".to_owned(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let run = mrnn(&args).run();
    if run.code != Some(0) {
        assert!(!out.exists(), "a failed simulation wrote its output: {}", run.command_line());
    }
    run
}

fn leaky_weights() -> String {
    reference("flip_flop_rnn_leaky.pth")
}

#[test]
fn nan_and_infinite_inputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (nan, inf) = (f32::NAN, f32::INFINITY);
    let (b, t) = (3, 4);
    for activation in ["tanh", "relu", "sigmoid", "softplus", "linear"] {
        for elman in [false, true] {
            let mut extra = vec!["--activation", activation];
            if elman {
                extra.push("--elman");
            }
            let cases: Vec<(Tensors<'_>, Vec<&str>)> = vec![
                (
                    vec![("input", tensor(&[b, t, I], Some((I * t + 1, nan))))],
                    vec!["`input`", "NaN", "[1, 0, 1]"],
                ),
                (
                    vec![("input", tensor(&[b, t, I], Some((b * t * I - 1, -inf))))],
                    vec!["`input`", "-inf", "[2, 3, 2]"],
                ),
                (
                    vec![
                        ("input", tensor(&[b, t, I], None)),
                        ("x0", tensor(&[b, H], Some((H, nan)))),
                    ],
                    vec!["`x0`", "NaN", "[1, 0]"],
                ),
                (
                    vec![
                        ("input", tensor(&[b, t, I], None)),
                        ("h0", tensor(&[b, H], Some((5, inf)))),
                    ],
                    vec!["`h0`", "inf", "[0, 5]"],
                ),
                (
                    vec![
                        ("input", tensor(&[b, t, I], None)),
                        ("stim", tensor(&[b, t, H], Some((H * t + H + 2, nan)))),
                    ],
                    vec!["`stim`", "NaN", "[1, 1, 2]"],
                ),
            ];
            for (tensors, needles) in cases {
                let run = simulate(dir.path(), tensors, &leaky_weights(), &extra);
                run.assert_error(&needles);
                run.assert_error(&["must be finite"]);
            }
        }
    }
}

#[test]
fn values_beyond_f32_and_other_dtypes() {
    let dir = tempfile::tempdir().unwrap();
    // 1e300 is finite in f64, infinite as the f32 the network runs in: refused.
    let huge = tensor(&[2, 3, I], None).to_dtype(DType::F64).unwrap();
    let huge =
        huge.broadcast_add(&Tensor::new(&[0f64, 1e300, 0.0], &Device::Cpu).unwrap()).unwrap();
    simulate(dir.path(), vec![("input", huge)], &leaky_weights(), &[]).assert_error(&[
        "`input`",
        "inf",
        "[0, 0, 1]",
    ]);
    // Half precision and integers convert to f32: a valid run.
    let half = tensor(&[2, 3, I], None).to_dtype(DType::F16).unwrap();
    simulate(dir.path(), vec![("input", half)], &leaky_weights(), &[]).assert_ok();
    let ints = Tensor::from_vec(vec![0u8, 1, 0, 1, 1, 0], (1, 2, I), &Device::Cpu).unwrap();
    simulate(dir.path(), vec![("input", ints)], &leaky_weights(), &[]).assert_ok();
}

/// The flip-flop state dict, as safetensors, with `value` at flat index `at` of `key`.
fn weights_with(dir: &Path, key: &str, at: usize, value: f32) -> String {
    let sd = mrnn_runtime::StateDict::read(leaky_weights()).unwrap();
    assert!(sd.get(key).is_some(), "the reference has `{key}`");
    let tensors: Vec<(&str, Tensor)> = sd
        .iter()
        .map(|(k, t)| {
            let t = t.to_dtype(DType::F32).unwrap();
            if k != key {
                return (k, t);
            }
            let mut v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            v[at] = value;
            (k, Tensor::from_vec(v, t.shape(), &Device::Cpu).unwrap())
        })
        .collect();
    let path = dir.join(format!("weights-{key}.safetensors"));
    save(&path, tensors);
    path.display().to_string()
}

#[test]
fn non_finite_weights_and_readouts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = || vec![("input", tensor(&[2, 3, I], None))];
    let readout = ["--readout", "out_layer."];
    let cases: [(&str, usize, f32, &[&str]); 5] = [
        ("out_layer.weight", 0, f32::NAN, &["`out_layer.weight`", "NaN", "[0, 0]"]),
        ("out_layer.weight", 89, f32::NEG_INFINITY, &["`out_layer.weight`", "-inf", "[2, 29]"]),
        ("out_layer.bias", 1, f32::INFINITY, &["`out_layer.bias`", "inf", "[1]"]),
        ("rnn.W_rec", 100, f32::NAN, &["rnn.W_rec"]),
        ("rnn.W_inp", 4, f32::INFINITY, &["rnn.W_inp"]),
    ];
    for (key, at, value, needles) in cases {
        let weights = weights_with(dir.path(), key, at, value);
        simulate(dir.path(), input(), &weights, &readout).assert_error(needles);
    }
    // A readout prefix the file lacks.
    simulate(dir.path(), input(), &leaky_weights(), &["--readout", "readout."])
        .assert_error(&["no tensor `readout.weight`"]);
}

/// A case of a simulation: the tensors of its input file, extra arguments, and what the
/// error must name.
type Case<'a> = (Tensors<'a>, &'a [&'a str], Vec<&'a str>);

/// The named tensors of an input file.
type Tensors<'a> = Vec<(&'a str, Tensor)>;

#[test]
fn tensors_in_the_wrong_layout_or_size_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let time_first = ["--batch-first", "false"];
    let cases: Vec<Case<'_>> = vec![
        (vec![("input", tensor(&[2, 5], None))], &[], vec!["input", "[2, 5]", "[B, T, 3]"]),
        (vec![("input", tensor(&[2, 5, 4], None))], &[], vec!["input", "[2, 5, 4]", "[B, T, 3]"]),
        (vec![("input", tensor(&[0, 5, I], None))], &[], vec!["input", "at least one"]),
        // Time first, [T = 4, B = 2, I]: an x0 of the batch-first B is wrong.
        (
            vec![("input", tensor(&[4, 2, I], None)), ("x0", tensor(&[4, H], None))],
            &time_first,
            vec!["x0", "[4, 30]", "[2, 30]"],
        ),
        // A stimulus in the batch-first layout given to a time-first run.
        (
            vec![("input", tensor(&[4, 2, I], None)), ("stim", tensor(&[2, 4, H], None))],
            &time_first,
            vec!["stim", "[2, 4, 30]", "[4, 2, 30]", "time first"],
        ),
        (
            vec![("input", tensor(&[2, 4, I], None)), ("h0", tensor(&[2, H + 1], None))],
            &[],
            vec!["h0", "[2, 31]", "[2, 30]"],
        ),
        (
            vec![("u", tensor(&[2, 4, I], None))],
            &time_first,
            vec!["no tensor `input`", "[T, B, I]"],
        ),
    ];
    for (tensors, extra, needles) in cases {
        simulate(dir.path(), tensors, &leaky_weights(), extra).assert_error(&needles);
    }
}

#[test]
fn the_summary_counts_steps_on_the_step_axis() {
    let dir = tempfile::tempdir().unwrap();
    let run = simulate(
        dir.path(),
        vec![("input", tensor(&[6, 2, I], None))],
        &leaky_weights(),
        &["--batch-first", "false"],
    );
    run.assert_ok();
    assert!(run.stderr.contains("for 6 steps (2 trials, time first)"), "{}", run.stderr);
    // No steps at all: an empty trajectory, not a crash.
    simulate(dir.path(), vec![("input", tensor(&[2, 0, I], None))], &leaky_weights(), &[])
        .assert_ok();
}
