//! The dissection tools on a zoo of networks they were not tuned on: random multi-region E/I
//! networks of 20 to 1000 units with every activation and both dynamics, relu networks with
//! silent units (zero rows and columns in their Jacobians), the 140-unit cortico-basal-ganglia-
//! thalamic loop whose Jacobians stalled the previous eigensolver, a briefly trained
//! multi-region relu network, and matrices with repeated, defective and complex eigenvalues.
//! Fixed points, linearizations and flow fields must succeed on every one, and every
//! eigenpair must pass a residual check made here, independently of the solver's own.
//!
//! Searches are short (a few candidates, a few hundred iterations): what is tested is that
//! every step succeeds and is right, not that every fixed point is found.

use std::fmt::Write as _;
use std::time::Instant;

use mrnn_runtime::analysis::eigen::{self, RESIDUAL_TOL};
use mrnn_runtime::analysis::{
    self, FixedPointOptions, FlowOptions, Others, Stability, StateKind, StepMap,
};
use mrnn_runtime::task::{FlipFlop, Task};
use mrnn_runtime::train::{Model, ReadoutFrom, TrainConfig, Trainer};
use mrnn_runtime::{Device, Forward, Network, Tensor, linalg};
use nalgebra::{Complex, DMatrix};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ACTIVATIONS: [&str; 5] = ["relu", "tanh", "sigmoid", "softplus", "linear"];

/// A random multi-region network: regions of both signs, random projections and sparsities,
/// random base firing (negative values silence relu units), some inputs.
#[derive(Clone, Debug)]
struct Zoo {
    hidden: usize,
    regions: usize,
    activation: &'static str,
    elman: bool,
    /// `Some(rho)`: the initial effective matrix scaled to this spectral radius.
    radius: Option<f64>,
    /// Base firing is drawn from `[low, 1]`.
    low_firing: f64,
    inputs: usize,
    seed: u64,
}

impl Zoo {
    fn new(hidden: usize, activation: &'static str, elman: bool, seed: u64) -> Zoo {
        Zoo {
            hidden,
            regions: 2 + (seed as usize % 5),
            activation,
            elman,
            radius: None,
            low_firing: -0.2,
            inputs: 1 + (seed as usize % 3),
            seed,
        }
    }

