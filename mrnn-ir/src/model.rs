//! The checked architecture: plain data (regions with unit offsets, connections, settings) that
//! the runtime builds a network from. Produced by [`crate::compile_spec`] at run time, or written
//! as a `const` by generated code; both hold the same type, so both reach the same engine.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The sign of a region's outgoing weights under Dale's law.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Sign {
    /// Excitatory (`pos` in mRNNTorch): outgoing weights are `>= 0`.
    Exc,
    /// Inhibitory (`neg` in mRNNTorch): outgoing weights are `<= 0`.
    Inh,
}

impl Sign {
    /// `+1.0` for excitatory, `-1.0` for inhibitory.
    #[must_use]
    pub const fn value(self) -> f64 {
        match self {
            Sign::Exc => 1.0,
            Sign::Inh => -1.0,
        }
    }

    /// The name mRNNTorch's JSON uses: `pos` or `neg`.
    #[must_use]
    pub const fn spec_name(self) -> &'static str {
        match self {
            Sign::Exc => "pos",
            Sign::Inh => "neg",
        }
    }

    /// The keyword of the `mrnn!` DSL: `exc` or `inh`.
    #[must_use]
    pub const fn dsl_name(self) -> &'static str {
        match self {
            Sign::Exc => "exc",
            Sign::Inh => "inh",
        }
    }

    /// A word for messages: `excitatory` or `inhibitory`.
    #[must_use]
    pub const fn describe(self) -> &'static str {
        match self {
            Sign::Exc => "excitatory",
            Sign::Inh => "inhibitory",
        }
    }

    /// Reads a sign from any of its spellings: `pos`/`exc`/`excitatory`, `neg`/`inh`/`inhib`/`inhibitory`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Sign> {
        match name {
            "pos" | "exc" | "excitatory" => Some(Sign::Exc),
            "neg" | "inh" | "inhib" | "inhibitory" => Some(Sign::Inh),
            _ => None,
        }
    }
}

/// The nonlinearity `phi` that maps pre-activations `x` to rates `h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `ln(1 + exp(x))`.
    Softplus,
    /// `x`.
    Linear,
}

impl Activation {
    /// Every activation, in the order messages list them.
    pub const ALL: [Activation; 5] = [
        Activation::Relu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Softplus,
        Activation::Linear,
    ];

    /// The name used in JSON and in the DSL.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Softplus => "softplus",
            Activation::Linear => "linear",
        }
    }

    /// Looks an activation up by name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Activation> {
        Activation::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// How the state is updated from one step to the next.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Dynamics {
    /// `x' = x + alpha (-x + W h + W_in u + b)`, `alpha = dt / tau`.
    Leaky {
        /// Integration step.
        dt: f64,
        /// Time constant.
        tau: f64,
    },
    /// `h' = phi(W h + W_in u + b)`.
    Elman,
}

impl Dynamics {
    /// The names accepted in JSON and in the DSL.
    pub const NAMES: [&'static str; 2] = ["leaky", "elman"];
    /// mRNNTorch's defaults: `dt = 10`, `tau = 100`.
    pub const DEFAULT_LEAKY: Dynamics = Dynamics::Leaky { dt: 10.0, tau: 100.0 };

    /// `dt / tau` for leaky dynamics, `1` for Elman (as in the noise formula of the reference).
    #[must_use]
    pub fn alpha(self) -> f64 {
        match self {
            Dynamics::Leaky { dt, tau } => dt / tau,
            Dynamics::Elman => 1.0,
        }
    }

    /// `leaky` or `elman`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Dynamics::Leaky { .. } => "leaky",
            Dynamics::Elman => "elman",
        }
    }
}

/// Which weight matrices obey Dale's law (`rec_constrained` and `inp_constrained` in mRNNTorch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dale {
    /// Recurrent weights are `mask * |W| * sign`.
    pub recurrent: bool,
    /// Input weights are `mask * |W| * sign`.
    pub input: bool,
}

