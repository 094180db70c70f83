//! Linearization by region: the one-step map `F` of a network at a constant input (in `f64`)
//! and its closed-form Jacobians from the compiled structure: with respect to the state, to the
//! input, the block of a region subset, and the block from the excluded regions' rates (their
//! activity held as a static input).
//!
//! ```text
//! leaky (state x):  F(x) = (1 - a) x + a (W phi(x) + W_in u + b)   J = (1 - a) I + a W diag(phi'(x))
//! Elman (state h):  F(h) = phi(z),  z = W h + W_in u + b            J = diag(phi'(z)) W
//! ```

use candle_core::{D, DType, Device, Tensor};
use mrnn_ir::{Activation, Dynamics};
use serde::Serialize;

use super::eigen::{self, Eigen, Stability};
use super::fixed_points::check_finite;
use crate::{Error, Network, Result, activation, linalg, memory};

/// Which state the dynamics carry: the space fixed points, Jacobians and flow fields live in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    /// Pre-activations `x` (leaky dynamics).
    Preactivation,
    /// Rates `h` (Elman dynamics).
    Rate,
}

impl StateKind {
    /// The state of a network's dynamics: `x` for leaky, `h` for Elman.
    #[must_use]
    pub fn of(net: &Network) -> StateKind {
        match net.architecture().settings().dynamics {
            Dynamics::Leaky { .. } => StateKind::Preactivation,
            Dynamics::Elman => StateKind::Rate,
        }
    }

    /// `x` or `h`.
    #[must_use]
    pub fn symbol(self) -> &'static str {
        match self {
            StateKind::Preactivation => "x",
            StateKind::Rate => "h",
        }
    }
}

/// The one-step map `F` of a network at a constant input, in `f64` on the network's device,
/// with its closed-form Jacobians. States are `[N, H]` (or `[H]` for one point) in the space of
/// [`StateKind::of`]; any float dtype is accepted.
///
/// ```
/// # use mrnn_runtime::{Device, Network, Tensor, DType};
/// # let json = r#"{"recurrent_regions": [{"name": "a", "num_units": 3, "sign": "pos"}, {"name": "b", "num_units": 2, "sign": "neg"}],
/// #   "input_regions": [{"name": "u", "num_units": 1, "sign": "pos"}],
/// #   "recurrent_connections": [{"src_region": "a", "dst_region": "b"}, {"src_region": "b", "dst_region": "a"}],
/// #   "input_connections": [{"src_region": "u", "dst_region": "a"}]}"#;
/// # let arch = mrnn_ir::compile_json(json, "n.json").unwrap().architecture;
/// use mrnn_runtime::analysis::StepMap;
/// let net = Network::new(arch, &Device::Cpu)?;
/// let map = StepMap::new(&net, &[0.5])?;
/// let x = Tensor::zeros((4, 5), DType::F64, &Device::Cpu)?;
/// assert_eq!(map.apply(&x)?.dims(), &[4, 5]);
/// assert_eq!(map.jacobians(&x)?.dims(), &[4, 5, 5]);
/// # Ok::<(), mrnn_runtime::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct StepMap {
    kind: StateKind,
    activation: Activation,
    /// `dt / tau` (leaky); 1 for Elman, where it is unused.
    alpha: f64,
    /// Effective recurrent weights `[H, H]` and their transpose.
    w: Tensor,
    w_t: Tensor,
    /// Effective input weights `[H, I]`.
    w_inp: Tensor,
    /// `W_in u + b` as a row `[1, H]`.
    drive: Tensor,
    input: Vec<f64>,
    device: Device,
}

/// Checks a batch of states `[N, H]` and converts it to `f64` (a single `[H]` becomes `[1, H]`).
pub(crate) fn states_f64(what: &str, t: &Tensor, h: usize, device: &Device) -> Result<Tensor> {
    if !t.device().same_device(device) {
        return Err(Error::Invalid(format!(
            "{what} is on {:?}, but the network is on {:?}",
            t.device().location(),
            device.location()
        )));
    }
    let t = match t.dims() {
        [n] if *n == h => t.unsqueeze(0)?,
        [_, n] if *n == h => t.clone(),
        _ => {
            return Err(Error::Shape {
                what: what.to_owned(),
                expected: format!("[N, {h}] or [{h}] (H = {h})"),
                got: t.dims().to_vec(),
            });
        }
    };
    Ok(t.detach().to_dtype(DType::F64)?.contiguous()?)
}

