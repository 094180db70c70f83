//! Names: whatever regions, input regions and groups are called (ASCII punctuation, spaces,
//! unicode, digits first, Rust keywords, `self`, `Self`, `_`, names equal up to case, names of
//! built-in constants), a network the checker accepts expands to Rust that parses, with valid
//! and unique constants, through both front doors: a JSON config (what `mrnn expand net.json`
//! prints) and the same network written in the DSL (what `mrnn convert` writes and `mrnn!`
//! expands). The checker accepts exactly the networks whose generated constants are distinct,
//! and rejects the others with located errors about their names.

use std::collections::{HashMap, HashSet};

use mrnn_ir::check::{GENERATED_PREFIX, RESERVED_CONSTS, const_name};
use mrnn_ir::source_file::find_invocations;
use mrnn_ir::syntax::Network;
use mrnn_ir::{Architecture, Purpose, Spec, compile_json_for, convert};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Value, json};

/// Names people and generators give regions, and names chosen to collide.
const AWKWARD: &[&str] = &[
    "self",
    "Self",
    "_",
    "__",
    "type",
    "fn",
    "r#type",
    "crate",
    "super",
    "in",
    "region",
    "input",
    "Input",
    "hidden",
    "HIDDEN",
    "seed",
    "architecture",
    "__mrnn_regions",
    "a",
    "A",
    "alm-exc",
    "alm_exc",
    "ALM EXC",
    "état",
    "ÉTAT",
    "1st",
    "_1st",
    " ",
    "-",
    "a\"b",
    "a\\b",
    "a`b",
    "a|b",
    "tab\there",
    "line\nbreak",
    "日本",
    "🧠",
    "",
];

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z][a-z0-9_]{0,5}",
        2 => "[ -~]{0,6}",
        2 => "\\PC{1,4}",
        3 => proptest::sample::select(AWKWARD).prop_map(str::to_owned),
    ]
}

/// A network's names: recurrent regions (each with an optional group), input regions.
#[derive(Debug, Clone)]
struct Names {
    recurrent: Vec<(String, Option<String>)>,
    inputs: Vec<String>,
}

fn names() -> impl Strategy<Value = Names> {
    let recurrent = proptest::collection::vec((name(), proptest::option::of(0usize..2)), 1..6);
    let inputs = proptest::collection::vec(name(), 0..3);
    let groups = proptest::collection::vec(name(), 2);
    // Some names made equal to another up to ASCII case: `a` and `A`.
    let recase = proptest::collection::vec((any::<usize>(), any::<usize>()), 0..2);
    (recurrent, inputs, groups, recase).prop_map(|(recurrent, mut inputs, groups, recase)| {
        let mut recurrent: Vec<(String, Option<String>)> =
            recurrent.into_iter().map(|(n, g)| (n, g.map(|g| groups[g].clone()))).collect();
        for (from, to) in recase {
            let from = recurrent[from % recurrent.len()].0.to_ascii_uppercase();
            match inputs.len() {
                0 => {
                    let len = recurrent.len();
                    recurrent[to % len].0 = from;
                }
                n => inputs[to % n] = from,
            }
        }
        Names { recurrent, inputs }
    })
}

/// A valid network with these names: 2 units each, signed, every input into the first region,
/// the recurrent regions in a ring.
fn config(names: &Names) -> Value {
    let recurrent: Vec<Value> = names
        .recurrent
        .iter()
        .map(|(n, group)| {
            // A tonic drive, so that no region is "never driven" (a warning, beside the point).
            let mut r = json!({"name": n, "num_units": 2, "sign": "pos", "base_firing": 0.5});
            if let Some(g) = group {
                r["parent_region"] = json!(g);
            }
            r
        })
        .collect();
    let inputs: Vec<Value> =
        names.inputs.iter().map(|n| json!({"name": n, "num_units": 2, "sign": "pos"})).collect();
    let first = &names.recurrent[0].0;
    let n = names.recurrent.len();
    let ring: Vec<Value> = (0..n)
        .map(|i| {
            json!({"src_region": names.recurrent[i].0, "dst_region": names.recurrent[(i + 1) % n].0})
        })
        .collect();
    let from_inputs: Vec<Value> =
        names.inputs.iter().map(|u| json!({"src_region": u, "dst_region": first})).collect();
    json!({
        "recurrent_regions": recurrent,
        "input_regions": inputs,
        "recurrent_connections": ring,
        "input_connections": from_inputs,
    })
}

