//! Lowering phase: resolves names and builds the [`Ir`] graph from either front door — an
//! mRNNTorch [`Spec`] (JSON) or the `mrnn!` syntax tree — keeping a location on every node, edge
//! and setting. Problems local to one item (an unknown name, an unknown key, a malformed value)
//! are reported here; rules that relate several items live in [`crate::check`].

use crate::diag::{Ctxt, Loc, closest, list};
use crate::ir::{Invalid, Ir, Located, Projection, RegionId, RegionKind, RegionNode};
use crate::model::{Activation, Dynamics, Settings, Sign};
use crate::spec::{ConnectionSpec, ModelSpec, Spec};

/// Lowers a JSON config. `name` is the network's name (a file stem, or the `mrnn!` type name).
pub fn from_spec(cx: &Ctxt, spec: &Spec, name: Located<String>) -> Ir {
    let mut ir = Ir::new(name, Settings::DEFAULT);
    if let Some(model) = &spec.model {
        apply_model(cx, &mut ir, model);
    }
    for (i, r) in spec.recurrent_regions.iter().enumerate() {
        let at = Loc::json(format!("/recurrent_regions/{i}"));
        let name = region_name(r.name.as_deref(), i, &at);
        let (units, units_invalid) = region_units(cx, r.num_units, &name.value, &at);
        let (sign, sign_invalid) = region_sign(cx, r.sign.as_deref(), &at);
        ir.add_region(RegionNode {
            name,
            kind: RegionKind::Recurrent,
            units,
            sign,
            base_firing: Located::new(r.base_firing.unwrap_or(0.0), at.child("base_firing")),
            init: Located::new(r.init.unwrap_or(0.0), at.child("init")),
            parent: r.parent_region.clone().map(|p| Located::new(p, at.child("parent_region"))),
            learnable_bias: r.learnable_bias.unwrap_or(false),
            loc: at,
            invalid: Invalid { units: units_invalid, sign: sign_invalid },
        });
    }
    for (i, r) in spec.input_regions.iter().enumerate() {
        let at = Loc::json(format!("/input_regions/{i}"));
        let name = region_name(r.name.as_deref(), i, &at);
        let (units, units_invalid) = region_units(cx, r.num_units, &name.value, &at);
        let (sign, sign_invalid) = region_sign(cx, r.sign.as_deref(), &at);
        ir.add_region(RegionNode {
            name,
            kind: RegionKind::Input,
            units,
            sign,
            base_firing: Located::new(0.0, Loc::Unknown),
            init: Located::new(0.0, Loc::Unknown),
            parent: None,
            learnable_bias: false,
            loc: at,
            invalid: Invalid { units: units_invalid, sign: sign_invalid },
        });
    }
    for (list_name, kind, conns) in [
        ("recurrent_connections", RegionKind::Recurrent, &spec.recurrent_connections),
        ("input_connections", RegionKind::Input, &spec.input_connections),
    ] {
        for (i, c) in conns.iter().enumerate() {
            lower_spec_connection(
                cx,
                &mut ir,
                c,
                &Loc::json(format!("/{list_name}/{i}")),
                list_name,
                kind,
            );
        }
    }
    ir
}

fn region_name(name: Option<&str>, index: usize, at: &Loc) -> Located<String> {
    match name {
        Some(n) => Located::new(n.to_owned(), at.child("name")),
        // mRNNTorch's default name; it points at the region object, which has no `name`.
        None => Located::new(format!("region_{index}"), at.clone()),
    }
}

/// The size of a region, and whether it is a placeholder for a missing one (reported here).
fn region_units(cx: &Ctxt, units: Option<i64>, name: &str, at: &Loc) -> (Located<i64>, bool) {
    if let Some(n) = units {
        return (Located::new(n, at.child("num_units")), false);
    }
    cx.error_help(
        at.clone(),
        format!("region `{name}` has no `num_units`"),
        "every region needs a size, as in `\"num_units\": 50`",
    );
    // A placeholder size; the region is marked so that no check reads it.
    (Located::new(1, at.clone()), true)
}

