//! Training keeps Dale's law and the masks, moves only learnable biases, and a trained network
//! round-trips through a checkpoint.
#![allow(
    clippy::float_cmp,
    reason = "masks hold exactly 0 or 1, and fixed biases must not move at all"
)]

mod common;

use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use common::{TempDir, reference, values};
use mrnn_runtime::{Device, Forward, Matrix, Network, Tensor};

/// CBGTCL with learnable biases in `thal` and `stn` only.
fn network() -> Network {
    let text = std::fs::read_to_string(reference("CBGTCL.json")).unwrap();
    let mut spec = mrnn_ir::read_spec(&text, "CBGTCL.json").unwrap();
    for r in &mut spec.recurrent_regions {
        if matches!(r.name.as_deref(), Some("thal" | "stn")) {
            r.learnable_bias = Some(true);
        }
    }
    let arch = mrnn_ir::compile_spec(&spec, "CBGTCL.json", &text).unwrap().architecture;
    Network::new(arch, &Device::Cpu).unwrap()
}

fn train(net: &Network, steps: usize) {
    let device = Device::Cpu;
    let vars = net.trainable_vars().into_iter().map(|(_, v)| v).collect();
    // A large learning rate, so that raw weights cross zero and would flip signs without Dale.
    let mut opt =
        AdamW::new(vars, ParamsAdamW { lr: 0.05, weight_decay: 0.0, ..ParamsAdamW::default() })
            .unwrap();
    let input = Tensor::rand(0f32, 1.0, (4, 20, 25), &device).unwrap();
    let target = Tensor::randn(0f32, 1.0, (4, 20, 350), &device).unwrap();
    for _ in 0..steps {
        let h = net.forward(&input, &Forward::default()).unwrap().h;
        let loss = (h - &target).unwrap().sqr().unwrap().mean_all().unwrap();
        opt.backward_step(&loss).unwrap();
    }
}

fn assert_dale(net: &Network) {
    for (m, w) in
        [(Matrix::Recurrent, net.w_rec_eff().unwrap()), (Matrix::Input, net.w_inp_eff().unwrap())]
    {
        let (w, mask, sign) = (values(&w), values(net.mask(m)), values(net.sign_matrix(m)));
        for k in 0..w.len() {
            if mask[k] == 0.0 {
                // -0.0 counts: it is exactly zero (|W| times a masked inhibitory sign).
                assert!(w[k] == 0.0, "{}: masked entry {k} is {}", m.name(), w[k]);
            } else {
                assert!(
                    w[k] * sign[k] >= 0.0,
                    "{}: entry {k} = {} against sign {}",
                    m.name(),
                    w[k],
                    sign[k]
                );
            }
        }
    }
}

#[test]
fn training_keeps_masks_and_signs_and_moves_only_learnable_biases() {
    let net = network();
    let names: Vec<String> = net.trainable_vars().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["W_rec", "W_inp", "base_firing"]);
    let raw_before = values(net.w_rec().as_tensor());
    let bias_before = values(&net.bias().unwrap());
    train(&net, 5);
    let raw_after = values(net.w_rec().as_tensor());
    // Some raw weights crossed zero: Dale's law must hold because of |W|, not by luck.
    assert!(
        raw_before.iter().zip(&raw_after).any(|(a, b)| a * b < 0.0),
        "no raw weight changed sign"
    );
    assert_dale(&net);

    let bias_after = values(&net.bias().unwrap());
    let arch = net.architecture();
    let mut moved = 0;
    for r in arch.regions() {
        for u in r.range() {
            if r.learnable_bias {
                moved += usize::from(bias_after[u] != bias_before[u]);
            } else {
                assert_eq!(bias_after[u], r.base_firing as f32, "{}: fixed bias moved", r.name);
            }
        }
    }
    assert!(moved > 0, "no learnable bias moved");
}

#[test]
fn trained_network_round_trips_through_a_checkpoint() {
    let net = network();
    train(&net, 3);
    let dir = TempDir::new("training");
    let path = dir.join("net.safetensors");
    net.save(&path).unwrap();
    let loaded = Network::load(&path, &Device::Cpu).unwrap();
    loaded.expect_architecture(net.architecture()).unwrap();
    assert_eq!(values(&loaded.bias().unwrap()), values(&net.bias().unwrap()));
    assert_eq!(values(loaded.bias_var().as_tensor()), values(net.bias_var().as_tensor()));
    assert_eq!(values(&loaded.w_rec_eff().unwrap()), values(&net.w_rec_eff().unwrap()));
    let input = Tensor::rand(0f32, 1.0, (2, 7, 25), &Device::Cpu).unwrap();
    let a = net.forward(&input, &Forward::default()).unwrap().h;
    let b = loaded.forward(&input, &Forward::default()).unwrap().h;
    assert_eq!(values(&a), values(&b));
    let names: Vec<String> = loaded.trainable_vars().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["W_rec", "W_inp", "base_firing"]);
}
