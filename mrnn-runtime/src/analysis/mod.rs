//! Dissection of trained networks: fixed points (Golub & Sussillo), linearizations by region,
//! flow fields in a PCA plane, and region-to-region currents, with their files (JSON and
//! safetensors).
//!
//! Everything here works in `f64` on the network's device, in the state space the dynamics
//! carry ([`StateKind`]): pre-activations `x` for leaky networks, rates `h` for Elman networks.
//!
//! ```
//! use mrnn_runtime::analysis::{self, FixedPointOptions};
//! use mrnn_runtime::{Device, Forward, Network, Tensor};
//! let json = r#"{
//!     "model": {"dynamics": "leaky", "dt": 1, "tau": 2, "activation": "tanh"},
//!     "recurrent_regions": [{"name": "e", "num_units": 6, "sign": "pos", "base_firing": 0.2},
//!                           {"name": "i", "num_units": 2, "sign": "neg"}],
//!     "input_regions": [{"name": "u", "num_units": 1, "sign": "pos"}],
//!     "recurrent_connections": [{"src_region": "e", "dst_region": "i"},
//!                               {"src_region": "i", "dst_region": "e"}],
//!     "input_connections": [{"src_region": "u", "dst_region": "e"}]
//! }"#;
//! let arch = mrnn_ir::compile_json(json, "ei.json").unwrap().architecture;
//! let net = Network::new(arch, &Device::Cpu)?;
//! // States visited on some trajectories are the candidates.
//! let input = Tensor::arange(0f32, 80.0, &Device::Cpu)?.reshape((4, 20, 1))?.sin()?;
//! let states = analysis::state_trajectory(&net, &input, &Forward::default())?;
//! let candidates = analysis::sample_states(&states, 32, 0)?;
//! let options = FixedPointOptions { max_iters: 500, ..FixedPointOptions::default() };
//! let found = analysis::find_fixed_points(&net, &candidates, &options, &mut |_| {})?;
//! // Weak feedback: one stable fixed point, where the leaky step leaves the state in place.
//! assert_eq!((found.points.len(), found.stable_count()), (1, 1));
//! assert!(found.points[0].q < 1e-20 && found.points[0].max_abs_eigenvalue() < 1.0);
//! // The currents that drive it, region by region.
//! let currents = analysis::currents_of_run(&net, &input, &Forward::default(), &[])?;
//! assert_eq!(currents.targets, ["e", "i"]);
//! # Ok::<(), mrnn_runtime::Error>(())
//! ```

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
