//! Closed-form Jacobians against finite differences, for every activation and both dynamics:
//! the full state Jacobian, the input Jacobian, and the blocks of region subsets (including the
//! excluded regions' rates treated as a static input); the one-step map against the network's
//! own step; eigenpairs of a subset Jacobian.

use mrnn_runtime::analysis::{self, StateKind, StepMap};
use mrnn_runtime::{Activation, DType, Device, Forward, Network, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Three regions (two under the parent `cortex`) and two inputs, every kind of connection,
/// tonic input on two regions.
fn network(dynamics: &str, activation: Activation, seed: u64) -> Network {
    let json = format!(
        r#"{{
        "model": {{"dynamics": "{dynamics}", "dt": 1.0, "tau": 4.0, "activation": "{}"}},
        "recurrent_regions": [
            {{"name": "a", "num_units": 4, "sign": "pos", "parent_region": "cortex", "base_firing": 0.2}},
            {{"name": "b", "num_units": 3, "sign": "neg", "parent_region": "cortex"}},
            {{"name": "t", "num_units": 3, "sign": "pos", "base_firing": -0.1}}
        ],
        "input_regions": [{{"name": "u", "num_units": 2, "sign": "pos"}}],
        "recurrent_connections": [
            {{"src_region": "a", "dst_region": "a"}}, {{"src_region": "a", "dst_region": "b"}},
            {{"src_region": "b", "dst_region": "a"}}, {{"src_region": "b", "dst_region": "t"}},
            {{"src_region": "t", "dst_region": "a"}}, {{"src_region": "t", "dst_region": "t"}}
        ],
        "input_connections": [{{"src_region": "u", "dst_region": "a"}}, {{"src_region": "u", "dst_region": "t"}}]
    }}"#,
        activation.name()
    );
    let arch = mrnn_ir::compile_json(&json, "three.json").unwrap().architecture;
    let net = Network::with_seed(arch, seed, &Device::Cpu).unwrap();
    // Larger weights than the initializer's, so that phi' varies across units.
    let w = (net.w_rec().as_tensor() * 6.0).unwrap();
    net.set_w_rec(&w).unwrap();
    net
}

const H: usize = 10;
const INPUT: [f64; 2] = [0.3, -0.7];

/// A state with entries of magnitude 0.2 to 1.5 (away from relu's kink at 0).
fn state(seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..H)
        .map(|_| {
            let m = rng.random_range(0.2..1.5);
            if rng.random_bool(0.5) { m } else { -m }
        })
        .collect()
}

/// A state whose pre-activations are all at least 0.05 from 0 (relu's kink, where finite
/// differences straddle two slopes): the first of `state(seed)`, `state(seed + 1000)`, ...
fn away_from_kinks(map: &StepMap, seed: u64) -> Vec<f64> {
    (0..100)
        .map(|k| state(seed + 1000 * k))
        .find(|s| {
            let t = Tensor::from_slice(s, (1, H), &Device::Cpu).unwrap();
            rows(&map.preactivations(&t).unwrap())[0].iter().all(|z| z.abs() > 0.05)
        })
        .expect("a state away from the kinks")
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_dtype(DType::F64).unwrap().to_vec2().unwrap()
}

fn apply(map: &StepMap, s: &[f64]) -> Vec<f64> {
    let t = Tensor::from_slice(s, (1, s.len()), &Device::Cpu).unwrap();
    rows(&map.apply(&t).unwrap()).remove(0)
}

/// Central differences of `f` at `x`, perturbing the coordinates `cols`: `[out, cols]`.
fn differences(
    f: &dyn Fn(&[f64]) -> Vec<f64>,
    x: &[f64],
    cols: &[usize],
    eps: f64,
) -> Vec<Vec<f64>> {
    let columns: Vec<Vec<f64>> = cols
        .iter()
        .map(|&j| {
            let (mut up, mut down) = (x.to_vec(), x.to_vec());
            up[j] += eps;
            down[j] -= eps;
            f(&up).iter().zip(f(&down)).map(|(a, b)| (a - b) / (2.0 * eps)).collect()
        })
        .collect();
    let out = columns.first().map_or(0, Vec::len);
    (0..out).map(|i| columns.iter().map(|c| c[i]).collect()).collect()
}

