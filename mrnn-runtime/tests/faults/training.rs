//! Faults of `mrnn train`: bad flags, absurd sizes, divergence, interrupted and concurrent runs,
//! resume requests that would change the run, damaged checkpoints and lock files. Every case
//! ends in a clear error naming the problem (before anything runs, where it can be known
//! then) or in a correct result; no checkpoint ever holds a non-finite value.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mrnn_runtime::StateDict;
use mrnn_runtime::train::SavedRun;

use crate::harness::{Case, finish, mrnn};

/// A small, fast run: 16 units, batches of 8 trials of 20 steps.
const SMALL: [&str; 8] = ["--hidden", "16", "--batch", "8", "--time", "20", "--eval-trials", "16"];

/// `mrnn train flip-flop` with the small settings (those `extra` does not set), `--out out`, then
/// `extra`.
fn train(out: &Path, extra: &[&str]) -> Case {
    let mut args = vec!["train", "flip-flop"];
    for pair in SMALL.chunks(2) {
        if !extra.contains(&pair[0]) {
            args.extend(pair);
        }
    }
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend(extra);
    mrnn(&args)
}

fn checkpoint(out: &Path) -> PathBuf {
    out.join("checkpoint.safetensors")
}

/// Every tensor of a checkpoint is finite; returns the step it holds.
fn assert_finite_checkpoint(out: &Path) -> usize {
    let path = checkpoint(out);
    let sd = StateDict::read(&path).unwrap();
    for (name, t) in sd.iter() {
        let v = t.to_dtype(mrnn_runtime::DType::F64).unwrap().flatten_all().unwrap();
        let v = v.to_vec1::<f64>().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "`{name}` in {} is not finite", path.display());
    }
    SavedRun::read(&path).unwrap().step()
}

fn metrics(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap()
}

/// Bad values of every numeric flag and task parameter are refused up front, each naming its
/// flag, and nothing is created.
#[test]
fn bad_flags_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let cases: &[(&[&str], &[&str])] = &[
        (&["--clip", "NaN"], &["--clip NaN", "clipping"]),
        (&["--clip", "-1"], &["--clip -1"]),
        (&["--clip", "inf"], &["--clip inf"]),
        (&["--rate-l2", "-1e6"], &["--rate-l2 -1e6", "penalty"]),
        (&["--rate-l2", "1e300"], &["--rate-l2 1e300", "f32"]),
        (&["--weight-l2", "NaN"], &["--weight-l2 NaN"]),
        (&["--weight-l2", "-inf"], &["--weight-l2 -inf"]),
        (&["--lr", "0"], &["--lr 0", "learning rate"]),
        (&["--lr", "-0.01"], &["--lr -0.01"]),
        (&["--lr", "NaN"], &["--lr NaN"]),
        (&["--lr", "inf"], &["--lr inf"]),
        (&["--weight-decay", "NaN"], &["--weight-decay NaN"]),
        (&["--weight-decay", "-1"], &["--weight-decay -1"]),
        (&["--weight-decay", "200"], &["--weight-decay 200", "below 1"]),
        (&["--steps", "0"], &["--steps 0"]),
        (&["--batch", "0"], &["--batch 0"]),
        (&["--eval-trials", "0"], &["--eval-trials 0"]),
        (&["--checkpoint-every", "0"], &["--checkpoint-every 0"]),
        (&["--p", "2"], &["--p 2", "pulse probability must be in [0, 1]"]),
        (&["--p", "-0.5"], &["--p -0.5"]),
        (&["--p", "NaN"], &["--p NaN"]),
        (&["--bits", "0"], &["--bits 0"]),
        (&["--time", "0"], &["--time 0"]),
        (&["--hidden", "1"], &["--hidden 1"]),
        (&["--hidden", "0"], &["--hidden 0"]),
    ];
    for (flags, needles) in cases {
        train(&out, flags).run().assert_error(needles);
        assert!(!out.exists(), "`{flags:?}` created `{}`", out.display());
    }
    // Several at once: each is named.
    train(&out, &["--clip", "NaN", "--lr", "0", "--p", "7"]).run().assert_error(&[
        "--clip NaN",
        "--lr 0",
        "--p 7",
    ]);
    // The decision task's flag too.
    let out_s = out.to_str().unwrap();
    for noise in ["NaN", "-1", "inf", "1e300"] {
        mrnn(&["train", "decision", "--evidence-noise", noise, "--out", out_s])
            .run()
            .assert_error(&[&format!("--evidence-noise {noise}")]);
    }
    // Flags that contradict each other, or are not numbers: usage errors.
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference/flip_flop.json");
    let run = train(&out, &["--config", config, "--hidden", "16"]).run();
    run.assert_error(&["--hidden", "--config"]);
    assert_eq!(run.code, Some(2));
    train(&out, &["--batch", "-3"]).run().assert_error(&["--batch"]);
    train(&out, &["--lr", "fast"]).run().assert_error(&["--lr"]);
    assert!(!out.exists());
}

