//! Region-to-region currents on a 2-region E/I network with one input, where every current is
//! a product worked out by hand; and over a run, the currents into a region plus its tonic
//! input reproduce the network's update.

use mrnn_runtime::analysis::{self, CurrentSource};
use mrnn_runtime::{DType, Device, Forward, Network, StateDict, Tensor};

/// `a` (1 excitatory unit) and `b` (1 inhibitory unit) drive each other; the input `u` drives
/// `a` only. Dale's law: `W_eff[a, b] = -0.7`, `W_eff[b, a] = 0.4`, `W_in_eff[a, u] = 2`.
fn network(dynamics: &str, activation: &str) -> Network {
    let json = format!(
        r#"{{
        "model": {{"dynamics": "{dynamics}", "dt": 1.0, "tau": 2.0, "activation": "{activation}"}},
        "recurrent_regions": [
            {{"name": "a", "num_units": 1, "sign": "pos", "base_firing": 0.3}},
            {{"name": "b", "num_units": 1, "sign": "neg", "base_firing": -0.1}}
        ],
        "input_regions": [{{"name": "u", "num_units": 1, "sign": "pos"}}],
        "recurrent_connections": [
            {{"src_region": "a", "dst_region": "b"}}, {{"src_region": "b", "dst_region": "a"}}
        ],
        "input_connections": [{{"src_region": "u", "dst_region": "a"}}]
    }}"#
    );
    let arch = mrnn_ir::compile_json(&json, "ei.json").unwrap().architecture;
    let net = Network::new(arch, &Device::Cpu).unwrap();
    let dev = Device::Cpu;
    // Raw weights; the diagonal and b <- u are masked, and Dale's law takes |W| * sign.
    net.set_w_rec(&Tensor::new(&[[9.0f32, -0.7], [0.4, 9.0]], &dev).unwrap()).unwrap();
    net.set_w_inp(&Tensor::new(&[[2.0f32], [5.0]], &dev).unwrap()).unwrap();
    net
}

fn course(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn currents_are_weight_blocks_times_activity() {
    let net = network("leaky", "tanh");
    let dev = Device::Cpu;
    // h_a = 0.5, 0.2, 1.0; h_b = 1.0, -0.4, 0.0; u = 1, 0, -1.
    let rates = Tensor::new(&[[[0.5f32, 1.0], [0.2, -0.4], [1.0, 0.0]]], &dev).unwrap();
    let input = Tensor::new(&[[[1.0f32], [0.0], [-1.0]]], &dev).unwrap();
    let c = analysis::currents(&net, &rates, Some(&input), &[]).unwrap();
    assert_eq!(c.targets, ["a", "b"]);
    let source = |name: &str, input: bool| CurrentSource { name: name.into(), input };
    assert_eq!(c.sources, [source("a", false), source("b", false), source("u", true)]);
    assert_eq!(c.connected, [[false, true, true], [true, false, false]]);
    // a <- b: -0.7 h_b = -0.7, 0.28, 0.
    let ab = course(c.time_courses[0][1].as_ref().unwrap());
    assert!(ab.iter().zip([-0.7, 0.28, 0.0]).all(|(x, y)| (x - y).abs() < 1e-6), "{ab:?}");
    assert_eq!(c.time_courses[0][1].as_ref().unwrap().dims(), &[1, 3, 1]);
    assert!(close(c.mean[0][1], -0.14) && close(c.mean_abs[0][1], 0.98 / 3.0));
    // b <- a: 0.4 h_a = 0.2, 0.08, 0.4.
    assert!(close(c.mean[1][0], 0.68 / 3.0) && close(c.mean_abs[1][0], 0.68 / 3.0));
    // a <- u: 2 u = 2, 0, -2.
    assert!(close(c.mean[0][2], 0.0) && close(c.mean_abs[0][2], 4.0 / 3.0));
    // Unconnected pairs carry nothing.
    assert!(c.time_courses[0][0].is_none() && c.time_courses[1][2].is_none());
    assert_eq!((c.mean[1][2], c.mean_abs[0][0]), (0.0, 0.0));

    // Only the targets asked for; without input, only recurrent sources.
    let only_b = analysis::currents(&net, &rates, None, &["b"]).unwrap();
    assert_eq!(only_b.targets, ["b"]);
    assert_eq!(only_b.sources.len(), 2);
    assert!(close(only_b.mean[0][0], 0.68 / 3.0));

    // Files: the matrices and one time course per connected pair.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("currents.safetensors");
    c.save_safetensors(&path).unwrap();
    let back = StateDict::read(&path).unwrap();
    back.require("mean", &[2, 3]).unwrap();
    let keys: Vec<&str> = back.keys().collect();
    assert_eq!(keys, ["a<-b", "a<-u", "b<-a", "mean", "mean_abs"]);
    assert_eq!(c.to_json()["connected"][1][0], true);
}

#[test]
fn currents_of_a_run_rebuild_each_step() {
    let dev = Device::Cpu;
    let input = Tensor::new(&[[[1.0f32], [0.0], [-0.5], [0.0], [0.25]]], &dev).unwrap();
    let x0 = Tensor::new(&[[0.2f32, -0.3]], &dev).unwrap();
    for dynamics in ["leaky", "elman"] {
        let net = network(dynamics, "tanh");
        let options = Forward::new().x0(x0.clone());
        let c = analysis::currents_of_run(&net, &input, &options, &[]).unwrap();
        let out = net.forward(&input, &options).unwrap();
        let bias = [0.3f32, -0.1];
        for (i, target) in c.targets.iter().enumerate() {
            // The total drive of the region at each step.
            let mut drive = [bias[i]; 5];
            for current in c.time_courses[i].iter().flatten() {
                for (d, v) in drive.iter_mut().zip(course(current)) {
                    *d += v;
                }
            }
            let h: Vec<f32> = course(&out.h.narrow(2, i, 1).unwrap());
            if dynamics == "leaky" {
                // x_{t+1} = x_t + a (-x_t + drive_t), a = 1/2, x_0 given.
                let x: Vec<f32> = course(&out.x.as_ref().unwrap().narrow(2, i, 1).unwrap());
                let mut prev = course(&x0)[i];
                for t in 0..5 {
                    let want = prev + 0.5 * (-prev + drive[t]);
                    assert!((x[t] - want).abs() < 1e-5, "{target} step {t}: {} vs {want}", x[t]);
                    prev = x[t];
                }
            } else {
                // h_{t+1} = tanh(drive_t).
                for t in 0..5 {
                    assert!((h[t] - drive[t].tanh()).abs() < 1e-5, "{target} step {t}");
                }
            }
        }
    }
}

#[test]
fn rejects_bad_shapes_and_names() {
    let net = network("leaky", "tanh");
    let dev = Device::Cpu;
    let rates = Tensor::zeros((2, 3, 2), DType::F32, &dev).unwrap();
    let wrong = Tensor::zeros((2, 3, 3), DType::F32, &dev).unwrap();
    let e = analysis::currents(&net, &wrong, None, &[]).unwrap_err();
    assert!(e.to_string().contains("[..., 2]"), "{e}");
    let short = Tensor::zeros((2, 2, 1), DType::F32, &dev).unwrap();
    let e = analysis::currents(&net, &rates, Some(&short), &[]).unwrap_err();
    assert!(e.to_string().contains("[2, 3, 1]"), "{e}");
    let e = analysis::currents(&net, &rates, None, &["thalamus"]).unwrap_err();
    assert!(e.to_string().contains("unknown region `thalamus`"), "{e}");
}
