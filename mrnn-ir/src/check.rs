//! Check phase: the semantic rules of a network, one `check_*` function per rule, all run on
//! every build so that every problem is reported at once. Takes a lowered [`Ir`], pushes
//! diagnostics into a [`Ctxt`], returns nothing: codegen runs only when no error was pushed.

use std::collections::{HashMap, HashSet};

use petgraph::visit::{Dfs, EdgeRef};

use crate::diag::{Ctxt, Loc};
use crate::ir::{Ir, RegionKind};
use crate::model::{Dynamics, Settings};

/// What the checked network is for: code generation adds rules about generated names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Built at run time (JSON configs, the CLI).
    Runtime,
    /// Turned into Rust code by `mrnn!`.
    Codegen,
}

/// Names of the associated constants that generated code always defines.
pub const RESERVED_CONSTS: &[&str] = &["HIDDEN", "INPUT", "ARCHITECTURE", "SEED"];

/// Runs every rule.
pub fn check(cx: &Ctxt, ir: &Ir, purpose: Purpose) {
    check_has_recurrent_regions(cx, ir);
    check_duplicate_regions(cx, ir);
    check_region_sizes(cx, ir);
    check_parent_names(cx, ir);
    check_missing_signs(cx, ir);
    check_duplicate_connections(cx, ir);
    check_connections_into_inputs(cx, ir);
    check_sparsity_range(cx, ir);
    check_sparsity_leaves_unit_silent(cx, ir);
    check_connection_signs(cx, ir);
    check_alpha(cx, ir);
    check_setting_values(cx, ir);
    check_idle_inputs(cx, ir);
    if purpose == Purpose::Codegen {
        check_const_names(cx, ir);
    }
    // Warnings last, and only for networks that are otherwise valid: a warning about a region
    // that an erroneous connection would have reached is noise.
    if !cx.has_errors() {
        check_unreachable_regions(cx, ir);
    }
}

// A network needs at least one recurrent region: there is no hidden state otherwise.
//     mrnn! { pub Empty { input u[3]: exc; } }
fn check_has_recurrent_regions(cx: &Ctxt, ir: &Ir) {
    if ir.regions_of(RegionKind::Recurrent).next().is_none() {
        let at = match &ir.name.loc {
            Loc::Json { .. } | Loc::Unknown => Loc::json("/recurrent_regions"),
            other => other.clone(),
        };
        cx.error_help(
            at,
            format!("network `{}` has no recurrent region", ir.name.value),
            "declare at least one, as in `region v1[50]: exc;` (DSL) or `\"recurrent_regions\": [{\"name\": \"v1\", \"num_units\": 50, \"sign\": \"pos\"}]` (JSON)",
        );
    }
}

// Region names are unique across recurrent and input regions; the second is reported.
//     region v1[10]: exc;
//     region v1[20]: inh;
fn check_duplicate_regions(cx: &Ctxt, ir: &Ir) {
    let mut seen: HashMap<&str, RegionKind> = HashMap::new();
    for (_, r) in ir.regions() {
        if let Some(first) = seen.get(r.name.value.as_str()) {
            cx.error_help(
                r.name.loc.clone(),
                format!("duplicate region `{}`", r.name.value),
                format!(
                    "a {} region named `{}` is declared earlier; recurrent and input regions share one namespace",
                    first.describe(),
                    r.name.value
                ),
            );
        } else {
            seen.insert(&r.name.value, r.kind);
        }
    }
}

/// The most units a network may have in its hidden or its input vector: a weight matrix of
/// this size already needs 4 TiB; larger counts are typos (and would overflow offsets).
pub const MAX_UNITS: i64 = 1 << 20;

// Every region has at least one unit, and no network more than MAX_UNITS per vector.
//     region v1[0]: exc;
fn check_region_sizes(cx: &Ctxt, ir: &Ir) {
    let mut totals = [0i64; 2];
    for (_, r) in ir.regions() {
        let n = r.units.value;
        let total = &mut totals[usize::from(r.kind == RegionKind::Input)];
        *total = total.saturating_add(n.max(0));
        if n > MAX_UNITS {
            cx.error(
                r.units.loc.clone(),
                format!(
                    "region `{}` has {n} units, more than the {MAX_UNITS} a network can hold",
                    r.name.value
                ),
            );
        } else if *total > MAX_UNITS {
            cx.error(
                r.units.loc.clone(),
                format!(
                    "with region `{}` the network's {} vector exceeds {MAX_UNITS} units",
                    r.name.value,
                    if r.kind == RegionKind::Input { "input" } else { "hidden" }
                ),
            );
            *total = i64::MIN / 2; // report the overflow once
        }
        if n == 0 {
            cx.error(
                r.units.loc.clone(),
                format!("region `{}` has zero units: a region needs at least 1", r.name.value),
            );
        } else if n < 0 {
            cx.error(
                r.units.loc.clone(),
                format!(
                    "region `{}` has a negative size `{n}`: a region needs at least 1 unit",
                    r.name.value
                ),
            );
        }
    }
}