fn pick(m: &[Vec<f64>], r: &[usize]) -> Vec<Vec<f64>> {
    r.iter().map(|&i| m[i].clone()).collect()
}

fn assert_matrix_close(what: &str, got: &[Vec<f64>], want: &[Vec<f64>], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: rows");
    let scale = want.iter().flatten().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: columns");
        for (j, (a, b)) in g.iter().zip(w).enumerate() {
            assert!(
                (a - b).abs() <= tol * scale,
                "{what}[{i}][{j}]: closed form {a}, differences {b}"
            );
        }
    }
}

#[test]
fn closed_form_matches_finite_differences_for_every_activation() {
    for dynamics in ["leaky", "elman"] {
        for (k, activation) in Activation::ALL.into_iter().enumerate() {
            let what = format!("{dynamics} {}", activation.name());
            let net = network(dynamics, activation, 11 + k as u64);
            let map = StepMap::new(&net, &INPUT).unwrap();
            let s = away_from_kinks(&map, k as u64);
            let t = Tensor::from_slice(&s, H, &Device::Cpu).unwrap();
            let all: Vec<usize> = (0..H).collect();
            // State Jacobian, in f64 against differences of the f64 map.
            let f = |x: &[f64]| apply(&map, x);
            let fd = differences(&f, &s, &all, 1e-6);
            assert_matrix_close(&what, &rows(&map.jacobian(&t).unwrap()), &fd, 1e-7);
            // Input Jacobian: differences over the constant input.
            let g = |u: &[f64]| apply(&StepMap::new(&net, u).unwrap(), &s);
            let fd_u = differences(&g, &INPUT, &[0, 1], 1e-6);
            assert_matrix_close(&what, &rows(&map.input_jacobian(&t).unwrap()), &fd_u, 1e-7);
            // The map is the network's own step (f32), and so are its differences.
            let step = |x: &[f64]| -> Vec<f64> {
                let x: Vec<f32> = x.iter().map(|&v| v as f32).collect();
                let x = Tensor::from_vec(x, (1, H), &Device::Cpu).unwrap();
                let u: Vec<f32> = INPUT.iter().map(|&v| v as f32).collect();
                let u = Tensor::from_vec(u, (1, 2), &Device::Cpu).unwrap();
                rows(&net.step(&x, &u).unwrap()).remove(0)
            };
            let (mine, theirs) = (apply(&map, &s), step(&s));
            assert!(mine.iter().zip(&theirs).all(|(a, b)| (a - b).abs() < 1e-5), "{what}");
            let fd32 = differences(&step, &s, &all, 1e-3);
            assert_matrix_close(&what, &rows(&map.jacobian(&t).unwrap()), &fd32, 2e-3);
        }
    }
}

#[test]
fn batched_jacobians_stack_the_single_ones() {
    let net = network("leaky", Activation::Tanh, 3);
    let map = StepMap::new(&net, &INPUT).unwrap();
    let states: Vec<f64> = (0..4).flat_map(state).collect();
    let batch = Tensor::from_vec(states.clone(), (4, H), &Device::Cpu).unwrap();
    let js = map.jacobians(&batch).unwrap();
    assert_eq!(js.dims(), &[4, H, H]);
    for k in 0..4 {
        let single = map.jacobian(&batch.get(k).unwrap()).unwrap();
        assert_eq!(rows(&js.get(k).unwrap()), rows(&single));
    }
    // Leaky: h = phi(x); Elman's pre-activation makes phi(x) = F(h).
    assert_eq!(map.kind(), StateKind::Preactivation);
    let h = rows(&map.rates(&batch).unwrap());
    assert!((h[1][2] - states[H + 2].tanh()).abs() < 1e-15);
    let elman = StepMap::new(&network("elman", Activation::Tanh, 3), &INPUT).unwrap();
    let x = rows(&elman.preactivations(&batch).unwrap());
    let next = rows(&elman.apply(&batch).unwrap());
    assert!((x[2][5].tanh() - next[2][5]).abs() < 1e-15);
}

/// The units of regions in declaration order.
fn units(net: &Network, names: &[&str]) -> Vec<usize> {
    let mut u = net.hidden_units(names).unwrap();
    u.sort_unstable();
    u
}

