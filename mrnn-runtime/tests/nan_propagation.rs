//! NaN and infinities through `Network::forward` and `Network::step` against a plain loop of
//! the equations in IEEE `f32` arithmetic: a NaN in the input, the initial state, the stimulus
//! or the weights comes back where the plain loop puts it, for every activation, both dynamics,
//! both layouts, the dense product and the block products (the library propagates what it is
//! given; `mrnn simulate` refuses non-finite inputs, see `cli_simulate.rs`).

use mrnn_runtime::{Activation, Architecture, DType, Device, Forward, Network, Tensor};

/// Four regions, few of their pairs connected (the compiler picks block products), one with a
/// learnable bias.
fn architecture(dynamics: &str, activation: Activation, batch_first: bool) -> Architecture {
    let json = format!(
        r#"{{
        "model": {{"dynamics": "{dynamics}", "dt": 1.0, "tau": 3.0, "activation": "{}",
                   "rec_constrained": true, "inp_constrained": false,
                   "batch_first": {batch_first}}},
        "recurrent_regions": [
            {{"name": "a", "num_units": 6, "sign": "pos"}},
            {{"name": "b", "num_units": 5, "sign": "neg", "base_firing": 0.2}},
            {{"name": "c", "num_units": 7, "sign": "pos", "learnable_bias": true}},
            {{"name": "d", "num_units": 4, "sign": "pos"}}
        ],
        "input_regions": [{{"name": "u", "num_units": 3, "sign": "pos"}}],
        "recurrent_connections": [
            {{"src_region": "a", "dst_region": "b"}},
            {{"src_region": "b", "dst_region": "a"}},
            {{"src_region": "c", "dst_region": "c"}},
            {{"src_region": "d", "dst_region": "a"}}
        ],
        "input_connections": [
            {{"src_region": "u", "dst_region": "a"}},
            {{"src_region": "u", "dst_region": "c"}}
        ]
    }}"#,
        activation.name()
    );
    mrnn_ir::compile_json(&json, "nan.json").unwrap_or_else(|r| panic!("{r}")).architecture
}

const H: usize = 22;
const I: usize = 3;
const B: usize = 2;
const T: usize = 6;

/// `phi` from its definition, NaN for NaN.
fn phi(activation: Activation, x: f32) -> f32 {
    match activation {
        Activation::Relu if x.is_nan() => x,
        Activation::Relu => x.max(0.0),
        Activation::Tanh => x.tanh(),
        Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Activation::Softplus if x > 20.0 => x,
        Activation::Softplus => x.exp().ln_1p(),
        Activation::Linear => x,
    }
}

/// The values of a tensor, flattened.
fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// What one run is given, in plain vectors: batch first `[B, T, ..]` whatever the layout.
#[derive(Clone)]
struct Given {
    input: Vec<f32>,
    x0: Option<Vec<f32>>,
    h0: Option<Vec<f32>>,
    stim: Option<Vec<f32>>,
}

/// The equations, step by step, with every sum over all units (zeros included, as a dense
/// product has them): returns `(x, h)` batch first `[B, T, H]` (`x` empty for Elman).
fn plain_loop(net: &Network, given: &Given) -> (Vec<f32>, Vec<f32>) {
    let s = *net.architecture().settings();
    let (w, w_in, bias) = (
        flat(&net.w_rec_eff().unwrap()),
        flat(&net.w_inp_eff().unwrap()),
        flat(&net.bias().unwrap()),
    );
    let leaky = matches!(s.dynamics, mrnn_runtime::Dynamics::Leaky { .. });
    let alpha = s.dynamics.alpha() as f32;
    let init = flat(&net.initial_state(B).unwrap());
    let (mut xs, mut hs) = (Vec::new(), Vec::new());
    for b in 0..B {
        let mut x: Vec<f32> = given.x0.as_ref().unwrap_or(&init)[b * H..(b + 1) * H].to_vec();
        let mut h: Vec<f32> = match &given.h0 {
            Some(h0) => h0[b * H..(b + 1) * H].to_vec(),
            None => x.iter().map(|&x| phi(s.activation, x)).collect(),
        };
        for t in 0..T {
            let row = (b * T + t) * H;
            let drive: Vec<f32> = (0..H)
                .map(|i| {
                    let rec: f32 = (0..H).map(|j| w[i * H + j] * h[j]).sum();
                    let inp: f32 =
                        (0..I).map(|k| w_in[i * I + k] * given.input[(b * T + t) * I + k]).sum();
                    let stim = given.stim.as_ref().map_or(0.0, |s| s[row + i]);
                    rec + inp + bias[i] + stim
                })
                .collect();
            if leaky {
                for i in 0..H {
                    x[i] = (1.0 - alpha) * x[i] + alpha * drive[i];
                }
                h = x.iter().map(|&x| phi(s.activation, x)).collect();
                xs.extend_from_slice(&x);
            } else {
                h = drive.iter().map(|&z| phi(s.activation, z)).collect();
            }
            hs.extend_from_slice(&h);
        }
    }
    (xs, hs)
}

