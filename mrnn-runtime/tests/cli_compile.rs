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

/// The architecture a config compiles to, in a form that ignores the network's name (a JSON
/// network is named after its file, an `mrnn!` one after its type).
fn architecture_of(json: &str) -> mrnn_ir::Spec {
    let compiled =
        mrnn_ir::compile_json(json, "net.json").unwrap_or_else(|r| panic!("{r}\n{json}"));
    mrnn_ir::Spec::from_architecture(&compiled.architecture)
}

/// `mrnn convert FILE` (exit 0), its stdout.
fn convert(args: &[&str]) -> String {
    let mut all = vec!["convert"];
    all.extend_from_slice(args);
    let out = mrnn(&all);
    assert_eq!(out.status.code(), Some(0), "mrnn {all:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn convert_turns_an_mrnn_network_into_an_mrnntorch_config() {
    let dir = tempfile::tempdir().unwrap();
    let body = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/expand/cbgtcl.mrnn"),
    )
    .unwrap();
    let rust =
        temp_file(&dir, "net.rs", &format!("use mrnn_runtime::mrnn;\n\nmrnn! {{\n{body}}}\n"));
    let json = convert(&[&rust]);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["model"]["dynamics"], "leaky", "{json}");
    assert_eq!(value["model"]["dt"], 10.0, "{json}");
    assert_eq!(value["recurrent_regions"][2]["name"], "gpe", "{json}");
    // The same network as mRNNTorch's own config of it.
    let original = std::fs::read_to_string(reference("CBGTCL.json")).unwrap();
    assert_eq!(architecture_of(&json), architecture_of(&original));
}

/// JSON -> mrnn! -> JSON gives the same architecture, for the reference configs and one with
/// names that are not identifiers.
#[test]
fn json_to_mrnn_to_json_keeps_the_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let awkward = temp_file(
        &dir,
        "awkward.json",
        r#"{"recurrent_regions": [
              {"name": "alm-exc", "num_units": 4, "sign": "pos", "base_firing": 0.25, "parent_region": "alm cortex"},
              {"name": "alm inh", "num_units": 2, "sign": "neg", "init": -0.5, "parent_region": "alm cortex"},
              {"name": "état", "num_units": 3, "sign": "pos", "learnable_bias": true}],
            "input_regions": [{"name": "type", "num_units": 2, "sign": "pos"}],
            "recurrent_connections": [
              {"src_region": "alm-exc", "dst_region": "alm inh", "sparsity": 0.5},
              {"src_region": "alm inh", "dst_region": "état"},
              {"src_region": "état", "dst_region": "alm-exc"}],
            "input_connections": [{"src_region": "type", "dst_region": "alm-exc"}],
            "model": {"dynamics": "elman", "activation": "tanh", "noise_level_act": 0.0, "seed": 7,
                      "spectral_radius": 0.9, "batch_first": false, "inp_constrained": false}}"#,
    );
    let configs = [
        reference("CBGTCL.json").display().to_string(),
        reference("flip_flop.json").display().to_string(),
        awkward,
    ];
    for config in &configs {
        let source = convert(&[config]);
        let rust = temp_file(&dir, "converted.rs", &source);
        let back = convert(&[&rust]);
        let original = std::fs::read_to_string(config).unwrap();
        assert_eq!(
            architecture_of(&back),
            architecture_of(&original),
            "{config}:\n{source}\n{back}"
        );
    }
}

/// mrnn! -> JSON -> mrnn! gives the same network: the second source converts back to the same
/// config, byte for byte.
#[test]
fn mrnn_to_json_to_mrnn_keeps_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let expand_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/expand");
    for case in ["cbgtcl", "ei", "elman_free", "awkward_names"] {
        let body = std::fs::read_to_string(expand_dir.join(format!("{case}.mrnn"))).unwrap();
        let rust = temp_file(&dir, &format!("{case}.rs"), &format!("mrnn! {{\n{body}}}\n"));
        let json = convert(&[&rust]);
        let config = temp_file(&dir, &format!("{case}.json"), &json);
        let source = convert(&[&config, "--name", "Again"]);
        let again = temp_file(&dir, &format!("{case}_again.rs"), &source);
        let json_again = convert(&[&again]);
        assert_eq!(json_again, json, "{case}:\n{source}");
    }
}

#[test]
fn convert_picks_one_network_of_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let rust = temp_file(
        &dir,
        "two.rs",
        "mrnn! { pub A { region a[2]: exc, base_firing = 1.0; a -> a; } }\nmrnn! { pub B { region b[3]: inh, base_firing = 1.0; b -> b; } }\n",
    );
    let out = mrnn(&["convert", &rust]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("declares 2 networks (`A`, `B`): pick one with --name"));
    let json = convert(&[&rust, "--name", "B"]);
    assert!(json.contains("\"name\": \"b\""), "{json}");
    let out = mrnn(&["convert", &rust, "--name", "C"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("has no network named `C`"), "{}", text(&out.stderr));
}

/// What `check` accepts, `expand` turns into code (names mangled); what `expand` could not
/// name, `check` rejects at the offending name.
#[test]
fn check_accepts_exactly_what_expand_can_name() {
    let dir = tempfile::tempdir().unwrap();
    let awkward = temp_file(
        &dir,
        "awkward.json",
        r#"{"recurrent_regions": [{"name": "alm-exc", "num_units": 4, "sign": "pos", "base_firing": 1},
                                  {"name": "ALM EXC 2", "num_units": 2, "sign": "neg"}],
            "recurrent_connections": [{"src_region": "alm-exc", "dst_region": "ALM EXC 2"},
                                      {"src_region": "ALM EXC 2", "dst_region": "alm-exc"}]}"#,
    );
    assert_eq!(mrnn(&["check", &awkward]).status.code(), Some(0));
    let out = mrnn(&["expand", &awkward]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let code = text(&out.stdout);
    assert!(
        code.contains("pub const ALM_EXC: ::core::ops::Range<::core::primitive::usize> = 0..4;"),
        "{code}"
    );
    assert!(
        code.contains("pub const ALM_EXC_2: ::core::ops::Range<::core::primitive::usize> = 4..6;"),
        "{code}"
    );

    let clash = temp_file(
        &dir,
        "clash.json",
        &std::fs::read_to_string(&awkward).unwrap().replace("ALM EXC 2", "ALM-EXC"),
    );
    for command in ["check", "expand"] {
        let out = mrnn(&[command, &clash]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("recurrent region `ALM-EXC` would generate the constant `ALM_EXC`"),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("--> {clash}:2:44 (recurrent_regions[1].name)")),
            "{stderr}"
        );
    }
}
