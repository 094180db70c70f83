//! Conversion between the front doors: an `mrnn!` invocation equivalent to a checked
//! architecture (for `mrnn convert config.json`), so JSON users can move a network into Rust
//! code, and the mRNNTorch config of one (for `mrnn convert net.rs`), so a network written in
//! Rust can go back to Python. Either way, compiling the result gives the same architecture.

use std::fmt::Write;

use crate::check::is_identifier;
use crate::model::{Architecture, Dynamics};
use crate::spec::Spec;

/// A region or group name as the DSL writes it: the name itself when it is a plain identifier,
/// else a string literal (`"alm-exc"`, `"type"`, `"état"`).
#[must_use]
pub fn dsl_name(name: &str) -> String {
    if is_identifier(name) {
        name.to_owned()
    } else {
        proc_macro2::Literal::string(name).to_string()
    }
}

/// The mRNNTorch config of an architecture, with every setting in its `"model"` object.
#[must_use]
pub fn to_json(arch: &Architecture) -> String {
    Spec::from_architecture(arch).to_json_pretty()
}

/// The `mrnn!` source of an architecture, with `type_name` as the generated type. Names that are
/// not identifiers are written as strings. Fails when `type_name` is not an identifier.
pub fn to_dsl(arch: &Architecture, type_name: &str, origin: &str) -> Result<String, String> {
    if !is_identifier(type_name) {
        return Err(format!("`{type_name}` cannot be a type name; pass another with --name"));
    }
    let s = arch.settings();
    let mut out = String::new();
    let _ = writeln!(out, "mrnn! {{");
    if !origin.is_empty() {
        // A doc comment ends at a line break: a path with one must not end it early.
        let origin: String = origin.chars().filter(|c| !c.is_control()).collect();
        let _ = writeln!(out, "    /// Converted from `{origin}` by `mrnn convert`.");
    }
    let _ = writeln!(out, "    pub {type_name} {{");
    let dynamics = match s.dynamics {
        Dynamics::Leaky { dt, tau } => format!("leaky(dt = {dt:?}, tau = {tau:?})"),
        Dynamics::Elman => "elman".to_owned(),
    };
    let _ = writeln!(out, "        dynamics: {dynamics},");
    let _ = writeln!(out, "        activation: {},", s.activation.name());
    let dale = match (s.dale.recurrent, s.dale.input) {
        (true, true) => "recurrent + input",
        (true, false) => "recurrent",
        (false, true) => "input",
        (false, false) => "none",
    };
    let _ = writeln!(out, "        dale: {dale},");
    let _ = writeln!(out, "        noise: (act = {:?}, inp = {:?}),", s.noise.act, s.noise.inp);
    if let Some(rho) = s.spectral_radius {
        let _ = writeln!(out, "        spectral_radius: {rho:?},");
    }
    if !s.batch_first {
        let _ = writeln!(out, "        batch_first: false,");
    }
    let _ = writeln!(out, "        seed: {},", s.seed);
    if !arch.inputs().is_empty() {
        out.push('\n');
    }
    for r in arch.inputs() {
        let _ = writeln!(
            out,
            "        input {}[{}]: {};",
            dsl_name(&r.name),
            r.units,
            r.sign.dsl_name()
        );
    }
    out.push('\n');
    for r in arch.regions() {
        let mut props = vec![r.sign.dsl_name().to_owned()];
        if let Some(p) = &r.parent {
            props[0] = format!("{} in {}", r.sign.dsl_name(), dsl_name(p));
        }
        if r.base_firing != 0.0 {
            props.push(format!("base_firing = {:?}", r.base_firing));
        }
        if r.init != 0.0 {
            props.push(format!("init = {:?}", r.init));
        }
        if r.learnable_bias {
            props.push("learnable_bias".to_owned());
        }
        let _ = writeln!(
            out,
            "        region {}[{}]: {};",
            dsl_name(&r.name),
            r.units,
            props.join(", ")
        );
    }
    if !arch.connections().is_empty() {
        out.push('\n');
    }
    for c in arch.connections() {
        let src = dsl_name(arch.source_name(c.src));
        let dst = dsl_name(&arch.regions()[c.dst].name);
        let sparsity = c.sparsity.map(|s| format!(" (sparsity = {s:?})")).unwrap_or_default();
        let _ = writeln!(out, "        {src} -> {dst}{sparsity};");
    }
    let _ = writeln!(out, "    }}");
    let _ = writeln!(out, "}}");
    Ok(out)
}

/// A type name for a config file's network: `flip_flop` -> `FlipFlop`, `CBGTCL` -> `Cbgtcl`.
#[must_use]
pub fn type_name_for(stem: &str) -> String {
    let mut out = String::new();
    for part in stem.split(|c: char| !c.is_ascii_alphanumeric()).filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars.map(|c| c.to_ascii_lowercase()));
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "Network");
    }
    out
}