/// `[B, T, n]` batch-first values as a tensor in the network's layout.
fn sequence(values: &[f32], n: usize, batch_first: bool) -> Tensor {
    let t = Tensor::from_vec(values.to_vec(), (B, T, n), &Device::Cpu).unwrap();
    if batch_first { t } else { t.transpose(0, 1).unwrap().contiguous().unwrap() }
}

/// A sequence from the network back to batch first.
fn batch_first(t: &Tensor, is_batch_first: bool) -> Vec<f32> {
    if is_batch_first { flat(t) } else { flat(&t.transpose(0, 1).unwrap().contiguous().unwrap()) }
}

/// Equal as IEEE results: NaN for NaN, the same infinity, finite values close.
fn assert_same(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let same = if w.is_finite() && g.is_finite() {
            (g - w).abs() <= 1e-4 * w.abs().max(1.0)
        } else {
            (g.is_nan() && w.is_nan()) || g.to_bits() == w.to_bits()
        };
        let (b, t, u) = (i / (T * H), i / H % T, i % H);
        assert!(same, "{what}: trial {b}, step {t}, unit {u}: {g}, expected {w}");
    }
}

/// Where a special value goes.
#[derive(Clone, Copy, Debug)]
enum Plant {
    Input(usize, usize, usize),
    X0(usize, usize),
    H0(usize, usize),
    /// `x0` and `h0` both given, the value in `x0`.
    X0WithH0(usize, usize),
    Stim(usize, usize, usize),
    /// A raw recurrent weight: masked out (the effective weight is `0 * NaN`) or connected.
    WRec(usize, usize),
    WInp(usize, usize),
    /// The bias of a unit of the region with a learnable bias.
    Bias(usize),
}

fn ordinary(len: usize, seed: usize) -> Vec<f32> {
    (0..len).map(|k| ((k * 7 + seed) as f32 * 0.61).sin()).collect()
}

/// Runs `net` on ordinary inputs with `value` planted, through `forward`, and compares with
/// the plain loop.
fn check(net: &Network, plant: Plant, value: f32, what: &str) {
    let s = *net.architecture().settings();
    let mut given =
        Given { input: ordinary(B * T * I, 1), x0: Some(ordinary(B * H, 2)), h0: None, stim: None };
    match plant {
        Plant::Input(b, t, k) => given.input[(b * T + t) * I + k] = value,
        Plant::X0(b, i) => given.x0.as_mut().unwrap()[b * H + i] = value,
        Plant::H0(b, i) => {
            let mut h0 = ordinary(B * H, 3);
            h0[b * H + i] = value;
            given.h0 = Some(h0);
        }
        Plant::X0WithH0(b, i) => {
            given.x0.as_mut().unwrap()[b * H + i] = value;
            given.h0 = Some(ordinary(B * H, 3));
        }
        Plant::Stim(b, t, i) => {
            let mut stim = ordinary(B * T * H, 4);
            stim[(b * T + t) * H + i] = value;
            given.stim = Some(stim);
        }
        Plant::WRec(i, j) => {
            let mut w = flat(net.w_rec().as_tensor());
            w[i * H + j] = value;
            net.set_w_rec(&Tensor::from_vec(w, (H, H), &Device::Cpu).unwrap()).unwrap();
        }
        Plant::WInp(i, k) => {
            let mut w = flat(net.w_inp().as_tensor());
            w[i * I + k] = value;
            net.set_w_inp(&Tensor::from_vec(w, (H, I), &Device::Cpu).unwrap()).unwrap();
        }
        Plant::Bias(i) => {
            let mut b = flat(net.bias_var().as_tensor());
            b[i] = value;
            net.set_base_firing(&Tensor::from_vec(b, H, &Device::Cpu).unwrap()).unwrap();
        }
    }
    let (want_x, want_h) = plain_loop(net, &given);
    let state = |v: &Vec<f32>| Tensor::from_vec(v.clone(), (B, H), &Device::Cpu).unwrap();
    let mut options = Forward::new();
    if let Some(x0) = &given.x0 {
        options = options.x0(state(x0));
    }
    if let Some(h0) = &given.h0 {
        options = options.h0(state(h0));
    }
    if let Some(stim) = &given.stim {
        options = options.stim(sequence(stim, H, s.batch_first));
    }
    let out = net.forward(&sequence(&given.input, I, s.batch_first), &options).unwrap();
    assert_same(&batch_first(&out.h, s.batch_first), &want_h, &format!("{what}: h"));
    if let Some(x) = &out.x {
        assert_same(&batch_first(x, s.batch_first), &want_x, &format!("{what}: x"));
    }
    // Rates only (the host kernel's other forward, which keeps no states): the same rates.
    let out =
        net.forward(&sequence(&given.input, I, s.batch_first), &options.rates_only()).unwrap();
    assert_same(&batch_first(&out.h, s.batch_first), &want_h, &format!("{what}: rates only"));
}

