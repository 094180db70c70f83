//! `mrnn bench` as users run it: one JSON line in the format of the PyTorch baseline, with the
//! thread settings it ran under (the runtime's defaults unless the user set them), and clear
//! errors for bad arguments.

use std::process::{Command, Output};

const SPIN_LIMIT: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";

/// `mrnn bench ARGS` with the thread variables unset, then `env` set.
fn bench(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mrnn"));
    command.arg("bench").args(args).env_remove("RAYON_NUM_THREADS").env_remove(SPIN_LIMIT);
    command.envs(env.iter().copied()).output().expect("the mrnn binary runs")
}

fn record(run: &Output) -> serde_json::Value {
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
    let text = String::from_utf8(run.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "one JSON line: {text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn bench_prints_one_record_per_run_with_its_settings() {
    let args = ["--H", "16", "--B", "4", "--T", "5", "--pass", "train", "--runs", "3"];
    let r = record(&bench(&args, &[]));
    assert_eq!(r["impl"], "mrnn");
    assert_eq!((r["H"].as_u64(), r["B"].as_u64(), r["T"].as_u64()), (Some(16), Some(4), Some(5)));
    assert_eq!(r["pass"], "train");
    let ms = r["ms"].as_array().expect("per-run times");
    assert_eq!(ms.len(), 3);
    assert!(ms.iter().all(|t| t.as_f64().is_some_and(|t| t > 0.0)), "{ms:?}");
    // Unset, the runtime's defaults: every core, and candle's workers sleep at once.
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(r["threads"].as_u64(), Some(cores));
    assert_eq!(r["spin_limit"].as_u64(), Some(0));
    // Set, the user's values.
    let r = record(&bench(&args, &[("RAYON_NUM_THREADS", "1"), (SPIN_LIMIT, "500")]));
    assert_eq!(r["threads"].as_u64(), Some(1));
    assert_eq!(r["spin_limit"].as_u64(), Some(500));
}

#[test]
fn bench_names_bad_arguments() {
    let run = bench(&["--H", "1", "--B", "2", "--T", "3"], &[]);
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("--H must be at least 2"), "{stderr}");
    let run = bench(&["--config", "no/such.json", "--B", "2", "--T", "3"], &[]);
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("cannot read `no/such.json`"), "{stderr}");
}

/// The exit code and stderr of `mrnn bench ARGS` (with `env`).
fn refusal(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let run = bench(args, env);
    (run.status.code(), String::from_utf8_lossy(&run.stderr).into_owned())
}

#[test]
fn bench_validates_every_flag() {
    let small = ["--H", "16", "--B", "2", "--T", "3", "--runs", "1"];
    for (extra, expected) in [
        (
            &["--connectome", "2", "--connect", "NaN"][..],
            "--connect must be a probability in [0, 1], got NaN",
        ),
        (
            &["--connectome", "2", "--connect", "-0.5"],
            "--connect must be a probability in [0, 1], got -0.5",
        ),
        (&["--connectome", "2", "--connect", "1.5"], "got 1.5"),
        (&["--connectome", "2", "--connect", "inf"], "got inf"),
        (&["--connectome", "0"], "--connectome must be between 1 and --H = 16"),
        (&["--connectome", "17"], "got 17"),
        (&["--alpha", "NaN"], "--alpha (dt / tau) must be in (0, 1], got NaN"),
        (&["--alpha", "0"], "got 0"),
        (&["--alpha", "-0.1"], "got -0.1"),
        (&["--alpha", "1.5"], "got 1.5"),
        (&["--B", "0"], "--B must be at least 1, got 0"),
        (&["--T", "0"], "--T must be at least 1, got 0"),
        (&["--runs", "0"], "--runs must be at least 1, got 0"),
        (&["--I", "0"], "--I must be at least 1, got 0"),
        (&["--H", "0"], "--H must be at least 2"),
    ] {
        // The case's flags replace the small defaults.
        let keep = small.chunks(2).filter(|kv| !extra.contains(&kv[0])).flatten();
        let args: Vec<&str> = keep.chain(extra).copied().collect();
        let (code, stderr) = refusal(&args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: expected `{expected}` in {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Negative sizes and NaN sizes are not numbers of units: clap says so.
    for bad in [["--H", "-5"], ["--B", "NaN"], ["--T", "-1"]] {
        let (code, stderr) = refusal(&bad, &[]);
        assert_eq!(code, Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains(bad[0]), "{stderr}");
    }
    // Flags of the built-in networks do not mix with a config.
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference/flip_flop.json");
    let (code, stderr) = refusal(&["--config", config, "--H", "64"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--H") && stderr.contains("--config"), "{stderr}");
}

#[test]
fn bench_refuses_sizes_that_cannot_fit_before_allocating() {
    let limit = [("MRNN_MEMORY_LIMIT", "8G")];
    for args in [
        &["--H", "100000", "--B", "1", "--T", "1"][..],
        &["--H", "64", "--B", "100000000", "--T", "10"],
        &["--H", "64", "--B", "2", "--T", "100000000"],
        &["--connectome", "10", "--H", "100000", "--B", "1", "--T", "1"],
    ] {
        let started = std::time::Instant::now();
        let (code, stderr) = refusal(args, &limit);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("needs about") && stderr.contains("8.0 GiB"), "{stderr}");
        assert!(started.elapsed().as_secs() < 20, "{args:?} took {:?}", started.elapsed());
    }
    // Without a limit set, the machine's own memory: these fit on none.
    let (code, stderr) = refusal(&["--H", "256", "--T", "10000000000"], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("needs about"), "{stderr}");
}
