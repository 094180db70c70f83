//! The JSON front door on the real configs of ../shared/reference.

use mrnn_ir::{Activation, Dynamics, Sign, Source, compile_json, compile_json_file};

fn reference(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference").join(name)
}

#[test]
fn compiles_the_cbgtcl_config() {
    let compiled = compile_json_file(&reference("CBGTCL.json")).unwrap_or_else(|r| panic!("{r}"));
    let arch = compiled.architecture;
    assert_eq!(arch.hidden_size(), 350);
    assert_eq!(arch.input_size(), 25);
    assert_eq!(arch.regions().len(), 8);
    assert_eq!(arch.connections().len(), 21);
    let gpe = arch.region("gpe").unwrap();
    assert_eq!(
        (gpe.offset, gpe.units, gpe.sign, gpe.base_firing, gpe.init),
        (100, 50, Sign::Inh, 1.0, 1.0)
    );
    let alm_inhib = arch.region("alm_inhib").unwrap();
    assert_eq!(alm_inhib.range(), 340..350);
    let iti = arch.connections().iter().filter(|c| matches!(c.src, Source::Input(0))).count();
    assert_eq!(iti, 2);
    assert_eq!(arch.settings().dynamics, Dynamics::Leaky { dt: 10.0, tau: 100.0 });
    assert!(arch.settings().dale.recurrent && arch.settings().dale.input);
}

#[test]
fn reads_the_model_object() {
    let arch = compile_json_file(&reference("flip_flop.json")).unwrap().architecture;
    let s = arch.settings();
    assert_eq!(s.dynamics, Dynamics::Leaky { dt: 1.0, tau: 2.0 });
    assert_eq!(s.activation, Activation::Tanh);
    assert!(s.dale.recurrent && !s.dale.input);
    assert!(arch.regions().iter().all(|r| r.learnable_bias));
}

#[test]
fn reports_every_problem_with_its_location() {
    let text = std::fs::read_to_string(reference("CBGTCL.json")).unwrap();
    let broken = text
        .replacen("\"dst_region\": \"d2\"", "\"dst_region\": \"d3\"", 1)
        .replacen("\"num_units\": 50", "\"num_units\": 0", 1)
        .replacen("\"sparsity\": 0.9", "\"sparsity\": 1.5", 1);
    let report = compile_json(&broken, "CBGTCL.json").unwrap_err();
    let out = report.to_string();
    assert_eq!(report.error_count(), 3, "{out}");
    assert!(out.contains("unknown region `d3`"), "{out}");
    assert!(out.contains("did you mean `d1`?") || out.contains("did you mean `d2`?"), "{out}");
    assert!(out.contains("region `d1` has zero units"), "{out}");
    assert!(out.contains("sparsity must be between 0 and 1, got `1.5`"), "{out}");
    assert!(
        out.contains("CBGTCL.json:") && out.contains("(recurrent_connections[1].dst_region)"),
        "{out}"
    );
}

#[test]
fn an_architecture_round_trips_through_its_spec() {
    let arch = compile_json_file(&reference("CBGTCL.json")).unwrap().architecture;
    let spec = mrnn_ir::Spec::from_architecture(&arch);
    let again = mrnn_ir::compile_spec(&spec, "CBGTCL.json", "").unwrap().architecture;
    assert_eq!(again, arch);
}
