//! Check phase: the semantic rules of a network, one `check_*` function per rule, all run on
//! every build so that every problem is reported at once. Takes a lowered [`Ir`], pushes
//! diagnostics into a [`Ctxt`], returns nothing: codegen runs only when no error was pushed.

use std::collections::{HashMap, HashSet};

use petgraph::visit::{Dfs, EdgeRef};

use crate::diag::{Ctxt, Loc, Note, list};
use crate::ir::{Ir, Located, RegionId, RegionKind};
use crate::model::Dynamics;

/// What the checked network is for: code generation adds rules about generated names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Built at run time (JSON configs, the CLI).
    Runtime,
    /// Turned into Rust code by `mrnn!`.
    Codegen,
}

/// Names of the associated constants that generated code always defines. Generated code also
/// keeps every name that starts with [`GENERATED_PREFIX`] for itself.
pub const RESERVED_CONSTS: &[&str] = &["HIDDEN", "INPUT", "ARCHITECTURE", "SEED"];

/// The prefix of the items generated code defines for itself (`__MRNN_REGIONS`): no region's
/// constant may start with it.
pub const GENERATED_PREFIX: &str = "__MRNN";

/// Runs every rule.
pub fn check(cx: &Ctxt, ir: &Ir, purpose: Purpose) {
    check_has_recurrent_regions(cx, ir);
    check_region_names(cx, ir);
    check_duplicate_regions(cx, ir);
    check_region_sizes(cx, ir);
    check_parent_names(cx, ir);
    check_missing_signs(cx, ir);
    check_duplicate_connections(cx, ir);
    check_connections_into_inputs(cx, ir);
    check_numbers(cx, ir);
    check_sparsity_leaves_unit_silent(cx, ir);
    check_connection_signs(cx, ir);
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

// Every region has a name: an empty one cannot be written in a connection.
//     "recurrent_regions": [{"name": "", "num_units": 4, "sign": "pos"}]
fn check_region_names(cx: &Ctxt, ir: &Ir) {
    for (_, r) in ir.regions() {
        if r.name.value.is_empty() {
            cx.error_help(
                r.name.loc.clone(),
                format!("{} region with an empty name", r.kind.describe()),
                "give it a name connections can refer to",
            );
        }
    }
}

// Region names are unique across recurrent and input regions; the second is reported, with a
// note at the first. When connections use a name that no region declares but the duplicate
// nearly spells (`region d1` twice, `d1 -> d2`), that is the same mistake: it is reported here
// once instead of once per use of the undeclared name.
//     region v1[10]: exc;
//     region v1[20]: inh;
fn check_duplicate_regions(cx: &Ctxt, ir: &Ir) {
    for &(dup, first) in &ir.duplicates {
        let (r, f) = (ir.region(dup), ir.region(first));
        let name = &r.name.value;
        if name.is_empty() {
            continue; // reported as an empty name
        }
        let meant: Vec<&str> =
            ir.meant_names.iter().filter(|(d, _)| *d == dup).map(|(_, n)| n.as_str()).collect();
        let help = match meant.as_slice() {
            [] => format!(
                "rename one of the two; recurrent and input regions share one namespace (the first is {} region)",
                if f.kind == RegionKind::Input { "an input" } else { "a recurrent" }
            ),
            [one] => format!(
                "connections use `{one}`, which no region declares: did you mean to name this region `{one}`?"
            ),
            many => format!(
                "connections use {}, which no region declares: did you mean to name this region `{}`?",
                list(many),
                many[0]
            ),
        };
        cx.error_note(
            r.name.loc.clone(),
            format!("duplicate region `{name}`"),
            Some(help),
            Note { loc: f.name.loc.clone(), message: format!("`{name}` first declared") },
        );
    }
}

/// The most units a network may have in its hidden or its input vector: a weight matrix of
/// this size already needs 4 TiB; larger counts are typos (and would overflow offsets).
pub const MAX_UNITS: i64 = 1 << 20;

// Every region has at least one unit, and no network more than MAX_UNITS per vector.
//     region v1[0]: exc;
fn check_region_sizes(cx: &Ctxt, ir: &Ir) {
    let mut totals = [0i64; 2];
    for (_, r) in ir.regions().filter(|(_, r)| !r.invalid.units) {
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
        if !constrained || r.sign.is_some() || r.invalid.sign {
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

// One connection per (source, destination) pair; the second is reported, with a note at the
// first.
//     a -> b;
//     a -> b (sparsity = 0.5);
fn check_duplicate_connections(cx: &Ctxt, ir: &Ir) {
    // Connections to a name declared twice all reach one of its declarations: they repeat a
    // pair only because of that duplicate, which is reported as such.
    let ambiguous: HashSet<RegionId> =
        ir.duplicates.iter().flat_map(|&(dup, first)| [dup, first]).collect();
    let mut seen: HashMap<(RegionId, RegionId), &Loc> = HashMap::new();
    for (_, src, dst, p) in ir.connections() {
        if ambiguous.contains(&src) || ambiguous.contains(&dst) {
            continue;
        }
        if let Some(first) = seen.get(&(src, dst)) {
            cx.error_note(
                p.dst_loc.clone(),
                format!(
                    "duplicate connection `{} -> {}`",
                    ir.region(src).name.value,
                    ir.region(dst).name.value
                ),
                Some(
                    "each pair of regions has one weight block; merge the two declarations"
                        .to_owned(),
                ),
                Note { loc: (*first).clone(), message: "first declared".to_owned() },
            );
        } else {
            seen.insert((src, dst), &p.dst_loc);
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

// A sparsity that zeroes all n_dst weights of a source unit (ceil(s * n_dst) == n_dst) leaves the
// block empty. The rule of `torch.nn.init.sparse_` rounds the zero count up.
//     region b[5]: exc;
//     a -> b (sparsity = 0.9);   // ceil(4.5) = 5 of 5
fn check_sparsity_leaves_unit_silent(cx: &Ctxt, ir: &Ir) {
    for (_, src, dst, p) in ir.connections() {
        let Some(s) = &p.sparsity else { continue };
        let n_dst = ir.region(dst).units.value;
        // A placeholder size (a missing `num_units`, reported) says nothing about the sparsity.
        if !(0.0..1.0).contains(&s.value) || n_dst <= 0 || ir.region(dst).invalid.units {
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

/// What a numeric setting may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Domain {
    /// Any number (`base_firing`, `init`).
    Any,
    /// Zero or more (noise levels).
    NonNegative,
    /// More than zero (`dt`, `tau`, `spectral_radius`), also after rounding to f32.
    Positive,
    /// A fraction of weights in `[0, 1)` (`sparsity`).
    Fraction,
}

/// One numeric value of a network, as [`check_numbers`] checks it.
struct NumberField<'a> {
    /// What it is, for messages: `dt`, `` `base_firing` of region `gpe` ``.
    what: String,
    value: f64,
    loc: &'a Loc,
    domain: Domain,
}

/// Every numeric value of a network (sizes aside: they are integers, see `check_region_sizes`).
fn numeric_fields<'a>(ir: &'a Ir) -> Vec<NumberField<'a>> {
    let s = &ir.settings;
    let locs = &ir.setting_locs;
    // A default setting points at where the dynamics are declared, if anywhere.
    let dynamics = &locs.dynamics;
    let pick = |l: &'a Loc| if matches!(l, Loc::Unknown) { dynamics } else { l };
    let field = |what: &str, value: f64, loc, domain| NumberField {
        what: what.to_owned(),
        value,
        loc,
        domain,
    };
    let mut fields = Vec::new();
    if let Dynamics::Leaky { dt, tau } = s.dynamics {
        fields.push(field("dt", dt, pick(&locs.dt), Domain::Positive));
        fields.push(field("tau", tau, pick(&locs.tau), Domain::Positive));
    }
    fields.push(field("noise level `act`", s.noise.act, &locs.noise_act, Domain::NonNegative));
    fields.push(field("noise level `inp`", s.noise.inp, &locs.noise_inp, Domain::NonNegative));
    if let Some(rho) = s.spectral_radius {
        fields.push(field("spectral_radius", rho, &locs.spectral_radius, Domain::Positive));
    }
    for (_, r) in ir.regions_of(RegionKind::Recurrent) {
        let name = &r.name.value;
        for (key, v) in [("base_firing", &r.base_firing), ("init", &r.init)] {
            fields.push(field(
                &format!("`{key}` of region `{name}`"),
                v.value,
                &v.loc,
                Domain::Any,
            ));
        }
    }
    for (_, src, dst, p) in ir.connections() {
        if let Some(sp) = &p.sparsity {
            let what = format!("{} -> {}", ir.region(src).name.value, ir.region(dst).name.value);
            fields.push(NumberField {
                what,
                value: sp.value,
                loc: &sp.loc,
                domain: Domain::Fraction,
            });
        }
    }
    fields
}

// Every number is finite in f32, where the runtime stores and computes it (`1e300` is a finite
// f64 and an infinite f32), and within its domain: sizes aside, positive `dt`, `tau` and spectral
// radius (also once rounded to f32: `1e-50` is 0 there), non-negative noise, sparsity in
// [0, 1). All numeric settings are checked here, in one place (`numeric_fields` lists them).
//     noise: (act = 1e300),
//     a -> b (sparsity = 1.5);
fn check_numbers(cx: &Ctxt, ir: &Ir) {
    let mut valid = HashSet::new();
    for f in numeric_fields(ir) {
        if check_number(cx, &f) {
            valid.insert(f.what);
        }
    }
    check_alpha(cx, ir, &valid);
}

/// Checks one number; true when it is valid.
fn check_number(cx: &Ctxt, f: &NumberField<'_>) -> bool {
    let (what, v, loc) = (&f.what, f.value, f.loc.clone());
    if f.domain == Domain::Fraction {
        // `what` names the connection; the messages name the setting.
        if (v - 1.0).abs() < f64::EPSILON {
            cx.error_help(
                loc,
                format!("sparsity `1.0` removes every weight of `{what}`"),
                "drop the connection instead of making it fully sparse",
            );
            return false;
        }
        if !(0.0..1.0).contains(&v) {
            cx.error_help(
                loc,
                format!("sparsity must be between 0 and 1, got `{v:?}`"),
                "sparsity is the fraction of zero weights per source unit: 0 keeps all, 0.9 keeps 10%",
            );
            return false;
        }
        return true;
    }
    if !v.is_finite() {
        cx.error(loc, format!("{what} must be a finite number, got `{v:?}`"));
        return false;
    }
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the f32 the runtime will hold is the point"
    )]
    let single = v as f32;
    if single.is_infinite() {
        cx.error_help(
            loc,
            format!("{what} is `{v:?}`, which is infinite in f32 (the runtime computes in f32)"),
            format!("the largest f32 is {:e}", f32::MAX),
        );
        return false;
    }
    match f.domain {
        Domain::Positive if v <= 0.0 => {
            cx.error(loc, format!("{what} must be positive, got `{v:?}`"));
            false
        }
        Domain::Positive if single == 0.0 => {
            cx.error_help(
                loc,
                format!("{what} is `{v:?}`, which is 0 in f32 (the runtime computes in f32)"),
                format!("the smallest positive f32 is {:e}", f32::from_bits(1)),
            );
            false
        }
        Domain::NonNegative if v < 0.0 => {
            cx.error(loc, format!("{what} must be zero or positive, got `{v:?}`"));
            false
        }
        _ => true,
    }
}

// Leaky dynamics need alpha = dt / tau in (0, 1]: larger steps overshoot the fixed point, and
// an alpha that is 0 in f32 never moves. The noise of a step, sqrt(2 / alpha) * sigma, must be
// finite in f32 too.
//     dynamics: leaky(dt = 10.0, tau = 5.0),
fn check_alpha(cx: &Ctxt, ir: &Ir, valid: &HashSet<String>) {
    let Dynamics::Leaky { dt, tau } = ir.settings.dynamics else { return };
    if !(valid.contains("dt") && valid.contains("tau")) {
        return; // reported as a bad `dt` or `tau`
    }
    let locs = &ir.setting_locs;
    let loc = if matches!(locs.dt, Loc::Unknown) { &locs.dynamics } else { &locs.dt };
    let alpha = dt / tau;
    if alpha > 1.0 {
        cx.error_help(
            loc.clone(),
            format!("alpha = dt / tau = {dt:?} / {tau:?} = {alpha:?} must be in (0, 1]"),
            "the leaky update overshoots when dt > tau; use a smaller dt or a larger tau",
        );
        return;
    }
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the f32 the runtime will hold is the point"
    )]
    if alpha as f32 == 0.0 {
        cx.error_help(
            loc.clone(),
            format!("alpha = dt / tau = {dt:?} / {tau:?} = {alpha:?} is 0 in f32 (the runtime computes in f32)"),
            "the state would never move; use a larger dt or a smaller tau",
        );
        return;
    }
    let noise = ir.settings.noise;
    for (name, sigma, loc) in
        [("act", noise.act, &locs.noise_act), ("inp", noise.inp, &locs.noise_inp)]
    {
        let what = format!("noise level `{name}`");
        #[allow(
            clippy::cast_possible_truncation,
            reason = "the f32 the runtime will hold is the point"
        )]
        if valid.contains(&what) && ((2.0 / alpha).sqrt() * sigma) as f32 == f32::INFINITY {
            cx.error_help(
                loc.clone(),
                format!("noise level `{name}` = {sigma:?} gives a noise of sqrt(2 / alpha) * {sigma:?} per step, which is infinite in f32"),
                "use a smaller noise level",
            );
        }
    }
}

