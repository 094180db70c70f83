//! The network: parameters built from a checked architecture (raw weights as candle `Var`s,
//! fixed masks and signs, tonic biases), effective weights under Dale's law, and `forward`.

use std::fmt;

use candle_core::{DType, Device, Tensor, Var};
use mrnn_ir::{Architecture, Dynamics};

use crate::engine::{Block, Recurrence};
use crate::masks::{HostMatrix, Matrix};
use crate::noise::Draws;
use crate::{Error, Result, activation, compat, init, linalg, masks, memory, threads};

/// The dtype of every parameter and state.
pub(crate) const DTYPE: DType = DType::F32;

/// A multi-regional RNN on a candle device.
///
/// Holds the trainable raw weights `W_rec` `[H, H]` and `W_inp` `[H, I]`, the fixed masks and
/// sign matrices, and the tonic bias. The effective weights are `M * |W| * S` under Dale's law
/// and `W * M` without it; masked entries are zero whatever an optimizer does to `W`.
///
/// ```
/// use mrnn_runtime::{Device, Forward, Network, Tensor};
/// let json = r#"{
///     "recurrent_regions": [{"name": "exc", "num_units": 8, "sign": "pos"},
///                           {"name": "inh", "num_units": 2, "sign": "neg"}],
///     "input_regions": [{"name": "u", "num_units": 3, "sign": "pos"}],
///     "recurrent_connections": [{"src_region": "exc", "dst_region": "inh"},
///                               {"src_region": "inh", "dst_region": "exc"}],
///     "input_connections": [{"src_region": "u", "dst_region": "exc"}]
/// }"#;
/// let arch = mrnn_ir::compile_json(json, "ei.json").unwrap().architecture;
/// let net = Network::new(arch, &Device::Cpu)?;
/// let input = Tensor::ones((2, 5, 3), mrnn_runtime::DType::F32, &Device::Cpu)?; // [B, T, I]
/// let out = net.forward(&input, &Forward::default())?;
/// assert_eq!(out.h.dims(), &[2, 5, 10]);
/// # Ok::<(), mrnn_runtime::Error>(())
/// ```
pub struct Network {
    pub(crate) arch: Architecture,
    pub(crate) seed: u64,
    pub(crate) device: Device,
    pub(crate) w_rec: Var,
    pub(crate) w_inp: Var,
    pub(crate) rec_mask: Tensor,
    pub(crate) rec_sign: Tensor,
    pub(crate) inp_mask: Tensor,
    pub(crate) inp_sign: Tensor,
    /// What multiplies `|W_rec|` (constrained: `M * S`) or `W_rec` (unconstrained: `M`).
    rec_factor: Tensor,
    inp_factor: Tensor,
    /// The tonic input of every unit; only the entries of regions with `learnable_bias` move.
    pub(crate) bias: Var,
    bias_mode: BiasMode,
    /// Per-unit initial pre-activation `[H]`.
    init: Tensor,
}

/// How the effective bias is made from the bias variable.
#[derive(Debug)]
enum BiasMode {
    /// No region learns its bias: a constant.
    Fixed(Tensor),
    /// Every region learns its bias: the variable itself.
    Learned,
    /// Some regions learn: `learn * var + fixed`, with `fixed = (1 - learn) * base_firing`, so
    /// gradients reach only the learnable entries.
    Mixed { learn: Tensor, fixed: Tensor },
}

/// The tensors a network is made of, on its device, in `f32` (from an initializer or a file).
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) w_rec: Tensor,
    pub(crate) w_inp: Tensor,
    pub(crate) rec_mask: Tensor,
    pub(crate) rec_sign: Tensor,
    pub(crate) inp_mask: Tensor,
    pub(crate) inp_sign: Tensor,
    pub(crate) base_firing: Tensor,
}

