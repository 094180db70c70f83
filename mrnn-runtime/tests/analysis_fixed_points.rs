//! The fixed-point finder on mRNNTorch's trained 3-bit flip-flop: the 8 memories are stable
//! fixed points whose readouts are the corners of the cube, the saddles between them have
//! unstable directions, and the results survive their files.

mod common;

use common::reference;
use mrnn_runtime::analysis::{
    self, FixedPointOptions, FixedPoints, Phase, Progress, Stability, StateKind,
};
use mrnn_runtime::task::{FlipFlop, Task};
use mrnn_runtime::{DType, Device, Forward, Network, Overrides, Readout, StateDict, Tensor};
use rand::SeedableRng;

/// The trained network, its readout, and `n` candidate states from flip-flop trajectories.
fn flip_flop(dynamics: &str, n: usize) -> (Network, Readout, Tensor) {
    let device = Device::Cpu;
    let overrides = Overrides { dynamics: Some(dynamics.into()), ..Overrides::default() };
    let mut net =
        Network::from_json_file(reference("flip_flop.json"), &overrides, &device).unwrap();
    let sd = StateDict::read(reference(&format!("flip_flop_rnn_{dynamics}.pth"))).unwrap();
    net.import_state_dict(&sd, "rnn.").unwrap();
    let readout = Readout::from_state_dict(&sd, "out_layer.", &device).unwrap();
    let task = FlipFlop::default();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let trials = task.sample(16, &mut rng, &device).unwrap();
    let states = analysis::state_trajectory(&net, &trials.input, &Forward::default()).unwrap();
    assert_eq!(states.dims(), &[16, 64, 30]);
    let candidates = analysis::sample_states(&states, n, 2).unwrap();
    (net, readout, candidates)
}