/// The special value at each place, each activation, both dynamics, both layouts, block and
/// dense products: what the plain loop gives.
#[test]
fn nan_and_infinities_propagate_as_in_the_plain_loop() {
    // Unit 0 is in region `a`, 8 in `b`, 14 in `c` (learnable bias), 20 in `d`; `a` takes no
    // input from `c`, so W_rec[0, 14] is masked out.
    let plants = [
        Plant::Input(1, 2, 0),
        Plant::Input(0, 5, 2),
        Plant::X0(0, 20),
        Plant::X0(1, 14),
        Plant::H0(1, 8),
        Plant::X0WithH0(0, 3),
        Plant::Stim(1, 1, 20),
        Plant::WRec(0, 14),
        Plant::WRec(0, 7),
        Plant::WInp(14, 1),
        Plant::Bias(15),
    ];
    for (dynamics, batch_first) in [("leaky", true), ("elman", true), ("leaky", false)] {
        for activation in Activation::ALL {
            let arch = architecture(dynamics, activation, batch_first);
            assert_eq!(arch.product(), mrnn_ir::Product::Blocks, "the config exercises blocks");
            let dense = arch.clone().with_product(mrnn_ir::Product::Dense);
            for (arch, product) in [(arch, "blocks"), (dense, "dense")] {
                for plant in plants {
                    for value in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                        let net = Network::with_seed(arch.clone(), 5, &Device::Cpu).unwrap();
                        let what = format!(
                            "{dynamics} {activation:?} batch_first={batch_first} {product}: \
                             {value} at {plant:?}"
                        );
                        check(&net, plant, value, &what);
                    }
                }
            }
        }
    }
}

/// `Network::step` (one step of the same engine) from a state with a NaN or an infinity gives
/// the plain equations' next state, for every activation and both dynamics.
#[test]
fn a_single_step_propagates_nan() {
    for dynamics in ["leaky", "elman"] {
        for activation in Activation::ALL {
            let net = Network::with_seed(architecture(dynamics, activation, true), 5, &Device::Cpu)
                .unwrap();
            for value in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut state = ordinary(B * H, 2);
                state[H + 9] = value;
                let input = ordinary(B * I, 1);
                let next = net
                    .step(
                        &Tensor::from_vec(state.clone(), (B, H), &Device::Cpu).unwrap(),
                        &Tensor::from_vec(input.clone(), (B, I), &Device::Cpu).unwrap(),
                    )
                    .unwrap();
                // The plain step: x' = (1 - a) x + a (W phi(x) + W_in u + b) (leaky), or
                // h' = phi(W h + W_in u + b) (Elman).
                let (w, w_in, bias) = (
                    flat(&net.w_rec_eff().unwrap()),
                    flat(&net.w_inp_eff().unwrap()),
                    flat(&net.bias().unwrap()),
                );
                let leaky = dynamics == "leaky";
                let alpha = net.architecture().settings().dynamics.alpha() as f32;
                let want: Vec<f32> = (0..B * H)
                    .map(|n| {
                        let (b, i) = (n / H, n % H);
                        let s = &state[b * H..(b + 1) * H];
                        let h: Vec<f32> = if leaky {
                            s.iter().map(|&x| phi(activation, x)).collect()
                        } else {
                            s.to_vec()
                        };
                        let rec: f32 = (0..H).map(|j| w[i * H + j] * h[j]).sum();
                        let inp: f32 = (0..I).map(|k| w_in[i * I + k] * input[b * I + k]).sum();
                        let drive = rec + inp + bias[i];
                        if leaky {
                            (1.0 - alpha) * s[i] + alpha * drive
                        } else {
                            phi(activation, drive)
                        }
                    })
                    .collect();
                let what = format!("{dynamics} {activation:?}: step from {value}");
                let got = flat(&next);
                for (n, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    let same = if w.is_finite() && g.is_finite() {
                        (g - w).abs() <= 1e-4 * w.abs().max(1.0)
                    } else {
                        (g.is_nan() && w.is_nan()) || g.to_bits() == w.to_bits()
                    };
                    assert!(same, "{what}: element {n}: {g}, expected {w}");
                }
            }
        }
    }
}

/// A NaN in a trial's input stays in that trial: the trials of a batch are independent.
#[test]
fn a_nan_stays_in_its_trial() {
    let net =
        Network::with_seed(architecture("leaky", Activation::Relu, true), 5, &Device::Cpu).unwrap();
    let mut input = ordinary(B * T * I, 1);
    input[(T + 1) * I] = f32::NAN; // Trial 1, step 1.
    let input = Tensor::from_vec(input, (B, T, I), &Device::Cpu).unwrap();
    let h = net.forward(&input, &Forward::new()).unwrap().h;
    let nan = h.ne(&h).unwrap().to_dtype(DType::U32).unwrap();
    let per_trial = nan.sum((1, 2)).unwrap().to_vec1::<u32>().unwrap();
    assert_eq!(per_trial[0], 0, "trial 0 has no NaN");
    assert!(per_trial[1] > 0, "trial 1 carries its NaN");
}