/// Noise levels (standard deviations `sigma`) used when a forward pass asks for noise.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Noise {
    /// `noise_level_act`: noise on the hidden state.
    pub act: f64,
    /// `noise_level_inp`: noise on the input.
    pub inp: f64,
}

/// Everything about a network that is not a region or a connection.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Leaky (with `dt`, `tau`) or Elman.
    pub dynamics: Dynamics,
    /// The nonlinearity.
    pub activation: Activation,
    /// Which matrices obey Dale's law.
    pub dale: Dale,
    /// Noise levels for noisy forward passes.
    pub noise: Noise,
    /// Scale the effective recurrent matrix to this spectral radius after initialization.
    pub spectral_radius: Option<f64>,
    /// Inputs and outputs are `[B, T, ..]` (true) or `[T, B, ..]` (false).
    pub batch_first: bool,
    /// Seed for masks and initial weights.
    pub seed: u64,
}

impl Settings {
    /// mRNNTorch's defaults: leaky with `dt = 10`, `tau = 100`, relu, Dale's law on both matrices,
    /// noise 0.01 on both, no spectral-radius scaling, batch first, seed 0.
    pub const DEFAULT: Settings = Settings {
        dynamics: Dynamics::DEFAULT_LEAKY,
        activation: Activation::Relu,
        dale: Dale { recurrent: true, input: true },
        noise: Noise { act: 0.01, inp: 0.01 },
        spectral_radius: None,
        batch_first: true,
        seed: 0,
    };
}

impl Default for Settings {
    fn default() -> Self {
        Settings::DEFAULT
    }
}

/// A recurrent region: a contiguous block of the hidden vector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Region {
    /// Unique name.
    pub name: Cow<'static, str>,
    /// Number of units.
    pub units: usize,
    /// First unit in the hidden vector.
    pub offset: usize,
    /// Sign of its outgoing weights.
    pub sign: Sign,
    /// Tonic input to each unit.
    pub base_firing: f64,
    /// Initial pre-activation of each unit.
    pub init: f64,
    /// Group this region belongs to (`alm` for `alm_exc`), if any.
    pub parent: Option<Cow<'static, str>>,
    /// Whether `base_firing` is a trained parameter.
    pub learnable_bias: bool,
}

impl Region {
    /// The units of this region in the hidden vector: `offset..offset + units`.
    #[must_use]
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset.saturating_add(self.units)
    }
}

/// An input region: a contiguous block of the input vector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputRegion {
    /// Unique name (shared namespace with recurrent regions).
    pub name: Cow<'static, str>,
    /// Number of units.
    pub units: usize,
    /// First unit in the input vector.
    pub offset: usize,
    /// Sign of its outgoing weights.
    pub sign: Sign,
}

impl InputRegion {
    /// The units of this region in the input vector.
    #[must_use]
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset.saturating_add(self.units)
    }
}

/// Where a connection comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Source {
    /// The recurrent region at this index of [`Architecture::regions`].
    Recurrent(usize),
    /// The input region at this index of [`Architecture::inputs`].
    Input(usize),
}

/// A projection from a source region into a recurrent region.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    /// The source region.
    pub src: Source,
    /// Index of the destination in [`Architecture::regions`].
    pub dst: usize,
    /// Fraction of weights that are zero per source unit; `None` means dense.
    pub sparsity: Option<f64>,
}

/// How the recurrent product `W_rec_eff h` is computed, decided by the compiler from the block
/// structure it knows statically (which region pairs are connected).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Product {
    /// One `[B, H] x [H, H]` product: best when most region pairs are connected.
    Dense,
    /// One product per connection, over its block only: best when few pairs are connected
    /// (CBGTCL: 19 of 64 pairs), since unconnected blocks are zero.
    Blocks,
}

impl Product {
    /// Block products win below this fraction of connected entries of `W_rec` (measured with
    /// `mrnn bench` on the E/I, CBGTCL and connectome-like networks; see
    /// `mrnn-runtime/bench/README.md`).
    pub const BLOCK_DENSITY_THRESHOLD: f64 = 0.5;

