//! Networks from mRNNTorch JSON configs, with command-line style overrides of the `"model"`
//! settings applied before compiling, so that the compiler checks the final settings.

use std::path::Path;

use mrnn_ir::Spec;
use mrnn_ir::spec::ModelSpec;

use crate::{Device, Error, Network, Result};

/// Settings that replace those of a config's `"model"` object. `None` keeps the config's value
/// (or the default). Names are the config's own (`"leaky"`, `"tanh"`): the compiler checks them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    /// `leaky` or `elman`.
    pub dynamics: Option<String>,
    /// Integration step (leaky).
    pub dt: Option<f64>,
    /// Time constant (leaky).
    pub tau: Option<f64>,
    /// `relu`, `tanh`, `sigmoid`, `softplus` or `linear`.
    pub activation: Option<String>,
    /// Dale's law on recurrent weights.
    pub rec_constrained: Option<bool>,
    /// Dale's law on input weights.
    pub inp_constrained: Option<bool>,
    /// Batch-first layout of inputs and outputs.
    pub batch_first: Option<bool>,
    /// Seed for masks and initial weights.
    pub seed: Option<u64>,
}

impl Overrides {
    /// Writes the overrides into `spec`'s `"model"` object (creating it when absent).
    pub fn apply(&self, spec: &mut Spec) {
        let model = spec.model.get_or_insert_with(ModelSpec::default);
        let set = |field: &mut Option<String>, value: &Option<String>| {
            if value.is_some() {
                field.clone_from(value);
            }
        };
        set(&mut model.dynamics, &self.dynamics);
        set(&mut model.activation, &self.activation);
        for (field, value) in [(&mut model.dt, self.dt), (&mut model.tau, self.tau)] {
            if value.is_some() {
                *field = value;
            }
        }
        for (field, value) in [
            (&mut model.rec_constrained, self.rec_constrained),
            (&mut model.inp_constrained, self.inp_constrained),
            (&mut model.batch_first, self.batch_first),
        ] {
            if value.is_some() {
                *field = value;
            }
        }
        if self.seed.is_some() {
            model.seed = self.seed;
        }
    }
}

/// Configs are kilobytes; anything past this is not one (and is never read whole).
const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// The text of a config file: a regular file (a FIFO would block, `/dev/zero` never ends) of
/// at most 64 MiB, in UTF-8.
pub fn read_config(path: impl AsRef<Path>) -> Result<String> {
    use std::io::Read as _;
    let path = path.as_ref();
    let io = |e: std::io::Error| Error::Io { path: path.display().to_string(), source: e };
    let size = crate::output::regular_input(path)?;
    if size > MAX_CONFIG_BYTES {
        return Err(Error::Invalid(format!(
            "`{}` has {} bytes: too large for a network config (at most {MAX_CONFIG_BYTES}); is it the right file?",
            path.display(),
            size
        )));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_CONFIG_BYTES)
        .read_to_string(&mut text)
        .map_err(io)?;
    Ok(text)
}

/// Reads a config file, applies `overrides`, and compiles it (with its warnings). A config
/// that does not compile is an [`Error::Config`] holding the compiler's report.
pub fn compile_json_file(
    path: impl AsRef<Path>,
    overrides: &Overrides,
) -> Result<mrnn_ir::Compiled> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let text = read_config(path)?;
    let mut spec = mrnn_ir::read_spec(&text, &file)?;
    overrides.apply(&mut spec);
    Ok(mrnn_ir::compile_spec(&spec, &file, &text)?)
}

impl Network {
    /// Builds a network from an mRNNTorch JSON config with `overrides` applied to its `"model"`
    /// settings, seeded with the (overridden) seed. Compiler warnings are dropped: use
    /// [`compile_json_file`] to see them.
    pub fn from_json_file(
        path: impl AsRef<Path>,
        overrides: &Overrides,
        device: &Device,
    ) -> Result<Network> {
        Network::new(compile_json_file(path, overrides)?.architecture, device)
    }
}