#[test]
fn region_subset_blocks_match_finite_differences() {
    for dynamics in ["leaky", "elman"] {
        for (k, activation) in
            [Activation::Tanh, Activation::Softplus, Activation::Relu].into_iter().enumerate()
        {
            let net = network(dynamics, activation, 40 + k as u64);
            let map = StepMap::new(&net, &INPUT).unwrap();
            let s = away_from_kinks(&map, 100 + k as u64);
            let t = Tensor::from_slice(&s, H, &Device::Cpu).unwrap();
            for subset in [vec!["b"], vec!["cortex"], vec!["t", "a"]] {
                let what = format!("{dynamics} {} {subset:?}", activation.name());
                let lin = analysis::linearize(&net, &t, &INPUT, &subset, true).unwrap();
                let inside = units(&net, &subset);
                let outside: Vec<usize> = (0..H).filter(|u| !inside.contains(u)).collect();
                assert_eq!((&lin.units, &lin.excluded), (&inside, &outside), "{what}");
                let f = |x: &[f64]| apply(&map, x);
                let block = pick(&differences(&f, &s, &inside, 1e-6), &inside);
                assert_matrix_close(&what, &rows(&lin.jacobian), &block, 1e-7);
                let coupling = pick(&differences(&f, &s, &outside, 1e-6), &inside);
                assert_matrix_close(&what, &rows(&lin.coupling), &coupling, 1e-7);
                let g = |u: &[f64]| apply(&StepMap::new(&net, u).unwrap(), &s);
                let input = pick(&differences(&g, &INPUT, &[0, 1], 1e-6), &inside);
                assert_matrix_close(&what, &rows(&lin.input_jacobian), &input, 1e-7);
                // The excluded regions' rates as an input: vary h_E with the state fixed,
                // through the network's own forward pass (h0 given beside x0).
                let from_rates = |h_e: &[f64]| -> Vec<f64> {
                    let (x0, mut h0) = match map.kind() {
                        StateKind::Preactivation => {
                            (s.clone(), rows(&map.rates(&t).unwrap()).remove(0))
                        }
                        StateKind::Rate => (s.clone(), s.clone()),
                    };
                    for (&u, &v) in outside.iter().zip(h_e) {
                        h0[u] = v;
                    }
                    let f32s = |v: &[f64]| {
                        let v: Vec<f32> = v.iter().map(|&a| a as f32).collect();
                        Tensor::from_vec(v, (1, H), &Device::Cpu).unwrap()
                    };
                    let u: Vec<f32> = INPUT.iter().map(|&v| v as f32).collect();
                    let u = Tensor::from_vec(u, (1, 1, 2), &Device::Cpu).unwrap();
                    let out = net.forward(&u, &Forward::new().x0(f32s(&x0)).h0(f32s(&h0))).unwrap();
                    let next = match map.kind() {
                        StateKind::Preactivation => out.x.unwrap(),
                        StateKind::Rate => out.h,
                    };
                    let next = rows(&next.reshape((1, H)).unwrap()).remove(0);
                    inside.iter().map(|&u| next[u]).collect()
                };
                let h_now: Vec<f64> = {
                    let h = match map.kind() {
                        StateKind::Preactivation => rows(&map.rates(&t).unwrap()).remove(0),
                        StateKind::Rate => s.clone(),
                    };
                    outside.iter().map(|&u| h[u]).collect()
                };
                let cols: Vec<usize> = (0..outside.len()).collect();
                let fd = differences(&from_rates, &h_now, &cols, 1e-2);
                assert_matrix_close(&what, &rows(&lin.from_excluded), &fd, 2e-3);
                // Eigenpairs of the block.
                let m = mrnn_runtime::linalg::to_dmatrix(&lin.jacobian).unwrap();
                let mc = m.map(|v| nalgebra::Complex::new(v, 0.0));
                let vectors = lin.eigen.vectors.as_ref().unwrap();
                for (j, z) in lin.eigen.values.iter().enumerate() {
                    let v = vectors.column(j).into_owned();
                    assert!((&mc * &v - &v * *z).norm() < 1e-9, "{what}: eigenpair {j}");
                }
                let radius = mrnn_runtime::linalg::spectral_radius(&lin.jacobian).unwrap();
                assert!((lin.eigen.max_abs() - radius).abs() < 1e-9);
                assert_eq!(lin.stability, analysis::Stability::of(&lin.eigen.values, 1e-6));
            }
        }
    }
}