/// Options of one forward pass. Every field is optional; [`Forward::default`] runs the network
/// from its declared initial condition without noise.
///
/// ```
/// # use mrnn_runtime::{Forward, Tensor, Device, DType};
/// let x0 = Tensor::zeros((4, 10), DType::F32, &Device::Cpu)?;
/// let options = Forward::new().x0(x0).noise(7);
/// assert_eq!(options.noise, Some(7));
/// # Ok::<(), mrnn_runtime::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Forward {
    /// Initial pre-activation `[B, H]` (default: every unit's `init`, repeated `B` times). May
    /// carry gradients (a `Var` to optimize initial conditions).
    pub x0: Option<Tensor>,
    /// Initial rates `[B, H]` (default: `phi(x0)`).
    pub h0: Option<Tensor>,
    /// Additive stimulus, same layout as the input with `H` features (`[B, T, H]` batch first):
    /// leaky adds `alpha * s_t` to the update, Elman adds `s_t` inside `phi`.
    pub stim: Option<Tensor>,
    /// A replacement effective recurrent matrix `[H, H]` for this call (lesions, perturbations),
    /// used as given.
    pub w_rec_eff: Option<Tensor>,
    /// `Some(seed)`: add hidden and input noise with the network's noise levels, drawn from a
    /// `ChaCha8` RNG seeded with `seed`. `None`: no noise.
    pub noise: Option<u64>,
    /// Return the rates only ([`Trajectory::x`] `None` for leaky dynamics too): the states are
    /// then never stored, which saves their memory (see
    /// [`crate::engine::Recurrence::without_states`]). For callers that read `h` only.
    pub rates_only: bool,
}

impl Forward {
    /// No options: the same as [`Forward::default`].
    #[must_use]
    pub fn new() -> Forward {
        Forward::default()
    }

    /// Sets the initial pre-activation `[B, H]`.
    #[must_use]
    pub fn x0(mut self, x0: Tensor) -> Forward {
        self.x0 = Some(x0);
        self
    }

    /// Sets the initial rates `[B, H]`.
    #[must_use]
    pub fn h0(mut self, h0: Tensor) -> Forward {
        self.h0 = Some(h0);
        self
    }

    /// Sets an additive stimulus (same layout as the input, `H` features).
    #[must_use]
    pub fn stim(mut self, stim: Tensor) -> Forward {
        self.stim = Some(stim);
        self
    }

    /// Replaces the effective recurrent matrix `[H, H]` for this call.
    #[must_use]
    pub fn w_rec_eff(mut self, w: Tensor) -> Forward {
        self.w_rec_eff = Some(w);
        self
    }

    /// Adds process noise drawn with `seed`.
    #[must_use]
    pub fn noise(mut self, seed: u64) -> Forward {
        self.noise = Some(seed);
        self
    }

    /// Returns the rates only (see [`Forward::rates_only`]).
    #[must_use]
    pub fn rates_only(mut self) -> Forward {
        self.rates_only = true;
        self
    }
}

/// The result of a forward pass, in the input's layout (`[B, T, H]` when batch first, else
/// `[T, B, H]`), for steps `1..=T`.
#[derive(Clone, Debug)]
pub struct Trajectory {
    /// Pre-activations `x_1..x_T` (leaky dynamics only, unless [`Forward::rates_only`]).
    pub x: Option<Tensor>,
    /// Rates `h_1..h_T`.
    pub h: Tensor,
}

impl Network {
    /// Builds a network with the architecture's declared seed (see [`Network::with_seed`]).
    pub fn new(arch: Architecture, device: &Device) -> Result<Network> {
        let seed = arch.settings().seed;
        Network::with_seed(arch, seed, device)
    }

    /// Builds a network on `device` with masks and initial weights drawn with `seed`: masks as
    /// the connections' sparsities prescribe, raw weights as the reference initializes them,
    /// then scaled to the architecture's spectral radius when it declares one.
    ///
    /// A network that cannot fit in memory ([`Network::estimated_bytes`] against
    /// [`memory::limit`]) is refused with [`Error::TooLarge`] before anything is allocated.
    pub fn with_seed(arch: Architecture, seed: u64, device: &Device) -> Result<Network> {
        threads::ensure_threads();
        Network::ensure_fits(&arch)?;
        let m = masks::sample(&arch, seed);
        let (w_rec, w_inp) = init::raw_weights(&arch, seed);
        let host = |m: HostMatrix| Tensor::from_vec(m.data, (m.rows, m.cols), device);
        let parts = Parts {
            w_rec: host(w_rec)?,
            w_inp: host(w_inp)?,
            rec_mask: host(m.rec_mask)?,
            rec_sign: host(m.rec_sign)?,
            inp_mask: host(m.inp_mask)?,
            inp_sign: host(m.inp_sign)?,
            base_firing: per_unit(&arch, device, |r| r.base_firing)?,
        };
        let net = Network::from_parts(arch, seed, device, &parts)?;
        if let Some(rho) = net.arch.settings().spectral_radius {
            net.scale_to_spectral_radius(rho)?;
        }
        Ok(net)
    }