/// The sign of a region, and whether one was written but not understood (reported here).
fn region_sign(cx: &Ctxt, sign: Option<&str>, at: &Loc) -> (Option<Located<Sign>>, bool) {
    let Some(text) = sign else { return (None, false) };
    let loc = at.child("sign");
    if let Some(s) = Sign::from_name(text) {
        return (Some(Located::new(s, loc)), false);
    }
    cx.error(
        loc,
        format!("unknown sign `{text}`, expected `pos` (excitatory) or `neg` (inhibitory)"),
    );
    (None, true)
}

fn lower_spec_connection(
    cx: &Ctxt,
    ir: &mut Ir,
    c: &ConnectionSpec,
    at: &Loc,
    list_name: &str,
    expected_source: RegionKind,
) {
    let (Some(src_name), Some(dst_name)) = (&c.src_region, &c.dst_region) else {
        let missing = match (&c.src_region, &c.dst_region) {
            (None, None) => "`src_region` and `dst_region`",
            (None, Some(_)) => "`src_region`",
            _ => "`dst_region`",
        };
        cx.error(at.clone(), format!("connection has no {missing}"));
        // Its source meant to drive something: not also "drives nothing".
        if let Some(src) = c.src_region.as_deref().and_then(|n| ir.lookup(n)) {
            ir.dangling_sources.insert(src);
        }
        return;
    };
    let src_loc = at.child("src_region");
    let dst_loc = at.child("dst_region");
    // mRNNTorch connects regions only: a group here is reported as one (see `Groups::Reject`).
    let src = resolve(cx, ir, src_name, &src_loc, Groups::Reject).first().copied();
    let dst = resolve(cx, ir, dst_name, &dst_loc, Groups::Reject).first().copied();
    // A name declared twice (reported as a duplicate) means the declaration of the kind this
    // list takes, if there is one: not also "is a recurrent region, but ...".
    let src = src.map(|id| {
        if ir.region(id).kind == expected_source {
            return id;
        }
        ir.duplicates
            .iter()
            .find(|&&(dup, first)| first == id && ir.region(dup).kind == expected_source)
            .map_or(id, |&(dup, _)| dup)
    });
    if let Some(src) = src {
        let kind = ir.region(src).kind;
        if kind != expected_source {
            // The source meant to drive something: not also "drives nothing".
            ir.dangling_sources.insert(src);
            let right = match kind {
                RegionKind::Input => "input_connections",
                RegionKind::Recurrent => "recurrent_connections",
            };
            cx.error_help(
                src_loc.clone(),
                format!(
                    "`{src_name}` is {} region, but this connection is in `{list_name}`",
                    article(kind)
                ),
                format!("move this connection to `{right}`"),
            );
            return;
        }
    }
    let (sign, _) = region_sign(cx, c.sign.as_deref(), at);
    let projection = Projection {
        sparsity: c.sparsity.map(|s| Located::new(s, at.child("sparsity"))),
        sign,
        src_loc,
        dst_loc,
    };
    match (src, dst) {
        (Some(src), Some(dst)) => {
            ir.add_connection(src, dst, projection);
        }
        (Some(src), None) => {
            ir.dangling_sources.insert(src);
        }
        _ => {}
    }
}

fn article(kind: RegionKind) -> &'static str {
    match kind {
        RegionKind::Input => "an input",
        RegionKind::Recurrent => "a recurrent",
    }
}

/// What a group name (`in alm`) means as a connection endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Groups {
    /// Its regions, in declaration order (the DSL: `alm -> d1` is `alm_exc, alm_inh -> d1`).
    Expand,
    /// An error that says it is a group and lists its regions (JSON: mRNNTorch connects
    /// regions only, and a config must stay readable by mRNNTorch).
    Reject,
}

