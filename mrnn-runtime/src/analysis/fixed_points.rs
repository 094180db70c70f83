//! Fixed points (Golub & Sussillo's method): from candidate states, minimize
//! `q(s) = |F(s) - s|^2 / 2` for every candidate at once with Adam and a plateau schedule of
//! per-point learning rates; drop distance outliers, merge duplicates, optionally rerun the
//! q outliers, and keep for each fixed point its `q`, Jacobian, eigenvalues and stability.

use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{DType, Tensor};
use faer::linalg::solvers::Solve;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde_json::{Value, json};

use super::eigen::{self, Eigen, Stability};
use super::jacobian::{MARGINAL_TOL, StateKind, StepMap, states_f64};
use crate::{Error, Forward, Network, Result, linalg, memory};

/// Settings of a fixed-point search. [`FixedPointOptions::default`] follows Golub & Sussillo's
/// `FixedPointFinder` where it can (`tol_q = 1e-12`, `tol_unique = 1e-3`, Adam's epsilon 0.01,
/// distance outliers beyond 10 times the candidates' spread).
#[derive(Clone, Debug, PartialEq)]
pub struct FixedPointOptions {
    /// The constant input (`I` values); `None`: zero input.
    pub input: Option<Vec<f64>>,
    /// Standard deviation of Gaussian noise added to the candidates before the search.
    pub noise: f64,
    /// Seed of that noise.
    pub seed: u64,
    /// Adam iterations at most (each iteration updates every unconverged candidate).
    pub max_iters: usize,
    /// Initial learning rate of every candidate.
    pub lr: f64,
    /// Iterations without a relative improvement of `q` by `1e-4` before a candidate's learning
    /// rate is multiplied by `lr_factor`.
    pub lr_patience: usize,
    /// Learning-rate decay on a plateau (in `(0, 1)`).
    pub lr_factor: f64,
    /// A candidate whose learning rate falls below this stops (a slow point, or as good as it
    /// gets).
    pub lr_min: f64,
    /// Adam's `epsilon`. Golub & Sussillo use a large one (0.01): near a fixed point the
    /// gradient is tiny and Adam then moves like gradient descent instead of taking steps of
    /// size `lr` whatever the gradient, which would never settle.
    pub adam_eps: f64,
    /// Newton steps on `F(s) = s` after Adam, for each distinct point (each step solves
    /// `(J - I) d = s - F(s)` and halves `d` until `q` decreases; a point stops when no
    /// step helps). Adam brings candidates into a fixed point's basin; Newton makes them
    /// exact, so that copies of one fixed point coincide. 0 turns polishing off.
    pub newton_steps: usize,
    /// A candidate stops when `q < tol_q`.
    pub tol_q: f64,
    /// A candidate stops when `q` changed by less than `tol_dq` in one iteration.
    pub tol_dq: f64,
    /// Candidates whose final `q` exceeds this are not reported (slow points); `None` keeps
    /// every optimized point.
    pub max_q: Option<f64>,
    /// Points farther from the candidates' centroid than this many times the candidates' mean
    /// distance from it are dropped; `None` keeps them.
    pub outlier_distance: Option<f64>,
    /// Points closer than this (Euclidean, in state space) are one fixed point: the one with
    /// the lowest `q` is kept.
    pub tol_unique: f64,
    /// Optimize again, from where they stopped and with fresh optimizer state, the points whose
    /// `q` exceeds `q_outlier_scale` times the median `q` (and `tol_q`).
    pub rerun_q_outliers: bool,
    /// See [`FixedPointOptions::rerun_q_outliers`].
    pub q_outlier_scale: f64,
    /// Eigenvalue moduli within this of 1 make a point marginal.
    pub marginal_tol: f64,
}

impl Default for FixedPointOptions {
    fn default() -> Self {
        FixedPointOptions {
            input: None,
            noise: 0.0,
            seed: 0,
            max_iters: 5000,
            lr: 0.1,
            lr_patience: 5,
            lr_factor: 0.95,
            lr_min: 1e-10,
            adam_eps: 0.01,
            newton_steps: 8,
            tol_q: 1e-12,
            tol_dq: 1e-20,
            max_q: Some(1e-6),
            outlier_distance: Some(10.0),
            tol_unique: 1e-3,
            rerun_q_outliers: true,
            q_outlier_scale: 10.0,
            marginal_tol: MARGINAL_TOL,
        }
    }
}

