//! Graphviz export: the region graph as DOT (petgraph's `Dot`), regions as nodes labelled with
//! size and sign, connections as edges labelled with their sparsity. Inhibitory projections end in
//! a bar (`tee`), the usual circuit-diagram convention.

use std::fmt::Write;

use petgraph::dot::{Config, Dot};

use crate::ir::{Ir, RegionKind};
use crate::model::Sign;

/// Renders a lowered network as a DOT digraph.
#[must_use]
pub fn to_dot(ir: &Ir) -> String {
    let node_attrs = |_: &_, (_, r): (petgraph::graph::NodeIndex, &crate::ir::RegionNode)| {
        let sign = r.sign.as_ref().map(|s| s.value);
        let sign_text = sign.map_or("unsigned", Sign::describe);
        let color = match sign {
            Some(Sign::Exc) => "#d62728",
            Some(Sign::Inh) => "#1f77b4",
            None => "#7f7f7f",
        };
        let (shape, kind) = match r.kind {
            RegionKind::Recurrent => ("ellipse", ""),
            RegionKind::Input => ("box", "input "),
        };
        let mut extra = String::new();
        if let Some(p) = &r.parent {
            let _ = write!(extra, "\\nin {}", escape(&p.value));
        }
        if r.base_firing.value != 0.0 || r.learnable_bias {
            let _ = write!(
                extra,
                "\\nb = {}{}",
                r.base_firing.value,
                if r.learnable_bias { " (learned)" } else { "" }
            );
        }
        format!(
            "label=\"{kind}{}\\n{} {sign_text}{extra}\" shape={shape} color=\"{color}\" fontcolor=\"{color}\"",
            escape(&r.name.value),
            r.units.value
        )
    };
    let edge_attrs =
        |g: &petgraph::graph::DiGraph<crate::ir::RegionNode, crate::ir::Projection>,
         e: petgraph::graph::EdgeReference<'_, crate::ir::Projection>| {
            use petgraph::visit::EdgeRef;
            let src = &g[e.source()];
            let inhibitory = src.sign.as_ref().is_some_and(|s| s.value == Sign::Inh);
            let head = if inhibitory { "tee" } else { "normal" };
            let label = e
                .weight()
                .sparsity
                .as_ref()
                .map(|s| format!(" label=\"sparsity {}\"", s.value))
                .unwrap_or_default();
            format!("arrowhead={head}{label}")
        };
    let dot = Dot::with_attr_getters(
        &ir.graph,
        &[Config::NodeNoLabel, Config::EdgeNoLabel],
        &edge_attrs,
        &node_attrs,
    );
    let body = format!("{dot:?}");
    // Name the graph after the network.
    body.replacen(
        "digraph {",
        &format!("digraph \"{}\" {{\n    rankdir=LR", escape(&ir.name.value)),
        1,
    )
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
