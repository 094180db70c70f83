//! What the compiler says about a broken network, through both front doors: the root cause of
//! each mistake only (no follow-on errors), in source order, located; every number checked in
//! f32 and in its range; groups as endpoints; output bounded whatever the input (thousands of
//! errors, megabyte names, one-line files); input nested arbitrarily deep refused without
//! recursion; and a network with errors that still generates its type and constants.

use std::collections::HashMap;

use mrnn_ir::report::MAX_SHOWN;
use mrnn_ir::source_file::check_file;
use mrnn_ir::{Purpose, Report, compile_json, compile_json_for};

/// The errors of a DSL body, checked as `mrnn check` checks a file (with positions).
fn dsl_report(body: &str) -> Report {
    let file = format!("mrnn! {{\n{body}\n}}\n");
    check_file(&file, "net.rs", std::path::Path::new(".")).report
}

fn messages(report: &Report) -> Vec<&str> {
    report.diagnostics.iter().map(|d| d.message.as_str()).collect()
}

/// The JSON config of a small valid network, as a value to break.
fn base_config() -> serde_json::Value {
    serde_json::json!({
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
        "model": {"dt": 1.0, "tau": 10.0, "noise_level_act": 0.1, "noise_level_inp": 0.1,
                  "spectral_radius": 1.0}
    })
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).expect("a Value serializes")
}

// ----------------------------------------------------------------------------------------------
// One error per mistake

#[test]
fn a_duplicate_region_is_one_error_not_one_per_use_of_the_name_it_meant() {
    let report = dsl_report(
        "pub Net {
            input u[2]: exc;
            region d1[3]: exc;
            region d1[3]: inh;
            u -> d1;
            d1 -> d2;
            d2 -> d1;
        }",
    );
    let out = report.to_string();
    assert_eq!(messages(&report), ["duplicate region `d1`"], "{out}");
    assert!(out.contains("--> net.rs:5:20"), "{out}");
    assert!(out.contains("did you mean to name this region `d2`?"), "{out}");
    assert!(out.contains("note: `d1` first declared here\n --> net.rs:4:20"), "{out}");
}

#[test]
fn a_duplicate_region_alone_keeps_other_unknown_names() {
    let report = dsl_report(
        "pub Net {
            region d1[3]: exc;
            region d1[3]: inh;
            d1 -> striatum;
        }",
    );
    assert_eq!(
        messages(&report),
        ["duplicate region `d1`", "unknown region `striatum`"],
        "{report}"
    );
}

#[test]
fn an_unknown_sign_is_not_also_a_missing_sign() {
    let mut config = base_config();
    config["recurrent_regions"][0]["sign"] = "positive".into();
    let report = compile_json(&pretty(&config), "net.json").unwrap_err();
    assert_eq!(messages(&report).len(), 1, "{report}");
    assert!(messages(&report)[0].starts_with("unknown sign `positive`"), "{report}");

    let report = dsl_report("pub Net { region a[3]: exd; a -> a; }");
    assert_eq!(messages(&report), ["unknown region property `exd` on `a`"], "{report}");
}

#[test]
fn a_missing_size_is_not_also_a_sparsity_error() {
    let mut config = base_config();
    config["recurrent_regions"][1].as_object_mut().unwrap().remove("num_units");
    config["recurrent_connections"][0]["sparsity"] = 0.9.into();
    let report = compile_json(&pretty(&config), "net.json").unwrap_err();
    assert_eq!(messages(&report), ["region `b` has no `num_units`"], "{report}");

    let report = dsl_report(
        "pub Net { region a[3]: exc; region b[99999999999999999999]: exc; a -> b (sparsity = 0.9); }",
    );
    assert_eq!(messages(&report), ["region size `99999999999999999999` is too large"], "{report}");
}

#[test]
fn a_connection_in_the_wrong_list_does_not_leave_its_input_idle() {
    let mut config = base_config();
    config["recurrent_connections"] = serde_json::json!([{"src_region": "u", "dst_region": "a"}, {"src_region": "a", "dst_region": "b"}]);
    config["input_connections"] = serde_json::json!([]);
    let report = compile_json(&pretty(&config), "net.json").unwrap_err();
    assert_eq!(
        messages(&report),
        ["`u` is an input region, but this connection is in `recurrent_connections`"],
        "{report}"
    );
}

#[test]
fn errors_come_in_source_order() {
    // Lowering finds the unknown activation and the unknown region, checking finds the zero
    // size and the sparsity: the report follows the file.
    let report = dsl_report(
        "pub Net {
            region a[0]: exc;
            activation: relux,
            region b[3]: exc;
            a -> b (sparsity = 1.5);
            b -> c;
        }",
    );
    let lines: Vec<usize> = report
        .diagnostics
        .iter()
        .map(|d| report.position(&d.loc).expect("every error is located").line)
        .collect();
    assert_eq!(report.error_count(), 4, "{report}");
    assert!(lines.is_sorted(), "{lines:?}\n{report}");
}