impl FixedPointOptions {
    /// Checks the ranges of every setting (and that the input is finite: a NaN input makes
    /// every `q` NaN, and the search would report no fixed point instead of an error).
    pub fn validate(&self) -> Result<()> {
        if let Some(input) = &self.input {
            check_finite("the constant input", input)?;
        }
        let positive = [
            ("lr", self.lr),
            ("lr_min", self.lr_min),
            ("adam_eps", self.adam_eps),
            ("tol_q", self.tol_q),
            ("q_outlier_scale", self.q_outlier_scale),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::Invalid(format!("{name} must be positive, got {v}")));
            }
        }
        let non_negative = [
            ("noise", self.noise),
            ("tol_dq", self.tol_dq),
            ("tol_unique", self.tol_unique),
            ("marginal_tol", self.marginal_tol),
        ];
        for (name, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::Invalid(format!("{name} must be zero or positive, got {v}")));
            }
        }
        if !(self.lr_factor > 0.0 && self.lr_factor < 1.0) {
            return Err(Error::Invalid(format!(
                "lr_factor must be between 0 and 1, got {}",
                self.lr_factor
            )));
        }
        for (name, v) in [("max_q", self.max_q), ("outlier_distance", self.outlier_distance)] {
            if let Some(v) = v.filter(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(Error::Invalid(format!("{name} must be positive, got {v}")));
            }
        }
        Ok(())
    }
}

/// Which optimization a [`Progress`] report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The joint optimization of every candidate.
    Optimize,
    /// The second optimization of the q outliers.
    Rerun,
}

/// A progress report, sent after every iteration.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// Which optimization.
    pub phase: Phase,
    /// Iterations done in this phase.
    pub iteration: usize,
    /// The most iterations this phase may take.
    pub max_iters: usize,
    /// Points still being optimized.
    pub active: usize,
    /// Points in this phase.
    pub total: usize,
    /// The median `q` over the points of this phase.
    pub median_q: f64,
}

/// One fixed point.
#[derive(Clone, Debug)]
pub struct FixedPoint {
    /// Pre-activations `[H]` (leaky: the state; Elman: `W h + W_in u + b`).
    pub x: Vec<f64>,
    /// Rates `[H]` (leaky: `phi(x)`; Elman: the state).
    pub h: Vec<f64>,
    /// `|F(s) - s|^2 / 2` at the point.
    pub q: f64,
    /// Iterations its optimization took (both phases).
    pub iterations: usize,
    /// The Jacobian `dF/ds` `[H, H]` (`f64`, on the network's device).
    pub jacobian: Tensor,
    /// Its eigenvalues, largest modulus first.
    pub eigen: Eigen,
    /// Stability label.
    pub stability: Stability,
    /// Eigenvalues outside the unit circle.
    pub unstable_dimensions: usize,
}

impl FixedPoint {
    /// Whether every eigenvalue lies inside the unit circle.
    #[must_use]
    pub fn is_stable(&self) -> bool {
        self.stability == Stability::Stable
    }

    /// The largest eigenvalue modulus of the Jacobian.
    #[must_use]
    pub fn max_abs_eigenvalue(&self) -> f64 {
        self.eigen.max_abs()
    }

    /// The state of the dynamics (`x` or `h`).
    #[must_use]
    pub fn state(&self, kind: StateKind) -> &[f64] {
        match kind {
            StateKind::Preactivation => &self.x,
            StateKind::Rate => &self.h,
        }
    }
}

/// The result of a search: the fixed points (stable first, then by number of unstable
/// dimensions, then by `q`) and what happened to the candidates.
#[derive(Clone, Debug)]
pub struct FixedPoints {
    /// The state space searched.
    pub kind: StateKind,
    /// The constant input.
    pub input: Vec<f64>,
    /// The distinct fixed points.
    pub points: Vec<FixedPoint>,
    /// Candidates optimized.
    pub candidates: usize,
    /// Candidates that ended with `q < tol_q`.
    pub converged: usize,
    /// Candidates dropped because their `q` exceeded `max_q`.
    pub slow: usize,
    /// Candidates dropped as distance outliers.
    pub distance_outliers: usize,
    /// Candidates merged into another (duplicates within `tol_unique`).
    pub duplicates: usize,
    /// Candidates optimized a second time as q outliers.
    pub rerun: usize,
    /// Wall-clock time of the search.
    pub elapsed: Duration,
}

