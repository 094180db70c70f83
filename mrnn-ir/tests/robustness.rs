//! Robustness of both front doors: random and mutated input never makes the compiler panic, and
//! always gives either a checked result or at least one error.
//!
//! * DSL: random token soup, and valid networks with tokens deleted, duplicated, swapped or
//!   replaced by random numbers, names and punctuation, through `mrnn_ir::expand`.
//! * JSON: random bytes, and `CBGTCL.json` with characters deleted, values swapped, keys renamed,
//!   numbers made huge or negative, and values replaced by ones of the wrong type, through
//!   `mrnn_ir::compile_json` (and the rendering of its report).
//! * Scale: a 2000-region, 20000-connection config and a 200-region, 2000-connection DSL network
//!   compile in time that shows no quadratic pass.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::Value;

// ----------------------------------------------------------------------------------------------
// Inputs

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Valid `mrnn!` bodies to mutate: the expansion snapshots' inputs and a few small networks
/// that exercise the rest of the grammar.
fn valid_networks() -> Vec<String> {
    let mut networks: Vec<String> = ["cbgtcl", "ei", "elman_free"]
        .iter()
        .map(|case| read(&workspace().join(format!("tests/expand/{case}.mrnn"))))
        .collect();
    networks.push(
        "pub Small { noise: none, seed: 3, batch_first: true, spectral_radius: 0.9, \
         region a[3]: exc, init = -0.5; region b[2]: inh; input u[1]: exc; \
         a, b -> a, b (sparsity = 0.25); u -> a (sign = exc); }"
            .to_owned(),
    );
    networks.push("pub FromJson from \"../tests/ui/json/valid.json\" { activation: sigmoid, dale: recurrent, }".to_owned());
    networks
}

fn cbgtcl_json() -> String {
    read(&workspace().join("../shared/reference/CBGTCL.json"))
}

/// Splits DSL text into lexical pieces (identifiers and numbers, string literals, `->`, single
/// punctuation characters), dropping whitespace. Joining them with spaces gives the same tokens.
fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            // A comment: keep doc comments whole (up to the end of the line), drop the others.
            let start = i;
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            let comment: String = chars[start..i].iter().collect();
            if comment.starts_with("///") {
                out.push(format!("{comment}\n"));
            }
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
            i = (i + 1).min(chars.len());
            out.push(chars[start..i].iter().collect());
        } else if c.is_alphanumeric() || c == '_' || c == '.' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c == '-' && chars.get(i + 1) == Some(&'>') {
            out.push("->".to_owned());
            i += 2;
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

const RANDOM_PIECES: &[&str] = &[
    "region",
    "input",
    "from",
    "pub",
    "->",
    ",",
    ";",
    ":",
    "=",
    "+",
    "-",
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    "#",
    "exc",
    "inh",
    "in",
    "sparsity",
    "sign",
    "base_firing",
    "init",
    "learnable_bias",
    "dynamics",
    "leaky",
    "elman",
    "dt",
    "tau",
    "activation",
    "relu",
    "tanh",
    "dale",
    "recurrent",
    "none",
    "noise",
    "act",
    "inp",
    "seed",
    "batch_first",
    "true",
    "spectral_radius",
    "a",
    "b",
    "A",
    "hidden",
    "0",
    "1",
    "1.0",
    "0.5",
    "-1",
    "1e400",
    "99999999999999999999",
    "0.9",
    "\"x.json\"",
    "/// doc\n",
    "r#type",
    "_",
    "self",
];

/// A mutation of a token list.
#[derive(Clone, Debug)]
enum Mutation {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Replace(usize, String),
    Insert(usize, String),
}

fn random_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(RANDOM_PIECES).prop_map(str::to_owned),
        "[a-zA-Z_][a-zA-Z0-9_]{0,6}",
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_filter("a literal", |x| x.is_finite()).prop_map(|x| format!("{x:?}")),
        (0u32..1000).prop_map(|n| format!("0.{n}")),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Indices are taken modulo the length when applied.
    prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (any::<usize>(), random_piece()).prop_map(|(i, p)| Mutation::Replace(i, p)),
        (any::<usize>(), random_piece()).prop_map(|(i, p)| Mutation::Insert(i, p)),
    ]
}