fn readout_of(readout: &Readout, h: &[f64]) -> Vec<f32> {
    let row: Vec<f32> = h.iter().map(|&v| v as f32).collect();
    let t = Tensor::from_vec(row, (1, h.len()), &Device::Cpu).unwrap();
    readout.forward(&t).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

/// `|step(s) - s|` through the network's own (f32) step.
fn step_residual(net: &Network, state: &[f64]) -> f32 {
    let s: Vec<f32> = state.iter().map(|&v| v as f32).collect();
    let s = Tensor::from_vec(s, (1, state.len()), &Device::Cpu).unwrap();
    let u = Tensor::zeros((1, net.input_size()), DType::F32, &Device::Cpu).unwrap();
    let next = net.step(&s, &u).unwrap();
    common::max_abs_diff(&next, &s)
}

/// Every stable point's readout is within 0.15 of a corner of the cube, each corner once.
fn check_memories(net: &Network, readout: &Readout, found: &FixedPoints) {
    let stable: Vec<_> = found.points.iter().filter(|p| p.is_stable()).collect();
    assert_eq!(stable.len(), 8, "{}", found.summary_json());
    let mut corners = Vec::new();
    for p in &stable {
        assert!(p.q < 1e-20, "q = {:e}", p.q);
        assert!(step_residual(net, p.state(found.kind)) < 1e-5);
        let values = &p.eigen.values;
        assert_eq!(values.len(), 30);
        assert!(values.iter().all(|z| z.norm() < 1.0), "{values:?}");
        assert!(p.max_abs_eigenvalue() < 1.0 && p.max_abs_eigenvalue() > 0.5);
        assert_eq!(p.jacobian.dims(), &[30, 30]);
        let y = readout_of(readout, &p.h);
        let corner: Vec<i8> = y.iter().map(|&v| if v > 0.0 { 1 } else { -1 }).collect();
        for (v, c) in y.iter().zip(&corner) {
            assert!((v - f32::from(*c)).abs() < 0.15, "readout {y:?} is not near a corner");
        }
        corners.push(corner);
    }
    corners.sort();
    corners.dedup();
    assert_eq!(corners.len(), 8, "the stable points store 8 distinct memories");
}

#[test]
fn finds_the_eight_memories_of_the_leaky_flip_flop() {
    let (net, readout, candidates) = flip_flop("leaky", 256);
    let options = FixedPointOptions { max_iters: 1000, ..FixedPointOptions::default() };
    let mut reports: Vec<Progress> = Vec::new();
    let found =
        analysis::find_fixed_points(&net, &candidates, &options, &mut |p| reports.push(p.clone()))
            .unwrap();
    assert_eq!(found.kind, StateKind::Preactivation);
    check_memories(&net, &readout, &found);
    for p in &found.points {
        // Leaky: h = tanh(x).
        assert!(p.x.iter().zip(&p.h).all(|(x, h)| (x.tanh() - h).abs() < 1e-12));
    }
    // Progress: one report per iteration of the joint phase, counting up from 0.
    let joint: Vec<&Progress> = reports.iter().filter(|p| p.phase == Phase::Optimize).collect();
    assert!(joint.windows(2).all(|w| w[1].iteration == w[0].iteration + 1));
    assert_eq!(joint[0].total, 256);
    assert!(joint.iter().all(|p| p.max_iters == 1000 && p.active <= p.total));
    assert_eq!(found.candidates, 256);
    assert_eq!(
        found.duplicates + found.slow + found.distance_outliers + found.points.len(),
        256,
        "every candidate is accounted for"
    );
}

#[test]
fn finds_saddles_between_memories_from_noisy_candidates() {
    let (net, readout, candidates) = flip_flop("leaky", 384);
    let options = FixedPointOptions { max_iters: 1500, noise: 0.5, ..FixedPointOptions::default() };
    let found = analysis::find_fixed_points(&net, &candidates, &options, &mut |_| {}).unwrap();
    check_memories(&net, &readout, &found);
    let saddles: Vec<_> =
        found.points.iter().filter(|p| p.stability == Stability::Saddle).collect();
    assert!(saddles.len() >= 6, "{}", found.summary_json());
    for p in &saddles {
        assert!(p.unstable_dimensions >= 1);
        assert!(p.max_abs_eigenvalue() > 1.0);
        assert!(step_residual(&net, &p.x) < 1e-5);
    }
    // Distinct points are farther apart than tol_unique.
    for (i, a) in found.points.iter().enumerate() {
        for b in &found.points[i + 1..] {
            let d: f64 = a.x.iter().zip(&b.x).map(|(u, v)| (u - v).powi(2)).sum::<f64>().sqrt();
            assert!(d > options.tol_unique);
        }
    }
    // Stable points first, then by number of unstable dimensions.
    let dims: Vec<usize> = found.points.iter().map(|p| p.unstable_dimensions).collect();
    assert!(dims.windows(2).all(|w| w[0] <= w[1]), "{dims:?}");
}

#[test]
fn finds_the_eight_memories_of_the_elman_flip_flop() {
    let (net, readout, candidates) = flip_flop("elman", 256);
    let options = FixedPointOptions { max_iters: 600, ..FixedPointOptions::default() };
    let found = analysis::find_fixed_points(&net, &candidates, &options, &mut |_| {}).unwrap();
    assert_eq!(found.kind, StateKind::Rate);
    check_memories(&net, &readout, &found);
    for p in &found.points {
        // Elman: the state is h, and x is the pre-activation with h = tanh(x).
        assert!(p.x.iter().zip(&p.h).all(|(x, h)| (x.tanh() - h).abs() < 1e-9));
    }
}

#[test]
fn writes_json_and_safetensors() {
    let (net, _, candidates) = flip_flop("leaky", 64);
    let options = FixedPointOptions { max_iters: 300, ..FixedPointOptions::default() };
    let found = analysis::find_fixed_points(&net, &candidates, &options, &mut |_| {}).unwrap();
    let k = found.points.len();
    assert!(k > 0);
    let json = found.to_json();
    let items = json.as_array().unwrap();
    assert_eq!(items.len(), k);
    for (item, p) in items.iter().zip(&found.points) {
        assert_eq!(item["x"].as_array().unwrap().len(), 30);
        assert_eq!(item["h"].as_array().unwrap().len(), 30);
        assert!(item["q"].is_f64());
        assert_eq!(item["stable"].as_bool(), Some(p.is_stable()));
        assert_eq!(item["max_abs_eigenvalue"].as_f64(), Some(p.max_abs_eigenvalue()));
        assert_eq!(item["stability"].as_str(), Some(p.stability.name()));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fp.safetensors");
    found.save_safetensors(&path).unwrap();
    let back = StateDict::read(&path).unwrap();
    assert_eq!(back.require("x", &[k, 30]).unwrap().dtype(), DType::F64);
    back.require("jacobians", &[k, 30, 30]).unwrap();
    back.require("eigenvalues_re", &[k, 30]).unwrap();
    let q: Vec<f64> = back.require("q", &[k]).unwrap().to_vec1().unwrap();
    assert_eq!(q[0].to_bits(), found.points[0].q.to_bits());
}

#[test]
fn rejects_bad_candidates_and_options() {
    let (net, _, candidates) = flip_flop("leaky", 8);
    let run = |c: &Tensor, o: &FixedPointOptions| {
        analysis::find_fixed_points(&net, c, o, &mut |_| {}).unwrap_err().to_string()
    };
    let o = FixedPointOptions::default();
    let wrong = Tensor::zeros((4, 29), DType::F32, &Device::Cpu).unwrap();
    assert!(run(&wrong, &o).contains("[N, 30]"), "{}", run(&wrong, &o));
    let nan = Tensor::full(f32::NAN, (2, 30), &Device::Cpu).unwrap();
    assert!(run(&nan, &o).contains("NaN"));
    let bad_input = FixedPointOptions { input: Some(vec![0.0; 2]), ..o.clone() };
    assert!(run(&candidates, &bad_input).contains("input"));
    let bad_lr = FixedPointOptions { lr: -1.0, ..o.clone() };
    assert!(run(&candidates, &bad_lr).contains("lr must be positive"));
    let bad_factor = FixedPointOptions { lr_factor: 1.5, ..o };
    assert!(run(&candidates, &bad_factor).contains("lr_factor"));
    assert!(analysis::sample_states(&candidates, 0, 0).is_err());
}

#[test]
fn impossible_searches_are_refused_before_they_start() {
    let (net, _, candidates) = flip_flop("leaky", 8);
    let no_search = &mut |_: &Progress| panic!("the search started");
    // A NaN input would make every q NaN and the search report no fixed point.
    let options =
        FixedPointOptions { input: Some(vec![f64::NAN, 0.0, 0.0]), ..FixedPointOptions::default() };
    let e = analysis::find_fixed_points(&net, &candidates, &options, no_search).unwrap_err();
    assert!(e.to_string().contains("the constant input must be finite"), "{e}");
    // 10^11 candidates: refused with the estimate, before anything is drawn or optimized.
    let states = Tensor::zeros((2, 3, 30), DType::F32, &Device::Cpu).unwrap();
    let e = analysis::sample_states(&states, 100_000_000_000, 0).unwrap_err();
    assert!(matches!(e, mrnn_runtime::Error::TooLarge { .. }), "{e}");
    let many = Tensor::zeros((1, 30), DType::F64, &Device::Cpu)
        .unwrap()
        .broadcast_as((2_000_000_000, 30))
        .unwrap();
    let e = analysis::find_fixed_points(&net, &many, &FixedPointOptions::default(), no_search)
        .unwrap_err();
    assert!(e.to_string().contains("fixed-point search from 2000000000 candidate states"), "{e}");
}
