//! Dissection of trained networks: fixed points (Golub & Sussillo), linearizations by region,
//! flow fields in a PCA plane, and region-to-region currents, with their files (JSON and
//! safetensors).
//!
//! Everything here works in `f64` on the network's device, in the state space the dynamics
//! carry ([`StateKind`]): pre-activations `x` for leaky networks, rates `h` for Elman networks.

pub mod currents;
pub mod eigen;
pub mod fixed_points;
pub mod flow;
pub mod jacobian;
pub mod pca;

pub use currents::{CurrentSource, Currents, currents, currents_of_run};
pub use eigen::{Eigen, Stability};
pub use fixed_points::{
    FixedPoint, FixedPointOptions, FixedPoints, Phase, Progress, find_fixed_points, sample_states,
    state_trajectory,
};
pub use flow::{FlowField, FlowOptions, Others, flow_field};
pub use jacobian::{RegionLinearization, StateKind, StepMap, linearize};
pub use pca::Pca;
