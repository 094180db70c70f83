//! The compiler's commands (`check`, `expand`, `dot`, `convert`) against bad configs, awkward
//! names, deep sources, error floods and closed pipes: a clear error or a correct result, never a
//! panic, an abort or a hang.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::{DEFAULT_TIMEOUT, Run, finish, mrnn};

const COMMANDS: [&str; 4] = ["check", "expand", "dot", "convert"];

/// A directory of input files that lives as long as the test.
struct Files(tempfile::TempDir);

impl Files {
    fn new() -> Files {
        Files(tempfile::tempdir().expect("a temporary directory"))
    }

    fn write(&self, name: &str, content: &str) -> String {
        let path = self.0.path().join(name);
        std::fs::write(&path, content).expect("a writable temporary file");
        path.display().to_string()
    }
}

fn reference(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference").join(name)
}

/// A small valid config with `edit` applied to its JSON value.
fn config(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut value = serde_json::json!({
        "recurrent_regions": [
            {"name": "a", "num_units": 4, "sign": "pos", "base_firing": 0.5},
            {"name": "b", "num_units": 4, "sign": "neg"}
        ],
        "input_regions": [{"name": "u", "num_units": 2, "sign": "pos"}],
        "recurrent_connections": [
            {"src_region": "a", "dst_region": "b", "sparsity": 0.5},
            {"src_region": "b", "dst_region": "a"}
        ],
        "input_connections": [{"src_region": "u", "dst_region": "a"}],
        "model": {"dt": 1.0, "tau": 10.0}
    });
    edit(&mut value);
    serde_json::to_string_pretty(&value).expect("a Value serializes")
}

/// Every compiler command on `path` ends in an error that names each of `needles` and says
/// where (`path:line:col`).
fn every_command_rejects(path: &str, needles: &[&str]) {
    for command in COMMANDS {
        let run = mrnn(&[command, path]).run();
        run.assert_error(needles);
        assert!(
            run.stderr.contains(&format!("{path}:")),
            "`mrnn {command}`: no location in\n{}",
            run.stderr
        );
    }
}

#[test]
fn bad_configs_are_located_errors_for_every_command() {
    type Edit = fn(&mut serde_json::Value);
    let files = Files::new();
    let cases: &[(&str, Edit, &[&str])] = &[
        (
            "noise-1e300",
            |v| v["model"]["noise_level_act"] = 1e300.into(),
            &["noise level `act` is `1e300`, which is infinite in f32", "(model.noise_level_act)"],
        ),
        (
            "base-firing-1e300",
            |v| v["recurrent_regions"][0]["base_firing"] = 1e300.into(),
            &[
                "`base_firing` of region `a`",
                "infinite in f32",
                "(recurrent_regions[0].base_firing)",
            ],
        ),
        (
            "init-minus-1e39",
            |v| v["recurrent_regions"][1]["init"] = (-1e39).into(),
            &["`init` of region `b`", "infinite in f32"],
        ),
        (
            "negative-noise",
            |v| v["model"]["noise_level_inp"] = (-0.5).into(),
            &["must be zero or positive", "(model.noise_level_inp)"],
        ),
        ("tau-zero", |v| v["model"]["tau"] = 0.0.into(), &["tau must be positive", "(model.tau)"]),
        ("dt-below-f32", |v| v["model"]["dt"] = 1e-50.into(), &["which is 0 in f32", "(model.dt)"]),
        (
            "spectral-radius-negative",
            |v| v["model"]["spectral_radius"] = (-1.0).into(),
            &["spectral_radius must be positive"],
        ),
        (
            "sparsity-above-one",
            |v| v["recurrent_connections"][0]["sparsity"] = 1.5.into(),
            &["sparsity must be between 0 and 1"],
        ),
        (
            "regions-equal-up-to-case",
            |v| v["recurrent_regions"][1]["name"] = "A".into(),
            &["would generate the constant `A`", "first generated here"],
        ),
        (
            "region-named-hidden",
            |v| v["recurrent_regions"][0]["name"] = "hidden".into(),
            &["constant `HIDDEN`", "built-in constant"],
        ),
        (
            "names-equal-up-to-punctuation",
            |v| {
                v["recurrent_regions"][0]["name"] = "alm-exc".into();
                v["recurrent_regions"][1]["name"] = "alm_exc".into();
            },
            &["constant `ALM_EXC`"],
        ),
        (
            "empty-name",
            |v| v["input_regions"][0]["name"] = "".into(),
            &["input region with an empty name"],
        ),
        (
            "group-as-endpoint",
            |v| {
                v["recurrent_regions"][0]["parent_region"] = "ctx".into();
                v["recurrent_regions"][1]["parent_region"] = "ctx".into();
                v["input_connections"][0]["dst_region"] = "ctx".into();
            },
            &["`ctx` is a group of regions (`a`, `b`), not a region"],
        ),
        (
            "unknown-sign",
            |v| v["recurrent_regions"][1]["sign"] = "negative".into(),
            &["unknown sign `negative`"],
        ),
    ];
    for (name, edit, needles) in cases {
        let path = files.write(&format!("{name}.json"), &config(edit));
        every_command_rejects(&path, needles);
    }
}