// A parent names a group of regions, so it cannot also be a region's name.
//     region alm[10]: exc;
//     region alm_inh[5]: inh in alm;
fn check_parent_names(cx: &Ctxt, ir: &Ir) {
    for (_, r) in ir.regions() {
        let Some(parent) = &r.parent else { continue };
        if let Some(other) = ir.lookup(&parent.value) {
            cx.error_help(
                parent.loc.clone(),
                format!(
                    "parent `{}` of region `{}` is also the name of {} region",
                    parent.value,
                    r.name.value,
                    if ir.region(other).kind == RegionKind::Input { "an input" } else { "a" }
                ),
                "a parent names a group of regions; give the group a name no region has",
            );
        }
    }
}

// Under Dale's law every source region of the constrained matrix needs a declared sign:
// mRNNTorch silently makes a region without one excitatory.
//     dale: recurrent,
//     region v1[10];
fn check_missing_signs(cx: &Ctxt, ir: &Ir) {
    let dale = ir.settings.dale;
    for (_, r) in ir.regions() {
        let constrained = match r.kind {
            RegionKind::Recurrent => dale.recurrent,
            RegionKind::Input => dale.input,
        };
        if !constrained || r.sign.is_some() {
            continue;
        }
        let (matrix, off) = match r.kind {
            RegionKind::Recurrent => ("recurrent", "`dale: input` or `dale: none`"),
            RegionKind::Input => ("input", "`dale: recurrent` or `dale: none`"),
        };
        let json = matches!(r.loc, Loc::Json { .. });
        let help = if json {
            let flag =
                if r.kind == RegionKind::Recurrent { "rec_constrained" } else { "inp_constrained" };
            format!(
                "add `\"sign\": \"pos\"` or `\"sign\": \"neg\"` (mRNNTorch would silently treat it as excitatory), or set `\"{flag}\": false` in the \"model\" object"
            )
        } else {
            format!(
                "declare it `exc` or `inh`, as in `{}[..]: exc`, or turn Dale's law off for {matrix} weights with {off}",
                r.name.value
            )
        };
        cx.error_help(
            r.name.loc.clone(),
            format!(
                "{} region `{}` has no sign, but Dale's law is on for {matrix} weights",
                r.kind.describe(),
                r.name.value
            ),
            help,
        );
    }
}

// One connection per (source, destination) pair; the second is reported.
//     a -> b;
//     a -> b (sparsity = 0.5);
fn check_duplicate_connections(cx: &Ctxt, ir: &Ir) {
    let mut seen = HashSet::new();
    for (_, src, dst, p) in ir.connections() {
        if !seen.insert((src, dst)) {
            cx.error_help(
                p.dst_loc.clone(),
                format!(
                    "duplicate connection `{} -> {}`",
                    ir.region(src).name.value,
                    ir.region(dst).name.value
                ),
                "each pair of regions has one weight block; merge the two declarations",
            );
        }
    }
}

// Input regions are not part of the hidden state: nothing projects into them.
//     input u[3]: exc;
//     v1 -> u;
fn check_connections_into_inputs(cx: &Ctxt, ir: &Ir) {
    for (_, src, dst, p) in ir.connections() {
        let d = ir.region(dst);
        if d.kind == RegionKind::Input {
            cx.error_help(
                p.dst_loc.clone(),
                format!(
                    "connection `{} -> {}` goes into an input region",
                    ir.region(src).name.value,
                    d.name.value
                ),
                format!(
                    "`{}` is an input region: it receives the external input and nothing else",
                    d.name.value
                ),
            );
        }
    }
}

// Sparsity is the fraction of zero weights per source unit, in [0, 1).
//     a -> b (sparsity = 1.5);
fn check_sparsity_range(cx: &Ctxt, ir: &Ir) {
    for (_, src, dst, p) in ir.connections() {
        let Some(s) = &p.sparsity else { continue };
        let name = format!("{} -> {}", ir.region(src).name.value, ir.region(dst).name.value);
        if (s.value - 1.0).abs() < f64::EPSILON {
            cx.error_help(
                s.loc.clone(),
                format!("sparsity `1.0` removes every weight of `{name}`"),
                "drop the connection instead of making it fully sparse",
            );
        } else if !(0.0..1.0).contains(&s.value) {
            cx.error_help(
                s.loc.clone(),
                format!("sparsity must be between 0 and 1, got `{:?}`", s.value),
                "sparsity is the fraction of zero weights per source unit: 0 keeps all, 0.9 keeps 10%",
            );
        }
    }
}

