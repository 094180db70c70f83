//! `mrnn train` as users run it: the files a run writes, `--resume`, and the refusal to
//! overwrite a run.

use std::path::Path;
use std::process::{Command, Output};

fn mrnn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mrnn")).args(args).output().expect("the mrnn binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn metrics(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap()
}

#[test]
fn a_run_writes_its_checkpoint_metrics_and_figures_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_s = out.to_str().unwrap();
    let common = [
        "--hidden",
        "16",
        "--batch",
        "8",
        "--eval-trials",
        "32",
        "--checkpoint-every",
        "5",
        "--out",
        out_s,
    ];
    let mut args = vec!["train", "flip-flop", "--steps", "10", "--time", "20"];
    args.extend(common);
    let run = mrnn(&args);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert!(stderr(&run).contains("held-out sign_accuracy"), "{}", stderr(&run));
    for file in ["checkpoint.safetensors", "metrics.json", "metrics.csv", "loss.png", "trials.png"]
    {
        assert!(out.join(file).is_file(), "missing {file}");
    }
    for png in ["loss.png", "trials.png"] {
        assert_eq!(&std::fs::read(out.join(png)).unwrap()[1..4], b"PNG");
    }
    let m = metrics(&out);
    assert_eq!(m["steps"], 10);
    assert_eq!(m["task"], "flip-flop");
    for key in ["final_loss", "sign_accuracy", "wall_seconds", "seed"] {
        assert!(!m[key].is_null(), "metrics.json lacks `{key}`: {m}");
    }
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 11, "header and one row per step:\n{csv}");

    // Running again into the same directory is refused: nothing saved is lost.
    let again = mrnn(&args);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("already holds a run; pass --resume"), "{}", stderr(&again));

    // --resume trains on to the new step count, with the history kept.
    let mut resume = vec!["train", "flip-flop", "--steps", "15", "--time", "20", "--resume"];
    resume.extend(common);
    let run = mrnn(&resume);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert!(stderr(&run).contains("resuming at step 10"), "{}", stderr(&run));
    let m = metrics(&out);
    assert_eq!(m["steps"], 15);
    assert_eq!(m["resumed_from_step"], 10);
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 16);

    // Optimizer settings may change on resume, and the change is recorded.
    let mut lower = vec!["train", "flip-flop", "--steps", "17", "--time", "20", "--resume"];
    lower.extend(["--lr", "0.005"]);
    lower.extend(common);
    let run = mrnn(&lower);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("--lr changes from 0.01 to 0.005 after step 15"),
        "{}",
        stderr(&run)
    );
    let m = metrics(&out);
    assert_eq!(m["lr"], 0.005);
    assert_eq!(
        m["setting_changes"],
        serde_json::json!([{"step": 15, "setting": "lr", "from": 0.01, "to": 0.005}])
    );

    // What defines the run may not change: each difference is named by its flag.
    let mut other =
        vec!["train", "flip-flop", "--steps", "20", "--time", "30", "--resume", "--hidden", "12"];
    other.extend(&common[2..]);
    let run = mrnn(&other);
    assert_eq!(run.status.code(), Some(1));
    for needle in ["--time 30 vs 20 saved", "--hidden 12 vs 16 saved"] {
        assert!(stderr(&run).contains(needle), "`{needle}` missing: {}", stderr(&run));
    }
}

#[test]
fn bad_arguments_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let out_s = out.to_str().unwrap();
    let run = mrnn(&["train", "flip-flop", "--p", "2", "--out", out_s]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("pulse probability must be in [0, 1]"), "{}", stderr(&run));
    let run = mrnn(&["train", "flip-flop", "--resume", "--out", out_s]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("nothing to resume"), "{}", stderr(&run));
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference/CBGTCL.json");
    let run = mrnn(&["train", "flip-flop", "--config", config, "--out", out_s]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr(&run).contains("has 3 input channels, but the network has 25 input units"),
        "{}",
        stderr(&run)
    );
    assert_eq!(mrnn(&["train", "juggling"]).status.code(), Some(2));
}