/// Resolves a connection endpoint: a region (one id), a group (its regions, or an error), or
/// nothing (an unknown name, reported with the closest known name; or a name explained by a
/// duplicated declaration, reported with the duplicate).
fn resolve(cx: &Ctxt, ir: &mut Ir, name: &str, loc: &Loc, groups: Groups) -> Vec<RegionId> {
    if let Some(id) = ir.lookup(name) {
        return vec![id];
    }
    let members = ir.group_members(name);
    if !members.is_empty() {
        if groups == Groups::Expand {
            return members;
        }
        let names: Vec<&str> =
            members.iter().map(|&id| ir.region(id).name.value.as_str()).collect();
        cx.error_help(
            loc.clone(),
            format!("`{name}` is a group of regions ({}), not a region", list(&names)),
            "mRNNTorch configs connect regions: write one connection per region of the group (`mrnn!` accepts a group as an endpoint)",
        );
        return Vec::new();
    }
    // `region d1` written twice where connections use `d2`: one mistake, reported once, at the
    // duplicate (see `check_duplicate_regions`).
    let duplicated = ir.duplicates.iter().map(|&(dup, _)| ir.region(dup).name.value.as_str());
    if let Some(meant) = closest(name, duplicated) {
        let dup =
            ir.duplicates.iter().map(|&(dup, _)| dup).find(|&d| ir.region(d).name.value == meant);
        if let Some(dup) = dup {
            if !ir.meant_names.iter().any(|(d, n)| *d == dup && n == name) {
                ir.meant_names.push((dup, name.to_owned()));
            }
            return Vec::new();
        }
    }
    let message = format!("unknown region `{name}`");
    let group_names: Vec<String> = match groups {
        Groups::Expand => ir.groups().into_iter().map(|g| g.value.clone()).collect(),
        Groups::Reject => Vec::new(),
    };
    let candidates = ir.region_names().chain(group_names.iter().map(String::as_str));
    match closest(name, candidates) {
        Some(c) => cx.error_help(loc.clone(), message, format!("did you mean `{c}`?")),
        None => {
            let known: Vec<&str> = ir.region_names().take(12).collect();
            if known.is_empty() {
                cx.error(loc.clone(), format!("{message}: no regions are declared"));
            } else {
                cx.error_help(loc.clone(), message, format!("declared regions: {}", list(&known)));
            }
        }
    }
    Vec::new()
}

fn apply_model(cx: &Ctxt, ir: &mut Ir, m: &ModelSpec) {
    let at = Loc::json("/model");
    let s = &mut ir.settings;
    let locs = &mut ir.setting_locs;
    let (dt, tau) = match s.dynamics {
        Dynamics::Leaky { dt, tau } => (dt, tau),
        Dynamics::Elman => (10.0, 100.0),
    };
    let dt = m.dt.unwrap_or(dt);
    let tau = m.tau.unwrap_or(tau);
    if m.dt.is_some() {
        locs.dt = at.child("dt");
    }
    if m.tau.is_some() {
        locs.tau = at.child("tau");
    }
    match m.dynamics.as_deref() {
        None | Some("leaky") => s.dynamics = Dynamics::Leaky { dt, tau },
        Some("elman") => s.dynamics = Dynamics::Elman,
        Some(other) => cx.error(
            at.child("dynamics"),
            format!("unknown dynamics `{other}`, expected one of {}", list(&Dynamics::NAMES)),
        ),
    }
    locs.dynamics = at.child("dynamics");
    if let Some(a) = m.activation.as_deref() {
        match Activation::from_name(a) {
            Some(a) => s.activation = a,
            None => cx.error(at.child("activation"), unknown_activation(a)),
        }
        locs.activation = at.child("activation");
    }
    if let Some(v) = m.rec_constrained {
        s.dale.recurrent = v;
        locs.dale = at.child("rec_constrained");
    }
    if let Some(v) = m.inp_constrained {
        s.dale.input = v;
        locs.dale = at.child("inp_constrained");
    }
    if let Some(v) = m.noise_level_act {
        s.noise.act = v;
        locs.noise_act = at.child("noise_level_act");
    }
    if let Some(v) = m.noise_level_inp {
        s.noise.inp = v;
        locs.noise_inp = at.child("noise_level_inp");
    }
    if let Some(v) = m.spectral_radius {
        s.spectral_radius = Some(v);
        locs.spectral_radius = at.child("spectral_radius");
    }
    if let Some(v) = m.batch_first {
        s.batch_first = v;
    }
    if let Some(v) = m.seed {
        s.seed = v;
    }
}

fn unknown_activation(name: &str) -> String {
    let names: Vec<&str> = Activation::ALL.iter().map(|a| a.name()).collect();
    format!("unknown activation `{name}`, expected one of {}", list(&names))
}

#[cfg(feature = "syntax")]
pub use dsl::{apply_settings, from_syntax};

#[cfg(feature = "syntax")]
mod dsl {
    use std::collections::HashSet;