// An input region must project somewhere: otherwise its part of the input is silently ignored.
//     input cue[3]: exc;      // and no `cue -> ...`
fn check_idle_inputs(cx: &Ctxt, ir: &Ir) {
    if ir.regions_of(RegionKind::Recurrent).next().is_none() {
        return; // reported as "no recurrent region": there is nothing to drive
    }
    let duplicates: HashSet<RegionId> = ir.duplicates.iter().map(|&(dup, _)| dup).collect();
    for (id, r) in ir.regions_of(RegionKind::Input) {
        // A duplicate is reported as one; connections resolve to the first declaration.
        if duplicates.contains(&id) {
            continue;
        }
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

// Generated code names a constant after each region, input region and contiguous group
// (`const_name`: `alm-exc` -> `ALM_EXC`): no two of them, and none of them and a built-in
// constant, may share one. The second is reported, with a note at the first.
//     region a[3]: exc;
//     region A[3]: exc;        // both `A`
//     region hidden[3]: exc;   // `HIDDEN` is the size of the hidden state
fn check_const_names(cx: &Ctxt, ir: &Ir) {
    // The first owner of each constant: where it was declared, and what it is.
    let mut owners: HashMap<String, (Loc, String)> = HashMap::new();
    let duplicates: HashSet<RegionId> = ir.duplicates.iter().map(|&(dup, _)| dup).collect();
    let regions = ir
        .regions()
        .filter(|(id, r)| !duplicates.contains(id) && !r.name.value.is_empty())
        .map(|(_, r)| (&r.name, format!("{} region", r.kind.describe())));
    // A group named like a region is reported as such (`check_parent_names`).
    let groups = contiguous_groups(ir)
        .into_iter()
        .filter(|g| ir.lookup(&g.value).is_none())
        .map(|g| (g, "group".to_owned()));
    for (name, what) in regions.chain(groups) {
        let constant = const_name(&name.value);
        let reserved =
            RESERVED_CONSTS.contains(&constant.as_str()) || constant.starts_with(GENERATED_PREFIX);
        if reserved {
            let why = if constant.starts_with(GENERATED_PREFIX) {
                format!("constants starting with `{GENERATED_PREFIX}` are kept for generated code")
            } else {
                format!("`{constant}` is a built-in constant of every generated network")
            };
            cx.error_help(
                name.loc.clone(),
                format!("{what} `{}` would generate the constant `{constant}`: {why}", name.value),
                format!("rename the {what}"),
            );
        } else if let Some((first, first_what)) = owners.get(&constant) {
            cx.error_note(
                name.loc.clone(),
                format!(
                    "{what} `{}` would generate the constant `{constant}`, which the {first_what} declared earlier already generates",
                    name.value
                ),
                Some(
                    "rename one of the two: constants are names in upper case, with characters other than ASCII letters, digits and `_` replaced (see `mrnn!`'s documentation, \"Names\")"
                        .to_owned(),
                ),
                Note { loc: first.clone(), message: format!("`{constant}` first generated") },
            );
        } else {
            owners.insert(constant, (name.loc.clone(), what));
        }
    }
}

/// The groups whose recurrent regions are contiguous in the hidden vector (each once, in the
/// order of their first region): generated code gives each a range constant.
fn contiguous_groups(ir: &Ir) -> Vec<&Located<String>> {
    let order: Vec<RegionId> = ir.regions_of(RegionKind::Recurrent).map(|(id, _)| id).collect();
    ir.groups()
        .into_iter()
        .filter(|g| {
            let positions: Vec<usize> = ir
                .group_members(&g.value)
                .iter()
                .filter_map(|id| order.iter().position(|o| o == id))
                .collect();
            is_contiguous(&positions)
        })
        .collect()
}

/// Whether increasing positions form one run (`[3, 4, 5]`).
#[must_use]
pub(crate) fn is_contiguous(positions: &[usize]) -> bool {
    positions.windows(2).all(|w| w[1] == w[0] + 1)
}

/// The associated constant generated for a region or group: deterministic, an ASCII identifier,
/// never a keyword. ASCII letters are upper-cased; ASCII digits and `_` stay; every other ASCII
/// character (`-`, a space, `.`) becomes `_`; a non-ASCII character becomes `U` and its code point
/// in hex (`é` -> `U00E9`); a name that would start with a digit, or be `_` alone, gets a leading
/// `_`. So `alm-exc` -> `ALM_EXC`, `1st` -> `_1ST`, `état` -> `U00E9TAT`, `self` -> `SELF`.
///
/// ```
/// use mrnn_ir::check::const_name;
/// assert_eq!(const_name("alm-exc"), "ALM_EXC");
/// assert_eq!(const_name("my region"), "MY_REGION");
/// assert_eq!(const_name("état"), "U00E9TAT");
/// assert_eq!(const_name("1st"), "_1ST");
/// assert_eq!(const_name("_"), "__");
/// ```
#[must_use]
pub fn const_name(name: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c.to_ascii_uppercase());
        } else if c.is_ascii() {
            out.push('_');
        } else {
            let _ = write!(out, "U{:04X}", u32::from(c));
        }
    }
    if out.is_empty() {
        out.push('_');
    }
    if out == "_" || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
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