// ----------------------------------------------------------------------------------------------
// Groups

#[test]
fn a_group_is_an_endpoint_in_the_dsl() {
    let file = "mrnn! { pub Net {
        input u[2]: exc;
        region alm_exc[4]: exc in alm;
        region alm_inh[2]: inh in alm;
        region thal[3]: exc;
        u -> alm;
        alm -> thal;
        thal -> alm_exc;
        alm_exc -> alm_inh;
    } }";
    let check = check_file(file, "net.rs", std::path::Path::new("."));
    assert!(!check.report.has_errors(), "{}", check.report);
    let arch = mrnn_ir::layout::layout(&check.lowered[0].ir);
    let pairs: Vec<(&str, &str)> = arch
        .connections()
        .iter()
        .map(|c| (arch.source_name(c.src), arch.regions()[c.dst].name.as_ref()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("u", "alm_exc"),
            ("u", "alm_inh"),
            ("alm_exc", "thal"),
            ("alm_inh", "thal"),
            ("thal", "alm_exc"),
            ("alm_exc", "alm_inh")
        ]
    );
    assert_eq!(arch.groups(), [("alm", Some(0..6))]);
    let code = mrnn_ir::codegen::pretty(&mrnn_ir::generate(&check.lowered[0]));
    assert!(
        code.contains("pub const ALM: ::core::ops::Range<::core::primitive::usize> = 0..6;"),
        "{code}"
    );
}

#[test]
fn a_group_apart_has_no_constant() {
    let file = "mrnn! { pub Net {
        region alm_exc[4]: exc in alm, base_firing = 1.0;
        region thal[3]: exc;
        region alm_inh[2]: inh in alm;
        alm -> thal;
        thal -> alm;
    } }";
    let check = check_file(file, "net.rs", std::path::Path::new("."));
    assert!(!check.report.has_errors(), "{}", check.report);
    let code = mrnn_ir::codegen::pretty(&mrnn_ir::generate(&check.lowered[0]));
    assert!(!code.contains("pub const ALM:"), "{code}");
    assert!(code.contains("pub const ALM_INH:"), "{code}");
}

#[test]
fn a_group_in_a_json_connection_is_named_as_one() {
    let mut config = base_config();
    config["recurrent_regions"][0]["parent_region"] = "ctx".into();
    config["recurrent_regions"][1]["parent_region"] = "ctx".into();
    config["input_connections"][0]["dst_region"] = "ctx".into();
    let report = compile_json(&pretty(&config), "net.json").unwrap_err();
    let out = report.to_string();
    assert_eq!(
        messages(&report),
        ["`ctx` is a group of regions (`a`, `b`), not a region"],
        "{out}"
    );
    assert!(out.contains("(input_connections[0].dst_region)"), "{out}");
}

#[test]
fn an_unknown_name_suggests_a_group() {
    let report = dsl_report(
        "pub Net { region th_a[3]: exc in thal; region th_b[3]: exc in thal; thall -> th_a; }",
    );
    let out = report.to_string();
    assert!(out.contains("unknown region `thall`"), "{out}");
    assert!(out.contains("did you mean `thal`?"), "{out}");
}

// ----------------------------------------------------------------------------------------------
// Numbers

/// Every numeric field of a config, set to a value that is wrong for it: the error names the
/// problem and sits at the field's JSON path.
#[test]
fn every_numeric_field_is_checked_in_f32_and_in_its_range() {
    let cases: &[(&[&str], f64, &str)] = &[
        (&["model", "noise_level_act"], 1e300, "infinite in f32"),
        (&["model", "noise_level_inp"], 1e39, "infinite in f32"),
        (&["model", "noise_level_act"], -0.1, "must be zero or positive"),
        (&["model", "dt"], 1e300, "infinite in f32"),
        (&["model", "dt"], 0.0, "dt must be positive"),
        (&["model", "dt"], 1e-50, "which is 0 in f32"),
        (&["model", "tau"], -1.0, "tau must be positive"),
        (&["model", "tau"], 1e300, "infinite in f32"),
        (&["model", "spectral_radius"], 0.0, "spectral_radius must be positive"),
        (&["model", "spectral_radius"], 1e300, "infinite in f32"),
        (
            &["recurrent_regions", "0", "base_firing"],
            1e300,
            "`base_firing` of region `a` is `1e300`, which is infinite in f32",
        ),
        (&["recurrent_regions", "1", "base_firing"], -1e39, "infinite in f32"),
        (&["recurrent_regions", "0", "init"], 1e300, "`init` of region `a` is `1e300`"),
        (&["recurrent_connections", "0", "sparsity"], 1.5, "sparsity must be between 0 and 1"),
        (&["recurrent_connections", "0", "sparsity"], -0.1, "sparsity must be between 0 and 1"),
        (&["recurrent_connections", "0", "sparsity"], 1.0, "removes every weight"),
    ];
    for (path, value, expected) in cases {
        let mut config = base_config();
        let mut slot = &mut config;
        for key in *path {
            slot = match key.parse::<usize>() {
                Ok(i) => &mut slot[i],
                Err(_) => &mut slot[*key],
            };
        }
        *slot = (*value).into();
        let text = pretty(&config);
        let report = compile_json(&text, "net.json").unwrap_err();
        let out = report.to_string();
        assert_eq!(report.error_count(), 1, "{path:?} = {value}: {out}");
        assert!(out.contains(expected), "{path:?} = {value}: expected `{expected}` in\n{out}");
        let json_path = path
            .iter()
            .map(|k| if k.parse::<usize>().is_ok() { format!("[{k}]") } else { format!(".{k}") })
            .collect::<String>();
        let json_path = json_path.trim_start_matches('.');
        assert!(out.contains(&format!("({json_path})")), "{path:?}: no JSON path in\n{out}");
    }
}