impl FixedPoints {
    /// How many points are stable.
    #[must_use]
    pub fn stable_count(&self) -> usize {
        self.points.iter().filter(|p| p.is_stable()).count()
    }

    /// The points as JSON: a list of objects with `x`, `h`, `q`, `max_abs_eigenvalue`,
    /// `stable`, `stability`, `unstable_dimensions`, `iterations`, `eigenvalues` (`[re, im]`
    /// pairs), `eigen_residual` (the worst eigenpair residual, see [`Eigen::residuals`]) and
    /// `eigen_accurate` (every pair within [`eigen::RESIDUAL_TOL`]). Jacobians go to
    /// [`FixedPoints::save_safetensors`].
    #[must_use]
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.points
                .iter()
                .map(|p| {
                    json!({
                        "x": p.x,
                        "h": p.h,
                        "q": p.q,
                        "max_abs_eigenvalue": p.max_abs_eigenvalue(),
                        "stable": p.is_stable(),
                        "stability": p.stability,
                        "unstable_dimensions": p.unstable_dimensions,
                        "iterations": p.iterations,
                        "eigenvalues": p.eigen.values.iter().map(|z| [z.re, z.im]).collect::<Vec<_>>(),
                        "eigen_residual": p.eigen.max_residual(),
                        "eigen_accurate": p.eigen.is_accurate(),
                    })
                })
                .collect(),
        )
    }

    /// The worst eigenpair residual over every point (0 without points).
    #[must_use]
    pub fn max_eigen_residual(&self) -> f64 {
        self.points.iter().map(|p| p.eigen.max_residual()).fold(0.0, f64::max)
    }

    /// A summary of the search as JSON (counts, time, input, the worst eigenpair residual and
    /// how many eigenpairs failed the residual check).
    #[must_use]
    pub fn summary_json(&self) -> Value {
        json!({
            "max_eigen_residual": self.max_eigen_residual(),
            "inaccurate_eigenpairs": self.points.iter().map(|p| p.eigen.inaccurate()).sum::<usize>(),
            "state": self.kind.symbol(),
            "input": self.input,
            "fixed_points": self.points.len(),
            "stable": self.stable_count(),
            "unstable": self.points.len() - self.stable_count(),
            "candidates": self.candidates,
            "converged": self.converged,
            "slow": self.slow,
            "distance_outliers": self.distance_outliers,
            "duplicates": self.duplicates,
            "rerun": self.rerun,
            "seconds": self.elapsed.as_secs_f64(),
        })
    }

    /// Writes `x` `[K, H]`, `h`, `q` `[K]`, `jacobians` `[K, H, H]`, `eigenvalues_re` and
    /// `eigenvalues_im` `[K, H]` and `stable` `[K]` (0/1) as `f64` safetensors, atomically.
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        let cpu = candle_core::Device::Cpu;
        let k = self.points.len();
        let h = self.points.first().map_or(0, |p| p.x.len());
        let flat = |f: &dyn Fn(&FixedPoint) -> Vec<f64>| -> Vec<f64> {
            self.points.iter().flat_map(f).collect()
        };
        let mut tensors = vec![
            ("x".to_owned(), Tensor::from_vec(flat(&|p| p.x.clone()), (k, h), &cpu)?),
            ("h".to_owned(), Tensor::from_vec(flat(&|p| p.h.clone()), (k, h), &cpu)?),
            ("q".to_owned(), Tensor::from_vec(flat(&|p| vec![p.q]), k, &cpu)?),
            (
                "stable".to_owned(),
                Tensor::from_vec(flat(&|p| vec![f64::from(u8::from(p.is_stable()))]), k, &cpu)?,
            ),
            (
                "eigenvalues_re".to_owned(),
                Tensor::from_vec(
                    flat(&|p| p.eigen.values.iter().map(|z| z.re).collect()),
                    (k, h),
                    &cpu,
                )?,
            ),
            (
                "eigenvalues_im".to_owned(),
                Tensor::from_vec(
                    flat(&|p| p.eigen.values.iter().map(|z| z.im).collect()),
                    (k, h),
                    &cpu,
                )?,
            ),
        ];
        let jacobians = if k == 0 {
            Tensor::zeros((0, h, h), DType::F64, &cpu)?
        } else {
            let js: Vec<Tensor> = self
                .points
                .iter()
                .map(|p| p.jacobian.to_device(&cpu))
                .collect::<candle_core::Result<_>>()?;
            Tensor::stack(&js, 0)?
        };
        tensors.push(("jacobians".to_owned(), jacobians));
        crate::checkpoint::write_safetensors(path, tensors, None)
    }
}