// A sparsity that zeroes all n_dst weights of a source unit (ceil(s * n_dst) == n_dst) leaves the
// block empty. The rule of `torch.nn.init.sparse_` rounds the zero count up.
//     region b[5]: exc;
//     a -> b (sparsity = 0.9);   // ceil(4.5) = 5 of 5
fn check_sparsity_leaves_unit_silent(cx: &Ctxt, ir: &Ir) {
    for (_, src, dst, p) in ir.connections() {
        let Some(s) = &p.sparsity else { continue };
        let n_dst = ir.region(dst).units.value;
        if !(0.0..1.0).contains(&s.value) || n_dst <= 0 {
            continue;
        }
        if zeros_per_column(s.value, n_dst as usize) >= n_dst as usize {
            let d = &ir.region(dst).name.value;
            cx.error_help(
                s.loc.clone(),
                format!(
                    "sparsity `{:?}` leaves no weight in `{} -> {d}`: ceil({:?} * {n_dst}) = {n_dst} of the {n_dst} weights of every source unit are zero",
                    s.value,
                    ir.region(src).name.value,
                    s.value
                ),
                format!(
                    "with {n_dst} destination units the sparsity must be at most {} to keep a weight per source unit",
                    largest_sparsity_keeping_a_weight(n_dst as usize)
                ),
            );
        }
    }
}

/// The largest sparsity, rounded down to 4 decimals, that leaves every source unit at least one
/// weight into `n_dst` units.
fn largest_sparsity_keeping_a_weight(n_dst: usize) -> f64 {
    let exact = (n_dst as f64 - 1.0) / n_dst as f64;
    (exact * 1e4).floor() / 1e4
}

/// Zero weights per source unit for sparsity `s` and `n_dst` destination units: `ceil(s * n_dst)`,
/// as `torch.nn.init.sparse_` computes it.
#[must_use]
pub fn zeros_per_column(sparsity: f64, n_dst: usize) -> usize {
    (sparsity * n_dst as f64).ceil() as usize
}

// A declared connection sign must match the source's sign while Dale's law holds for that matrix.
//     region thal[50]: exc;
//     thal -> d1 (sign = inh);
fn check_connection_signs(cx: &Ctxt, ir: &Ir) {
    for (_, src, dst, p) in ir.connections() {
        let Some(declared) = &p.sign else { continue };
        let s = ir.region(src);
        let constrained = match s.kind {
            RegionKind::Recurrent => ir.settings.dale.recurrent,
            RegionKind::Input => ir.settings.dale.input,
        };
        let Some(actual) = &s.sign else { continue };
        if constrained && actual.value != declared.value {
            cx.error_help(
                declared.loc.clone(),
                format!(
                    "connection `{} -> {}` is declared {}, but its source `{}` is {}",
                    s.name.value,
                    ir.region(dst).name.value,
                    declared.value.describe(),
                    s.name.value,
                    actual.value.describe()
                ),
                format!(
                    "under Dale's law every outgoing weight of `{}` is {}; an {} projection needs an {} source region",
                    s.name.value,
                    actual.value.describe(),
                    declared.value.describe(),
                    declared.value.describe()
                ),
            );
        }
    }
}

// Leaky dynamics need alpha = dt / tau in (0, 1]: larger steps overshoot the fixed point.
//     dynamics: leaky(dt = 10.0, tau = 5.0),
fn check_alpha(cx: &Ctxt, ir: &Ir) {
    let Dynamics::Leaky { dt, tau } = ir.settings.dynamics else { return };
    let locs = &ir.setting_locs;
    let pick = |l: &Loc| if matches!(l, Loc::Unknown) { locs.dynamics.clone() } else { l.clone() };
    if !(dt.is_finite() && dt > 0.0) {
        cx.error(pick(&locs.dt), format!("dt must be positive, got `{dt:?}`"));
    } else if !(tau.is_finite() && tau > 0.0) {
        cx.error(pick(&locs.tau), format!("tau must be positive, got `{tau:?}`"));
    } else if dt / tau > 1.0 {
        cx.error_help(
            pick(&locs.dt),
            format!("alpha = dt / tau = {dt:?} / {tau:?} = {:?} must be in (0, 1]", dt / tau),
            "the leaky update overshoots when dt > tau; use a smaller dt or a larger tau",
        );
    }
}