#[test]
fn alpha_and_the_noise_it_scales_are_finite_in_f32() {
    let mut config = base_config();
    config["model"]["dt"] = 1e-30.into();
    config["model"]["tau"] = 1e30.into();
    let report = compile_json(&pretty(&config), "net.json").unwrap_err();
    assert!(report.to_string().contains("is 0 in f32"), "{report}");

    let mut config = base_config();
    config["model"]["dt"] = 1e-6.into();
    config["model"]["tau"] = 1e6.into();
    config["model"]["noise_level_act"] = 1e34.into();
    let report = compile_json(&pretty(&config), "net.json").unwrap_err();
    assert!(report.to_string().contains("per step, which is infinite in f32"), "{report}");
}

#[test]
fn dsl_numbers_are_checked_the_same_way() {
    let report = dsl_report(
        "pub Net {
            noise: (act = 1e300, inp = 0.0),
            region a[3]: exc, base_firing = 1e400, init = -1e39;
            a -> a;
        }",
    );
    let out = report.to_string();
    assert_eq!(report.error_count(), 3, "{out}");
    assert!(out.contains("noise level `act` is `1e300`, which is infinite in f32"), "{out}");
    assert!(
        out.contains("`base_firing` of region `a` must be a finite number, got `inf`"),
        "{out}"
    );
    assert!(out.contains("`init` of region `a` is `-1e39`, which is infinite in f32"), "{out}");
}

// ----------------------------------------------------------------------------------------------
// Bounded output

/// A one-line config with 5,000 errors: ten are shown, each with a snippet of bounded width,
/// and the rest are counted.
#[test]
fn an_error_flood_on_one_line_prints_a_bounded_report() {
    let connections: Vec<String> = (0..5000)
        .map(|i| format!(r#"{{"src_region": "a", "dst_region": "missing_region_{i}"}}"#))
        .collect();
    let text = format!(
        r#"{{"recurrent_regions": [{{"name": "a", "num_units": 4, "sign": "pos"}}], "recurrent_connections": [{}]}}"#,
        connections.join(", ")
    );
    assert!(!text.contains('\n') && text.len() > 200_000);
    let started = std::time::Instant::now();
    let report = compile_json(&text, "flood.json").unwrap_err();
    let out = report.to_string();
    assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    assert_eq!(report.error_count(), 5000);
    assert!(out.len() < 10_000, "{} bytes", out.len());
    assert!(out.contains("... and 4,990 more errors"), "{out}");
    assert!(out.ends_with("flood.json: 5000 errors"), "{out}");
    assert_eq!(out.matches("error: unknown region").count(), MAX_SHOWN);
    assert!(out.lines().all(|l| l.chars().count() < 400), "{out}");
    assert_eq!(report.one_line_each().len(), MAX_SHOWN + 1);
}

#[test]
fn a_megabyte_name_is_shown_elided() {
    let long = "x".repeat(1 << 20);
    let text = format!(
        r#"{{"recurrent_regions": [{{"name": "a", "num_units": 4, "sign": "pos"}}, {{"name": "{long}y", "num_units": 4, "sign": "pos"}}],
          "recurrent_connections": [{{"src_region": "a", "dst_region": "{long}"}}]}}"#
    );
    let started = std::time::Instant::now();
    let report = compile_json(&text, "long.json").unwrap_err();
    let out = report.to_string();
    assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    assert!(out.len() < 5_000, "{} bytes", out.len());
    assert!(out.contains("characters)..."), "{out}");
}

// ----------------------------------------------------------------------------------------------
// Depth

fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "(".repeat(depth), ")".repeat(depth))
}