    fn config(&self) -> String {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let k = self.regions;
        // Sizes: a random split of `hidden`, every region at least 3 units (so that a sparsity
        // below 0.6 leaves each source unit a weight).
        let mut cuts: Vec<usize> =
            (0..k - 1).map(|_| rng.random_range(0..=self.hidden - 3 * k)).collect();
        cuts.sort_unstable();
        let mut sizes = Vec::new();
        let mut last = 0;
        for c in cuts.into_iter().chain([self.hidden - 3 * k]) {
            sizes.push(3 + c - last);
            last = c;
        }
        let mut regions = Vec::new();
        for (r, size) in sizes.iter().enumerate() {
            // The first region excitatory, the last inhibitory, the others either.
            let sign = if r == 0 || (r + 1 < k && rng.random_bool(0.6)) { "pos" } else { "neg" };
            let firing = rng.random_range(self.low_firing..1.0);
            regions.push(format!(
                r#"{{"name": "r{r}", "num_units": {size}, "sign": "{sign}", "base_firing": {firing}}}"#
            ));
        }
        let mut connections = Vec::new();
        for src in 0..k {
            for dst in 0..k {
                // A loop through every region, plus random projections.
                if dst == (src + 1) % k || src == dst || rng.random_bool(0.35) {
                    let sparsity = rng.random_range(0.0..0.6);
                    connections.push(format!(
                        r#"{{"src_region": "r{src}", "dst_region": "r{dst}", "sparsity": {sparsity}}}"#
                    ));
                }
            }
        }
        let input_targets: Vec<String> = (0..k.min(2))
            .map(|r| format!(r#"{{"src_region": "u", "dst_region": "r{r}"}}"#))
            .collect();
        let dynamics = if self.elman {
            r#""dynamics": "elman""#.to_owned()
        } else {
            let tau = rng.random_range(2.0..10.0);
            format!(r#""dynamics": "leaky", "dt": 1, "tau": {tau}"#)
        };
        let radius = self.radius.map_or(String::new(), |r| format!(r#", "spectral_radius": {r}"#));
        format!(
            r#"{{"model": {{{dynamics}, "activation": "{}", "seed": {}{radius}}},
                "recurrent_regions": [{}],
                "input_regions": [{{"name": "u", "num_units": {}, "sign": "pos"}}],
                "recurrent_connections": [{}],
                "input_connections": [{}]}}"#,
            self.activation,
            self.seed,
            regions.join(", "),
            self.inputs,
            connections.join(", "),
            input_targets.join(", ")
        )
    }

    fn network(&self) -> Network {
        let arch = mrnn_ir::compile_json(&self.config(), "zoo.json")
            .unwrap_or_else(|r| panic!("{self:?}: {r}"))
            .architecture;
        Network::new(arch, &Device::Cpu).unwrap()
    }
}

/// The 8-region, 140-unit relu loop of the issue: mRNNTorch's CBGTCL circuit scaled down.
fn cbgt_config(inputs: usize) -> String {
    let regions = [
        ("d1", 20, "neg", 0.0),
        ("d2", 20, "neg", 0.0),
        ("gpe", 20, "neg", 1.0),
        ("stn", 20, "pos", 1.0),
        ("snr", 20, "neg", 1.0),
        ("thal", 16, "pos", 1.0),
        ("alm_exc", 16, "pos", 0.0),
        ("alm_inhib", 8, "neg", 0.0),
    ];
    let links = [
        ("d1", "d1", 0.9),
        ("d1", "d2", 0.9),
        ("d2", "d1", 0.9),
        ("d2", "d2", 0.9),
        ("d2", "gpe", 0.25),
        ("d1", "snr", 0.25),
        ("gpe", "stn", 0.25),
        ("stn", "snr", 0.25),
        ("snr", "thal", 0.25),
        ("thal", "d1", 0.25),
        ("thal", "d2", 0.25),
        ("thal", "alm_exc", 0.25),
        ("thal", "alm_inhib", 0.25),
        ("alm_exc", "alm_exc", 0.25),
        ("alm_exc", "alm_inhib", 0.25),
        ("alm_inhib", "alm_inhib", 0.25),
        ("alm_inhib", "alm_exc", 0.25),
        ("alm_exc", "d1", 0.25),
        ("alm_exc", "d2", 0.25),
    ];
    let regions: Vec<String> = regions
        .iter()
        .map(|(n, u, s, b)| {
            format!(r#"{{"name": "{n}", "num_units": {u}, "sign": "{s}", "base_firing": {b}}}"#)
        })
        .collect();
    let links: Vec<String> = links
        .iter()
        .map(|(s, d, p)| {
            format!(r#"{{"src_region": "{s}", "dst_region": "{d}", "sparsity": {p}}}"#)
        })
        .collect();
    format!(
        r#"{{"model": {{"dynamics": "leaky", "dt": 1, "tau": 10, "activation": "relu"}},
            "recurrent_regions": [{}],
            "input_regions": [{{"name": "iti", "num_units": {inputs}, "sign": "pos"}}],
            "recurrent_connections": [{}],
            "input_connections": [{{"src_region": "iti", "dst_region": "d1", "sparsity": 0.25}},
                                  {{"src_region": "iti", "dst_region": "d2", "sparsity": 0.25}}]}}"#,
        regions.join(", "),
        links.join(", ")
    )
}

fn cbgt(inputs: usize) -> Network {
    let arch = mrnn_ir::compile_json(&cbgt_config(inputs), "cbgt.json").unwrap().architecture;
    Network::new(arch, &Device::Cpu).unwrap()
}

/// `|J v - lambda v| / (|J|_F |v|)` for every pair, computed here with nalgebra.
fn residuals(j: &DMatrix<f64>, e: &eigen::Eigen) -> Vec<f64> {
    let v = e.vectors.as_ref().expect("eigenvectors were asked for");
    let jc = j.map(|x| Complex::new(x, 0.0));
    let norm = j.norm().max(f64::MIN_POSITIVE);
    e.values
        .iter()
        .enumerate()
        .map(|(k, z)| {
            let col = v.column(k).into_owned();
            (&jc * &col - &col * *z).norm() / (norm * col.norm())
        })
        .collect()
}

/// The spectrum against invariants of the matrix: `sum lambda = tr J`, `sum lambda^2 = tr J^2`,
/// conjugate pairs, decreasing moduli; and the solver's own residuals all within the tolerance.
fn check_spectrum(what: &str, j: &DMatrix<f64>, e: &eigen::Eigen) {
    let n = j.nrows();
    assert_eq!(e.values.len(), n, "{what}");
    assert!(
        e.is_accurate() && e.max_residual() <= RESIDUAL_TOL,
        "{what}: {} pairs fail, worst residual {:e}",
        e.inaccurate(),
        e.max_residual()
    );
    let scale = j.norm().max(1.0) * n as f64;
    let sum: Complex<f64> = e.values.iter().sum();
    assert!(
        (sum.re - j.trace()).abs() < 1e-9 * scale && sum.im.abs() < 1e-9 * scale,
        "{what}: trace"
    );
    let squares: Complex<f64> = e.values.iter().map(|z| z * z).sum();
    let tr2 = (j * j).trace();
    assert!(
        (squares.re - tr2).abs() < 1e-8 * scale * scale,
        "{what}: tr J^2 {} vs {tr2}",
        squares.re
    );
    let moduli: Vec<f64> = e.values.iter().map(|z| z.norm()).collect();
    assert!(moduli.windows(2).all(|w| w[0] >= w[1]), "{what}: sorted");
    for z in e.values.iter().filter(|z| z.im > 0.0) {
        assert!(
            e.values.iter().any(|w| (w - z.conj()).norm() <= 1e-9 * scale),
            "{what}: {z} has no conjugate"
        );
    }
}

/// What one network's dissection found (for the table printed at the end).
struct Dissection {
    fixed_points: usize,
    stable: usize,
    linearizations: usize,
    worst_residual: f64,
    seconds: f64,
}

/// Trajectories, fixed points, linearizations (all regions and a subset, at trajectory states
/// and at the fixed points) and flow fields (plain and linearized) of `net`, every result
/// checked.
fn dissect(what: &str, net: &Network, input: &Tensor, candidates: usize) -> Dissection {
    let start = Instant::now();
    let h = net.hidden_size();
    let states = analysis::state_trajectory(net, input, &Forward::default()).unwrap();
    let (b, t, _) = states.dims3().unwrap();
    let zero = vec![0.0; net.input_size()];
    let mut worst = 0f64;

    // Fixed points: a short search.
    let picked = analysis::sample_states(&states, candidates, 3).unwrap();
    let options = FixedPointOptions {
        max_iters: 1000,
        noise: 0.05,
        newton_steps: 6,
        ..FixedPointOptions::default()
    };
    let found = analysis::find_fixed_points(net, &picked, &options, &mut |_| {})
        .unwrap_or_else(|e| panic!("{what}: fixed points: {e}"));
    let map = StepMap::new(net, &zero).unwrap();
    for (k, p) in found.points.iter().enumerate() {
        assert!(p.q <= 1e-6, "{what}: point {k} has q {:e}", p.q);
        let j = linalg::to_dmatrix(&p.jacobian).unwrap();
        check_spectrum(&format!("{what}: fixed point {k}"), &j, &p.eigen);
        assert_eq!(p.stability, Stability::of(&p.eigen.values, options.marginal_tol));
        worst = worst.max(p.eigen.max_residual());
    }
    let summary = found.summary_json();
    assert!(summary["max_eigen_residual"].as_f64().unwrap() <= RESIDUAL_TOL, "{what}: {summary}");
    assert_eq!(summary["inaccurate_eigenpairs"], 0, "{what}");

    // Linearizations at trajectory states (first, middle and last of some trials) and at the
    // fixed points, of the whole network (eigenvectors up to 300 units) and of one region.
    let regions: Vec<String> =
        net.architecture().regions().iter().map(|r| r.name.to_string()).collect();
    // Large networks: the whole network at one state only (a decomposition of 1000 units
    // takes seconds in a debug build).
    let samples: &[(usize, usize)] =
        if h >= 400 { &[(b / 2, t / 2)] } else { &[(0, 0), (b / 2, t / 2), (b - 1, t - 1)] };
    let mut at: Vec<Tensor> =
        samples.iter().map(|&(i, s)| states.get(i).unwrap().get(s).unwrap()).collect();
    at.extend(
        found
            .points
            .iter()
            .take(if h >= 400 { 1 } else { 2 })
            .map(|p| Tensor::from_slice(p.state(found.kind), h, &Device::Cpu).unwrap()),
    );
    let mut linearizations = 0;
    for (k, state) in at.iter().enumerate() {
        for subset in [vec![], vec![regions[regions.len() - 1].as_str()]] {
            let vectors = subset.len() == 1 || h <= 300;
            let lin = analysis::linearize(net, state, &zero, &subset, vectors)
                .unwrap_or_else(|e| panic!("{what}: linearize at state {k} {subset:?}: {e}"));
            let j = linalg::to_dmatrix(&lin.jacobian).unwrap();
            let label = format!("{what}: linearization {k} of {subset:?}");
            check_spectrum(&label, &j, &lin.eigen);
            if vectors {
                let r = residuals(&j, &lin.eigen);
                let max = r.iter().copied().fold(0.0, f64::max);
                assert!(max <= RESIDUAL_TOL, "{label}: independent residual {max:e}");
                worst = worst.max(max);
            }
            assert!(lin.active_units <= lin.units.len());
            worst = worst.max(lin.eigen.max_residual());
            linearizations += 1;
        }
    }

    // Flow fields in the plane of the first two regions (others at their mean), and the
    // linearized flow around the first fixed point.
    let plane = vec![regions[0].clone(), regions[1].clone()];
    let flow =
        FlowOptions { regions: plane, grid: 5, others: Others::Mean, ..FlowOptions::default() };
    let field = analysis::flow_field(net, &states, &flow)
        .unwrap_or_else(|e| panic!("{what}: flow field: {e}"));
    assert_eq!(field.velocity.len(), 25);
    assert!(
        field.velocity.iter().flatten().chain(&field.full_speed).all(|v| v.is_finite()),
        "{what}"
    );
    if let Some(p) = found.points.first() {
        let s = Tensor::from_slice(p.state(found.kind), h, &Device::Cpu).unwrap();
        let linear = field.linearized(net, &s, None).unwrap();
        assert!(linear.velocity.iter().flatten().all(|v| v.is_finite()), "{what}");
    }
    // The map's Jacobian at a trajectory state agrees with the flow's step (same StepMap).
    assert_eq!(map.kind(), StateKind::of(net));
    Dissection {
        fixed_points: found.points.len(),
        stable: found.stable_count(),
        linearizations,
        worst_residual: worst,
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// `[B, T, I]` random pulses and a slow sine on every channel.
fn drive(net: &Network, trials: usize, steps: usize, seed: u64) -> Tensor {
    let i = net.input_size();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f32> = (0..trials * steps * i)
        .map(|k| {
            let step = (k / i) % steps;
            let pulse = if rng.random_bool(0.1) { rng.random_range(-1.0..1.0) } else { 0.0 };
            0.5 * (step as f32 * 0.2).sin() + pulse
        })
        .collect();
    Tensor::from_vec(values, (trials, steps, i), &Device::Cpu).unwrap()
}

fn row(table: &mut String, name: &str, h: usize, d: &Dissection) {
    let _ = writeln!(
        table,
        "{name:<34} H={h:<5} fixed points {:>2} ({:>2} stable)  linearizations {:>2}  worst residual {:.1e}  {:.2} s",
        d.fixed_points, d.stable, d.linearizations, d.worst_residual, d.seconds
    );
}

#[test]
fn random_networks_of_every_kind() {
    let start = Instant::now();
    let mut table = String::new();
    let mut cases = Vec::new();
    // Every activation with both dynamics, 20 to 150 units.
    for (k, activation) in ACTIVATIONS.iter().enumerate() {
        for elman in [false, true] {
            let seed = 10 + 2 * k as u64 + u64::from(elman);
            let hidden = 20 + (seed as usize * 37) % 130;
            cases.push(Zoo::new(hidden, activation, elman, seed));
        }
    }
    // Strong recurrence: several fixed points, saddles, complex pairs.
    cases.push(Zoo { radius: Some(1.6), ..Zoo::new(80, "tanh", false, 31) });
    cases.push(Zoo { radius: Some(1.3), ..Zoo::new(60, "tanh", true, 32) });
    cases.push(Zoo { radius: Some(1.2), ..Zoo::new(90, "relu", false, 33) });
    cases.push(Zoo { radius: Some(2.0), ..Zoo::new(50, "sigmoid", false, 34) });
    // Relu networks with many silent units: base firing down to -2 (zero rows and columns).
    cases.push(Zoo { low_firing: -2.0, ..Zoo::new(120, "relu", false, 41) });
    cases.push(Zoo { low_firing: -2.0, ..Zoo::new(100, "relu", true, 42) });
    cases.push(Zoo { low_firing: -2.0, regions: 8, ..Zoo::new(140, "relu", false, 43) });
    // Larger ones: few of them, few candidates.
    cases.push(Zoo::new(400, "relu", false, 51));
    cases.push(Zoo { regions: 6, ..Zoo::new(1000, "tanh", false, 52) });
    assert!(cases.len() >= 19);
    for case in &cases {
        let net = case.network();
        let candidates = if case.hidden >= 400 { 3 } else { 12 };
        let steps = if case.hidden >= 400 { 20 } else { 40 };
        let input = drive(&net, 4, steps, case.seed);
        let name = format!(
            "{} {}{}",
            case.activation,
            if case.elman { "elman" } else { "leaky" },
            case.radius.map_or(String::new(), |r| format!(" rho {r}"))
        );
        let d = dissect(&format!("{case:?}"), &net, &input, candidates);
        row(&mut table, &name, case.hidden, &d);
    }
    // The circuit of the issue, untrained: its Jacobians (many silent units, identical leak on
    // the diagonal) stalled nalgebra's Schur iteration.
    let net = cbgt(4);
    let d = dissect("cbgt 140", &net, &drive(&net, 4, 40, 7), 12);
    row(&mut table, "cbgt relu leaky (untrained)", 140, &d);
    eprintln!("{table}zoo: {} networks in {:.1} s", cases.len() + 1, start.elapsed().as_secs_f64());
}

#[test]
fn the_issue_circuit_linearizes_everywhere_along_its_trajectories() {
    // Every state of 4 trials, all regions and the 40-unit cortex (alm): the states where the
    // previous solver failed are among them.
    let net = cbgt(4);
    let states =
        analysis::state_trajectory(&net, &drive(&net, 4, 25, 9), &Forward::default()).unwrap();
    let flat = states.reshape(((), 140)).unwrap();
    let zero = [0.0; 4];
    let mut silent = 0;
    for k in 0..flat.dim(0).unwrap() {
        let s = flat.get(k).unwrap();
        for subset in [&[][..], &["alm_exc", "alm_inhib"][..]] {
            let lin = analysis::linearize(&net, &s, &zero, subset, true).unwrap();
            let j = linalg::to_dmatrix(&lin.jacobian).unwrap();
            check_spectrum(&format!("state {k} {subset:?}"), &j, &lin.eigen);
            let worst = residuals(&j, &lin.eigen).into_iter().fold(0.0, f64::max);
            assert!(worst <= RESIDUAL_TOL, "state {k}: {worst:e}");
            silent += lin.units.len() - lin.active_units;
        }
    }
    assert!(silent > 0, "relu units are silent somewhere");
}

#[test]
fn a_trained_multi_region_relu_network() {
    let start = Instant::now();
    // The 8-region loop, trained briefly on a 3-bit flip-flop.
    let net = cbgt(3);
    let model = Model::new(net, 3, ReadoutFrom::All, 1).unwrap();
    let task = FlipFlop::new(3, 30, 0.1).unwrap();
    let config = TrainConfig { steps: 25, batch: 8, lr: 0.01, seed: 2, ..TrainConfig::default() };
    let mut trainer = Trainer::new(model, task, config).unwrap();
    let before = trainer.model.network.w_rec_eff().unwrap();
    while !trainer.finished() {
        trainer.step().unwrap();
    }
    assert!(trainer.losses().iter().all(|l| l.is_finite()));
    let net = &trainer.model.network;
    let after = net.w_rec_eff().unwrap();
    let changed = (after - before).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>();
    assert!(changed.unwrap() > 0.0, "training moved the weights");
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let trials = trainer.task.sample(6, &mut rng, &Device::Cpu).unwrap();
    let d = dissect("trained cbgt", net, &trials.input, 16);
    let mut table = String::new();
    row(&mut table, "cbgt relu leaky (trained 25 steps)", 140, &d);
    eprintln!("{table}trained case in {:.1} s", start.elapsed().as_secs_f64());
}

/// A random orthogonal matrix (QR of a Gaussian-like one).
fn orthogonal(n: usize, seed: u64) -> DMatrix<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    DMatrix::from_fn(n, n, |_, _| rng.random_range(-1.0..1.0)).qr().q()
}

fn decomposed(what: &str, m: &DMatrix<f64>) -> eigen::Eigen {
    let e = eigen::decompose(m, true).unwrap();
    check_spectrum(what, m, &e);
    let worst = residuals(m, &e).into_iter().fold(0.0, f64::max);
    assert!(worst <= RESIDUAL_TOL, "{what}: independent residual {worst:e}");
    e
}

#[test]
fn matrices_with_repeated_defective_and_complex_eigenvalues() {
    let mut rng = ChaCha8Rng::seed_from_u64(60);
    // Identity blocks: the same eigenvalue 50 times, beside a random block, coupled one way,
    // then hidden by an orthogonal change of basis.
    let n = 80;
    let mut m = DMatrix::<f64>::identity(n, n) * 0.8;
    for i in 50..n {
        for j in 0..n {
            m[(i, j)] = rng.random_range(-0.3..0.3);
        }
    }
    let e = decomposed("identity block", &m);
    assert_eq!(e.values.iter().filter(|z| (*z - 0.8).norm() < 1e-10).count(), 50);
    let q = orthogonal(n, 61);
    decomposed("identity block, rotated", &(&q * &m * q.transpose()));
    // Jordan blocks up to size 6 (defective), alone and rotated.
    let mut j = DMatrix::<f64>::zeros(24, 24);
    let mut at = 0;
    for (size, lambda) in [(6, 0.9), (5, 0.9), (4, -0.5), (3, 0.0), (2, 1.0), (4, 0.3)] {
        for k in 0..size {
            j[(at + k, at + k)] = lambda;
            if k + 1 < size {
                j[(at + k, at + k + 1)] = 1.0;
            }
        }
        at += size;
    }
    let e = decomposed("jordan blocks", &j);
    // A defective eigenvalue of multiplicity k is only determined to about eps^(1/k).
    let near = |z: Complex<f64>, l: f64| (z - l).norm() < 1e-2;
    assert_eq!(e.values.iter().filter(|z| near(**z, 0.9)).count(), 11);
    let q = orthogonal(24, 62);
    decomposed("jordan blocks, rotated", &(&q * &j * q.transpose()));
    // Complex pairs: 2x2 rotation-scaling blocks, some repeated, rotated.
    let mut c = DMatrix::<f64>::zeros(30, 30);
    for b in 0..15 {
        let (r, theta) = (0.5 + 0.05 * (b % 4) as f64, 0.3 * (b % 5) as f64 + 0.1);
        let (re, im) = (r * theta.cos(), r * theta.sin());
        c[(2 * b, 2 * b)] = re;
        c[(2 * b, 2 * b + 1)] = -im;
        c[(2 * b + 1, 2 * b)] = im;
        c[(2 * b + 1, 2 * b + 1)] = re;
    }
    let q = orthogonal(30, 63);
    let e = decomposed("complex pairs", &(&q * &c * q.transpose()));
    assert_eq!(e.values.iter().filter(|z| z.im > 0.0).count(), 15);
    assert!(e.values[0].im > 0.0, "a pair's positive imaginary part first");
    // Zero rows and columns (silent units in both Jacobian forms), a zero matrix, a nilpotent
    // shift, and a matrix scaled to the edge of f64.
    let mut s = DMatrix::from_fn(60, 60, |_, _| rng.random_range(-1.0..1.0));
    for k in (0..60).step_by(3) {
        s.row_mut(k).fill(0.0);
        s.column_mut(k + 1).fill(0.0);
    }
    decomposed("zero rows and columns", &s);
    decomposed("zero", &DMatrix::zeros(10, 10));
    decomposed("shift", &DMatrix::from_fn(12, 12, |i, j| if j == i + 1 { 1.0 } else { 0.0 }));
    let e = eigen::decompose(&(s.clone() * 1e300), false).unwrap();
    assert!(e.is_accurate() && e.values.iter().all(|z| z.is_finite()));
}