    /// About the most memory building a network of `arch` takes, in bytes. Building holds about
    /// eight `[H, H]` and eight `[H, I]` `f32` matrices at its peak (raw weights, masks and
    /// signs on the host and as tensors, the Dale factor, the variable's copy; a peak RSS of
    /// 8.6 `[H, H]` matrices was measured at H = 4000 with `mrnn bench`, optimizer included),
    /// and scaling to a spectral radius adds the `f64` eigendecomposition of `[H, H]`.
    ///
    /// ```
    /// # use mrnn_runtime::Network;
    /// let json = r#"{"recurrent_regions": [{"name": "ctx", "num_units": 80000, "sign": "pos"}],
    ///               "recurrent_connections": [{"src_region": "ctx", "dst_region": "ctx"}]}"#;
    /// let arch = mrnn_ir::compile_json(json, "big.json").unwrap().architecture;
    /// assert!(Network::estimated_bytes(&arch) > 200_000_000_000); // 8 x 80000^2 x 4 bytes
    /// ```
    #[must_use]
    pub fn estimated_bytes(arch: &Architecture) -> u64 {
        let (h, i) = (arch.hidden_size(), arch.input_size());
        let matrices = memory::f32_bytes(&[8, h, h.saturating_add(i)]);
        // The eigensolver holds a few copies of the matrix in f64 (matrix, Schur form, vectors).
        let eigen = if arch.settings().spectral_radius.is_some() {
            memory::f64_bytes(&[4, h, h])
        } else {
            0
        };
        // Per-unit vectors (bias, init, masks of learnable biases): a handful of [H].
        matrices.saturating_add(eigen).saturating_add(memory::f32_bytes(&[16, h]))
    }

    /// Refuses, before any allocation, a network too large for the memory available.
    pub(crate) fn ensure_fits(arch: &Architecture) -> Result<()> {
        memory::ensure_fits(
            format!(
                "building the network `{}` ({} units, {} inputs: [H, H] weights, masks and signs)",
                arch.name(),
                arch.hidden_size(),
                arch.input_size()
            ),
            Network::estimated_bytes(arch),
        )
    }

    /// Assembles a network from tensors already on `device` (shapes checked here). The callers
    /// check the memory first ([`Network::ensure_fits`]): the parts exist by now.
    pub(crate) fn from_parts(
        arch: Architecture,
        seed: u64,
        device: &Device,
        parts: &Parts,
    ) -> Result<Network> {
        threads::ensure_threads();
        let (h, i) = (arch.hidden_size(), arch.input_size());
        for (what, t, shape) in [
            ("W_rec", &parts.w_rec, [h, h]),
            ("W_rec_mask", &parts.rec_mask, [h, h]),
            ("W_rec_sign_matrix", &parts.rec_sign, [h, h]),
            ("W_inp", &parts.w_inp, [h, i]),
            ("W_inp_mask", &parts.inp_mask, [h, i]),
            ("W_inp_sign_matrix", &parts.inp_sign, [h, i]),
        ] {
            expect_dims(what, t, &shape, || format!("[{}, {}]", shape[0], shape[1]))?;
        }
        expect_dims("base_firing", &parts.base_firing, &[h], || format!("[{h}] ([H])"))?;
        let f32_on = |t: &Tensor| t.to_dtype(DTYPE)?.to_device(device)?.contiguous();
        let (rec_mask, rec_sign) = (f32_on(&parts.rec_mask)?, f32_on(&parts.rec_sign)?);
        let (inp_mask, inp_sign) = (f32_on(&parts.inp_mask)?, f32_on(&parts.inp_sign)?);
        let dale = arch.settings().dale;
        let rec_factor = factor(&rec_mask, &rec_sign, dale.recurrent)?;
        let inp_factor = factor(&inp_mask, &inp_sign, dale.input)?;
        let base_firing = f32_on(&parts.base_firing)?;
        let learn: Vec<bool> = arch
            .regions()
            .iter()
            .flat_map(|r| std::iter::repeat_n(r.learnable_bias, r.units))
            .collect();
        let bias_mode = if learn.iter().all(|&l| l) && !learn.is_empty() {
            BiasMode::Learned
        } else if learn.iter().any(|&l| l) {
            let learn_mask: Vec<f32> = learn.iter().map(|&l| if l { 1.0 } else { 0.0 }).collect();
            let learn_mask = Tensor::from_vec(learn_mask, h, device)?;
            let fixed = (learn_mask.affine(-1.0, 1.0)? * &base_firing)?;
            BiasMode::Mixed { learn: learn_mask, fixed }
        } else {
            BiasMode::Fixed(base_firing.clone())
        };
        Ok(Network {
            seed,
            device: device.clone(),
            w_rec: Var::from_tensor(&f32_on(&parts.w_rec)?)?,
            w_inp: Var::from_tensor(&f32_on(&parts.w_inp)?)?,
            rec_mask,
            rec_sign,
            inp_mask,
            inp_sign,
            rec_factor,
            inp_factor,
            bias: Var::from_tensor(&base_firing)?,
            bias_mode,
            init: per_unit(&arch, device, |r| r.init)?,
            arch,
        })
    }