    use proc_macro2::Span;
    use syn::parse::{ParseStream, Parser};
    use syn::{Ident, LitBool, LitInt, Token};

    use super::{
        Groups, Invalid, Ir, Located, Projection, RegionId, RegionKind, RegionNode, resolve,
        unknown_activation,
    };
    use crate::diag::{Ctxt, Loc, closest, list};
    use crate::model::{Activation, Dynamics, Settings, Sign};
    use crate::syntax::{self, Item, Number, Prop, Value};

    /// The settings keys of the DSL.
    pub(crate) const SETTING_KEYS: &[&str] =
        &["dynamics", "activation", "dale", "noise", "spectral_radius", "seed", "batch_first"];

    fn tokens(start: Span, end: Span) -> Loc {
        Loc::Tokens { start, end }
    }

    fn number_loc(n: &Number) -> Loc {
        tokens(n.start, n.end)
    }

    /// Lowers a parsed `mrnn!` body. For the `from "file.json"` form, `base` is the IR lowered
    /// from the file; the body's settings are applied on top of it.
    pub fn from_syntax(cx: &Ctxt, net: &syntax::Network, base: Option<Ir>) -> Ir {
        let name = Located::new(net.name.to_string(), Loc::span(net.name.span()));
        let from_file = base.is_some();
        let mut ir = match base {
            Some(mut ir) => {
                ir.name = name;
                ir
            }
            None => Ir::new(name, Settings::DEFAULT),
        };
        match syntax::doc_lines(&net.attrs) {
            Ok(docs) => ir.docs = docs,
            Err((start, end)) => cx.error(
                Loc::Tokens { start, end },
                "only doc comments (`///`) are allowed on an `mrnn!` network",
            ),
        }
        apply_settings(cx, &mut ir, &net.items);
        // Regions first, so connections may name regions declared after them.
        for item in &net.items {
            match item {
                Item::Region(r) | Item::Input(r) if from_file => {
                    cx.error(
                        Loc::span(r.keyword),
                        format!("region `{}` declared in a `from` network: its regions come from the JSON file; only settings go in the braces", r.name),
                    );
                }
                Item::Region(r) => {
                    let node = lower_region(cx, r, RegionKind::Recurrent);
                    ir.add_region(node);
                }
                Item::Input(r) => {
                    let node = lower_region(cx, r, RegionKind::Input);
                    ir.add_region(node);
                }
                _ => {}
            }
        }
        for item in &net.items {
            if let Item::Connection(c) = item {
                if from_file {
                    cx.error(
                        Loc::span(c.sources[0].span),
                        "connection declared in a `from` network: its connections come from the JSON file; only settings go in the braces",
                    );
                    continue;
                }
                lower_connection(cx, &mut ir, c);
            }
        }
        ir
    }

    fn lower_region(cx: &Ctxt, r: &syntax::Region, kind: RegionKind) -> RegionNode {
        let mut invalid = Invalid::default();
        let units = match r.size.base10_parse::<i64>() {
            Ok(n) => n,
            Err(_) => {
                cx.error(
                    Loc::span(r.size.span()),
                    format!("region size `{}` is too large", r.size),
                );
                invalid.units = true;
                1
            }
        };
        let mut node = RegionNode {
            name: Located::new(r.name.value.clone(), Loc::span(r.name.span)),
            kind,
            units: Located::new(units, Loc::span(r.size.span())),
            sign: None,
            base_firing: Located::new(0.0, Loc::Unknown),
            init: Located::new(0.0, Loc::Unknown),
            parent: None,
            learnable_bias: false,
            loc: tokens(r.keyword, r.name.span),
            invalid,
        };
        let mut seen: HashSet<String> = HashSet::new();
        for prop in &r.props {
            let key = prop.key.to_string();
            let group =
                if Sign::from_name(&key).is_some() { "sign".to_owned() } else { key.clone() };
            if !seen.insert(group.clone()) {
                cx.error(
                    Loc::span(prop.key.span()),
                    format!("region `{}` has more than one `{group}`", r.name),
                );
                continue;
            }
            lower_region_prop(cx, &mut node, prop, kind);
        }
        node
    }