    /// The product for a recurrent matrix of `hidden` units whose connected blocks cover
    /// `connected` entries.
    #[must_use]
    pub fn for_density(connected: usize, hidden: usize) -> Product {
        let total = (hidden as f64) * (hidden as f64);
        if total > 0.0 && (connected as f64) / total < Product::BLOCK_DENSITY_THRESHOLD {
            Product::Blocks
        } else {
            Product::Dense
        }
    }
}

/// A checked, laid-out network architecture.
///
/// Only the compiler makes one ([`crate::compile_spec`], or the `const` that `mrnn!` generates),
/// so holding one means every rule of the checker held: names resolve, sizes are positive,
/// sparsities are in range, signs agree with Dale's law.
#[derive(Clone, Debug, PartialEq)]
pub struct Architecture {
    name: Cow<'static, str>,
    settings: Settings,
    regions: Cow<'static, [Region]>,
    inputs: Cow<'static, [InputRegion]>,
    connections: Cow<'static, [Connection]>,
    hidden: usize,
    input: usize,
    product: Product,
}

impl Architecture {
    /// Assembles an architecture from parts the compiler has already checked. Generated code calls
    /// this in a `const`; anything else goes through [`crate::compile_spec`].
    #[doc(hidden)]
    #[must_use]
    pub const fn __from_checked_parts(
        name: &'static str,
        settings: Settings,
        regions: &'static [Region],
        inputs: &'static [InputRegion],
        connections: &'static [Connection],
        (hidden, input): (usize, usize),
        product: Product,
    ) -> Self {
        Architecture {
            name: Cow::Borrowed(name),
            settings,
            regions: Cow::Borrowed(regions),
            inputs: Cow::Borrowed(inputs),
            connections: Cow::Borrowed(connections),
            hidden,
            input,
            product,
        }
    }

    pub(crate) fn from_owned_parts(
        name: String,
        settings: Settings,
        regions: Vec<Region>,
        inputs: Vec<InputRegion>,
        connections: Vec<Connection>,
    ) -> Self {
        // Saturating: a rejected network (laid out so that its generated type still exists next
        // to its errors) may declare absurd sizes.
        let hidden = regions.iter().fold(0usize, |n, r| n.saturating_add(r.units));
        let input = inputs.iter().fold(0usize, |n, r| n.saturating_add(r.units));
        let connected = connections
            .iter()
            .filter_map(|c| match c.src {
                Source::Recurrent(i) => Some(regions[c.dst].units.saturating_mul(regions[i].units)),
                Source::Input(_) => None,
            })
            .fold(0usize, usize::saturating_add);
        let product = Product::for_density(connected, hidden);
        Architecture {
            name: Cow::Owned(name),
            settings,
            regions: Cow::Owned(regions),
            inputs: Cow::Owned(inputs),
            connections: Cow::Owned(connections),
            hidden,
            input,
            product,
        }
    }

    /// How the recurrent product is computed (dense, or one block per connection).
    #[must_use]
    pub fn product(&self) -> Product {
        self.product
    }

    /// The same architecture with another product (for benchmarks and experiments): both
    /// products compute the same result, only their speed differs.
    #[must_use]
    pub fn with_product(mut self, product: Product) -> Self {
        self.product = product;
        self
    }

    /// The network's name (the type name in `mrnn!`, the file stem for JSON).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Dynamics, activation, Dale's law, noise and seed.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Recurrent regions in declaration order (the order of the hidden vector).
    #[must_use]
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Input regions in declaration order (the order of the input vector).
    #[must_use]
    pub fn inputs(&self) -> &[InputRegion] {
        &self.inputs
    }

    /// Connections in declaration order.
    #[must_use]
    pub fn connections(&self) -> &[Connection] {
        &self.connections
    }