/// Whether the checker should accept these names: non-empty and unique names, no group named
/// like a region, and distinct constants for regions, input regions and contiguous groups, none
/// of them built in.
fn acceptable(names: &Names) -> bool {
    let all: Vec<&str> = names
        .recurrent
        .iter()
        .map(|(n, _)| n.as_str())
        .chain(names.inputs.iter().map(String::as_str))
        .collect();
    let unique: HashSet<&str> = all.iter().copied().collect();
    if all.iter().any(|n| n.is_empty()) || unique.len() != all.len() {
        return false;
    }
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, (_, group)) in names.recurrent.iter().enumerate() {
        let Some(g) = group else { continue };
        if unique.contains(g.as_str()) {
            return false;
        }
        match groups.iter_mut().find(|(name, _)| name == g) {
            Some((_, members)) => members.push(i),
            None => groups.push((g, vec![i])),
        }
    }
    let contiguous =
        groups.iter().filter(|(_, m)| m.windows(2).all(|w| w[1] == w[0] + 1)).map(|(g, _)| *g);
    let mut constants = HashSet::new();
    all.into_iter().chain(contiguous).all(|n| {
        let c = const_name(n);
        !RESERVED_CONSTS.contains(&c.as_str())
            && !c.starts_with(GENERATED_PREFIX)
            && constants.insert(c)
    })
}

/// The associated constants of the generated `impl` blocks, with how often each is defined.
fn constants(file: &syn::File) -> HashMap<String, usize> {
    let mut count = HashMap::new();
    for item in &file.items {
        let syn::Item::Impl(imp) = item else { continue };
        for item in &imp.items {
            if let syn::ImplItem::Const(c) = item {
                *count.entry(c.ident.to_string()).or_insert(0) += 1;
            }
        }
    }
    count
}

/// Generated code that parses, with every constant defined once; returns the constants.
fn parse_generated(code: &str, what: &str) -> Result<HashMap<String, usize>, TestCaseError> {
    let file = syn::parse_file(code).map_err(|e| {
        TestCaseError::fail(format!("{what}: generated code does not parse: {e}\n{code}"))
    })?;
    let consts = constants(&file);
    let repeated: Vec<_> = consts.iter().filter(|(_, n)| **n > 1).collect();
    prop_assert!(repeated.is_empty(), "{what}: constants defined twice: {repeated:?}\n{code}");
    Ok(consts)
}

/// The network written in the DSL by `mrnn convert`, expanded by `mrnn!`: it compiles to the
/// same architecture, and expands to code with the same constants.
fn through_the_dsl(
    arch: &Architecture,
    json_consts: &HashMap<String, usize>,
) -> Result<(), TestCaseError> {
    let source = convert::to_dsl(arch, "Names", "names.json").map_err(TestCaseError::fail)?;
    let invocations =
        find_invocations(&source).map_err(|e| TestCaseError::fail(format!("{e}\n{source}")))?;
    prop_assert_eq!(invocations.len(), 1, "{}", source);
    let tokens = invocations.into_iter().next().map(|i| i.tokens).unwrap_or_default();
    let net = syn::parse2::<Network>(tokens.clone()).map_err(|e| {
        TestCaseError::fail(format!("the converted source does not parse: {e}\n{source}"))
    })?;
    let lowered = mrnn_ir::lower_dsl(&net, None);
    let errors: Vec<_> =
        lowered.diagnostics.iter().filter(|d| d.severity == mrnn_ir::Severity::Error).collect();
    prop_assert!(errors.is_empty(), "{:?}\n{}", errors, source);
    let again = mrnn_ir::layout::layout(&lowered.ir);
    prop_assert_eq!(Spec::from_architecture(&again), Spec::from_architecture(arch), "{}", source);
    let code = mrnn_ir::expand_pretty(tokens);
    prop_assert!(!code.contains("compile_error"), "{}", code);
    let dsl_consts = parse_generated(&code, "the DSL's expansion")?;
    prop_assert_eq!(&dsl_consts, json_consts);
    Ok(())
}

