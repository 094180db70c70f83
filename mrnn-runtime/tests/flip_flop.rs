//! mRNNTorch's own checkpoints (trained on the 3-bit flip-flop, saved on `cuda:0`) reproduce
//! their recorded trajectories and readouts, and solve the task.

mod common;

use common::{assert_close, load, reference};
use mrnn_runtime::{Device, Forward, Network, Overrides, Readout, StateDict, Tensor};

fn check(dynamics: &str) {
    // flip_flop.json's "model" object says leaky (dt 1, tau 2), tanh, Dale on W_rec only.
    let overrides = Overrides { dynamics: Some(dynamics.into()), ..Overrides::default() };
    let device = Device::Cpu;
    let mut net =
        Network::from_json_file(reference("flip_flop.json"), &overrides, &device).unwrap();
    let checkpoint = reference(&format!("flip_flop_rnn_{dynamics}.pth"));
    let sd = StateDict::read(&checkpoint).unwrap();
    net.import_state_dict(&sd, "rnn.").unwrap();
    let readout = Readout::from_state_dict(&sd, "out_layer.", &device).unwrap();
    assert_eq!((readout.output_size(), readout.hidden_size()), (3, 30));

    let data = load(&format!("flip_flop_{dynamics}_expected.safetensors"));
    let (b, h) = (data["input"].dims()[0], net.hidden_size());
    // x0 = h0 = 0 in the recorded runs.
    let x0 = Tensor::zeros((b, h), candle_core::DType::F32, &device).unwrap();
    let out = net.forward(&data["input"], &Forward::new().x0(x0)).unwrap();
    assert_close("h", &out.h, &data["expected_h"]);
    let y = readout.forward(&out.h).unwrap();
    assert_close("output", &y, &data["expected_output"]);

    // Sign accuracy over every step and bit.
    let same = y.sign().unwrap().eq(&data["target"].sign().unwrap()).unwrap();
    let accuracy = same
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((accuracy - 1.0).abs() < f32::EPSILON, "{dynamics}: sign accuracy {accuracy}");
}

#[test]
fn leaky_checkpoint_reproduces_reference() {
    check("leaky");
}

#[test]
fn elman_checkpoint_reproduces_reference() {
    check("elman");
}