/// The trajectory of the state the dynamics carry (`x` for leaky, `h` for Elman) on `input`
/// (the network's layout), as `[B, T, H]` (batch first whatever the network's layout).
pub fn state_trajectory(net: &Network, input: &Tensor, options: &Forward) -> Result<Tensor> {
    if let [a, b, _] = input.dims() {
        // x and h of every step, and a transposed copy for a time-first network.
        let h = net.hidden_size();
        memory::ensure_fits(
            format!("trajectories of {} steps of {h} units", a.saturating_mul(*b)),
            memory::f32_bytes(&[*a, *b, h]).saturating_mul(3),
        )?;
    }
    let out = net.forward(input, options)?;
    let states = match StateKind::of(net) {
        StateKind::Preactivation => out
            .x
            .ok_or_else(|| Error::Invalid("a leaky network returned no pre-activations".into()))?,
        StateKind::Rate => out.h,
    };
    Ok(if net.architecture().settings().batch_first {
        states
    } else {
        states.transpose(0, 1)?.contiguous()?
    })
}

/// `n` states drawn at random (without replacement while there are enough) from `states`
/// (`[..., H]`, e.g. `[B, T, H]` trajectories): candidates for [`find_fixed_points`].
pub fn sample_states(states: &Tensor, n: usize, seed: u64) -> Result<Tensor> {
    let h = *states.dims().last().ok_or_else(|| Error::Shape {
        what: "states".into(),
        expected: "[..., H]".into(),
        got: vec![],
    })?;
    let flat = states.reshape(((), h))?;
    let total = flat.dim(0)?;
    if total == 0 || n == 0 {
        return Err(Error::Invalid(format!(
            "cannot sample {n} candidate states from {total} states"
        )));
    }
    // The indices (8 bytes each, twice while sampling) and the rows drawn.
    let row = memory::elements(&[h]).saturating_mul(states.dtype().size_in_bytes() as u64);
    memory::ensure_fits(
        format!("{n} candidate states of {h} units"),
        row.saturating_add(16).saturating_mul(n as u64),
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let idx: Vec<usize> = if n <= total {
        rand::seq::index::sample(&mut rng, total, n).into_vec()
    } else {
        (0..n).map(|_| rng.random_range(0..total)).collect()
    };
    super::jacobian::select(&flat, &idx, 0)
}

/// Finds the fixed points of `net` near `candidates` (`[N, H]` states in the space of
/// [`StateKind::of`]). Every candidate is optimized at once as one `[N, H]` tensor;
/// `progress` hears about every iteration.
pub fn find_fixed_points(
    net: &Network,
    candidates: &Tensor,
    options: &FixedPointOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<FixedPoints> {
    let start = Instant::now();
    options.validate()?;
    let h = net.hidden_size();
    let n = match candidates.dims() {
        [_] => 1,
        [n, _] => *n,
        _ => 0,
    };
    // Everything that can be known before the search is checked before it: the settings, the
    // memory of the search and of one point's Jacobian and eigendecomposition.
    memory::ensure_fits(
        format!("a fixed-point search from {n} candidate states of {h} units"),
        search_bytes(n, h),
    )?;
    let input = options.input.clone().unwrap_or_else(|| vec![0.0; net.input_size()]);
    let map = StepMap::new(net, &input)?;
    let mut x0 = states_f64("candidates", candidates, h, net.device())?;
    let n = x0.dim(0)?;
    if n == 0 {
        return Err(Error::Invalid("no candidate states to start from".into()));
    }
    if x0.flatten_all()?.to_vec1::<f64>()?.iter().any(|v| !v.is_finite()) {
        return Err(Error::Invalid("candidate states have NaN or infinite entries".into()));
    }
    if options.noise > 0.0 {
        let normal =
            Normal::new(0.0, options.noise).map_err(|e| Error::Invalid(format!("noise: {e}")))?;
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let draws: Vec<f64> = (0..n * h).map(|_| normal.sample(&mut rng)).collect();
        x0 = (x0 + Tensor::from_vec(draws, (n, h), net.device())?)?;
    }

    let mut run = optimize(&map, &x0, options, Phase::Optimize, progress)?;
    let mut rerun = 0;
    if options.rerun_q_outliers {
        let threshold = (median(&run.q) * options.q_outlier_scale).max(options.tol_q);
        let outliers: Vec<usize> = (0..n).filter(|&i| run.q[i] > threshold).collect();
        if !outliers.is_empty() {
            rerun = outliers.len();
            let start = super::jacobian::select(&run.states, &outliers, 0)?;
            let again = optimize(&map, &start, options, Phase::Rerun, progress)?;
            let mut rows: Vec<Tensor> =
                (0..n).map(|i| run.states.get(i)).collect::<candle_core::Result<_>>()?;
            for (k, &i) in outliers.iter().enumerate() {
                rows[i] = again.states.get(k)?;
                run.q[i] = again.q[k];
                run.iterations[i] += again.iterations[k];
            }
            run.states = Tensor::stack(&rows, 0)?;
        }
    }

    let converged = run.q.iter().filter(|&&q| q < options.tol_q).count();
    let mut states: Vec<Vec<f64>> = run.states.to_vec2()?;
    let mut keep: Vec<usize> = (0..n).filter(|&i| run.q[i].is_finite()).collect();
    let mut distance_outliers = 0;
    if let Some(scale) = options.outlier_distance {
        let start: Vec<Vec<f64>> = x0.to_vec2()?;
        let centroid: Vec<f64> =
            (0..h).map(|j| start.iter().map(|s| s[j]).sum::<f64>() / n as f64).collect();
        let spread = start.iter().map(|s| distance(s, &centroid)).sum::<f64>() / n as f64;
        let before = keep.len();
        // A spread of zero (one candidate, or identical ones) says nothing about scale.
        if spread > 0.0 {
            keep.retain(|&i| distance(&states[i], &centroid) <= scale * spread);
        }
        distance_outliers = before - keep.len();
    }
    // Merge, polish the representatives, merge again: copies of one fixed point that Adam left
    // a little apart coincide once polished.
    let mut unique = distinct(&keep, &states, &run.q, options.tol_unique);
    if options.newton_steps > 0 {
        for &i in &unique {
            run.q[i] = polish(&map, &mut states[i], run.q[i], options.newton_steps)?;
        }
        unique = distinct(&unique, &states, &run.q, options.tol_unique);
    }
    let duplicates = keep.len() - unique.len();
    let before = unique.len();
    if let Some(max_q) = options.max_q {
        unique.retain(|&i| run.q[i] <= max_q);
    }
    let slow = before - unique.len();
    let points = describe(&map, &states, &run.q, &run.iterations, &unique, options)?;
    Ok(FixedPoints {
        kind: map.kind(),
        input,
        points,
        candidates: n,
        converged,
        slow,
        distance_outliers,
        duplicates,
        rerun,
        elapsed: start.elapsed(),
    })
}

/// The bytes a search from `n` candidates of `h` units needs: about 16 `[N, H]` tensors (the
/// states, Adam's moments, the step's intermediates), the map's weights, and one Jacobian with
/// its eigendecomposition. [`find_fixed_points`] checks it before it starts; a caller that
/// draws the candidates itself can check it before drawing them.
#[must_use]
pub fn search_bytes(n: usize, h: usize) -> u64 {
    memory::f64_bytes(&[n, h])
        .saturating_mul(16)
        .saturating_add(memory::f64_bytes(&[h, h]).saturating_mul(4))
        .saturating_add(eigen::workspace_bytes(h))
}

/// An error naming the first non-finite value of `values` (`what` says whose).
pub(crate) fn check_finite(what: &str, values: &[f64]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(k) => Err(Error::Invalid(format!(
            "{what} must be finite, but value {k} is {} (every value: {values:?})",
            values[k]
        ))),
        None => Ok(()),
    }
}

/// Jacobians, eigenvalues and labels of the points `rows`, sorted stable first.
fn describe(
    map: &StepMap,
    all: &[Vec<f64>],
    q: &[f64],
    iterations: &[usize],
    rows: &[usize],
    options: &FixedPointOptions,
) -> Result<Vec<FixedPoint>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let h = map.hidden_size();
    // The points keep their Jacobians: K of them, each computed (and decomposed) on its own.
    memory::ensure_fits(
        format!("the Jacobians of {} fixed points of {h} units", rows.len()),
        memory::f64_bytes(&[rows.len(), h, h]).saturating_add(eigen::workspace_bytes(h)),
    )?;
    let flat: Vec<f64> = rows.iter().flat_map(|&i| all[i].iter().copied()).collect();
    let states = Tensor::from_vec(flat, (rows.len(), h), map.device())?;
    let xs: Vec<Vec<f64>> = map.preactivations(&states)?.to_vec2()?;
    let hs: Vec<Vec<f64>> = map.rates(&states)?.to_vec2()?;
    let mut points = Vec::with_capacity(rows.len());
    for (k, &i) in rows.iter().enumerate() {
        let jacobian = map.jacobian(&states.get(k)?)?;
        let eigen = eigen::decompose(&linalg::to_dmatrix(&jacobian)?, false)?;
        let stability = Stability::of(&eigen.values, options.marginal_tol);
        let unstable_dimensions = eigen::unstable_dimensions(&eigen.values, options.marginal_tol);
        points.push(FixedPoint {
            x: xs[k].clone(),
            h: hs[k].clone(),
            q: q[i],
            iterations: iterations[i],
            jacobian,
            eigen,
            stability,
            unstable_dimensions,
        });
    }
    let rank = |s: Stability| match s {
        Stability::Stable => 0,
        Stability::Marginal => 1,
        Stability::Saddle => 2,
        Stability::Unstable => 3,
    };
    points.sort_by(|a, b| {
        rank(a.stability)
            .cmp(&rank(b.stability))
            .then(a.unstable_dimensions.cmp(&b.unstable_dimensions))
            .then(a.q.total_cmp(&b.q))
    });
    Ok(points)
}

