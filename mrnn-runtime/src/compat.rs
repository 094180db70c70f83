//! Comparing two architectures: the list of what differs, in words, for refusals such as
//! "this checkpoint is not for this network".

use mrnn_ir::{Architecture, Settings};

/// Everything that differs between `have` (the network's) and `want` (the one asked for),
/// in words; empty when they describe the same network.
///
/// The network's name is ignored (the DSL names it after the type, JSON after the file), and so
/// are the settings that only shape initialization (seed, spectral radius): a trained network is
/// the same network whatever it was initialized with.
#[must_use]
#[allow(clippy::float_cmp, reason = "a region property that differs at all is a different network")]
pub fn differences(have: &Architecture, want: &Architecture) -> Vec<String> {
    let mut out = Vec::new();
    let names = |rs: &mut dyn Iterator<Item = String>| rs.collect::<Vec<_>>().join(", ");
    let (hr, wr) = (have.regions(), want.regions());
    if hr.len() == wr.len() {
        for (a, b) in hr.iter().zip(wr) {
            let n = &a.name;
            if a.name != b.name {
                out.push(format!("recurrent region `{}` where `{}` was expected", a.name, b.name));
                continue;
            }
            if a.units != b.units {
                out.push(format!("region `{n}` has {} units, expected {}", a.units, b.units));
            }
            if a.sign != b.sign {
                out.push(format!(
                    "region `{n}` is {}, expected {}",
                    a.sign.describe(),
                    b.sign.describe()
                ));
            }
            if a.base_firing != b.base_firing {
                out.push(format!(
                    "region `{n}` has base_firing {}, expected {}",
                    a.base_firing, b.base_firing
                ));
            }
            if a.init != b.init {
                out.push(format!("region `{n}` has init {}, expected {}", a.init, b.init));
            }
            if a.parent != b.parent {
                out.push(format!(
                    "region `{n}` has parent {:?}, expected {:?}",
                    a.parent, b.parent
                ));
            }
            if a.learnable_bias != b.learnable_bias {
                out.push(format!(
                    "region `{n}` has learnable_bias {}, expected {}",
                    a.learnable_bias, b.learnable_bias
                ));
            }
        }
    } else {
        out.push(format!(
            "recurrent regions [{}], expected [{}]",
            names(&mut hr.iter().map(|r| format!("{}[{}]", r.name, r.units))),
            names(&mut wr.iter().map(|r| format!("{}[{}]", r.name, r.units)))
        ));
    }
    let (hi, wi) = (have.inputs(), want.inputs());
    let describe_inputs = |rs: &[mrnn_ir::InputRegion]| {
        rs.iter()
            .map(|r| format!("{}[{}] {}", r.name, r.units, r.sign.spec_name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if hi.len() != wi.len()
        || hi
            .iter()
            .zip(wi)
            .any(|(a, b)| a.name != b.name || a.units != b.units || a.sign != b.sign)
    {
        out.push(format!(
            "input regions [{}], expected [{}]",
            describe_inputs(hi),
            describe_inputs(wi)
        ));
    }
    let connections = |arch: &Architecture| {
        let mut v: Vec<String> = arch
            .connections()
            .iter()
            .map(|c| {
                let s = c.sparsity.map(|s| format!(" (sparsity {s})")).unwrap_or_default();
                format!("{} -> {}{s}", arch.source_name(c.src), arch.regions()[c.dst].name)
            })
            .collect();
        // Declaration order of connections does not change the network.
        v.sort();
        v
    };
    let (hc, wc) = (connections(have), connections(want));
    let extra: Vec<&String> = hc.iter().filter(|c| !wc.contains(c)).collect();
    let missing: Vec<&String> = wc.iter().filter(|c| !hc.contains(c)).collect();
    if !extra.is_empty() {
        out.push(format!("connections not expected: {}", abbreviated(&extra)));
    }
    if !missing.is_empty() {
        out.push(format!("connections missing: {}", abbreviated(&missing)));
    }
    settings(have.settings(), want.settings(), &mut out);
    out
}

/// The first few items and a count of the rest: two unrelated networks differ in every
/// connection, and the message must stay readable.
fn abbreviated(items: &[&String]) -> String {
    const SHOWN: usize = 6;
    let text = items.iter().take(SHOWN).map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
    if items.len() > SHOWN { format!("{text} and {} more", items.len() - SHOWN) } else { text }
}

fn settings(a: &Settings, b: &Settings, out: &mut Vec<String>) {
    let describe = |s: &Settings| match s.dynamics {
        mrnn_ir::Dynamics::Leaky { dt, tau } => format!("leaky (dt = {dt}, tau = {tau})"),
        mrnn_ir::Dynamics::Elman => "elman".to_owned(),
    };
    if a.dynamics != b.dynamics {
        out.push(format!("dynamics {}, expected {}", describe(a), describe(b)));
    }
    if a.activation != b.activation {
        out.push(format!("activation {}, expected {}", a.activation.name(), b.activation.name()));
    }
    if a.dale.recurrent != b.dale.recurrent {
        out.push(format!("rec_constrained {}, expected {}", a.dale.recurrent, b.dale.recurrent));
    }
    if a.dale.input != b.dale.input {
        out.push(format!("inp_constrained {}, expected {}", a.dale.input, b.dale.input));
    }
    if a.noise != b.noise {
        out.push(format!(
            "noise levels (act {}, inp {}), expected (act {}, inp {})",
            a.noise.act, a.noise.inp, b.noise.act, b.noise.inp
        ));
    }
    if a.batch_first != b.batch_first {
        out.push(format!("batch_first {}, expected {}", a.batch_first, b.batch_first));
    }
}