    fn lower_region_prop(cx: &Ctxt, node: &mut RegionNode, prop: &Prop, kind: RegionKind) {
        let key = prop.key.to_string();
        let key_loc = Loc::span(prop.key.span());
        let region = node.name.value.clone();
        let valid: &[&str] = match kind {
            RegionKind::Recurrent => &["exc", "inh", "in", "base_firing", "init", "learnable_bias"],
            RegionKind::Input => &["exc", "inh"],
        };
        if let Some(sign) =
            Sign::from_name(&key).filter(|_| matches!(key.as_str(), "exc" | "inh" | "pos" | "neg"))
        {
            if prop.value.is_some() {
                cx.error(key_loc.clone(), format!("the sign `{key}` takes no value"));
            }
            node.sign = Some(Located::new(sign, key_loc));
            return;
        }
        match (key.as_str(), &prop.value, kind) {
            ("in", Some(Value::Name(parent)), RegionKind::Recurrent) => {
                node.parent = Some(Located::new(parent.value.clone(), Loc::span(parent.span)));
            }
            ("base_firing" | "init", Some(Value::Number(n)), RegionKind::Recurrent) => {
                let slot = if key == "init" { &mut node.init } else { &mut node.base_firing };
                *slot = Located::new(n.value, number_loc(n));
            }
            ("base_firing" | "init", value, RegionKind::Recurrent) => {
                let at = value.as_ref().map_or(key_loc, |v| Loc::span(v.span()));
                cx.error(at, format!("`{key}` needs a number, as in `{key} = 0.5`"));
            }
            ("learnable_bias", None, RegionKind::Recurrent) => node.learnable_bias = true,
            ("learnable_bias", Some(v), RegionKind::Recurrent) => {
                cx.error(Loc::span(v.span()), "`learnable_bias` takes no value: write `learnable_bias` to train the region's tonic input");
            }
            _ => {
                // A bare word that is not a property is most likely a misspelled sign (`exd`):
                // the region is not also reported as having no sign.
                if prop.value.is_none() && node.sign.is_none() {
                    node.invalid.sign = true;
                }
                let what = if kind == RegionKind::Input { "input region" } else { "region" };
                let message = format!("unknown {what} property `{key}` on `{region}`");
                let help = match closest(&key, valid.iter().copied()) {
                    Some(c) => format!("did you mean `{c}`? expected one of {}", list(valid)),
                    None => format!("expected one of {}", list(valid)),
                };
                cx.error_help(key_loc, message, help);
            }
        }
    }

    fn lower_connection(cx: &Ctxt, ir: &mut Ir, c: &syntax::Connection) {
        let mut sparsity = None;
        let mut sign = None;
        for opt in &c.options {
            let key = opt.key.to_string();
            let key_loc = Loc::span(opt.key.span());
            match (key.as_str(), &opt.value) {
                ("sparsity", Some(Value::Number(n))) => {
                    if sparsity.is_some() {
                        cx.error(key_loc, "connection has more than one `sparsity`");
                    }
                    sparsity = Some(Located::new(n.value, number_loc(n)));
                }
                ("sign", Some(Value::Ident(s))) => {
                    let text = s.to_string();
                    match Sign::from_name(&text) {
                        Some(v) => sign = Some(Located::new(v, Loc::span(s.span()))),
                        None => cx.error(
                            Loc::span(s.span()),
                            format!("unknown sign `{text}`, expected `exc` or `inh`"),
                        ),
                    }
                }
                ("sparsity", Some(v)) => cx.error(
                    Loc::span(v.span()),
                    "`sparsity` needs a number in [0, 1), as in `sparsity = 0.9`",
                ),
                ("sign", Some(v)) => cx.error(Loc::span(v.span()), "`sign` needs `exc` or `inh`"),
                _ => {
                    let valid = ["sparsity", "sign"];
                    let help = match closest(&key, valid) {
                        Some(c) => format!("did you mean `{c}`? expected one of {}", list(&valid)),
                        None => format!("expected one of {}", list(&valid)),
                    };
                    cx.error_help(key_loc, format!("unknown connection option `{key}`"), help);
                }
            }
        }
        // A group name stands for its regions, in declaration order.
        let mut resolve_all = |names: &[syntax::Name]| -> Vec<(Vec<RegionId>, Span)> {
            names
                .iter()
                .map(|n| (resolve(cx, ir, &n.value, &Loc::span(n.span), Groups::Expand), n.span))
                .collect()
        };
        let sources = resolve_all(&c.sources);
        let targets = resolve_all(&c.targets);
        for (srcs, src_span) in &sources {
            for (dsts, dst_span) in &targets {
                if dsts.is_empty() {
                    ir.dangling_sources.extend(srcs.iter().copied());
                }
                for &src in srcs {
                    for &dst in dsts {
                        ir.add_connection(
                            src,
                            dst,
                            Projection {
                                sparsity: sparsity.clone(),
                                sign: sign.clone(),
                                src_loc: Loc::span(*src_span),
                                dst_loc: Loc::span(*dst_span),
                            },
                        );
                    }
                }
            }
        }
    }