/// Sizes no machine holds are refused with the estimate and the limit, before the network or
/// any batch exists: never an abort.
#[test]
fn absurd_sizes_are_refused_with_the_estimate() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_s = out.to_str().unwrap();
    // The cases, with every other flag at its default.
    for flags in [
        &["--hidden", "1000000"][..],
        &["--batch", "100000000"],
        &["--time", "10000000"],
        &["--bits", "1000000"],
        &["--hidden", "100000", "--batch", "100000", "--time", "100000"],
    ] {
        let mut args = vec!["train", "flip-flop", "--out", out_s];
        args.extend(flags);
        let run = mrnn(&args).run();
        run.assert_error(&["not enough memory", "needs about", "MRNN_MEMORY_LIMIT"]);
        assert!(!out.exists(), "{flags:?} created `{}`", out.display());
    }
    // The final evaluation's size is checked before training, not after it.
    let started = Instant::now();
    train(&out, &["--eval-trials", "1000000000", "--steps", "100000"]).run().assert_error(&[
        "not enough memory",
        "1000000000 held-out trials",
        "MRNN_MEMORY_LIMIT",
    ]);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(!out.exists());
    // A size that fits a machine but not the limit given.
    train(&out, &["--hidden", "4000"]).env("MRNN_MEMORY_LIMIT", "256M").run().assert_error(&[
        "not enough memory",
        "4000 units",
        "256.0 MiB",
    ]);
    train(&out, &[]).env("MRNN_MEMORY_LIMIT", "lots").run().assert_error(&["MRNN_MEMORY_LIMIT"]);
}