fn apply(pieces: &mut Vec<String>, m: &Mutation) {
    if pieces.is_empty() {
        return;
    }
    let n = pieces.len();
    match m {
        Mutation::Delete(i) => {
            pieces.remove(i % n);
        }
        Mutation::Duplicate(i) => {
            let p = pieces[i % n].clone();
            pieces.insert(i % n, p);
        }
        Mutation::Swap(a, b) => pieces.swap(a % n, b % n),
        Mutation::Replace(i, p) => pieces[i % n].clone_from(p),
        Mutation::Insert(i, p) => pieces.insert(i % (n + 1), p.clone()),
    }
}

// ----------------------------------------------------------------------------------------------
// Properties

/// Expands DSL text (when it lexes as Rust tokens at all: the macro never sees text that does
/// not) and checks the outcome: valid Rust items, and either errors or a network.
fn expand_never_panics(text: &str) {
    let Ok(tokens) = text.parse::<proc_macro2::TokenStream>() else { return };
    let output = mrnn_ir::expand(tokens);
    assert!(!output.is_empty(), "expand returned nothing for:\n{text}");
    let rendered = output.to_string();
    let file = syn::parse2::<syn::File>(output).unwrap_or_else(|e| {
        panic!("expand returned tokens that are not Rust items ({e}) for:\n{text}\n=>\n{rendered}")
    });
    let has_error = rendered.contains("compile_error");
    let has_network = rendered.contains("ARCHITECTURE");
    assert!(
        has_error || has_network,
        "neither an error nor a network for:\n{text}\n=>\n{rendered}"
    );
    if !has_error {
        // A network without errors is a struct and its impls.
        assert!(file.items.iter().any(|item| matches!(item, syn::Item::Struct(_))), "{rendered}");
    }
}

/// Compiles JSON text and checks the outcome: a report with an error that renders, or an
/// architecture that satisfies the checker's promises.
fn compile_json_never_panics(text: &str) {
    match mrnn_ir::compile_json(text, "fuzz.json") {
        Err(report) => {
            assert!(report.has_errors(), "an Err report without errors for:\n{text}");
            let rendered = report.to_string();
            assert!(rendered.contains("error"), "{rendered}");
            let _ = report.one_line_each();
        }
        Ok(compiled) => {
            let _ = compiled.warnings.to_string();
            check_architecture(&compiled.architecture, text);
        }
    }
}

/// What holding an `Architecture` promises: contiguous positive regions, connections that index
/// existing regions, sparsities in [0, 1).
fn check_architecture(arch: &mrnn_ir::Architecture, text: &str) {
    let mut offset = 0;
    for r in arch.regions() {
        assert!(r.units > 0 && r.offset == offset, "bad region {r:?} in:\n{text}");
        offset += r.units;
    }
    assert_eq!(offset, arch.hidden_size(), "{text}");
    let mut offset = 0;
    for r in arch.inputs() {
        assert!(r.units > 0 && r.offset == offset, "bad input {r:?} in:\n{text}");
        offset += r.units;
    }
    assert_eq!(offset, arch.input_size(), "{text}");
    assert!(!arch.regions().is_empty(), "{text}");
    for c in arch.connections() {
        assert!(c.dst < arch.regions().len(), "{c:?} in:\n{text}");
        match c.src {
            mrnn_ir::Source::Recurrent(i) => assert!(i < arch.regions().len(), "{c:?} in:\n{text}"),
            mrnn_ir::Source::Input(i) => assert!(i < arch.inputs().len(), "{c:?} in:\n{text}"),
        }
        if let Some(s) = c.sparsity {
            assert!((0.0..1.0).contains(&s), "{c:?} in:\n{text}");
        }
    }
}

/// All JSON pointers of a value (the root excluded).
fn pointers(value: &Value, at: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(v, &p, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(v, &p, out);
            }
        }
        _ => {}
    }
}

/// A mutation of a JSON document.
#[derive(Clone, Debug)]
enum JsonMutation {
    /// Replace the value at a pointer.
    Set(usize, Value),
    /// Swap the values at two pointers (when neither contains the other).
    Swap(usize, usize),
    /// Rename the key of an object member.
    RenameKey(usize, String),
    /// Remove a member or array element.
    Remove(usize),
}

fn weird_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        Just(Value::from(i64::MAX)),
        Just(Value::from(i64::MIN)),
        Just(Value::from(u64::MAX)),
        Just(Value::from(-1)),
        Just(Value::from(0)),
        Just(Value::from(1e308)),
        Just(Value::from(-1e308)),
        Just(Value::from(f64::MIN_POSITIVE)),
        any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(Value::from),
        "[a-z_]{0,8}".prop_map(Value::from),
        proptest::sample::select(vec![
            "d1", "d2", "gpe", "thal", "iti", "pos", "neg", "leaky", "elman", "relu", ""
        ])
        .prop_map(Value::from),
        Just(Value::Array(vec![])),
        Just(serde_json::json!({})),
        Just(serde_json::json!([{"name": "x"}])),
        Just(serde_json::json!({"name": "x", "num_units": 1})),
    ]
}