/// One mistake, one error: the root cause, not its consequences.
#[test]
fn one_mistake_gives_one_error() {
    let files = Files::new();
    let unknown_sign = files.write(
        "unknown-sign.json",
        &config(|v| v["recurrent_regions"][1]["sign"] = "negative".into()),
    );
    let run = mrnn(&["check", &unknown_sign]).run();
    run.assert_error(&["unknown sign `negative`", "1 error"]);
    assert!(!run.stderr.contains("has no sign"), "{}", run.stderr);

    let no_size = files.write(
        "no-size.json",
        &config(|v| {
            v["recurrent_regions"][1].as_object_mut().map(|r| r.remove("num_units"));
            v["recurrent_connections"][0]["sparsity"] = 0.9.into();
        }),
    );
    let run = mrnn(&["check", &no_size]).run();
    run.assert_error(&["region `b` has no `num_units`", "1 error"]);

    let duplicate = files.write(
        "duplicate.rs",
        "mrnn! { pub Net {\n    input u[2]: exc;\n    region d1[3]: exc;\n    region d1[3]: inh;\n    u -> d1;\n    d1 -> d2;\n    d2 -> d1;\n} }\n",
    );
    let run = mrnn(&["check", &duplicate]).run();
    run.assert_error(&[
        "duplicate region `d1`",
        "did you mean to name this region `d2`?",
        "note: `d1` first declared here",
        "1 error",
    ]);
    assert!(!run.stderr.contains("unknown region"), "{}", run.stderr);
}

/// Names that are not identifiers are fine: every command accepts them, and `expand` names the
/// constants as the documentation says.
#[test]
fn awkward_names_pass_every_command() {
    let files = Files::new();
    let path = files.write(
        "awkward.json",
        &config(|v| {
            v["recurrent_regions"][0]["name"] = "alm-exc".into();
            v["recurrent_regions"][1]["name"] = "my region".into();
            v["input_regions"][0]["name"] = "état".into();
            v["recurrent_connections"] = serde_json::json!([
                {"src_region": "alm-exc", "dst_region": "my region"},
                {"src_region": "my region", "dst_region": "alm-exc"}
            ]);
            v["input_connections"] =
                serde_json::json!([{"src_region": "état", "dst_region": "alm-exc"}]);
        }),
    );
    for command in COMMANDS {
        mrnn(&[command, &path]).run().assert_ok();
    }
    let code = mrnn(&["expand", &path]).run().assert_ok().stdout_text();
    for constant in ["ALM_EXC: ", "MY_REGION: ", "U00E9TAT: "] {
        assert!(code.contains(&format!("pub const {constant}")), "{constant} in\n{code}");
    }
    let source = mrnn(&["convert", &path]).run().assert_ok().stdout_text();
    assert!(source.contains("region \"alm-exc\"[4]: exc"), "{source}");
    let rust = files.write("awkward.rs", &source);
    mrnn(&["check", &rust]).run().assert_ok();
}

fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "(".repeat(depth), ")".repeat(depth))
}