/// The scenario, end to end: a learning rate that makes the parameters non-finite (loss
/// and gradient still finite) stops training at the step that would do it; what is on disk is
/// the last good state, finite; the advice printed (lower --lr, then --resume) works; and the
/// change of learning rate is recorded.
#[test]
fn a_divergence_leaves_a_good_checkpoint_and_the_advice_works() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let run = train(&out, &["--lr", "1e39", "--checkpoint-every", "1", "--steps", "5"]).run();
    run.assert_error(&["diverged at step 1", "non-finite", "learning rate 1e39", "--resume"]);
    assert!(run.stderr.contains("after step 0"), "{}", run.stderr);
    assert_eq!(assert_finite_checkpoint(&out), 0);
    let run = train(&out, &["--resume", "--lr", "0.001", "--steps", "5"]).run();
    run.assert_ok();
    assert!(run.stderr.contains("--lr changes from 1e39 to 0.001 after step 0"), "{}", run.stderr);
    assert_eq!(assert_finite_checkpoint(&out), 5);
    let m = metrics(&out);
    assert_eq!(m["steps"], 5);
    assert_eq!(
        m["setting_changes"],
        serde_json::json!([{"step": 0, "setting": "lr", "from": 1e39, "to": 0.001}])
    );

    // Diverging after some progress: the checkpoint of the last good step stays, finite.
    let out = dir.path().join("later");
    train(&out, &["--steps", "3", "--checkpoint-every", "1"]).run().assert_ok();
    let before = std::fs::read(checkpoint(&out)).unwrap();
    let run = train(&out, &["--resume", "--steps", "6", "--lr", "1e39"]).run();
    run.assert_error(&["diverged at step 4", "step 3", "intact"]);
    assert_eq!(std::fs::read(checkpoint(&out)).unwrap(), before);
    assert_eq!(assert_finite_checkpoint(&out), 3);
    // A penalty so large that the arithmetic overflows: also a divergence, a good checkpoint.
    let run = train(&out, &["--resume", "--steps", "6", "--rate-l2", "3e38", "--clip", "0"]).run();
    run.assert_error(&["diverged at step 4", "finite"]);
    assert_eq!(assert_finite_checkpoint(&out), 3);
    train(&out, &["--resume", "--steps", "6", "--lr", "0.005"]).run().assert_ok();
    assert_eq!(assert_finite_checkpoint(&out), 6);
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7, "every step's loss once:\n{csv}");

    // Steps trained since the last checkpoint are saved when a later step diverges.
    let out = dir.path().join("unsaved");
    train(&out, &["--steps", "2", "--checkpoint-every", "100"]).run().assert_ok();
    let run = train(&out, &["--resume", "--steps", "9", "--lr", "1e39"]).run();
    run.assert_error(&["diverged at step 3", "after step 2"]);
    assert_eq!(assert_finite_checkpoint(&out), 2);

    // A run that diverged at once left only its untrained state: a fresh run may replace it.
    let out = dir.path().join("fresh");
    train(&out, &["--lr", "1e39", "--steps", "3"]).run().assert_error(&["diverged at step 1"]);
    let run = train(&out, &["--steps", "3"]).run();
    run.assert_ok();
    assert!(run.stderr.contains("replacing the untrained checkpoint"), "{}", run.stderr);
    // But never a run that trained.
    train(&out, &["--steps", "3"]).run().assert_error(&["already holds a run", "--resume"]);
}

/// A resume request that would change the run is refused, naming each difference by its flag;
/// what may change (steps, optimizer settings, checkpoint cadence, evaluation size) does.
#[test]
fn resuming_another_run_names_each_difference() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    train(&out, &["--steps", "4"]).run().assert_ok();
    let before = std::fs::read(checkpoint(&out)).unwrap();
    let out_s = out.to_str().unwrap();
    // The case: another trial length and pulse probability, another network, readout.
    let run = mrnn(&[
        "train",
        "flip-flop",
        "--resume",
        "--out",
        out_s,
        "--steps",
        "8",
        "--time",
        "8",
        "--p",
        "0.5",
        "--hidden",
        "32",
        "--readout",
        "excitatory",
        "--batch",
        "8",
        "--eval-trials",
        "16",
    ])
    .run();
    run.assert_error(&[
        "--time 8 vs 20 saved",
        "--p 0.5 vs 0.05 saved",
        "--hidden 32 vs 16 saved",
        "--readout excitatory vs all saved",
    ]);
    for (flags, needle) in [
        (&["--seed", "7"][..], "--seed 7 vs 0 saved"),
        (&["--no-noise"], "--no-noise vs noise saved"),
        (&["--bits", "2"], "--bits 2 vs 3 saved"),
        (&["--steps", "2"], "--steps 2 is fewer than the 4 steps already trained"),
    ] {
        let mut extra = vec!["--resume"];
        extra.extend(flags);
        train(&out, &extra).run().assert_error(&[needle]);
    }
    let run = mrnn(&["train", "decision", "--resume", "--out", out_s]).run();
    run.assert_error(&["the task `decision` vs `flip-flop` saved"]);
    // Another network file than the saved one (3 inputs, like the 3-bit task).
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference/flip_flop.json");
    let mut args = vec!["train", "flip-flop", "--resume", "--out", out_s, "--config", config];
    args.extend(&SMALL[2..]);
    let run = mrnn(&args).run();
    run.assert_error(&["--config", "flip_flop.json", "saved"]);
    assert_eq!(std::fs::read(checkpoint(&out)).unwrap(), before, "a refusal changes nothing");
    // What may change does.
    train(&out, &["--resume", "--steps", "6", "--checkpoint-every", "1", "--eval-trials", "8"])
        .run()
        .assert_ok();
    let run = train(&out, &["--resume", "--steps", "6", "--clip", "0.5", "--weight-decay", "0.01"]);
    let run = run.run();
    run.assert_ok();
    assert!(run.stderr.contains("--clip changes from 1 to 0.5 after step 6"), "{}", run.stderr);
    let changes = &metrics(&out)["setting_changes"];
    assert_eq!(changes.as_array().unwrap().len(), 2, "{changes}");
}

