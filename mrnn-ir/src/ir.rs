//! The lowered network: a petgraph graph with one node per region and one edge per connection,
//! every node and edge carrying where it was written (a DSL span or a JSON pointer). Both front
//! doors lower into this; the checks read it; layout and code generation consume it.

use std::collections::HashMap;

use petgraph::graph::{DiGraph, EdgeIndex, NodeIndex};

use crate::diag::Loc;
use crate::model::{Settings, Sign};

/// A region's node in the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionId(pub NodeIndex);

/// A connection's edge in the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub EdgeIndex);

/// Recurrent (part of the hidden state) or input (part of the input vector).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionKind {
    /// A recurrent region.
    Recurrent,
    /// An input region.
    Input,
}

impl RegionKind {
    /// `recurrent` or `input`.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            RegionKind::Recurrent => "recurrent",
            RegionKind::Input => "input",
        }
    }
}

/// A value and where it was written.
#[derive(Clone, Debug)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub loc: Loc,
}

impl<T> Located<T> {
    /// Pairs a value with its location.
    pub fn new(value: T, loc: Loc) -> Self {
        Located { value, loc }
    }
}

/// A region as declared.
#[derive(Clone, Debug)]
pub struct RegionNode {
    /// Its name, located at the name token / JSON `name` value.
    pub name: Located<String>,
    /// Recurrent or input.
    pub kind: RegionKind,
    /// Declared size (may be invalid until checked).
    pub units: Located<i64>,
    /// Declared sign, if any.
    pub sign: Option<Located<Sign>>,
    /// Tonic input (recurrent regions).
    pub base_firing: Located<f64>,
    /// Initial pre-activation (recurrent regions).
    pub init: Located<f64>,
    /// Parent group (recurrent regions).
    pub parent: Option<Located<String>>,
    /// Whether the tonic input is trained.
    pub learnable_bias: bool,
    /// The whole declaration.
    pub loc: Loc,
    /// Parts of the declaration already reported as invalid while lowering.
    pub invalid: Invalid,
}

/// Parts of a region's declaration that lowering already reported (a missing or unparsable
/// size, an unknown sign). Lowering puts a placeholder in their place; the checks that read them
/// skip the region, so that one mistake gives one error (no "has no sign" after "unknown sign",
/// no sparsity error computed from a placeholder size).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Invalid {
    /// The size is a placeholder.
    pub units: bool,
    /// A sign was written but not understood.
    pub sign: bool,
}

/// A connection as declared.
#[derive(Clone, Debug)]
pub struct Projection {
    /// Fraction of weights zero per source unit.
    pub sparsity: Option<Located<f64>>,
    /// Sign the author expects the source to have.
    pub sign: Option<Located<Sign>>,
    /// Where the source name was written.
    pub src_loc: Loc,
    /// Where the destination name was written.
    pub dst_loc: Loc,
}

/// Where each setting was written (for errors about a setting's value).
#[derive(Clone, Debug, Default)]
pub struct SettingLocs {
    /// `dynamics` (the `dt`/`tau` values for leaky).
    pub dynamics: Loc,
    /// `dt` of leaky dynamics.
    pub dt: Loc,
    /// `tau` of leaky dynamics.
    pub tau: Loc,
    /// `activation`.
    pub activation: Loc,
    /// `dale`.
    pub dale: Loc,
    /// Hidden noise level.
    pub noise_act: Loc,
    /// Input noise level.
    pub noise_inp: Loc,
    /// `spectral_radius`.
    pub spectral_radius: Loc,
}

/// The network graph. Node indices follow declaration order (recurrent and input regions
/// interleaved as written); edge indices follow connection order. Iterating in index order keeps
/// everything downstream deterministic.
#[derive(Clone, Debug)]
pub struct Ir {
    /// Network name (the generated type's name).
    pub name: Located<String>,
    /// Doc comment lines for the generated type.
    pub docs: Vec<String>,
    /// Dynamics, activation, Dale's law, noise, seed.
    pub settings: Settings,
    /// Where the settings were written.
    pub setting_locs: SettingLocs,
    /// Regions (nodes) and connections (edges, source -> destination).
    pub graph: DiGraph<RegionNode, Projection>,
    /// Regions named as the source of a connection that was dropped because its other end did
    /// not resolve: they meant to drive something, so "drives nothing" would be a cascade error.
    pub dangling_sources: std::collections::HashSet<RegionId>,
    /// Second (and later) declarations of a name, with the first: `(duplicate, first)`.
    pub duplicates: Vec<(RegionId, RegionId)>,
    /// Names that resolve to nothing but are explained by a duplicated declaration (`region d1`
    /// written twice where connections use `d2`): reported once, with the duplicate, as
    /// `(duplicate, the name it probably meant)`.
    pub meant_names: Vec<(RegionId, String)>,
    names: HashMap<String, RegionId>,
}

