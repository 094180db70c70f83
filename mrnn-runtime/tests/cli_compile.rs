//! The compiler's commands as users run them: `mrnn check | expand | dot | convert`, their
//! output and exit codes (0 ok, 1 invalid input, 2 usage error).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn reference(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference").join(name)
}

fn mrnn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mrnn")).args(args).output().expect("the mrnn binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes `content` to `name` in a fresh temporary directory.
fn temp_file(dir: &tempfile::TempDir, name: &str, content: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    path.display().to_string()
}

#[test]
fn check_accepts_the_cbgtcl_config() {
    let out = mrnn(&["check", reference("CBGTCL.json").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("8 recurrent regions (350 units)"), "{}", text(&out.stdout));
}

/// Every invalid variant of CBGTCL.json exits 1 with a message naming the offending region or
/// value and its position.
#[test]
fn check_rejects_invalid_variants_of_cbgtcl_with_their_location() {
    let original = std::fs::read_to_string(reference("CBGTCL.json")).unwrap();
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "unknown region",
            "\"dst_region\": \"d2\"",
            "\"dst_region\": \"d3\"",
            "unknown region `d3`",
        ),
        ("zero units", "\"num_units\": 40", "\"num_units\": 0", "region `alm_exc` has zero units"),
        (
            "sparsity 1",
            "\"sparsity\": 0.9",
            "\"sparsity\": 1.0",
            "sparsity `1.0` removes every weight of `d1 -> d1`",
        ),
        ("sparsity out of range", "\"sparsity\": 0.9", "\"sparsity\": 1.5", "got `1.5`"),
        (
            "missing sign",
            "\"name\": \"thal\",\n        \"num_units\": 50,\n        \"base_firing\": 1,\n        \"sign\": \"pos\"",
            "\"name\": \"thal\",\n        \"num_units\": 50,\n        \"base_firing\": 1",
            "region `thal` has no sign",
        ),
        ("duplicate region", "\"name\": \"d2\"", "\"name\": \"d1\"", "duplicate region `d1`"),
        (
            "unknown key",
            "\"base_firing\": 0,\n        \"sign\": \"neg\"",
            "\"base_fring\": 0,\n        \"sign\": \"neg\"",
            "unknown key `base_fring`",
        ),
        ("unknown sign", "\"sign\": \"neg\"", "\"sign\": \"negative\"", "unknown sign `negative`"),
        ("bad json", "\"recurrent_regions\": [", "\"recurrent_regions\": [,", "invalid JSON"),
        (
            "into an input",
            "\"dst_region\": \"d1\",\n        \"sparsity\": 0.25\n      },\n      {\n        \"src_region\": \"iti\"",
            "\"dst_region\": \"iti\",\n        \"sparsity\": 0.25\n      },\n      {\n        \"src_region\": \"iti\"",
            "goes into an input region",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (what, from, to, expected) in cases {
        assert!(original.contains(from), "{what}: the variant's anchor text is not in CBGTCL.json");
        let path = temp_file(&dir, "CBGTCL.json", &original.replacen(from, to, 1));
        let out = mrnn(&["check", &path]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(stderr.contains(expected), "{what}: expected `{expected}` in:\n{stderr}");
        assert!(stderr.contains(&format!("{path}:")), "{what}: no file:line:col in:\n{stderr}");
    }
}

#[test]
fn check_reports_every_error_of_a_rust_file_rustc_style() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(
        &dir,
        "net.rs",
        "use mrnn_runtime::mrnn;\nmrnn! {\n    pub Net {\n        activation: relux,\n        input u[2]: exc;\n        region a[0]: exc;\n        u -> a, b;\n    }\n}\nfn main() {}\n",
    );
    let out = mrnn(&["check", &path]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unknown activation `relux`"), "{stderr}");
    assert!(stderr.contains(&format!("--> {path}:4:21")), "{stderr}");
    assert!(stderr.contains("region `a` has zero units"), "{stderr}");
    assert!(stderr.contains("unknown region `b`"), "{stderr}");
    assert!(stderr.contains("3 errors"), "{stderr}");
}

#[test]
fn check_prints_warnings_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(
        &dir,
        "net.rs",
        "mrnn! { Net { input u[2]: exc; region a[3]: exc; region idle[3]: exc; u -> a; } }\n",
    );
    let out = mrnn(&["check", &path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("warning: region `idle` is never driven"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn expand_prints_the_generated_type() {
    let out = mrnn(&["expand", reference("CBGTCL.json").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let code = text(&out.stdout);
    assert!(code.contains("pub struct Cbgtcl"), "{code}");
    assert!(
        code.contains("pub const GPE: ::core::ops::Range<::core::primitive::usize> = 100..150;"),
        "{code}"
    );
    assert!(code.contains("pub const HIDDEN: ::core::primitive::usize = 350;"), "{code}");
}

#[test]
fn dot_draws_regions_and_projections() {
    let out = mrnn(&["dot", reference("CBGTCL.json").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dot = text(&out.stdout);
    assert!(dot.starts_with("digraph \"CBGTCL\" {"), "{dot}");
    assert!(dot.contains("label=\"gpe\\n50 inhibitory\\nb = 1\""), "{dot}");
    assert!(dot.contains("label=\"input iti\\n25 excitatory\""), "{dot}");
    assert_eq!(dot.matches(" -> ").count(), 21, "{dot}");
    assert!(dot.contains("arrowhead=tee label=\"sparsity 0.9\""), "{dot}");
}

#[test]
fn convert_writes_dsl_that_checks_to_the_same_network() {
    let out = mrnn(&["convert", reference("CBGTCL.json").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let source = text(&out.stdout);
    assert!(source.contains("region gpe[50]: inh, base_firing = 1.0, init = 1.0;"), "{source}");
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(&dir, "cbgtcl.rs", &source);
    let out = mrnn(&["check", &path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(
        "Cbgtcl: 8 recurrent regions (350 units), 1 input region (25 units), 21 connections"
    ));
}

#[test]
fn usage_errors_exit_2_and_bad_files_exit_1() {
    assert_eq!(mrnn(&["check", "config.yaml"]).status.code(), Some(2));
    assert_eq!(mrnn(&["check"]).status.code(), Some(2));
    assert_eq!(mrnn(&["frobnicate"]).status.code(), Some(2));
    let out = mrnn(&["check", "/nonexistent/net.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot read `/nonexistent/net.json`"),
        "{}",
        text(&out.stderr)
    );
}