/// Spawns a long small run writing a checkpoint every step, and waits until one exists.
fn start_long_run(out: &Path, extra: &[&str]) -> (std::process::Child, Vec<String>, Duration) {
    let mut flags = vec!["--checkpoint-every", "1"];
    flags.extend(extra);
    let spawned = train(out, &flags).spawn();
    let started = Instant::now();
    while !checkpoint(out).is_file() {
        assert!(started.elapsed() < Duration::from_secs(120), "the run never saved a checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    spawned
}

/// `kill -9` in the middle of a run: the checkpoint on disk is whole and finite, the lock dies
/// with the process, and `--resume` finishes the run exactly as an uninterrupted one.
#[test]
fn a_killed_run_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    // Long enough that the run cannot finish before it is killed, even where fsync is free.
    let steps = ["--steps", "1500"];
    train(&whole, &steps).run().assert_ok();

    let out = dir.path().join("killed");
    let (mut child, args, timeout) = start_long_run(&out, &steps);
    // Let it train a few more steps, then kill it wherever it is (mid-step or mid-write).
    std::thread::sleep(Duration::from_millis(100));
    let _ = child.kill();
    let killed = finish(child, args, timeout);
    assert_eq!(killed.signal, Some(9), "the run must have been killed: {killed:?}");
    let at = assert_finite_checkpoint(&out);
    assert!(at < 1500);
    train(&out, &["--resume", "--steps", "1500"]).run().assert_ok();
    assert_eq!(assert_finite_checkpoint(&out), 1500);
    let losses = |dir: &Path| std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert_eq!(losses(&out), losses(&whole), "resumed at step {at}: the losses must be the same");
}

/// Two runs writing the same `--out` at once: the second is refused, naming the directory,
/// while the first holds the lock; once it dies (even by `kill -9`) the lock is free.
#[test]
fn concurrent_runs_in_one_directory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (mut first, args, timeout) = start_long_run(&out, &["--steps", "1000000"]);
    let out_s = out.display().to_string();
    for extra in [&[][..], &["--resume"]] {
        let run = train(&out, extra).run();
        run.assert_error(&["another `mrnn train`", &out_s, "train.lock"]);
        assert!(run.stderr.contains(&format!("process {}", first.id())), "{}", run.stderr);
    }
    let _ = first.kill();
    let _ = finish(first, args, timeout);
    assert_finite_checkpoint(&out);
    let trained = SavedRun::read(&checkpoint(&out)).unwrap().step();
    let steps = (trained + 2).to_string();
    train(&out, &["--resume", "--steps", &steps]).run().assert_ok();

    // Two fresh runs started together: one trains, the other is refused.
    let out = dir.path().join("race");
    let a = train(&out, &["--steps", "30"]).spawn();
    let b = train(&out, &["--steps", "30"]).spawn();
    let (a, b) = (finish(a.0, a.1, a.2), finish(b.0, b.1, b.2));
    let mut codes = [a.code, b.code];
    codes.sort_unstable();
    assert_eq!(codes, [Some(0), Some(1)], "{a:?}\n{b:?}");
    let loser = if a.code == Some(1) { &a } else { &b };
    loser.assert_no_crash();
    assert!(
        loser.stderr.contains("another `mrnn train`")
            || loser.stderr.contains("already holds a run"),
        "{}",
        loser.stderr
    );
    assert_eq!(assert_finite_checkpoint(&out), 30);
}

