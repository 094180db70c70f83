//! Built-in networks: what `mrnn train` uses when no config is given, so the main job runs on a
//! fresh machine with nothing but the repository.

use mrnn_ir::Spec;
use mrnn_ir::spec::{ConnectionSpec, InputRegionSpec, ModelSpec, RegionSpec};

/// An excitatory/inhibitory network for tasks with `inputs` input channels: `hidden` units,
/// 80 % excitatory (`exc`) and 20 % inhibitory (`inh`), all four recurrent projections with
/// `exc -> exc` sparse (half of each excitatory unit's weights onto excitatory units are zero),
/// one input region `inp` driving both, learnable tonic biases; leaky tanh units with
/// `dt / tau = 1 / 2` and Dale's law on the recurrent weights (inputs are signed pulses, so input
/// weights are free), as in mRNNTorch's flip-flop example.
#[must_use]
pub fn excitatory_inhibitory(hidden: usize, inputs: usize) -> Spec {
    let exc = ((hidden as f64) * 0.8).round().max(1.0) as usize;
    let inh = hidden.saturating_sub(exc).max(1);
    let region = |name: &str, units: usize, sign: &str| RegionSpec {
        name: Some(name.to_owned()),
        num_units: Some(i64::try_from(units).unwrap_or(i64::MAX)),
        sign: Some(sign.to_owned()),
        learnable_bias: Some(true),
        ..RegionSpec::default()
    };
    let connection = |src: &str, dst: &str, sparsity: Option<f64>| ConnectionSpec {
        src_region: Some(src.to_owned()),
        dst_region: Some(dst.to_owned()),
        sparsity,
        sign: None,
    };
    Spec {
        recurrent_regions: vec![region("exc", exc, "pos"), region("inh", inh, "neg")],
        input_regions: vec![InputRegionSpec {
            name: Some("inp".to_owned()),
            num_units: Some(i64::try_from(inputs).unwrap_or(i64::MAX)),
            sign: Some("pos".to_owned()),
        }],
        recurrent_connections: vec![
            connection("exc", "exc", Some(0.5)),
            connection("exc", "inh", None),
            connection("inh", "exc", None),
            connection("inh", "inh", None),
        ],
        input_connections: vec![connection("inp", "exc", None), connection("inp", "inh", None)],
        model: Some(ModelSpec {
            dynamics: Some("leaky".to_owned()),
            dt: Some(1.0),
            tau: Some(2.0),
            activation: Some("tanh".to_owned()),
            rec_constrained: Some(true),
            inp_constrained: Some(false),
            ..ModelSpec::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_to_an_80_20_network() {
        let arch = mrnn_ir::compile_spec(&excitatory_inhibitory(64, 3), "ei.json", "")
            .unwrap()
            .architecture;
        assert_eq!(arch.hidden_size(), 64);
        assert_eq!(arch.region("exc").unwrap().units, 51);
        assert_eq!(arch.region("inh").unwrap().units, 13);
        assert_eq!(arch.input_size(), 3);
        assert_eq!(arch.connections().len(), 6);
        assert!(arch.settings().dale.recurrent && !arch.settings().dale.input);
    }
}
