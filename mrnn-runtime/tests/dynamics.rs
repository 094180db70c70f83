//! The dynamics against a direct transcription of the equations: layouts, the single-step API,
//! the replacement recurrent matrix, stimuli and every activation.

mod common;

use common::{max_abs_diff, reference, values};
use mrnn_runtime::{DType, Device, Forward, Network, Overrides, Tensor};

fn net(overrides: &Overrides) -> Network {
    Network::from_json_file(reference("flip_flop.json"), overrides, &Device::Cpu).unwrap()
}

fn phi(activation: &str, x: &Tensor) -> Tensor {
    match activation {
        "relu" => x.relu().unwrap(),
        "tanh" => x.tanh().unwrap(),
        "sigmoid" => (x.neg().unwrap().exp().unwrap() + 1.0).unwrap().recip().unwrap(),
        "softplus" => (x.exp().unwrap() + 1.0).unwrap().log().unwrap(),
        "linear" => x.clone(),
        other => panic!("{other}"),
    }
}

/// The reference equations, step by step, batch first; returns `h_1..h_T` `[B, T, H]`.
fn transcribed(
    net: &Network,
    activation: &str,
    input: &Tensor,
    x0: &Tensor,
    stim: &Tensor,
) -> Tensor {
    let (w, wi, b) = (net.w_rec_eff().unwrap(), net.w_inp_eff().unwrap(), net.bias().unwrap());
    let alpha = net.architecture().settings().dynamics.alpha();
    let leaky =
        matches!(net.architecture().settings().dynamics, mrnn_runtime::Dynamics::Leaky { .. });
    let (mut x, mut h) = (x0.clone(), phi(activation, x0));
    let mut hs = Vec::new();
    for t in 0..input.dims()[1] {
        let u = input.narrow(1, t, 1).unwrap().squeeze(1).unwrap();
        let s = stim.narrow(1, t, 1).unwrap().squeeze(1).unwrap();
        let drive = (h.matmul(&w.t().unwrap()).unwrap() + u.matmul(&wi.t().unwrap()).unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        if leaky {
            // x + alpha (-x + drive) + alpha s
            x = ((&x + ((drive - &x).unwrap() * alpha).unwrap()).unwrap() + (&s * alpha).unwrap())
                .unwrap();
            h = phi(activation, &x);
        } else {
            h = phi(activation, &(drive + &s).unwrap());
        }
        hs.push(h.clone());
    }
    Tensor::stack(&hs, 1).unwrap()
}

#[test]
fn every_activation_and_both_dynamics_follow_the_equations() {
    let device = Device::Cpu;
    let input = Tensor::rand(-1f32, 1.0, (3, 12, 3), &device).unwrap();
    let x0 = Tensor::rand(-1f32, 1.0, (3, 30), &device).unwrap();
    let stim = Tensor::rand(-0.5f32, 0.5, (3, 12, 30), &device).unwrap();
    for dynamics in ["leaky", "elman"] {
        for activation in ["relu", "tanh", "sigmoid", "softplus", "linear"] {
            let o = Overrides {
                dynamics: Some(dynamics.into()),
                activation: Some(activation.into()),
                ..Overrides::default()
            };
            let n = net(&o);
            let got = n.forward(&input, &Forward::new().x0(x0.clone()).stim(stim.clone())).unwrap();
            let want = transcribed(&n, activation, &input, &x0, &stim);
            let err = max_abs_diff(&got.h, &want);
            assert!(err < 1e-5, "{dynamics} {activation}: max error {err}");
            assert_eq!(got.x.is_some(), dynamics == "leaky");
        }
    }
}

/// `rates_only` returns the same rates and no states, in both layouts, with the projection in
/// the engine's loop (no stimulus) and with a stimulus, and the same gradients.
#[test]
fn rates_only_returns_the_same_rates_and_gradients() {
    let device = Device::Cpu;
    for batch_first in [true, false] {
        for dynamics in ["leaky", "elman"] {
            let o = Overrides {
                dynamics: Some(dynamics.into()),
                batch_first: Some(batch_first),
                ..Overrides::default()
            };
            let n = net(&o);
            let input = Tensor::rand(-1f32, 1.0, (4, 7, 3), &device).unwrap();
            let stim = Tensor::rand(-0.5f32, 0.5, (4, 7, 30), &device).unwrap();
            for options in [Forward::new(), Forward::new().stim(stim)] {
                let what =
                    format!("{dynamics} batch_first={batch_first} stim={}", options.stim.is_some());
                let all = n.forward(&input, &options).unwrap();
                let only = n.forward(&input, &options.clone().rates_only()).unwrap();
                assert_eq!(all.x.is_some(), dynamics == "leaky", "{what}");
                assert!(only.x.is_none(), "{what}: no states");
                assert_eq!(values(&all.h), values(&only.h), "{what}: rates");
                let gradients = |h: &Tensor| {
                    let grads = h.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                    let vars = n.trainable_vars();
                    assert!(!vars.is_empty());
                    vars.iter()
                        .flat_map(|(name, v)| {
                            let g = grads.get(v.as_tensor());
                            values(g.unwrap_or_else(|| panic!("a gradient of {name}")))
                        })
                        .collect::<Vec<f32>>()
                };
                assert_eq!(gradients(&all.h), gradients(&only.h), "{what}: gradients");
            }
        }
    }
}

#[test]
fn time_first_layout_is_the_transpose() {
    let device = Device::Cpu;
    let input = Tensor::rand(-1f32, 1.0, (4, 9, 3), &device).unwrap();
    let stim = Tensor::rand(-0.5f32, 0.5, (4, 9, 30), &device).unwrap();
    let batch_first = net(&Overrides::default());
    let time_first = net(&Overrides { batch_first: Some(false), ..Overrides::default() });
    let a = batch_first.forward(&input, &Forward::new().stim(stim.clone())).unwrap();
    let t = |x: &Tensor| x.transpose(0, 1).unwrap().contiguous().unwrap();
    let b = time_first.forward(&t(&input), &Forward::new().stim(t(&stim))).unwrap();
    assert_eq!(b.h.dims(), &[9, 4, 30]);
    assert_eq!(values(&a.h), values(&t(&b.h)));
    assert_eq!(values(a.x.as_ref().unwrap()), values(&t(b.x.as_ref().unwrap())));
}

#[test]
fn step_is_one_step_of_forward() {
    let device = Device::Cpu;
    for dynamics in ["leaky", "elman"] {
        let n = net(&Overrides { dynamics: Some(dynamics.into()), ..Overrides::default() });
        let state = Tensor::rand(-1f32, 1.0, (5, 30), &device).unwrap();
        let u = Tensor::rand(-1f32, 1.0, (5, 3), &device).unwrap();
        let next = n.step(&state, &u).unwrap();
        let options = if dynamics == "leaky" {
            Forward::new().x0(state.clone())
        } else {
            Forward::new().h0(state.clone())
        };
        let out = n.forward(&u.unsqueeze(1).unwrap(), &options).unwrap();
        let want = out.x.unwrap_or(out.h).squeeze(1).unwrap();
        assert_eq!(values(&next), values(&want), "{dynamics}");
    }
}

#[test]
fn a_replacement_recurrent_matrix_is_used_as_given() {
    let device = Device::Cpu;
    let n = net(&Overrides::default());
    let input = Tensor::rand(-1f32, 1.0, (2, 6, 3), &device).unwrap();
    let lesion = Tensor::zeros((30, 30), DType::F32, &device).unwrap();
    let lesioned = n.forward(&input, &Forward::new().w_rec_eff(lesion.clone())).unwrap();
    let intact = n.forward(&input, &Forward::default()).unwrap();
    assert!(max_abs_diff(&lesioned.h, &intact.h) > 1e-3);
    // The same as a network whose raw recurrent weights are zero.
    n.set_w_rec(&lesion).unwrap();
    let zeroed = n.forward(&input, &Forward::default()).unwrap();
    assert_eq!(values(&lesioned.h), values(&zeroed.h));
}

#[test]
fn default_initial_state_is_the_declared_init() {
    let n = Network::from_json_file(reference("CBGTCL.json"), &Overrides::default(), &Device::Cpu)
        .unwrap();
    let x0 = n.initial_state(2).unwrap();
    assert_eq!(x0.dims(), &[2, 350]);
    let v = values(&x0);
    for r in n.architecture().regions() {
        for u in r.range() {
            assert!(
                (v[u] - r.init as f32).abs() < f32::EPSILON
                    && (v[350 + u] - r.init as f32).abs() < f32::EPSILON
            );
        }
    }
    let input = Tensor::zeros((2, 1, 25), DType::F32, &Device::Cpu).unwrap();
    let a = n.forward(&input, &Forward::default()).unwrap();
    let b = n.forward(&input, &Forward::new().x0(x0)).unwrap();
    assert_eq!(values(&a.h), values(&b.h));
}