// Noise levels are non-negative and the spectral radius is positive.
//     noise: (act = -0.1),
fn check_setting_values(cx: &Ctxt, ir: &Ir) {
    let Settings { noise, spectral_radius, .. } = ir.settings;
    let locs = &ir.setting_locs;
    for (name, value, loc) in
        [("act", noise.act, &locs.noise_act), ("inp", noise.inp, &locs.noise_inp)]
    {
        if !(value.is_finite() && value >= 0.0) {
            cx.error(
                loc.clone(),
                format!("noise level `{name}` must be zero or positive, got `{value:?}`"),
            );
        }
    }
    if let Some(rho) = spectral_radius
        && !(rho.is_finite() && rho > 0.0)
    {
        cx.error(
            locs.spectral_radius.clone(),
            format!("spectral_radius must be positive, got `{rho:?}`"),
        );
    }
}

// An input region must project somewhere: otherwise its part of the input is silently ignored.
//     input cue[3]: exc;      // and no `cue -> ...`
fn check_idle_inputs(cx: &Ctxt, ir: &Ir) {
    if ir.regions_of(RegionKind::Recurrent).next().is_none() {
        return; // reported as "no recurrent region": there is nothing to drive
    }
    for (id, r) in ir.regions_of(RegionKind::Input) {
        if ir.graph.edges(id.0).next().is_none() && !ir.dangling_sources.contains(&id) {
            cx.error_help(
                r.name.loc.clone(),
                format!("input region `{}` drives nothing", r.name.value),
                format!(
                    "connect it to a recurrent region, as in `{} -> v1;`, or remove it",
                    r.name.value
                ),
            );
        }
    }
}

// Generated code names a constant after each region (`d1` -> `D1`): the name must be a Rust
// identifier, and no two regions (nor a region and a built-in constant) may share one.
//     "recurrent_regions": [{"name": "alm-exc", ...}]     (from "config.json")
fn check_const_names(cx: &Ctxt, ir: &Ir) {
    let mut seen: HashMap<String, &str> =
        RESERVED_CONSTS.iter().map(|c| ((*c).to_owned(), "a built-in constant")).collect();
    let mut names = HashSet::new();
    for (_, r) in ir.regions() {
        let name = &r.name.value;
        if !names.insert(name.as_str()) {
            continue; // duplicates are reported by check_duplicate_regions
        }
        if !is_identifier(name) {
            cx.error_help(
                r.name.loc.clone(),
                format!("region name `{name}` is not a Rust identifier, so `mrnn!` cannot name a constant after it"),
                "rename it with letters, digits and `_` only (not starting with a digit)",
            );
            continue;
        }
        let constant = const_name(name);
        if let Some(other) = seen.get(&constant) {
            cx.error_help(
                r.name.loc.clone(),
                format!("region `{name}` would generate the constant `{constant}`, which is already {other}"),
                "rename the region",
            );
        } else {
            seen.insert(constant, "the constant of another region");
        }
    }
}

/// The associated constant generated for a region: its name in upper case.
#[must_use]
pub fn const_name(region: &str) -> String {
    region.to_ascii_uppercase()
}

/// Whether `name` can be an identifier in generated code.
#[must_use]
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else { return false };
    (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name != "_"
        && !is_keyword(name)
}

fn is_keyword(name: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum",
        "extern", "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod",
        "move", "mut", "pub", "ref", "return", "self", "Self", "static", "struct", "super",
        "trait", "true", "type", "unsafe", "use", "where", "while", "abstract", "become", "box",
        "do", "final", "macro", "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
    ];
    KEYWORDS.contains(&name)
}

// (warning) A recurrent region that no input, tonic drive or initial state reaches stays at rest
// forever: probably a forgotten connection.
//     region v1[10]: exc;   region v2[10]: exc;   input u[2]: exc;   u -> v1;   // v2 idle
fn check_unreachable_regions(cx: &Ctxt, ir: &Ir) {
    let g = &ir.graph;
    let mut dfs = Dfs::empty(g);
    let mut driven = HashSet::new();
    for (id, r) in ir.regions() {
        let drive = match r.kind {
            RegionKind::Input => true,
            RegionKind::Recurrent => {
                r.base_firing.value != 0.0 || r.learnable_bias || r.init.value != 0.0
            }
        };
        if drive {
            dfs.move_to(id.0);
            while let Some(n) = dfs.next(g) {
                driven.insert(n);
            }
        }
    }
    for (id, r) in ir.regions_of(RegionKind::Recurrent) {
        if driven.contains(&id.0) {
            continue;
        }
        let has_inputs =
            g.edges_directed(id.0, petgraph::Direction::Incoming).any(|e| e.source() != id.0);
        cx.warning(
            r.name.loc.clone(),
            format!("region `{}` is never driven: no input, tonic drive or initial state reaches it", r.name.value),
            Some(if has_inputs {
                "its sources are themselves undriven; connect an input region to them or give one `base_firing`".to_owned()
            } else {
                format!("connect an input or a driven region to `{}`, or give it `base_firing`", r.name.value)
            }),
        );
    }
}