    /// Applies the `key: value` settings of a DSL body to `ir.settings`.
    pub fn apply_settings(cx: &Ctxt, ir: &mut Ir, items: &[Item]) {
        let mut seen: HashSet<String> = HashSet::new();
        for item in items {
            let Item::Setting(setting) = item else { continue };
            let key = setting.key.to_string();
            let key_loc = Loc::span(setting.key.span());
            if !SETTING_KEYS.contains(&key.as_str()) {
                let help = match closest(&key, SETTING_KEYS.iter().copied()) {
                    Some(c) => {
                        format!("did you mean `{c}`? valid settings: {}", list(SETTING_KEYS))
                    }
                    None => format!("valid settings: {}", list(SETTING_KEYS)),
                };
                cx.error_help(key_loc, format!("unknown setting `{key}`"), help);
                continue;
            }
            if !seen.insert(key.clone()) {
                cx.error(key_loc, format!("duplicate setting `{key}`"));
                continue;
            }
            let result =
                match key.as_str() {
                    "dynamics" => (|input: ParseStream<'_>| parse_dynamics(input, ir))
                        .parse2(setting.value.clone()),
                    "activation" => (|input: ParseStream<'_>| parse_activation(input, cx, ir))
                        .parse2(setting.value.clone()),
                    "dale" => (|input: ParseStream<'_>| parse_dale(input, ir))
                        .parse2(setting.value.clone()),
                    "noise" => (|input: ParseStream<'_>| parse_noise(input, ir))
                        .parse2(setting.value.clone()),
                    "spectral_radius" => (|input: ParseStream<'_>| {
                        let n: Number = input.parse()?;
                        ir.settings.spectral_radius = Some(n.value);
                        ir.setting_locs.spectral_radius = number_loc(&n);
                        Ok(())
                    })
                    .parse2(setting.value.clone()),
                    "seed" => (|input: ParseStream<'_>| {
                        let lit: LitInt = input.parse()?;
                        ir.settings.seed = lit.base10_parse()?;
                        Ok(())
                    })
                    .parse2(setting.value.clone()),
                    "batch_first" => (|input: ParseStream<'_>| {
                        let lit: LitBool = input.parse()?;
                        ir.settings.batch_first = lit.value;
                        Ok(())
                    })
                    .parse2(setting.value.clone()),
                    _ => unreachable!("SETTING_KEYS covers every key"),
                };
            if let Err(e) = result {
                // Our own messages already say what is wrong; syn's generic ones
                // ("expected identifier") need the setting's name for context.
                let message = e.to_string();
                let message = if message.starts_with("unknown") {
                    message
                } else {
                    format!("invalid `{key}`: {message}")
                };
                cx.error(Loc::span(e.span()), message);
            }
        }
    }

    fn parse_dynamics(input: ParseStream<'_>, ir: &mut Ir) -> syn::Result<()> {
        let name: Ident = input.parse()?;
        ir.setting_locs.dynamics = Loc::span(name.span());
        match name.to_string().as_str() {
            "elman" => {
                if input.peek(syn::token::Paren) {
                    return Err(input
                        .error("`elman` takes no parameters (`dt` and `tau` belong to `leaky`)"));
                }
                ir.settings.dynamics = Dynamics::Elman;
                Ok(())
            }
            "leaky" => {
                let (mut dt, mut tau) = (10.0, 100.0);
                if input.peek(syn::token::Paren) {
                    let content;
                    syn::parenthesized!(content in input);
                    let mut seen = HashSet::new();
                    while !content.is_empty() {
                        let key: Ident = content.parse()?;
                        if !seen.insert(key.to_string()) {
                            return Err(syn::Error::new(
                                key.span(),
                                format!("`{key}` is given twice"),
                            ));
                        }
                        content.parse::<Token![=]>()?;
                        let n: Number = content.parse()?;
                        match key.to_string().as_str() {
                            "dt" => {
                                dt = n.value;
                                ir.setting_locs.dt = number_loc(&n);
                            }
                            "tau" => {
                                tau = n.value;
                                ir.setting_locs.tau = number_loc(&n);
                            }
                            other => {
                                return Err(syn::Error::new(
                                    key.span(),
                                    format!(
                                        "unknown parameter `{other}` of `leaky`, expected `dt` or `tau`"
                                    ),
                                ));
                            }
                        }
                        if !content.is_empty() {
                            content.parse::<Token![,]>()?;
                        }
                    }
                }
                ir.settings.dynamics = Dynamics::Leaky { dt, tau };
                Ok(())
            }
            other => Err(syn::Error::new(
                name.span(),
                format!("unknown dynamics `{other}`, expected one of {}", list(&Dynamics::NAMES)),
            )),
        }
    }

    fn parse_activation(input: ParseStream<'_>, cx: &Ctxt, ir: &mut Ir) -> syn::Result<()> {
        let name: Ident = input.parse()?;
        ir.setting_locs.activation = Loc::span(name.span());
        let text = name.to_string();
        match Activation::from_name(&text) {
            Some(a) => ir.settings.activation = a,
            None => {
                let names: Vec<&str> = Activation::ALL.iter().map(|a| a.name()).collect();
                match closest(&text, names.iter().copied()) {
                    Some(c) => cx.error_help(
                        Loc::span(name.span()),
                        unknown_activation(&text),
                        format!("did you mean `{c}`?"),
                    ),
                    None => cx.error(Loc::span(name.span()), unknown_activation(&text)),
                }
            }
        }
        Ok(())
    }

    fn parse_dale(input: ParseStream<'_>, ir: &mut Ir) -> syn::Result<()> {
        let first: Ident = input.parse()?;
        let mut parts = vec![first];
        while input.peek(Token![+]) {
            input.parse::<Token![+]>()?;
            parts.push(input.parse()?);
        }
        let mut dale = crate::model::Dale { recurrent: false, input: false };
        let start = parts[0].span();
        let end = parts[parts.len() - 1].span();
        for part in &parts {
            match part.to_string().as_str() {
                "recurrent" => dale.recurrent = true,
                "input" => dale.input = true,
                "none" if parts.len() == 1 => {}
                other => {
                    return Err(syn::Error::new(
                        part.span(),
                        format!(
                            "unknown matrix `{other}`, expected `recurrent`, `input`, `recurrent + input` or `none`"
                        ),
                    ));
                }
            }
        }
        ir.settings.dale = dale;
        ir.setting_locs.dale = tokens(start, end);
        Ok(())
    }

    fn parse_noise(input: ParseStream<'_>, ir: &mut Ir) -> syn::Result<()> {
        if input.peek(Ident) {
            let word: Ident = input.parse()?;
            if word == "none" {
                ir.settings.noise = crate::model::Noise { act: 0.0, inp: 0.0 };
                return Ok(());
            }
            return Err(syn::Error::new(
                word.span(),
                "expected `(act = 0.01, inp = 0.01)` or `none`",
            ));
        }
        let content;
        syn::parenthesized!(content in input);
        while !content.is_empty() {
            let key: Ident = content.parse()?;
            content.parse::<Token![=]>()?;
            let n: Number = content.parse()?;
            match key.to_string().as_str() {
                "act" => {
                    ir.settings.noise.act = n.value;
                    ir.setting_locs.noise_act = number_loc(&n);
                }
                "inp" => {
                    ir.settings.noise.inp = n.value;
                    ir.setting_locs.noise_inp = number_loc(&n);
                }
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown noise level `{other}`, expected `act` or `inp`"),
                    ));
                }
            }
            if !content.is_empty() {
                content.parse::<Token![,]>()?;
            }
        }
        Ok(())
    }
}