    /// The architecture: regions with their offsets, connections, settings.
    #[must_use]
    pub fn architecture(&self) -> &Architecture {
        &self.arch
    }

    /// The seed the masks and initial weights were drawn with.
    #[must_use]
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The device the parameters live on.
    #[must_use]
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Size of the hidden state `H`.
    #[must_use]
    pub fn hidden_size(&self) -> usize {
        self.arch.hidden_size()
    }

    /// Size of the input `I`.
    #[must_use]
    pub fn input_size(&self) -> usize {
        self.arch.input_size()
    }

    /// Fails unless `arch` describes this network (same regions, connections and settings; the
    /// name, seed and spectral radius, which only shape initialization, are not compared). The
    /// message lists every difference.
    pub fn expect_architecture(&self, arch: &Architecture) -> Result<()> {
        let diffs = compat::differences(&self.arch, arch);
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(Error::Architecture(format!(
                "the network `{}` is not a `{}`: {}",
                self.arch.name(),
                arch.name(),
                diffs.join("; ")
            )))
        }
    }

    /// The raw recurrent weights `W_rec` `[H, H]` (trainable).
    #[must_use]
    pub fn w_rec(&self) -> &Var {
        &self.w_rec
    }

    /// The raw input weights `W_inp` `[H, I]` (trainable).
    #[must_use]
    pub fn w_inp(&self) -> &Var {
        &self.w_inp
    }

    /// The bias variable `[H]`: every unit's tonic input. Entries of regions without
    /// `learnable_bias` never reach the dynamics through it (see [`Network::bias`]).
    #[must_use]
    pub fn bias_var(&self) -> &Var {
        &self.bias
    }

    /// The mask of a weight matrix (`[H, H]` or `[H, I]`, 0/1, fixed).
    #[must_use]
    pub fn mask(&self, matrix: Matrix) -> &Tensor {
        match matrix {
            Matrix::Recurrent => &self.rec_mask,
            Matrix::Input => &self.inp_mask,
        }
    }

    /// The sign matrix of a weight matrix: sign(source) * mask (fixed).
    #[must_use]
    pub fn sign_matrix(&self, matrix: Matrix) -> &Tensor {
        match matrix {
            Matrix::Recurrent => &self.rec_sign,
            Matrix::Input => &self.inp_sign,
        }
    }

    /// Every learnable quantity exactly once, named as in checkpoints: `W_rec`, `W_inp` (when the
    /// network has inputs) and `base_firing` (when some region has `learnable_bias`).
    #[must_use]
    pub fn trainable_vars(&self) -> Vec<(String, Var)> {
        let mut vars = vec![("W_rec".to_owned(), self.w_rec.clone())];
        if self.input_size() > 0 {
            vars.push(("W_inp".to_owned(), self.w_inp.clone()));
        }
        if !matches!(self.bias_mode, BiasMode::Fixed(_)) {
            vars.push(("base_firing".to_owned(), self.bias.clone()));
        }
        vars
    }

    /// The effective recurrent matrix `[H, H]`: `M * |W| * S` under Dale's law, else `W * M`.
    pub fn w_rec_eff(&self) -> Result<Tensor> {
        effective(self.w_rec.as_tensor(), &self.rec_factor, self.arch.settings().dale.recurrent)
    }

    /// The effective input matrix `[H, I]`.
    pub fn w_inp_eff(&self) -> Result<Tensor> {
        effective(self.w_inp.as_tensor(), &self.inp_factor, self.arch.settings().dale.input)
    }

    /// The effective tonic input `b` `[H]`: the bias variable for regions with
    /// `learnable_bias`, the declared `base_firing` for the others.
    pub fn bias(&self) -> Result<Tensor> {
        Ok(match &self.bias_mode {
            BiasMode::Fixed(b) => b.clone(),
            BiasMode::Learned => self.bias.as_tensor().clone(),
            BiasMode::Mixed { learn, fixed } => ((self.bias.as_tensor() * learn)? + fixed)?,
        })
    }

    /// The default initial pre-activation `[batch, H]`: every unit's `init`, repeated.
    pub fn initial_state(&self, batch: usize) -> Result<Tensor> {
        Ok(self.init.unsqueeze(0)?.broadcast_as((batch, self.hidden_size()))?.contiguous()?)
    }

    /// Replaces the raw recurrent weights (`[H, H]`, any float dtype, same device).
    pub fn set_w_rec(&self, w: &Tensor) -> Result<()> {
        let h = self.hidden_size();
        self.set_var(&self.w_rec, "W_rec", w, &[h, h])
    }

    /// Replaces the raw input weights (`[H, I]`).
    pub fn set_w_inp(&self, w: &Tensor) -> Result<()> {
        let (h, i) = (self.hidden_size(), self.input_size());
        self.set_var(&self.w_inp, "W_inp", w, &[h, i])
    }

    /// Replaces the tonic inputs `[H]`. Entries of regions without `learnable_bias` must equal
    /// their declared `base_firing` (those are part of the architecture, not parameters).
    pub fn set_base_firing(&self, b: &Tensor) -> Result<()> {
        self.check_base_firing(b)?;
        let h = self.hidden_size();
        self.set_var(&self.bias, "base_firing", b, &[h])
    }

    /// Fails unless `b` is `[H]` and holds the declared `base_firing` of every region without
    /// `learnable_bias`.
    #[allow(clippy::float_cmp, reason = "declared values must hold exactly, as f32")]
    pub(crate) fn check_base_firing(&self, b: &Tensor) -> Result<()> {
        let h = self.hidden_size();
        expect_dims("base_firing", b, &[h], || format!("[{h}] ([H])"))?;
        let values = b.to_dtype(DTYPE)?.to_vec1::<f32>()?;
        for r in self.arch.regions().iter().filter(|r| !r.learnable_bias) {
            let declared = r.base_firing as f32;
            if let Some(v) = values[r.range()].iter().find(|&&v| v != declared) {
                return Err(Error::Invalid(format!(
                    "base_firing of region `{}` is fixed at {declared} (it has no learnable_bias), got {v}",
                    r.name
                )));
            }
        }
        Ok(())
    }

    fn set_var(&self, var: &Var, what: &str, value: &Tensor, shape: &[usize]) -> Result<()> {
        expect_dims(what, value, shape, || format!("{shape:?}"))?;
        self.expect_device(what, value)?;
        // A copy, so that a tensor derived from the variable itself can be written back.
        var.set(&value.to_dtype(DTYPE)?.copy()?)?;
        Ok(())
    }

    /// Replaces masks and sign matrices (checked against the architecture by the caller).
    pub(crate) fn replace_masks(
        &mut self,
        rec: (Tensor, Tensor),
        inp: (Tensor, Tensor),
    ) -> Result<()> {
        let dale = self.arch.settings().dale;
        let on = |t: Tensor| -> Result<Tensor> {
            Ok(t.to_dtype(DTYPE)?.to_device(&self.device)?.contiguous()?)
        };
        let (rec_mask, rec_sign, inp_mask, inp_sign) =
            (on(rec.0)?, on(rec.1)?, on(inp.0)?, on(inp.1)?);
        self.rec_factor = factor(&rec_mask, &rec_sign, dale.recurrent)?;
        self.inp_factor = factor(&inp_mask, &inp_sign, dale.input)?;
        (self.rec_mask, self.rec_sign, self.inp_mask, self.inp_sign) =
            (rec_mask, rec_sign, inp_mask, inp_sign);
        Ok(())
    }

    /// Multiplies the raw recurrent weights so that the effective recurrent matrix has spectral
    /// radius `rho` (largest eigenvalue modulus, computed in `f64`). Fails when the effective
    /// matrix has no nonzero eigenvalue (for example a purely feedforward chain of regions).
    pub fn scale_to_spectral_radius(&self, rho: f64) -> Result<()> {
        if !(rho.is_finite() && rho > 0.0) {
            return Err(Error::Invalid(format!(
                "spectral radius must be positive and finite, got {rho}"
            )));
        }
        let current = linalg::spectral_radius(&self.w_rec_eff()?)?;
        if !(current.is_finite() && current > 0.0) {
            return Err(Error::Invalid(format!(
                "cannot scale `{}` to spectral radius {rho}: its effective recurrent matrix has spectral radius {current} (no recurrent loop?)",
                self.arch.name()
            )));
        }
        // |c W| = c |W| for c > 0, so scaling raw weights scales the effective matrix either way.
        let scaled = self.w_rec.as_tensor().affine(rho / current, 0.0)?;
        self.w_rec.set(&scaled)?;
        Ok(())
    }

    /// One step of the dynamics from `state` (`x` for leaky, `h` for Elman; `[B, H]`) with input
    /// `u` `[B, I]`, without noise or stimulus: returns the next state. The same engine as
    /// [`Network::forward`] (a sequence of one step); for fixed points and linearizations.
    /// Differentiable with respect to `state`.
    pub fn step(&self, state: &Tensor, input: &Tensor) -> Result<Tensor> {
        let (h, i) = (self.hidden_size(), self.input_size());
        let state = self.prepare("state", state)?;
        let b = match state.dims() {
            [b, n] if *n == h => *b,
            _ => return Err(shape_error("state", &state, format!("[B, {h}]"))),
        };
        let input = self.prepare("input", input)?;
        expect_dims("input", &input, &[b, i], || format!("[{b}, {i}] ([B, I])"))?;
        // A sequence of one step through `forward` itself: the same kernel, so the same
        // roundings as a step of a longer run.
        let s = self.arch.settings();
        let options = match s.dynamics {
            Dynamics::Leaky { .. } => Forward::new().x0(state),
            Dynamics::Elman => Forward::new().h0(state),
        };
        let step_dim = usize::from(s.batch_first);
        let next = self.forward(&input.unsqueeze(step_dim)?, &options)?;
        Ok(next.x.unwrap_or(next.h).squeeze(step_dim)?)
    }

    /// The connected blocks of `W_rec` (destination rows, source columns), one per recurrent
    /// connection.
    pub(crate) fn blocks(&self) -> Vec<Block> {
        let regions = self.arch.regions();
        self.arch
            .connections()
            .iter()
            .filter_map(|c| match c.src {
                mrnn_ir::Source::Recurrent(s) => {
                    Some(Block { rows: regions[c.dst].range(), cols: regions[s].range() })
                }
                mrnn_ir::Source::Input(_) => None,
            })
            .collect()
    }

    /// Everything that enters a step besides the recurrent input, for all steps at once
    /// (`[T, B, H]`): `W_inp_eff (u_t + e_inp) + b + e_hid + s_t`. One product for the whole
    /// input sequence instead of one per step.
    /// The layout is the input's (`[T, B, ..]` or `[B, T, ..]`); noise and stimulus must share it.
    fn drive(&self, u: &Tensor, noise: Option<&Draws>, stim: Option<&Tensor>) -> Result<Tensor> {
        let (t, b, i) = u.dims3()?;
        let h = self.hidden_size();
        let bias = self.bias()?;
        let mut drive = if i > 0 {
            let u = match noise.and_then(|n| n.input.as_ref()) {
                Some(e) => (u + e)?,
                None => u.clone(),
            };
            crate::engine::project(&u, &self.w_inp_eff()?, &bias)?
        } else {
            let zeros = Tensor::zeros((t, b, h), DTYPE, &self.device)?;
            crate::engine::add_bias(&zeros, &bias)?
        };
        if let Some(n) = noise {
            drive = (drive + &n.hidden)?;
        }
        if let Some(s) = stim {
            drive = (drive + s)?;
        }
        Ok(drive)
    }

    /// Runs the network on `input` (`[B, T, I]` when batch first, else `[T, B, I]`): returns
    /// `x_1..x_T` (leaky) and `h_1..h_T` in the same layout. Shapes are checked first; a wrong
    /// one is an [`Error::Shape`] naming the tensor and the shape expected.
    ///
    /// Effective weights are computed once per call, the input projection of all steps is one
    /// product, and the time loop runs in the recurrence engine ([`crate::engine`]), whose own
    /// backward pass is linear in `T`.
    ///
    /// Values are not checked: a NaN or an infinity in the input, `x0`, `h0`, `stim` or the
    /// weights propagates as IEEE arithmetic takes it (the same on every device and
    /// instruction set, dense or by blocks) and comes back in the trajectory, never clamped
    /// away. Check what should be finite with [`crate::finite::non_finite`] (`mrnn simulate` refuses
    /// non-finite inputs, initial states, stimuli and weights).
    pub fn forward(&self, input: &Tensor, options: &Forward) -> Result<Trajectory> {
        let settings = *self.arch.settings();
        let (h, i) = (self.hidden_size(), self.input_size());
        let layout = if settings.batch_first { "batch first" } else { "time first" };
        let input = self.prepare("input", input)?;
        let (b, t) = match (input.dims(), settings.batch_first) {
            ([b, t, n], true) if *n == i => (*b, *t),
            ([t, b, n], false) if *n == i => (*b, *t),
            _ => {
                let dims = if settings.batch_first {
                    format!("[B, T, {i}]")
                } else {
                    format!("[T, B, {i}]")
                };
                return Err(shape_error("input", &input, format!("{dims} ({layout})")));
            }
        };
        if b == 0 {
            return Err(shape_error(
                "input",
                &input,
                format!("a batch of at least one sequence ({layout})"),
            ));
        }
        let batch_words =
            |name: &str| format!("[{b}, {h}] ([B, {name}] with B = {b} from the input)");
        let x0 = match &options.x0 {
            Some(x0) => {
                let x0 = self.prepare("x0", x0)?;
                expect_dims("x0", &x0, &[b, h], || batch_words("H"))?;
                x0
            }
            None => self.initial_state(b)?,
        };
        let h0 = match &options.h0 {
            Some(h0) => {
                let h0 = self.prepare("h0", h0)?;
                expect_dims("h0", &h0, &[b, h], || batch_words("H"))?;
                h0
            }
            None => activation::apply(settings.activation, &x0)?,
        };
        let stim = match &options.stim {
            Some(s) => {
                let s = self.prepare("stim", s)?;
                let want = if settings.batch_first { [b, t, h] } else { [t, b, h] };
                expect_dims("stim", &s, &want, || {
                    format!("{want:?} (same layout as the input, {layout}, with H = {h} features)")
                })?;
                Some(s)
            }
            None => None,
        };
        let w_rec_eff = match &options.w_rec_eff {
            Some(w) => {
                let w = self.prepare("w_rec_eff", w)?;
                expect_dims("w_rec_eff", &w, &[h, h], || format!("[{h}, {h}] ([H, H])"))?;
                w
            }
            None => self.w_rec_eff()?,
        };
        let leaky = matches!(settings.dynamics, Dynamics::Leaky { .. });
        if t == 0 {
            let empty = if settings.batch_first { (b, 0, h) } else { (0, b, h) };
            let empty = Tensor::zeros(empty, DTYPE, &self.device)?;
            let x = (leaky && !options.rates_only).then(|| empty.clone());
            return Ok(Trajectory { x, h: empty });
        }
        let noise = options
            .noise
            .map(|seed| Draws::new(seed, &settings, (t, b, h, i), &self.device))
            .transpose()?;
        // Noise is drawn time major (the same draws whatever the layout); everything else is
        // used in the caller's layout, so no sequence is ever transposed.
        let noise = match noise {
            Some(n) if settings.batch_first => Some(n.batch_first()?),
            other => other,
        };
        let mut recurrence = Recurrence::new(settings.dynamics, settings.activation);
        if options.rates_only {
            recurrence = recurrence.without_states();
        }
        // The compiler's block structure holds for the network's own matrix, not for a
        // replacement passed by the caller (a lesion may put weights anywhere).
        if options.w_rec_eff.is_none() && self.arch.product() == mrnn_ir::Product::Blocks {
            recurrence = recurrence.with_blocks(self.blocks());
        }
        // Nothing but the input projection and the bias drives the steps: the engine may run
        // the projection inside its loop (the drive sequence is then never written).
        if noise.is_none() && stim.is_none() && (options.h0.is_none() || !leaky) && i > 0 {
            let init = if leaky { &x0 } else { &h0 };
            let projection = (&input, &self.w_inp_eff()?, &self.bias()?);
            let out =
                recurrence.run_projected(&w_rec_eff, projection, init, settings.batch_first)?;
            return Ok(Trajectory { x: out.x, h: out.h });
        }
        let drive = self.drive(&input, noise.as_ref(), stim.as_ref())?;
        let h0_given = options.h0.is_some();
        Self::run_on_drive(&recurrence, &w_rec_eff, drive, (&x0, &h0, h0_given), &settings)
    }

    /// The recurrence on a drive computed first, from `x_0` (leaky) or `h_0` (Elman).
    fn run_on_drive(
        recurrence: &Recurrence,
        w_rec_eff: &Tensor,
        mut drive: Tensor,
        (x0, h0, h0_given): (&Tensor, &Tensor, bool),
        settings: &mrnn_ir::Settings,
    ) -> Result<Trajectory> {
        let step_dim = usize::from(settings.batch_first);
        if let Dynamics::Leaky { .. } = settings.dynamics {
            let alpha = settings.dynamics.alpha();
            // The engine starts from h_0 = phi(x_0); with another h_0 the first step runs here,
            // x_1 = (1 - a) x_0 + a (W h_0 + d_0), and the engine goes on from x_1. (Folding
            // W (h_0 - phi(x_0)) into d_0 instead gave the same numbers, but not the same NaN:
            // one NaN in x_0 made all of x_1 NaN through W, where it is one unit's.)
            if h0_given {
                let t = drive.dim(step_dim)?;
                let d0 = drive.narrow(step_dim, 0, 1)?.squeeze(step_dim)?;
                let recurrent = h0.matmul(&w_rec_eff.t()?)?;
                let x1 = ((x0 * (1.0 - alpha))? + ((recurrent + d0)? * alpha)?)?;
                let h1 = activation::apply(settings.activation, &x1)?;
                let (x1, h1) = (x1.unsqueeze(step_dim)?, h1.unsqueeze(step_dim)?);
                if t == 1 {
                    return Ok(Trajectory { x: recurrence.keeps_states().then_some(x1), h: h1 });
                }
                drive = drive.narrow(step_dim, 1, t - 1)?;
                let rest = recurrence.run(
                    w_rec_eff,
                    &drive,
                    &x1.squeeze(step_dim)?,
                    settings.batch_first,
                )?;
                let x = match rest.x {
                    Some(x) => Some(Tensor::cat(&[&x1, &x], step_dim)?),
                    None => None,
                };
                let h = Tensor::cat(&[&h1, &rest.h], step_dim)?;
                return Ok(Trajectory { x, h });
            }
            let out = recurrence.run(w_rec_eff, &drive, x0, settings.batch_first)?;
            Ok(Trajectory { x: out.x, h: out.h })
        } else {
            let out = recurrence.run(w_rec_eff, &drive, h0, settings.batch_first)?;
            Ok(Trajectory { x: None, h: out.h })
        }
    }

    /// Converts a user tensor to the network's dtype after checking its device.
    fn prepare(&self, what: &str, t: &Tensor) -> Result<Tensor> {
        self.expect_device(what, t)?;
        Ok(t.to_dtype(DTYPE)?)
    }

    pub(crate) fn expect_device(&self, what: &str, t: &Tensor) -> Result<()> {
        if t.device().same_device(&self.device) {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "{what} is on {:?}, but the network is on {:?}",
                t.device().location(),
                self.device.location()
            )))
        }
    }
}