#[test]
fn deeply_nested_input_is_refused_without_recursion() {
    // A Rust file around the network, 40,000 brackets deep: found and checked.
    let network = "mrnn! { pub Net { region a[3]: exc, base_firing = 1.0; a -> a; } }";
    let file = format!("fn main() {{ let _ = {}; }}\n{network}\n", nested(40_000, "1"));
    let check = check_file(&file, "deep.rs", std::path::Path::new("."));
    assert!(!check.report.has_errors(), "{}", check.report);
    assert_eq!(check.networks, ["Net"]);

    // Inside the network: refused, located.
    let file =
        format!("mrnn! {{ pub Net {{ dynamics: {}, region a[3]: exc; }} }}", nested(40_000, "x"));
    let check = check_file(&file, "deep.rs", std::path::Path::new("."));
    let out = check.report.to_string();
    assert!(out.contains("brackets nested more than 32 levels deep"), "{out}");
    assert!(out.contains("--> deep.rs:1:"), "{out}");

    // Through the macro's own entry point.
    let tokens: proc_macro2::TokenStream =
        format!("pub Net {{ dynamics: {}, region a[3]: exc; }}", nested(40_000, "x"))
            .parse()
            .unwrap();
    let code = mrnn_ir::expand(tokens).to_string();
    assert!(code.contains("brackets nested more than 32 levels deep"));

    // Long flat input does not recurse either.
    let minus = "- ".repeat(40_000);
    let check = check_file(
        &format!("fn f() {{ {minus} 1; }}\n{network}"),
        "flat.rs",
        std::path::Path::new("."),
    );
    assert!(!check.report.has_errors(), "{}", check.report);
    let check = check_file(
        &format!("mrnn! {{ #[doc = {minus} 1] pub Net {{ }} }}"),
        "attr.rs",
        std::path::Path::new("."),
    );
    assert!(check.report.to_string().contains("only doc comments"), "{}", check.report);
}

#[test]
fn deeply_nested_json_is_an_error() {
    for depth in [200, 100_000] {
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let report = compile_json(&text, "deep.json").unwrap_err();
        assert!(report.to_string().contains("recursion limit exceeded"), "{report}");
        let text = format!(
            r#"{{"recurrent_regions": {}}}"#,
            nested(depth, "").replace('(', "[").replace(')', "]")
        );
        assert!(compile_json(&text, "deep.json").is_err());
    }
}

// ----------------------------------------------------------------------------------------------
// A network with errors still has its type

fn constants(code: &str) -> HashMap<String, usize> {
    let file = syn::parse_file(code).unwrap_or_else(|e| panic!("{e}\n{code}"));
    let mut count = HashMap::new();
    for item in &file.items {
        if let syn::Item::Impl(imp) = item {
            for item in &imp.items {
                if let syn::ImplItem::Const(c) = item {
                    *count.entry(c.ident.to_string()).or_insert(0) += 1;
                }
            }
        }
    }
    count
}

#[test]
fn a_network_with_errors_keeps_its_constants() {
    let tokens: proc_macro2::TokenStream = "pub Net {
            input u[2]: exc;
            region thal[3]: exc;
            region d1[3]: inh;
            region d1[2]: exc;
            region a[3]: exc, base_firing = 1e400;
            region A[1]: exc;
            u -> thal;
            thal -> d1 (sign = inh);
            d1 -> thal (sparsity = 7.0);
        }"
    .parse()
    .unwrap();
    let code = mrnn_ir::expand_pretty(tokens);
    assert!(code.contains("compile_error"), "{code}");
    let consts = constants(&code);
    for name in ["HIDDEN", "INPUT", "SEED", "ARCHITECTURE", "THAL", "D1", "A", "U"] {
        assert_eq!(consts.get(name), Some(&1), "`{name}` defined once in\n{code}");
    }
    assert!(
        code.contains("pub const THAL: ::core::ops::Range<::core::primitive::usize> = 0..3;"),
        "{code}"
    );
    assert!(code.contains("::core::primitive::f64::INFINITY"), "{code}");
}

#[test]
fn the_macro_shows_at_most_a_hundred_errors() {
    let unknown: Vec<String> = (0..150).map(|i| format!("a -> missing_{i};")).collect();
    let unknown = unknown.join("\n");
    let tokens: proc_macro2::TokenStream =
        format!("pub Net {{ region a[3]: exc; {unknown} }}").parse().unwrap();
    let code = mrnn_ir::expand(tokens).to_string();
    assert_eq!(code.matches("compile_error").count(), 101, "{code}");
    assert!(code.contains("... and 50 more errors in this network"), "{code}");
}

#[test]
fn codegen_purpose_only_adds_the_rules_of_generated_names() {
    let text = pretty(&base_config());
    assert!(compile_json(&text, "net.json").is_ok());
    assert!(compile_json_for(&text, "net.json", Purpose::Codegen).is_ok());
}