impl StepMap {
    /// The map of `net` at the constant input `input` (`I` values; empty when the network has
    /// no inputs).
    pub fn new(net: &Network, input: &[f64]) -> Result<StepMap> {
        let (h, i) = (net.hidden_size(), net.input_size());
        if input.len() != i {
            return Err(Error::Shape {
                what: "constant input".into(),
                expected: format!("[{i}] (the network's input size I)"),
                got: vec![input.len()],
            });
        }
        check_finite("the constant input", input)?;
        // The weights in f64, their transpose and the drive.
        memory::ensure_fits(
            format!("the one-step map of a network of {h} units"),
            memory::f64_bytes(&[h, h + i]).saturating_mul(3),
        )?;
        let device = net.device().clone();
        // Detached: the analysis never differentiates through the weights, and a graph hanging
        // off the weight variables would grow with every iteration of a search.
        let f64_of =
            |t: Tensor| -> Result<Tensor> { Ok(t.detach().to_dtype(DType::F64)?.contiguous()?) };
        let w = f64_of(net.w_rec_eff()?)?;
        let w_inp = f64_of(net.w_inp_eff()?)?;
        let mut drive = f64_of(net.bias()?)?.reshape((1, h))?;
        if i > 0 {
            let u = Tensor::from_slice(input, (1, i), &device)?;
            drive = (drive + u.matmul(&w_inp.t()?)?)?;
        }
        let settings = net.architecture().settings();
        Ok(StepMap {
            kind: StateKind::of(net),
            activation: settings.activation,
            alpha: settings.dynamics.alpha(),
            w_t: w.t()?.contiguous()?,
            w,
            w_inp,
            drive,
            input: input.to_vec(),
            device,
        })
    }

    /// The state the map acts on.
    #[must_use]
    pub fn kind(&self) -> StateKind {
        self.kind
    }

    /// The constant input.
    #[must_use]
    pub fn input(&self) -> &[f64] {
        &self.input
    }

    /// `H`.
    #[must_use]
    pub fn hidden_size(&self) -> usize {
        self.w.dims()[0]
    }

    /// The device of every tensor the map returns.
    #[must_use]
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The effective recurrent matrix `[H, H]` (`f64`).
    #[must_use]
    pub fn w_rec_eff(&self) -> &Tensor {
        &self.w
    }

    /// `F(states)`: one step, `[N, H]` to `[N, H]` (`f64`).
    pub fn apply(&self, states: &Tensor) -> Result<Tensor> {
        Ok(self.eval(states)?.0)
    }

    /// `F(s)` and the slope of `phi` where it is taken (`phi'(x)` for leaky, `phi'(z)` for
    /// Elman), both `[N, H]`.
    pub(crate) fn eval(&self, states: &Tensor) -> Result<(Tensor, Tensor)> {
        let s = states_f64("states", states, self.hidden_size(), &self.device)?;
        match self.kind {
            StateKind::Preactivation => {
                let h = activation::apply(self.activation, &s)?;
                let target = h.matmul(&self.w_t)?.broadcast_add(&self.drive)?;
                let next = ((&s * (1.0 - self.alpha))? + (target * self.alpha)?)?;
                Ok((next, slope(self.activation, &s)?))
            }
            StateKind::Rate => {
                let z = self.preactivation_of(&s)?;
                Ok((activation::apply(self.activation, &z)?, slope(self.activation, &z)?))
            }
        }
    }

    fn preactivation_of(&self, h: &Tensor) -> Result<Tensor> {
        Ok(h.matmul(&self.w_t)?.broadcast_add(&self.drive)?)
    }

    /// The rates `h` of states `[N, H]`: `phi(x)` for leaky, the states themselves for Elman.
    pub fn rates(&self, states: &Tensor) -> Result<Tensor> {
        let s = states_f64("states", states, self.hidden_size(), &self.device)?;
        match self.kind {
            StateKind::Preactivation => activation::apply(self.activation, &s),
            StateKind::Rate => Ok(s),
        }
    }

    /// The pre-activations `x` of states `[N, H]`: the states themselves for leaky,
    /// `z = W h + W_in u + b` for Elman (so that `h = phi(x)` at a fixed point).
    pub fn preactivations(&self, states: &Tensor) -> Result<Tensor> {
        let s = states_f64("states", states, self.hidden_size(), &self.device)?;
        match self.kind {
            StateKind::Preactivation => Ok(s),
            StateKind::Rate => self.preactivation_of(&s),
        }
    }

