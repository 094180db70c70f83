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