#[test]
fn leaky_blocks_have_the_textbook_form() {
    // J = (1 - a) I + a W diag(phi'(x)); the excluded rates enter as a W_SE.
    let net = network("leaky", Activation::Tanh, 5);
    let s = state(9);
    let t = Tensor::from_slice(&s, H, &Device::Cpu).unwrap();
    let lin = analysis::linearize(&net, &t, &INPUT, &["t"], false).unwrap();
    let w = rows(&net.w_rec_eff().unwrap());
    let alpha = 0.25;
    let j = rows(&lin.jacobian);
    for (r, &i) in lin.units.iter().enumerate() {
        for (c, &k) in lin.units.iter().enumerate() {
            let eye = if i == k { 1.0 - alpha } else { 0.0 };
            let want = eye + alpha * w[i][k] * (1.0 - s[k].tanh().powi(2));
            assert!((j[r][c] - want).abs() < 1e-6, "{} vs {want}", j[r][c]);
        }
        for (c, &k) in lin.excluded.iter().enumerate() {
            assert!((rows(&lin.from_excluded)[r][c] - alpha * w[i][k]).abs() < 1e-6);
        }
    }
}

#[test]
fn rejects_unknown_regions_and_bad_shapes() {
    let net = network("leaky", Activation::Tanh, 1);
    let t = Tensor::zeros(H, DType::F32, &Device::Cpu).unwrap();
    let e = analysis::linearize(&net, &t, &INPUT, &["thalamus"], false).unwrap_err();
    assert!(e.to_string().contains("unknown region `thalamus`"), "{e}");
    assert!(e.to_string().contains("`cortex` (parent)"), "{e}");
    let wrong = Tensor::zeros(H + 1, DType::F32, &Device::Cpu).unwrap();
    let e = analysis::linearize(&net, &wrong, &INPUT, &[], false).unwrap_err();
    assert!(e.to_string().contains("[10]"), "{e}");
    let e = analysis::linearize(&net, &t, &[1.0], &[], false).unwrap_err();
    assert!(e.to_string().contains("constant input"), "{e}");
    let map = StepMap::new(&net, &INPUT).unwrap();
    let e = map.apply(&Tensor::zeros((2, 3, H), DType::F32, &Device::Cpu).unwrap()).unwrap_err();
    assert!(e.to_string().contains("[N, 10]"), "{e}");
    // All regions when none is named.
    let lin = analysis::linearize(&net, &t, &INPUT, &[], false).unwrap();
    assert_eq!(lin.units, (0..H).collect::<Vec<_>>());
    assert!(lin.excluded.is_empty() && lin.coupling.dims() == [H, 0]);
    assert_eq!(lin.regions, ["a", "b", "t"]);
}

#[test]
fn non_finite_states_and_inputs_are_errors() {
    let net = network("leaky", Activation::Relu, 1);
    let mut s = state(2);
    s[3] = f64::NAN;
    let t = Tensor::from_slice(&s, H, &Device::Cpu).unwrap();
    let e = analysis::linearize(&net, &t, &INPUT, &[], false).unwrap_err();
    assert!(e.to_string().contains("the state to linearize at must be finite"), "{e}");
    let e = StepMap::new(&net, &[f64::INFINITY, 0.0]).unwrap_err();
    assert!(e.to_string().contains("the constant input must be finite"), "{e}");
}

#[test]
fn silent_relu_units_are_counted_and_leave_the_leak() {
    // At x = 0 every relu unit is silent: J = (1 - a) I whatever the weights, and the result
    // says that no unit is active.
    let net = network("leaky", Activation::Relu, 3);
    let zero = Tensor::zeros(H, DType::F64, &Device::Cpu).unwrap();
    let lin = analysis::linearize(&net, &zero, &INPUT, &[], true).unwrap();
    assert_eq!(lin.active_units, 0);
    assert!(lin.eigen.values.iter().all(|z| (z.re - 0.75).abs() < 1e-12 && z.im == 0.0));
    assert!(lin.eigen.is_accurate());
    // Positive states: every unit active.
    let up = Tensor::from_vec(vec![1.0f64; H], H, &Device::Cpu).unwrap();
    assert_eq!(analysis::linearize(&net, &up, &INPUT, &[], false).unwrap().active_units, H);
}