fn check_names(names: &Names) -> Result<(), TestCaseError> {
    let text = serde_json::to_string_pretty(&config(names)).expect("a Value serializes");
    let expected = acceptable(names);
    match compile_json_for(&text, "names.json", Purpose::Codegen) {
        Ok(compiled) => {
            prop_assert!(expected, "accepted, but constants collide: {names:?}");
            let arch = &compiled.architecture;
            let code = mrnn_ir::codegen::expand_architecture(arch, "Names", &[])
                .map_err(TestCaseError::fail)?;
            let consts = parse_generated(&code, "the config's expansion")?;
            // Every region and input region has its constant.
            for n in
                arch.regions().iter().map(|r| &r.name).chain(arch.inputs().iter().map(|r| &r.name))
            {
                prop_assert!(consts.contains_key(&const_name(n)), "no constant for `{n}`\n{code}");
            }
            through_the_dsl(arch, &consts)?;
        }
        Err(report) => {
            prop_assert!(!expected, "rejected valid names {names:?}:\n{report}");
            for d in &report.diagnostics {
                let about_names =
                    ["duplicate region", "constant", "empty name", "is also the name"]
                        .iter()
                        .any(|what| d.message.contains(what));
                prop_assert!(about_names, "an error not about names: {}\n{report}", d.message);
                prop_assert!(
                    report.position(&d.loc).is_some(),
                    "an error without a place: {report}"
                );
            }
        }
    }
    Ok(())
}

fn config_cases() -> Config {
    // 256 cases unless `PROPTEST_CASES` says otherwise. Failures are found again from the
    // seed proptest prints; nothing is written next to the sources.
    Config { failure_persistence: None, ..Config::default() }
}

proptest! {
    #![proptest_config(config_cases())]

    #[test]
    fn accepted_names_expand_to_code_that_parses_with_unique_constants(names in names()) {
        check_names(&names)?;
    }
}

/// The names of the issue, each through both front doors.
#[test]
fn awkward_names_of_real_configs_expand() {
    let cases: &[(&[&str], &[&str], bool)] = &[
        (&["alm-exc", "alm inh", "état"], &["cue"], true),
        (&["a", "A"], &[], false),
        (&["hidden"], &[], false),
        (&["thal"], &["input"], false),
        (&["self", "Self"], &[], false),
        (&["self", "super", "_", "r#type", "1st"], &["🧠"], true),
    ];
    for (recurrent, inputs, ok) in cases {
        let names = Names {
            recurrent: recurrent.iter().map(|n| ((*n).to_owned(), None)).collect(),
            inputs: inputs.iter().map(|n| (*n).to_owned()).collect(),
        };
        assert_eq!(acceptable(&names), *ok, "{names:?}");
        check_names(&names).unwrap_or_else(|e| panic!("{names:?}: {e}"));
    }
}

/// A collision is reported at the second name, located by line, column and JSON path, with a
/// note at the first.
#[test]
fn colliding_constants_are_located_with_a_note_at_the_first() {
    let text = r#"{
  "recurrent_regions": [
    {"name": "alm_exc", "num_units": 2, "sign": "pos"},
    {"name": "alm-exc", "num_units": 2, "sign": "pos"}
  ],
  "recurrent_connections": [{"src_region": "alm_exc", "dst_region": "alm-exc"}]
}"#;
    // The run-time front door has no constants to name: it accepts the config.
    assert!(mrnn_ir::compile_json(text, "net.json").is_ok());
    let report = compile_json_for(text, "net.json", Purpose::Codegen).unwrap_err();
    let out = report.to_string();
    assert_eq!(report.error_count(), 1, "{out}");
    assert!(
        out.contains(
            "recurrent region `alm-exc` would generate the constant `ALM_EXC`, which the recurrent region declared earlier already generates"
        ),
        "{out}"
    );
    assert!(out.contains("--> net.json:4:14 (recurrent_regions[1].name)"), "{out}");
    assert!(out.contains("note: `ALM_EXC` first generated here\n --> net.json:3:14"), "{out}");
}
