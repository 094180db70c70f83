//! The two front doors agree: the CBGTCL network written in the `mrnn!` DSL
//! (`tests/expand/cbgtcl.mrnn`, the input of the expansion snapshot) lowers to the same IR as
//! mRNNTorch's `CBGTCL.json`, and lays out to the same `Architecture`.

use std::path::{Path, PathBuf};

use mrnn_ir::ir::{Ir, RegionKind};
use mrnn_ir::{Architecture, Settings, Sign};

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn cbgtcl_json_path() -> PathBuf {
    workspace().join("../shared/reference/CBGTCL.json")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A region as both front doors must agree on it.
#[derive(Debug, PartialEq)]
struct RegionRow {
    name: String,
    kind: RegionKind,
    units: i64,
    sign: Option<Sign>,
    base_firing: f64,
    init: f64,
    parent: Option<String>,
    learnable_bias: bool,
}

/// A connection: source, destination, sparsity, declared sign.
#[derive(Debug, PartialEq)]
struct EdgeRow {
    src: String,
    dst: String,
    sparsity: Option<f64>,
    sign: Option<Sign>,
}

/// What is compared: regions and edges in graph order, and the settings.
#[derive(Debug, PartialEq)]
struct Summary {
    regions: Vec<RegionRow>,
    edges: Vec<EdgeRow>,
    settings: Settings,
}

fn summarize(ir: &Ir) -> Summary {
    let regions = ir
        .regions()
        .map(|(_, r)| RegionRow {
            name: r.name.value.clone(),
            kind: r.kind,
            units: r.units.value,
            sign: r.sign.as_ref().map(|s| s.value),
            base_firing: r.base_firing.value,
            init: r.init.value,
            parent: r.parent.as_ref().map(|p| p.value.clone()),
            learnable_bias: r.learnable_bias,
        })
        .collect();
    let edges = ir
        .connections()
        .map(|(_, src, dst, p)| EdgeRow {
            src: ir.region(src).name.value.clone(),
            dst: ir.region(dst).name.value.clone(),
            sparsity: p.sparsity.as_ref().map(|s| s.value),
            sign: p.sign.as_ref().map(|s| s.value),
        })
        .collect();
    Summary { regions, edges, settings: ir.settings }
}

/// Lowers DSL text (an `mrnn!` body) and returns its IR; any diagnostic fails the test.
fn lower_dsl_text(text: &str) -> Ir {
    let net: mrnn_ir::syntax::Network =
        syn::parse_str(text).unwrap_or_else(|e| panic!("the DSL does not parse: {e}"));
    let lowered = mrnn_ir::lower_dsl(&net, None);
    let messages: Vec<String> = lowered.diagnostics.iter().map(|d| d.message.clone()).collect();
    assert!(messages.is_empty(), "the DSL has diagnostics: {messages:#?}");
    lowered.ir
}

/// Lowers the JSON config under the DSL network's name; any diagnostic fails the test.
fn lower_json_text(text: &str) -> Ir {
    let spec = mrnn_ir::read_spec(text, "CBGTCL.json").unwrap_or_else(|r| panic!("{r}"));
    let (ir, diagnostics) = mrnn_ir::lower_spec(&spec, "Cbgtcl", mrnn_ir::Purpose::Runtime);
    let messages: Vec<String> = diagnostics.iter().map(|d| d.message.clone()).collect();
    assert!(messages.is_empty(), "CBGTCL.json has diagnostics: {messages:#?}");
    ir
}

fn cbgtcl_dsl() -> String {
    read(&workspace().join("tests/expand/cbgtcl.mrnn"))
}

#[test]
fn cbgtcl_dsl_lowers_to_the_json_ir() {
    let dsl = summarize(&lower_dsl_text(&cbgtcl_dsl()));
    let json = summarize(&lower_json_text(&read(&cbgtcl_json_path())));
    assert_eq!(dsl.regions.len(), 9, "8 recurrent regions and the input `iti`");
    assert_eq!(dsl.edges.len(), 21);
    assert_eq!(dsl.regions, json.regions, "regions differ");
    assert_eq!(dsl.edges, json.edges, "connections differ (or their order)");
    assert_eq!(dsl.settings, json.settings, "settings differ");
}

#[test]
fn cbgtcl_dsl_lays_out_to_the_json_architecture() {
    let dsl = mrnn_ir::layout::layout(&lower_dsl_text(&cbgtcl_dsl()));
    let json: Architecture = mrnn_ir::compile_json(&read(&cbgtcl_json_path()), "Cbgtcl.json")
        .unwrap_or_else(|r| panic!("{r}"))
        .architecture;
    assert_eq!(dsl.name(), "Cbgtcl");
    assert_eq!(dsl, json);
    let from_file = mrnn_ir::compile_json_file(&cbgtcl_json_path())
        .unwrap_or_else(|r| panic!("{r}"))
        .architecture;
    assert_eq!(from_file.name(), "CBGTCL", "a JSON network is named after its file");
    assert_eq!(
        (dsl.regions(), dsl.inputs(), dsl.connections(), dsl.settings()),
        (from_file.regions(), from_file.inputs(), from_file.connections(), from_file.settings())
    );
}

// The comparison is sharp: one changed number or one reordered pair of connections shows.

#[test]
fn a_changed_sparsity_is_noticed() {
    let text = cbgtcl_dsl();
    let changed = text.replacen(
        "alm_exc -> d1, d2 (sparsity = 0.25)",
        "alm_exc -> d1, d2 (sparsity = 0.3)",
        1,
    );
    assert_ne!(changed, text, "the line to change is in cbgtcl.mrnn");
    let dsl = summarize(&lower_dsl_text(&changed));
    let json = summarize(&lower_json_text(&read(&cbgtcl_json_path())));
    let differing: Vec<_> = dsl.edges.iter().zip(&json.edges).filter(|(a, b)| a != b).collect();
    assert_eq!(differing.len(), 2, "{differing:#?}");
}

#[test]
fn reordered_connections_are_noticed() {
    let text = cbgtcl_dsl();
    let changed =
        text.replacen("d1 -> d1, d2 (sparsity = 0.9)", "d1 -> d2, d1 (sparsity = 0.9)", 1);
    assert_ne!(changed, text, "the line to change is in cbgtcl.mrnn");
    let dsl = summarize(&lower_dsl_text(&changed));
    let json = summarize(&lower_json_text(&read(&cbgtcl_json_path())));
    assert_eq!(dsl.regions, json.regions);
    assert_ne!(dsl.edges, json.edges);
}

#[test]
fn a_changed_setting_is_noticed() {
    let text = cbgtcl_dsl();
    let changed = text.replacen("activation: relu", "activation: tanh", 1);
    assert_ne!(changed, text, "the line to change is in cbgtcl.mrnn");
    let dsl = summarize(&lower_dsl_text(&changed));
    let json = summarize(&lower_json_text(&read(&cbgtcl_json_path())));
    assert_ne!(dsl.settings, json.settings);
}