fn json_mutation() -> impl Strategy<Value = JsonMutation> {
    prop_oneof![
        (any::<usize>(), weird_value()).prop_map(|(i, v)| JsonMutation::Set(i, v)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| JsonMutation::Swap(a, b)),
        (any::<usize>(), "[a-z_]{1,12}").prop_map(|(i, k)| JsonMutation::RenameKey(i, k)),
        any::<usize>().prop_map(JsonMutation::Remove),
    ]
}

fn apply_json(doc: &mut Value, m: &JsonMutation) {
    let mut all = Vec::new();
    pointers(doc, "", &mut all);
    if all.is_empty() {
        return;
    }
    let pick = |i: usize| all[i % all.len()].clone();
    match m {
        JsonMutation::Set(i, v) => {
            if let Some(slot) = doc.pointer_mut(&pick(*i)) {
                *slot = v.clone();
            }
        }
        JsonMutation::Swap(a, b) => {
            let (a, b) = (pick(*a), pick(*b));
            if a.starts_with(&b) || b.starts_with(&a) {
                return;
            }
            let (Some(va), Some(vb)) = (doc.pointer(&a).cloned(), doc.pointer(&b).cloned()) else {
                return;
            };
            *doc.pointer_mut(&a).expect("pointer found above") = vb;
            *doc.pointer_mut(&b).expect("pointer found above") = va;
        }
        JsonMutation::RenameKey(i, _) | JsonMutation::Remove(i) => {
            let pointer = pick(*i);
            let (parent, last) = pointer.rsplit_once('/').expect("pointers start with /");
            let Some(container) = doc.pointer_mut(parent) else { return };
            let key = last.replace("~1", "/").replace("~0", "~");
            match (container, m) {
                (Value::Object(map), JsonMutation::RenameKey(_, new_key)) => {
                    if let Some(v) = map.remove(&key) {
                        map.insert(new_key.clone(), v);
                    }
                }
                (Value::Object(map), _) => {
                    map.remove(&key);
                }
                (Value::Array(items), JsonMutation::Remove(_)) => {
                    if let Ok(index) = key.parse::<usize>()
                        && index < items.len()
                    {
                        items.remove(index);
                    }
                }
                _ => {}
            }
        }
    }
}

/// A config written to a file of its own for the `from` form, removed when dropped.
struct TempConfig(std::path::PathBuf);

