//! (skeleton, being implemented) The network: parameters built from an architecture, and forward.

use candle_core::{Device, Tensor};
use mrnn_ir::Architecture;

use crate::Result;

/// A multi-regional RNN on a candle device.
#[derive(Debug)]
pub struct Network {
    arch: Architecture,
    device: Device,
}

/// Options of one forward pass.
#[derive(Clone, Debug, Default)]
pub struct Forward {
    /// Initial pre-activation `[B, H]`.
    pub x0: Option<Tensor>,
}

/// The result of a forward pass.
#[derive(Clone, Debug)]
pub struct Trajectory {
    /// Pre-activations (leaky only).
    pub x: Option<Tensor>,
    /// Rates.
    pub h: Tensor,
}

impl Network {
    /// Builds a network.
    pub fn with_seed(arch: Architecture, seed: u64, device: &Device) -> Result<Network> {
        let _ = seed;
        Ok(Network { arch, device: device.clone() })
    }

    /// Fails unless `arch` is this network's architecture.
    pub fn expect_architecture(&self, arch: &Architecture) -> Result<()> {
        if &self.arch == arch { Ok(()) } else { Err(crate::Error::Architecture("different".into())) }
    }

    /// Runs the network.
    pub fn forward(&self, input: &Tensor, options: &Forward) -> Result<Trajectory> {
        let _ = (options, &self.device);
        Ok(Trajectory { x: None, h: input.clone() })
    }
}