    /// `q = |F(s) - s|^2 / 2` per state and its gradient `(J - I)^T (F(s) - s)` in closed form.
    pub(crate) fn q_and_grad(&self, states: &Tensor) -> Result<(Tensor, Tensor)> {
        let (next, d) = self.eval(states)?;
        let r = (next - states)?;
        let q = (r.sqr()?.sum(D::Minus1)? * 0.5)?;
        let grad = match self.kind {
            // (J - I)^T r = a (phi'(x) * (W^T r)) - a r; rows: r W.
            StateKind::Preactivation => {
                ((d * r.matmul(&self.w)?)? - &r)?.affine(self.alpha, 0.0)?
            }
            // (J - I)^T r = W^T (phi'(z) * r) - r.
            StateKind::Rate => ((d * &r)?.matmul(&self.w)? - &r)?,
        };
        Ok((q, grad))
    }

    /// The Jacobians `dF/ds` at each state: `[N, H]` to `[N, H, H]` (row: output unit).
    pub fn jacobians(&self, states: &Tensor) -> Result<Tensor> {
        let (n, h) = match states.dims() {
            [_] => (1, self.hidden_size()),
            [n, _] => (*n, self.hidden_size()),
            _ => (0, self.hidden_size()),
        };
        // The broadcast weights, their scaled copy and the result: three [N, H, H] tensors.
        memory::ensure_fits(
            format!("{n} Jacobians of {h} units"),
            memory::f64_bytes(&[n, h, h]).saturating_mul(3),
        )?;
        let (_, d) = self.eval(states)?;
        let (n, h) = d.dims2()?;
        let w = self.w.unsqueeze(0)?.broadcast_as((n, h, h))?;
        Ok(match self.kind {
            StateKind::Preactivation => {
                let eye = Tensor::eye(h, DType::F64, &self.device)?.unsqueeze(0)?;
                let scaled = w.broadcast_mul(&d.unsqueeze(1)?)?.affine(self.alpha, 0.0)?;
                scaled.broadcast_add(&(eye * (1.0 - self.alpha))?)?
            }
            StateKind::Rate => w.broadcast_mul(&d.unsqueeze(2)?)?,
        })
    }

    /// The Jacobian at one state `[H]`: `[H, H]`.
    pub fn jacobian(&self, state: &Tensor) -> Result<Tensor> {
        Ok(self.jacobians(state)?.squeeze(0)?)
    }

    /// The Jacobian with respect to the input `dF/du` at one state `[H]`: `[H, I]`
    /// (`a W_in` for leaky, `diag(phi'(z)) W_in` for Elman).
    pub fn input_jacobian(&self, state: &Tensor) -> Result<Tensor> {
        Ok(match self.kind {
            StateKind::Preactivation => {
                states_f64("state", state, self.hidden_size(), &self.device)?;
                self.w_inp.affine(self.alpha, 0.0)?
            }
            StateKind::Rate => {
                let (_, d) = self.eval(state)?;
                self.w_inp.broadcast_mul(&d.squeeze(0)?.unsqueeze(1)?)?
            }
        })
    }

    /// The Jacobian with respect to the rates `h` that enter the recurrent input, at one state
    /// `[H]`: `[H, H]` (`a W` for leaky; for Elman the state Jacobian itself).
    pub fn rate_jacobian(&self, state: &Tensor) -> Result<Tensor> {
        Ok(match self.kind {
            StateKind::Preactivation => {
                states_f64("state", state, self.hidden_size(), &self.device)?;
                self.w.affine(self.alpha, 0.0)?
            }
            StateKind::Rate => self.jacobian(state)?,
        })
    }
}

/// `phi'` elementwise (the derivative at a kink is taken from the right side's limit on
/// `x > 0` for relu, so `relu'(0) = 0`).
pub fn slope(activation: Activation, x: &Tensor) -> Result<Tensor> {
    Ok(match activation {
        Activation::Relu => crate::activation::relu_slope(x)?,
        Activation::Tanh => x.tanh()?.sqr()?.affine(-1.0, 1.0)?,
        Activation::Sigmoid => {
            let s = candle_nn::ops::sigmoid(x)?;
            (&s * s.affine(-1.0, 1.0)?)?
        }
        // d/dx ln(1 + e^x) = sigmoid(x).
        Activation::Softplus => candle_nn::ops::sigmoid(x)?,
        Activation::Linear => x.ones_like()?,
    })
}