impl TempConfig {
    fn new(text: &str) -> TempConfig {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "mrnn-robustness-{}-{}.json",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, text).expect("writable temp dir");
        TempConfig(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn config() -> Config {
    // 256 cases each unless `PROPTEST_CASES` says otherwise (a long local run: 20000). Failures
    // are reported with their minimal input; no regression files are written into the tree.
    Config { failure_persistence: None, ..Config::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn dsl_token_soup_never_panics(soup in proptest::collection::vec(random_piece(), 0..40)) {
        let body = soup.join(" ");
        expand_never_panics(&body);
        expand_never_panics(&format!("pub N {{ {body} }}"));
        expand_never_panics(&format!("pub N {{ region a[3]: exc; input u[2]: exc; u -> a; {body} }}"));
    }

    #[test]
    fn mutated_dsl_networks_never_panic(
        which in 0usize..5,
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let networks = valid_networks();
        let mut tokens = pieces(&networks[which % networks.len()]);
        for m in &mutations {
            apply(&mut tokens, m);
        }
        expand_never_panics(&tokens.join(" "));
    }

    #[test]
    fn random_bytes_as_json_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        compile_json_never_panics(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn json_shaped_noise_never_panics(text in r#"[\[\]{}",:0-9a-z_ \n.-]{0,200}"#) {
        compile_json_never_panics(&text);
    }

    #[test]
    fn cbgtcl_with_characters_deleted_never_panics(cuts in proptest::collection::vec((any::<usize>(), 1usize..20), 1..5)) {
        let mut text: Vec<char> = cbgtcl_json().chars().collect();
        for (at, len) in cuts {
            let at = at % text.len();
            let end = (at + len).min(text.len());
            text.drain(at..end);
        }
        compile_json_never_panics(&text.into_iter().collect::<String>());
    }

    #[test]
    fn from_form_with_a_mutated_config_never_panics(
        mutations in proptest::collection::vec(json_mutation(), 1..4),
        cuts in proptest::collection::vec((any::<usize>(), 0usize..8), 0..2),
    ) {
        let mut doc: Value = serde_json::from_str(&cbgtcl_json()).expect("CBGTCL.json parses");
        for m in &mutations {
            apply_json(&mut doc, m);
        }
        let mut text: Vec<char> = serde_json::to_string_pretty(&doc).expect("a Value serializes").chars().collect();
        for (at, len) in cuts {
            let at = at % text.len();
            let end = (at + len).min(text.len());
            text.drain(at..end);
        }
        // Problems inside the file are reported under the literal, prefixed with their
        // position: the expander reads and locates them itself.
        let file = TempConfig::new(&text.into_iter().collect::<String>());
        expand_never_panics(&format!("pub FromFuzz from {:?} {{ activation: tanh, }}", file.path()));
    }

    #[test]
    fn cbgtcl_with_mutated_values_never_panics(mutations in proptest::collection::vec(json_mutation(), 1..6)) {
        let mut doc: Value = serde_json::from_str(&cbgtcl_json()).expect("CBGTCL.json parses");
        for m in &mutations {
            apply_json(&mut doc, m);
        }
        // Pretty, so that reports point into a multi-line document as they do for real files.
        compile_json_never_panics(&serde_json::to_string_pretty(&doc).expect("a Value serializes"));
    }
}

// ----------------------------------------------------------------------------------------------
// Hand-picked cases the mutations above might take long to reach.

#[test]
fn edge_case_inputs_never_panic() {
    let dsl = [
        "",
        "pub",
        "pub N",
        "pub N {}",
        "pub N from",
        "pub N from \"\"",
        "pub N from \"/\" {}",
        "pub N { region a[0]: exc; a -> a (sparsity = 0.5); }",
        "pub N { region a[99999999999999999999]: exc; }",
        "pub N { region a[3]: exc; a -> a (sparsity = 1e400); }",
        "pub N { region a[3]: exc; a -> a (sparsity = -1e400); }",
        "pub N { dynamics: leaky(dt = 1e400, tau = 1e400), region a[3]: exc, init = 1.0; }",
        "pub N { dynamics: leaky(dt = -0.0), region a[3]: exc, init = 1.0; }",
        "pub N { seed: 18446744073709551616, region a[3]: exc; }",
        "pub N { region a[3]: exc in a; region a[3]: inh in a; a -> a; a -> a; }",
        "pub N { input u[1]: exc; u -> u; }",
        "pub N { region r#type[1]: exc; region r#a[1]: exc; }",
    ];
    for text in dsl {
        expand_never_panics(text);
    }
    let json = [
        "",
        "null",
        "[]",
        "{}",
        "\"\"",
        "{\"recurrent_regions\": null}",
        "{\"recurrent_regions\": [{}]}",
        "{\"recurrent_regions\": [{\"name\": \"a\", \"num_units\": -1}]}",
        "{\"recurrent_regions\": [{\"name\": \"a\", \"num_units\": 9223372036854775807}]}",
        "{\"recurrent_regions\": [{\"name\": \"a\", \"num_units\": 1e400}]}",
        "{\"recurrent_regions\": [{\"name\": \"\\ud800\", \"num_units\": 1}]}",
        "{\"recurrent_regions\": [{\"name\": \"a\", \"num_units\": 3}], \"recurrent_connections\": [{\"src_region\": \"a\", \"dst_region\": \"a\", \"sparsity\": 0.99999999999999999}]}",
        "{\"model\": {\"dt\": 0, \"tau\": 0}, \"recurrent_regions\": [{\"name\": \"a\", \"num_units\": 1}]}",
        "{\"\u{e9}\": 1, \"recurrent_regions\": [{\"name\": \"\u{1F600}\", \"num_units\": 1, \"\u{e9}\": 2}]}",
    ];
    for text in json {
        compile_json_never_panics(text);
    }
}

/// `serde_json` reports column 0 for an error just after a line break (here: the document ends
/// after `t` and a newline); rendering must not subtract 1 from it.
#[test]
fn rendering_a_syntax_error_at_column_0() {
    let report = mrnn_ir::compile_json("t\n[", "fuzz.json").expect_err("not JSON");
    assert!(report.to_string().contains("invalid JSON"));
}

/// Three regions of `i64::MAX` units would overflow the layout's offsets: the checker rejects
/// sizes beyond `MAX_UNITS` first.
#[test]
fn huge_regions_are_rejected_not_overflowed() {
    let huge = i64::MAX;
    let dsl = format!(
        "pub N {{ region a[{huge}]: exc, init = 1.0; region b[{huge}]: exc, init = 1.0; region c[{huge}]: exc, init = 1.0; }}"
    );
    expand_never_panics(&dsl);
    let json = format!(
        r#"{{"recurrent_regions": [{{"name": "a", "num_units": {huge}}}, {{"name": "b", "num_units": {huge}}}, {{"name": "c", "num_units": {huge}}}], "model": {{"rec_constrained": false}}}}"#
    );
    compile_json_never_panics(&json);
}

// ----------------------------------------------------------------------------------------------
// Scale: nothing quadratic. The bounds are generous for a loaded debug build; the printed times
// are the measurement.

const BOUND: Duration = Duration::from_secs(10);

/// Region `i` projects to the next `fan_out` regions (mod `n`): no duplicate pairs.
fn scale_config(regions: usize, fan_out: usize) -> String {
    let mut out = String::from("{\n  \"recurrent_regions\": [\n");
    for i in 0..regions {
        let sign = if i % 5 == 4 { "neg" } else { "pos" };
        let comma = if i + 1 < regions { "," } else { "" };
        writeln!(out, "    {{\"name\": \"r{i}\", \"num_units\": 4, \"sign\": \"{sign}\", \"base_firing\": 0.1}}{comma}")
            .expect("writing to a String");
    }
    out.push_str(
        "  ],\n  \"input_regions\": [{\"name\": \"u\", \"num_units\": 3, \"sign\": \"pos\"}],\n",
    );
    out.push_str("  \"recurrent_connections\": [\n");
    let mut first = true;
    for i in 0..regions {
        for k in 1..=fan_out {
            let comma = if first { "" } else { ",\n" };
            first = false;
            write!(out, "{comma}    {{\"src_region\": \"r{i}\", \"dst_region\": \"r{}\", \"sparsity\": 0.25}}", (i + k) % regions)
                .expect("writing to a String");
        }
    }
    out.push_str(
        "\n  ],\n  \"input_connections\": [{\"src_region\": \"u\", \"dst_region\": \"r0\"}]\n}\n",
    );
    out
}

fn scale_dsl(regions: usize, fan_out: usize) -> String {
    let mut out = String::from("pub Large {\n");
    for i in 0..regions {
        let sign = if i % 5 == 4 { "inh" } else { "exc" };
        writeln!(out, "    region r{i}[4]: {sign};").expect("writing to a String");
    }
    out.push_str("    input u[3]: exc;\n    u -> r0;\n");
    for i in 0..regions {
        for k in 1..=fan_out {
            writeln!(out, "    r{i} -> r{} (sparsity = 0.25);", (i + k) % regions)
                .expect("writing to a String");
        }
    }
    out.push('}');
    out
}

#[test]
fn a_config_of_2000_regions_and_20000_connections_compiles_quickly() {
    let text = scale_config(2000, 10);
    let start = Instant::now();
    let compiled = mrnn_ir::compile_json(&text, "large.json")
        .unwrap_or_else(|r| panic!("{}", r.one_line_each().join("\n")));
    let elapsed = start.elapsed();
    println!("compile_json: 2000 regions, 20000 connections: {elapsed:?}");
    assert_eq!(compiled.architecture.regions().len(), 2000);
    assert_eq!(compiled.architecture.connections().len(), 20001);
    assert_eq!(compiled.warnings.diagnostics.len(), 0, "{}", compiled.warnings);
    assert!(
        elapsed < BOUND,
        "compile_json took {elapsed:?} for 2000 regions and 20000 connections"
    );
}

#[test]
fn a_dsl_network_of_200_regions_and_2000_connections_expands_quickly() {
    let tokens: proc_macro2::TokenStream = scale_dsl(200, 10).parse().expect("generated DSL lexes");
    let start = Instant::now();
    let output = mrnn_ir::expand(tokens).to_string();
    let elapsed = start.elapsed();
    println!("expand: 200 regions, 2000 connections: {elapsed:?}");
    assert!(!output.contains("compile_error"), "the generated network has errors");
    assert!(!output.contains("__mrnn_warning"), "the generated network has warnings");
    assert_eq!(output.matches("Connection {").count(), 2001);
    assert!(elapsed < BOUND, "expand took {elapsed:?} for 200 regions and 2000 connections");
}