/// Sources nested 40,000 deep, and 40,000 operators long: no stack overflow in any command.
#[test]
fn deep_sources_never_overflow_the_stack() {
    let files = Files::new();
    let network = "mrnn! { pub Net { region a[3]: exc, base_firing = 1.0; a -> a; } }";
    let around = files.write(
        "around.rs",
        &format!("fn main() {{ let _ = {}; }}\n{network}\n", nested(40_000, "1")),
    );
    let flat = files.write(
        "flat.rs",
        &format!("fn main() {{ let _ = {} 1; }}\n{network}\n", "- ".repeat(40_000)),
    );
    for command in COMMANDS {
        mrnn(&[command, &around]).run().assert_ok();
        mrnn(&[command, &flat]).run().assert_ok();
    }
    let inside = files.write(
        "inside.rs",
        &format!("mrnn! {{ pub Net {{ dynamics: {}, }} }}\n", nested(40_000, "x")),
    );
    let unbalanced = files.write("unbalanced.rs", &"{[(".repeat(40_000));
    let json = files.write("deep.json", &format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)));
    let deep_value = files
        .write("deep-value.json", &format!(r#"{{"recurrent_regions": {}}}"#, "[".repeat(100_000)));
    for command in COMMANDS {
        mrnn(&[command, &inside]).run().assert_error(&["brackets nested more than 32 levels deep"]);
        mrnn(&[command, &unbalanced]).run().assert_error(&["cannot parse the file as Rust"]);
        mrnn(&[command, &json]).run().assert_error(&["recursion limit exceeded"]);
        mrnn(&[command, &deep_value]).run().assert_error(&["invalid JSON"]);
    }
}

/// A one-line config with 5,000 errors, and a Rust file with as many: the report shows ten,
/// counts the rest, and stays small.
#[test]
fn error_floods_print_a_bounded_report() {
    let files = Files::new();
    let connections: Vec<String> = (0..5000)
        .map(|i| format!(r#"{{"src_region": "a", "dst_region": "missing_{i}"}}"#))
        .collect();
    let flood = files.write(
        "flood.json",
        &format!(
            r#"{{"recurrent_regions": [{{"name": "a", "num_units": 4, "sign": "pos"}}], "recurrent_connections": [{}]}}"#,
            connections.join(", ")
        ),
    );
    let unknown: Vec<String> = (0..5000).map(|i| format!("a -> missing_{i};")).collect();
    let unknown = unknown.join(" ");
    let rust =
        files.write("flood.rs", &format!("mrnn! {{ pub Net {{ region a[3]: exc; {unknown} }} }}"));
    for path in [&flood, &rust] {
        for command in COMMANDS {
            let run = mrnn(&[command, path.as_str()]).run();
            run.assert_error(&["... and 4,990 more errors", "5000 errors"]);
            assert!(run.stderr.len() < 10_000, "`mrnn {command}` wrote {} bytes", run.stderr.len());
        }
    }
    // A name of a megabyte is shown elided.
    let long = "x".repeat(1 << 20);
    let path = files
        .write("long.json", &config(|v| v["input_connections"][0]["dst_region"] = long.into()));
    let run = mrnn(&["check", &path]).run();
    run.assert_error(&["unknown region", "characters)..."]);
    assert!(run.stderr.len() < 10_000, "{} bytes", run.stderr.len());
}

/// Runs `mrnn ARGS` with its stdout a pipe whose reader is already gone (`mrnn dot x.json |
/// head -0`): the first write fails with EPIPE, deterministically.
fn with_closed_stdout(args: &[&str]) -> Run {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let child = Command::new(env!("CARGO_BIN_EXE_mrnn"))
        .args(args)
        .env_remove("MRNN_MEMORY_LIMIT")
        .env("RAYON_NUM_THREADS", "2")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("the mrnn binary starts");
    finish(child, args.iter().map(|a| (*a).to_owned()).collect(), DEFAULT_TIMEOUT)
}

/// Every command that prints to stdout ends quietly when its reader is gone, as Unix tools do:
/// exit 0, nothing on stderr, no panic.
#[test]
fn a_closed_pipe_ends_every_command_quietly() {
    let files = Files::new();
    let json = reference("CBGTCL.json").display().to_string();
    let rust =
        files.write("net.rs", "mrnn! { pub Net { input u[2]: exc; region a[3]: exc; u -> a; } }\n");
    let mut cases: Vec<Vec<&str>> = Vec::new();
    for command in COMMANDS {
        cases.push(vec![command, &json]);
        cases.push(vec![command, &rust]);
    }
    cases.push(vec!["--help"]);
    cases.push(vec!["check", "--help"]);
    // A command outside the compiler, printing with `println!`.
    cases.push(vec!["bench", "--H", "8", "--B", "1", "--T", "2", "--pass", "fwd", "--runs", "1"]);
    for args in cases {
        let run = with_closed_stdout(&args);
        run.assert_ok();
        assert!(run.stderr.is_empty(), "`{}` printed:\n{}", run.command_line(), run.stderr);
    }
}

/// A full disk is not a closed pipe: the command says so and fails.
#[test]
fn an_unwritable_stdout_is_an_error() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full opens");
    let json = reference("CBGTCL.json").display().to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_mrnn"))
        .args(["expand", json.as_str()])
        .stdin(Stdio::null())
        .stdout(full)
        .stderr(Stdio::piped())
        .spawn()
        .expect("the mrnn binary starts");
    let run = finish(child, vec!["expand".to_owned(), json.clone()], DEFAULT_TIMEOUT);
    run.assert_error(&["cannot write to stdout"]);
}