/// Damaged or foreign files where a run keeps its state: clear errors, never a hang.
#[test]
fn damaged_checkpoints_and_lock_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    train(&out, &["--steps", "2"]).run().assert_ok();
    let path = checkpoint(&out);
    let good = std::fs::read(&path).unwrap();

    // A checkpoint with a non-finite parameter (as older versions wrote) does not resume.
    let poisoned = poison(&good, "network.W_rec");
    std::fs::write(&path, poisoned).unwrap();
    train(&out, &["--resume", "--steps", "4"])
        .run()
        .assert_error(&["network.W_rec", "NaN or infinite"]);
    // Truncated, or not a checkpoint at all.
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    train(&out, &["--resume", "--steps", "4"]).run().assert_error(&["checkpoint"]);
    std::fs::write(&path, b"not a checkpoint").unwrap();
    train(&out, &["--resume", "--steps", "4"]).run().assert_error(&["checkpoint"]);
    std::fs::write(&path, &good).unwrap();
    train(&out, &["--resume", "--steps", "3"]).run().assert_ok();

    // The lock file replaced by a directory or a link: refused, not followed.
    let lock = out.join("train.lock");
    std::fs::remove_file(&lock).unwrap();
    std::fs::create_dir(&lock).unwrap();
    train(&out, &["--resume", "--steps", "4"])
        .run()
        .assert_error(&["train.lock", "not a regular file"]);
    std::fs::remove_dir(&lock).unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("/dev/null", &lock).unwrap();
        train(&out, &["--resume", "--steps", "4"])
            .run()
            .assert_error(&["train.lock", "not a regular file"]);
        std::fs::remove_file(&lock).unwrap();
    }
    // `--out` is a file.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    train(&file, &[]).run().assert_error(&["is a regular file, not a directory"]);
}

/// A network whose values are finite in the config but not in `f32` (a `base_firing` of
/// `1e300`, learnable or fixed): refused before training, and nothing is saved.
#[test]
fn a_network_with_non_finite_values_is_not_trained() {
    let dir = tempfile::tempdir().unwrap();
    for learnable in [true, false] {
        let config = dir.path().join(format!("huge-{learnable}.json"));
        let region = |name: &str, units: u32, sign: &str| {
            serde_json::json!({"name": name, "num_units": units, "sign": sign,
                               "learnable_bias": learnable, "base_firing": 1e300})
        };
        let spec = serde_json::json!({
            "model": {"dynamics": "leaky", "dt": 1.0, "tau": 2.0, "activation": "tanh",
                      "rec_constrained": true, "inp_constrained": false},
            "recurrent_regions": [region("exc", 12, "pos"), region("inh", 4, "neg")],
            "input_regions": [{"name": "inp", "num_units": 3, "sign": "pos"}],
            "recurrent_connections": [{"src_region": "exc", "dst_region": "inh"},
                                      {"src_region": "inh", "dst_region": "exc"}],
            "input_connections": [{"src_region": "inp", "dst_region": "exc"}]
        });
        std::fs::write(&config, spec.to_string()).unwrap();
        let out = dir.path().join(format!("run-{learnable}"));
        let mut args = vec!["train", "flip-flop", "--steps", "3", "--out", out.to_str().unwrap()];
        args.extend(["--config", config.to_str().unwrap(), "--batch", "4", "--time", "10"]);
        mrnn(&args).run().assert_error(&["base_firing"]);
        assert!(!checkpoint(&out).exists(), "learnable {learnable}: a checkpoint was written");
    }
}

/// `bytes` (a safetensors file) with every value of `name` replaced by NaN, metadata kept.
fn poison(bytes: &[u8], name: &str) -> Vec<u8> {
    let file = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    let metadata = header.metadata().clone();
    let tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> = file.tensors();
    let nan: Vec<u8> = {
        let view = file.tensor(name).unwrap();
        let count = view.data().len() / 4;
        std::iter::repeat_n(f32::NAN.to_le_bytes(), count).flatten().collect()
    };
    let mut owned = Vec::new();
    for (key, view) in &tensors {
        let data = if key == name { nan.clone() } else { view.data().to_vec() };
        owned.push((key.clone(), view.dtype(), view.shape().to_vec(), data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(k, dtype, shape, data)| {
            (k.clone(), safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap())
        })
        .collect();
    safetensors::serialize(views, metadata).unwrap()
}
