//! Multi-regional recurrent neural networks on candle.
//!
//! An architecture comes from the compiler, either as the `const` that [`mrnn!`] generates or
//! from an mRNNTorch JSON config ([`Network::from_json_file`]); both build the same [`Network`]:
//! trainable raw weights, fixed masks and signs (Dale's law), tonic biases, leaky or Elman
//! dynamics, region queries and checkpoints.
#![warn(missing_docs)]

pub mod activation;
pub mod analysis;
pub mod builtin;
pub mod checkpoint;
pub mod compat;
pub mod config;
pub mod engine;
pub mod error;
pub mod finite;
pub mod init;
pub mod linalg;
pub mod loss;
pub mod masks;
pub mod memory;
pub mod network;
pub mod noise;
pub mod optim;
pub mod output;
pub mod plot;
pub mod pth;
pub mod readout;
mod regions;
pub mod task;
pub mod threads;
pub mod train;

pub use candle_core::{DType, Device, Tensor, Var};
pub use config::Overrides;
pub use error::{Error, Result};
pub use masks::Matrix;
pub use mrnn_ir::{Activation, Architecture, Dynamics, Settings, Sign};
pub use mrnn_macros::mrnn;
pub use network::{Forward, Network, Trajectory};
pub use pth::StateDict;
pub use readout::Readout;
pub use threads::ensure_threads;

// The README's example is compiled and run as a doctest, so it cannot go stale.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// What generated code needs and users never name. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use mrnn_ir::model::{
        Activation, Architecture, Connection, Dale, Dynamics, InputRegion, Noise, Product, Region,
        Settings, Sign, Source,
    };
    pub use std::borrow::Cow;
}
