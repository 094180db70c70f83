//! Process noise: the per-step noise on the state has standard deviation sqrt(2 alpha) sigma,
//! hidden and input noise use their own levels, and a seed reproduces a run.

mod common;

use common::values;
use mrnn_runtime::{DType, Device, Forward, Network, Tensor};

/// One region of `h` units fed by a one-unit input, linear, with the given dynamics and noise
/// levels; all weights and biases zero except what the caller sets.
fn network(dynamics: &str, act: f64, inp: f64, h: usize) -> Network {
    let json = format!(
        r#"{{"recurrent_regions": [{{"name": "a", "num_units": {h}, "sign": "pos"}}],
            "input_regions": [{{"name": "u", "num_units": 1, "sign": "pos"}}],
            "recurrent_connections": [{{"src_region": "a", "dst_region": "a"}}],
            "input_connections": [{{"src_region": "u", "dst_region": "a"}}],
            "model": {{"dynamics": "{dynamics}", {} "activation": "linear",
                      "noise_level_act": {act}, "noise_level_inp": {inp}}}}}"#,
        if dynamics == "leaky" { r#""dt": 10.0, "tau": 100.0,"# } else { "" }
    );
    let arch =
        mrnn_ir::compile_json(&json, "noise.json").unwrap_or_else(|r| panic!("{r}")).architecture;
    let net = Network::new(arch, &Device::Cpu).unwrap();
    net.set_w_rec(&Tensor::zeros((h, h), DType::F32, &Device::Cpu).unwrap()).unwrap();
    net.set_w_inp(&Tensor::zeros((h, 1), DType::F32, &Device::Cpu).unwrap()).unwrap();
    net
}

fn std_dev(v: &[f32]) -> f64 {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    (v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// The per-step increments of the noise: `x_{t+1} - (1 - alpha) x_t` (leaky, from `x_0 = 0`).
fn leaky_increments(net: &Network, alpha: f32, seed: u64) -> Vec<f32> {
    let (b, t, h) = (64, 100, net.hidden_size());
    let input = Tensor::zeros((b, t, 1), DType::F32, &Device::Cpu).unwrap();
    let x0 = Tensor::zeros((b, h), DType::F32, &Device::Cpu).unwrap();
    let out = net.forward(&input, &Forward::new().x0(x0).noise(seed)).unwrap();
    let x = out.x.unwrap();
    let prev = Tensor::cat(
        &[
            &Tensor::zeros((b, 1, h), DType::F32, &Device::Cpu).unwrap(),
            &x.narrow(1, 0, t - 1).unwrap(),
        ],
        1,
    )
    .unwrap();
    values(&(&x - (prev * f64::from(1.0 - alpha)).unwrap()).unwrap())
}

#[test]
fn hidden_noise_per_step_has_std_sqrt_2_alpha_sigma() {
    let (alpha, sigma) = (0.1f64, 0.02);
    let net = network("leaky", sigma, 0.0, 50);
    let d = leaky_increments(&net, alpha as f32, 1);
    let want = (2.0 * alpha).sqrt() * sigma;
    let got = std_dev(&d);
    assert!((got / want - 1.0).abs() < 0.05, "std {got}, expected {want}");
}

#[test]
fn input_noise_uses_its_own_level() {
    let (alpha, sigma) = (0.1f64, 0.05);
    let net = network("leaky", 0.0, sigma, 50);
    // With W_inp all ones every unit receives alpha * e_inp.
    net.set_w_inp(&Tensor::ones((50, 1), DType::F32, &Device::Cpu).unwrap()).unwrap();
    let d = leaky_increments(&net, alpha as f32, 2);
    let want = (2.0 * alpha).sqrt() * sigma;
    let got = std_dev(&d);
    assert!((got / want - 1.0).abs() < 0.05, "std {got}, expected {want}");
}

#[test]
fn elman_noise_uses_alpha_one() {
    let sigma = 0.03;
    let net = network("elman", sigma, 0.0, 50);
    let input = Tensor::zeros((64, 100, 1), DType::F32, &Device::Cpu).unwrap();
    let h0 = Tensor::zeros((64, 50), DType::F32, &Device::Cpu).unwrap();
    let out = net.forward(&input, &Forward::new().h0(h0).noise(3)).unwrap();
    // W = 0: h_{t+1} = e_hid, std sqrt(2) sigma.
    let got = std_dev(&values(&out.h));
    let want = 2f64.sqrt() * sigma;
    assert!((got / want - 1.0).abs() < 0.05, "std {got}, expected {want}");
}

#[test]
fn noise_is_reproducible_and_off_by_default() {
    let net = network("leaky", 0.01, 0.01, 8);
    let input = Tensor::zeros((2, 10, 1), DType::F32, &Device::Cpu).unwrap();
    let run = |options: &Forward| values(&net.forward(&input, options).unwrap().h);
    assert_eq!(run(&Forward::new().noise(5)), run(&Forward::new().noise(5)));
    assert_ne!(run(&Forward::new().noise(5)), run(&Forward::new().noise(6)));
    assert!(run(&Forward::new()).iter().all(|&v| v == 0.0));
}