impl Ir {
    /// An empty network.
    #[must_use]
    pub fn new(name: Located<String>, settings: Settings) -> Ir {
        Ir {
            name,
            docs: Vec::new(),
            settings,
            setting_locs: SettingLocs::default(),
            graph: DiGraph::new(),
            dangling_sources: std::collections::HashSet::new(),
            duplicates: Vec::new(),
            meant_names: Vec::new(),
            names: HashMap::new(),
        }
    }

    /// Adds a region. Name lookup keeps the first region of a name; duplicates stay in the graph
    /// so the checker can report them where they were written.
    pub fn add_region(&mut self, node: RegionNode) -> RegionId {
        let name = node.name.value.clone();
        let id = RegionId(self.graph.add_node(node));
        let first = *self.names.entry(name).or_insert(id);
        if first != id {
            self.duplicates.push((id, first));
        }
        id
    }

    /// Adds a connection.
    pub fn add_connection(
        &mut self,
        src: RegionId,
        dst: RegionId,
        projection: Projection,
    ) -> ConnId {
        ConnId(self.graph.add_edge(src.0, dst.0, projection))
    }

    /// Finds a region by name in O(1).
    #[must_use]
    pub fn lookup(&self, name: &str) -> Option<RegionId> {
        self.names.get(name).copied()
    }

    /// The region of a node.
    #[must_use]
    pub fn region(&self, id: RegionId) -> &RegionNode {
        &self.graph[id.0]
    }

    /// All regions in declaration order.
    pub fn regions(&self) -> impl Iterator<Item = (RegionId, &RegionNode)> {
        self.graph.node_indices().map(|i| (RegionId(i), &self.graph[i]))
    }

    /// Regions of one kind in declaration order.
    pub fn regions_of(&self, kind: RegionKind) -> impl Iterator<Item = (RegionId, &RegionNode)> {
        self.regions().filter(move |(_, r)| r.kind == kind)
    }

    /// All connections in declaration order, as (id, source, destination, projection).
    ///
    /// # Panics
    ///
    /// Never: every edge index comes from this graph.
    pub fn connections(&self) -> impl Iterator<Item = (ConnId, RegionId, RegionId, &Projection)> {
        self.graph.edge_indices().map(|e| {
            let (s, d) = self.graph.edge_endpoints(e).expect("edge index from this graph");
            (ConnId(e), RegionId(s), RegionId(d), &self.graph[e])
        })
    }

    /// Names of all regions, in declaration order, each once (for "did you mean").
    pub fn region_names(&self) -> impl Iterator<Item = &str> {
        self.regions()
            .filter(|(id, r)| self.lookup(&r.name.value) == Some(*id))
            .map(|(_, r)| r.name.value.as_str())
    }

    /// The recurrent regions of a group (`in alm`), in declaration order; empty when no region
    /// names `group` as its parent.
    #[must_use]
    pub fn group_members(&self, group: &str) -> Vec<RegionId> {
        self.regions_of(RegionKind::Recurrent)
            .filter(|(_, r)| r.parent.as_ref().is_some_and(|p| p.value == group))
            .map(|(id, _)| id)
            .collect()
    }

    /// The groups (parents) of the network, each once, in the order of their first member.
    #[must_use]
    pub fn groups(&self) -> Vec<&Located<String>> {
        let mut seen = std::collections::HashSet::new();
        self.regions_of(RegionKind::Recurrent)
            .filter_map(|(_, r)| r.parent.as_ref())
            .filter(|p| seen.insert(p.value.as_str()))
            .collect()
    }
}