    /// Size of the hidden vector `H`.
    #[must_use]
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Size of the input vector `I`.
    #[must_use]
    pub fn input_size(&self) -> usize {
        self.input
    }

    /// Finds a recurrent region by name.
    #[must_use]
    pub fn region(&self, name: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// Finds an input region by name.
    #[must_use]
    pub fn input_region(&self, name: &str) -> Option<&InputRegion> {
        self.inputs.iter().find(|r| r.name == name)
    }

    /// The name of a connection's source.
    #[must_use]
    pub fn source_name(&self, src: Source) -> &str {
        match src {
            Source::Recurrent(i) => &self.regions[i].name,
            Source::Input(i) => &self.inputs[i].name,
        }
    }

    /// The number of units of a connection's source.
    #[must_use]
    pub fn source_units(&self, src: Source) -> usize {
        match src {
            Source::Recurrent(i) => self.regions[i].units,
            Source::Input(i) => self.inputs[i].units,
        }
    }

    /// The sign of a connection's source.
    #[must_use]
    pub fn source_sign(&self, src: Source) -> Sign {
        match src {
            Source::Recurrent(i) => self.regions[i].sign,
            Source::Input(i) => self.inputs[i].sign,
        }
    }

    /// The columns of a connection's source in its weight matrix (`W_rec` or `W_inp`).
    #[must_use]
    pub fn source_range(&self, src: Source) -> std::ops::Range<usize> {
        match src {
            Source::Recurrent(i) => self.regions[i].range(),
            Source::Input(i) => self.inputs[i].range(),
        }
    }

    /// Recurrent regions whose `parent` is `parent`, in declaration order.
    pub fn children<'a>(&'a self, parent: &'a str) -> impl Iterator<Item = &'a Region> + 'a {
        self.regions.iter().filter(move |r| r.parent.as_deref() == Some(parent))
    }

    /// The groups of the network (the `parent` of some region), each once, in the order of their
    /// first region, with their units in the hidden vector when their regions are contiguous
    /// there (generated code then has a range constant for the group).
    ///
    /// ```
    /// let json = r#"{"recurrent_regions": [
    ///     {"name": "exc", "num_units": 8, "sign": "pos", "parent_region": "ctx"},
    ///     {"name": "inh", "num_units": 2, "sign": "neg", "parent_region": "ctx"},
    ///     {"name": "thal", "num_units": 4, "sign": "pos"}],
    ///   "recurrent_connections": [{"src_region": "exc", "dst_region": "inh"},
    ///                             {"src_region": "inh", "dst_region": "exc"}]}"#;
    /// let arch = mrnn_ir::compile_json(json, "ctx.json").unwrap().architecture;
    /// assert_eq!(arch.groups(), [("ctx", Some(0..10))]);
    /// ```
    #[must_use]
    pub fn groups(&self) -> Vec<(&str, Option<std::ops::Range<usize>>)> {
        let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, r) in self.regions.iter().enumerate() {
            let Some(parent) = r.parent.as_deref() else { continue };
            match groups.iter_mut().find(|(name, _)| *name == parent) {
                Some((_, members)) => members.push(i),
                None => groups.push((parent, vec![i])),
            }
        }
        groups
            .into_iter()
            .map(|(name, members)| {
                let range = crate::check::is_contiguous(&members).then(|| {
                    let first = &self.regions[members[0]];
                    let last = &self.regions[members[members.len() - 1]];
                    first.offset..last.offset.saturating_add(last.units)
                });
                (name, range)
            })
            .collect()
    }
}

impl fmt::Display for Architecture {
    /// A one-line summary: `Cbgtcl: 8 regions (350 units), 1 input region (25 units), 21 connections`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} recurrent region{} ({} units), {} input region{} ({} units), {} connection{}",
            self.name,
            self.regions.len(),
            plural(self.regions.len()),
            self.hidden,
            self.inputs.len(),
            plural(self.inputs.len()),
            self.input,
            self.connections.len(),
            plural(self.connections.len()),
        )
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