/// The linearization of the dynamics of some regions at one state, the other regions' activity
/// held fixed.
#[derive(Clone, Debug)]
pub struct RegionLinearization {
    /// The regions asked for (all regions when none were named).
    pub regions: Vec<String>,
    /// Their hidden units, in declaration order (`S`).
    pub units: Vec<usize>,
    /// The other hidden units, in declaration order (`E`).
    pub excluded: Vec<usize>,
    /// `dF_S / ds_S` `[S, S]`: the block of the full Jacobian among the subset.
    pub jacobian: Tensor,
    /// `dF_S / ds_E` `[S, E]`: the block of the full Jacobian from the excluded states.
    pub coupling: Tensor,
    /// `dF_S / dh_E` `[S, E]`: the excluded regions' rates treated as a static input (`a W_SE`
    /// for leaky, `diag(phi'(z_S)) W_SE` for Elman).
    pub from_excluded: Tensor,
    /// `dF_S / du` `[S, I]`.
    pub input_jacobian: Tensor,
    /// Eigenvalues (and eigenvectors when asked for) of [`RegionLinearization::jacobian`],
    /// with the residual of every eigenpair.
    pub eigen: Eigen,
    /// The units of the subset whose activation has a nonzero slope at the state (for relu,
    /// those above threshold). With none, the Jacobian is the leak alone (`(1 - a) I` for
    /// leaky dynamics, 0 for Elman), whatever the weights.
    pub active_units: usize,
    /// Stability of the subset's dynamics at this state, the rest held fixed.
    pub stability: Stability,
}

/// The default tolerance of stability labels: eigenvalue moduli within `1e-6` of 1 are marginal.
pub const MARGINAL_TOL: f64 = 1e-6;

/// Linearizes `net` at `state` (`[H]`, in the space of [`StateKind::of`]) under the constant
/// `input`, restricted to `regions` (names or parents; all regions when empty). With
/// `vectors`, the eigen-decomposition includes eigenvectors.
pub fn linearize(
    net: &Network,
    state: &Tensor,
    input: &[f64],
    regions: &[&str],
    vectors: bool,
) -> Result<RegionLinearization> {
    let map = StepMap::new(net, input)?;
    let h = net.hidden_size();
    if state.dims() != [h] {
        return Err(Error::Shape {
            what: "state to linearize at".into(),
            expected: format!("[{h}] (H = {h})"),
            got: state.dims().to_vec(),
        });
    }
    let (names, units) = subset_units(net, regions)?;
    let at: Vec<f64> = state.to_dtype(DType::F64)?.to_vec1()?;
    check_finite("the state to linearize at", &at)?;
    let excluded: Vec<usize> = (0..h).filter(|u| !units.contains(u)).collect();
    let slopes: Vec<f64> = map.eval(state)?.1.flatten_all()?.to_vec1()?;
    let active_units = units.iter().filter(|&&u| slopes[u] != 0.0).count();
    let full = map.jacobian(state)?;
    let rate = map.rate_jacobian(state)?;
    let jacobian = block(&full, &units, &units)?;
    let eigen = eigen::decompose(&linalg::to_dmatrix(&jacobian)?, vectors)?;
    let stability = Stability::of(&eigen.values, MARGINAL_TOL);
    Ok(RegionLinearization {
        regions: names,
        coupling: block(&full, &units, &excluded)?,
        from_excluded: block(&rate, &units, &excluded)?,
        input_jacobian: rows(&map.input_jacobian(state)?, &units)?,
        jacobian,
        eigen,
        active_units,
        stability,
        units,
        excluded,
    })
}

/// The names and hidden units (declaration order, each once) of `regions`; all when empty.
pub(crate) fn subset_units(net: &Network, regions: &[&str]) -> Result<(Vec<String>, Vec<usize>)> {
    if regions.is_empty() {
        let names = net.architecture().regions().iter().map(|r| r.name.to_string()).collect();
        return Ok((names, (0..net.hidden_size()).collect()));
    }
    let mut units = net.hidden_units(regions)?;
    units.sort_unstable();
    units.dedup();
    Ok((regions.iter().map(|&r| r.to_owned()).collect(), units))
}

/// `index_select` with host indices along `dim`.
pub(crate) fn select(t: &Tensor, idx: &[usize], dim: usize) -> Result<Tensor> {
    if idx.is_empty() {
        let mut dims = t.dims().to_vec();
        dims[dim] = 0;
        return Ok(Tensor::zeros(dims, t.dtype(), t.device())?);
    }
    let idx: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
    let n = idx.len();
    let idx = Tensor::from_vec(idx, n, t.device())?;
    Ok(t.contiguous()?.index_select(&idx, dim)?)
}

fn rows(t: &Tensor, r: &[usize]) -> Result<Tensor> {
    select(t, r, 0)
}

fn block(t: &Tensor, r: &[usize], c: &[usize]) -> Result<Tensor> {
    select(&select(t, r, 0)?, c, 1)
}