/// Where an optimization ended.
struct Run {
    states: Tensor,
    q: Vec<f64>,
    iterations: Vec<usize>,
}

/// Adam on every row of `start` at once, each row with its own learning rate (plateau
/// schedule) and its own stopping rule; stopped rows are frozen.
fn optimize(
    map: &StepMap,
    start: &Tensor,
    o: &FixedPointOptions,
    phase: Phase,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Run> {
    let (n, _) = start.dims2()?;
    let device = map.device().clone();
    let (beta1, beta2) = (0.9f64, 0.999f64);
    let mut x = start.clone();
    let mut m = x.zeros_like()?;
    let mut v = x.zeros_like()?;
    let mut lr = vec![o.lr; n];
    let mut best = vec![f64::INFINITY; n];
    let mut since = vec![0usize; n];
    let mut active = vec![true; n];
    let mut last = vec![f64::INFINITY; n];
    let mut iterations = vec![0usize; n];
    for it in 0..=o.max_iters {
        let (q, grad) = map.q_and_grad(&x)?;
        let q: Vec<f64> = q.to_vec1()?;
        for i in 0..n {
            if !active[i] {
                continue;
            }
            let stop = !q[i].is_finite()
                || q[i] < o.tol_q
                || (it > 0 && (last[i] - q[i]).abs() < o.tol_dq)
                || lr[i] < o.lr_min;
            last[i] = q[i];
            iterations[i] = it;
            if stop {
                active[i] = false;
                continue;
            }
            if q[i] < best[i] * (1.0 - 1e-4) {
                best[i] = q[i];
                since[i] = 0;
            } else {
                since[i] += 1;
                if since[i] > o.lr_patience {
                    lr[i] *= o.lr_factor;
                    since[i] = 0;
                }
            }
        }
        let still = active.iter().filter(|&&a| a).count();
        progress(&Progress {
            phase,
            iteration: it,
            max_iters: o.max_iters,
            active: still,
            total: n,
            median_q: median(&last),
        });
        if still == 0 || it == o.max_iters {
            break;
        }
        // Bias-corrected Adam, one learning rate per row; stopped rows get a zero rate.
        let t = i32::try_from(it + 1).unwrap_or(i32::MAX);
        m = ((m * beta1)? + (&grad * (1.0 - beta1))?)?;
        v = ((v * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?;
        let m_hat = (&m * (1.0 / (1.0 - beta1.powi(t))))?;
        let v_hat = (&v * (1.0 / (1.0 - beta2.powi(t))))?;
        let rates: Vec<f64> = (0..n).map(|i| if active[i] { lr[i] } else { 0.0 }).collect();
        let rates = Tensor::from_vec(rates, (n, 1), &device)?;
        let step = (m_hat / (v_hat.sqrt()? + o.adam_eps)?)?.broadcast_mul(&rates)?;
        x = (x - step)?;
    }
    // The states where each row stopped: frozen rows did not move after stopping.
    let (q, _) = map.q_and_grad(&x)?;
    let q: Vec<f64> = q.to_vec1()?;
    Ok(Run { states: x, q, iterations })
}

/// The points of `rows` that are not within `tol` of a point of lower `q` (ties: lower index).
fn distinct(rows: &[usize], states: &[Vec<f64>], q: &[f64], tol: f64) -> Vec<usize> {
    let mut order = rows.to_vec();
    order.sort_by(|&a, &b| q[a].total_cmp(&q[b]).then(a.cmp(&b)));
    let mut kept: Vec<usize> = Vec::new();
    for i in order {
        if kept.iter().all(|&k| distance(&states[i], &states[k]) > tol) {
            kept.push(i);
        }
    }
    kept
}

/// Newton's method on `F(s) - s = 0` from `state` (with `q` its current value), at most
/// `steps` steps, each halved up to 8 times until `q` decreases; returns the final `q`.
fn polish(map: &StepMap, state: &mut Vec<f64>, mut q: f64, steps: usize) -> Result<f64> {
    let h = state.len();
    let q_of = |s: &[f64]| -> Result<(f64, Vec<f64>)> {
        let t = Tensor::from_slice(s, (1, h), map.device())?;
        let f: Vec<f64> = map.apply(&t)?.flatten_all()?.to_vec1()?;
        let r: Vec<f64> = f.iter().zip(s).map(|(a, b)| a - b).collect();
        Ok((0.5 * r.iter().map(|v| v * v).sum::<f64>(), r))
    };
    let (q0, mut residual) = q_of(state)?;
    q = q.min(q0);
    for _ in 0..steps {
        if q == 0.0 {
            break;
        }
        let t = Tensor::from_slice(state.as_slice(), h, map.device())?;
        let j = linalg::to_dmatrix(&map.jacobian(&t)?)?;
        let a = faer::Mat::<f64>::from_fn(h, h, |r, c| j[(r, c)] - if r == c { 1.0 } else { 0.0 });
        let rhs = faer::Mat::<f64>::from_fn(h, 1, |r, _| -residual[r]);
        // A singular J - I (a marginal direction) gives non-finite steps: the point stays.
        let d = a.partial_piv_lu().solve(&rhs);
        let d: Vec<f64> = (0..h).map(|r| d[(r, 0)]).collect();
        if d.iter().any(|v| !v.is_finite()) {
            break;
        }
        let mut improved = false;
        let mut scale = 1.0;
        for _ in 0..8 {
            let trial: Vec<f64> = state.iter().zip(d.iter()).map(|(s, d)| s + scale * d).collect();
            let (q_trial, r_trial) = q_of(&trial)?;
            if q_trial < q {
                *state = trial;
                (q, residual) = (q_trial, r_trial);
                improved = true;
                break;
            }
            scale *= 0.5;
        }
        if !improved {
            break;
        }
    }
    Ok(q)
}

fn distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt()
}

fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