impl fmt::Debug for Network {
    // The tensors would print as shapes only; a summary of what the network is says more.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("architecture", &self.arch.to_string())
            .field("settings", self.arch.settings())
            .field("seed", &self.seed)
            .field("device", &self.device.location())
            .field(
                "trainable",
                &self.trainable_vars().iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The multiplier of the raw weights: `M * S` under Dale's law (applied to `|W|`), else `M`.
fn factor(mask: &Tensor, sign: &Tensor, constrained: bool) -> Result<Tensor> {
    Ok(if constrained { (mask * sign)? } else { mask.clone() })
}

fn effective(w: &Tensor, factor: &Tensor, constrained: bool) -> Result<Tensor> {
    crate::engine::effective_weights(w, factor, constrained)
}

/// A per-unit `[H]` vector of a region property.
fn per_unit(
    arch: &Architecture,
    device: &Device,
    value: impl Fn(&mrnn_ir::Region) -> f64,
) -> Result<Tensor> {
    let v: Vec<f32> =
        arch.regions().iter().flat_map(|r| std::iter::repeat_n(value(r) as f32, r.units)).collect();
    Ok(Tensor::from_vec(v, arch.hidden_size(), device)?)
}

pub(crate) fn shape_error(what: &str, t: &Tensor, expected: String) -> Error {
    Error::Shape { what: what.to_owned(), expected, got: t.dims().to_vec() }
}

/// Fails with [`Error::Shape`] unless `t` has exactly the dims `shape`.
pub(crate) fn expect_dims(
    what: &str,
    t: &Tensor,
    shape: &[usize],
    words: impl FnOnce() -> String,
) -> Result<()> {
    if t.dims() == shape { Ok(()) } else { Err(shape_error(what, t, words())) }
}
