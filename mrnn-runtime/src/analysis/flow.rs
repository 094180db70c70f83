//! Flow fields: the velocity `F(s) - s` of some regions' state on a grid in the plane of their
//! two leading principal components (fitted on trajectories), one step of the full network with
//! the other regions held static (at their mean, at a given state, or at the nearest trajectory
//! sample); and the linearized flow `(J - I)(s - s*)` around a fixed point on the same grid.

use std::path::Path;

use candle_core::{DType, Tensor};
use serde_json::{Value, json};

use super::fixed_points::check_finite;
use super::jacobian::{StateKind, StepMap, select, subset_units};
use super::pca::{Pca, rows_f64};
use crate::{Error, Network, Result, memory};

/// Where the regions outside the plotted subset are while the subset moves on the grid.
#[derive(Clone, Debug, PartialEq)]
pub enum Others {
    /// Their mean over the trajectories.
    Mean,
    /// Their state in the trajectory sample nearest to the grid point (in the PCA plane).
    Nearest,
    /// Their part of this full state (`H` values).
    State(Vec<f64>),
}

/// Settings of a flow field.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowOptions {
    /// The regions whose flow is drawn (names or parents; all regions when empty).
    pub regions: Vec<String>,
    /// Grid points per axis.
    pub grid: usize,
    /// Padding of the grid beyond the trajectories' extent, as a fraction of that extent.
    pub margin: f64,
    /// Where the other regions are.
    pub others: Others,
    /// The constant input (`None`: zero input).
    pub input: Option<Vec<f64>>,
}

impl FlowOptions {
    /// Checks the settings for a network of `h` units before anything is computed: a grid of
    /// at least 2 points per axis whose states fit in memory, a finite non-negative margin, a
    /// finite input, and a finite full state for [`Others::State`].
    pub fn validate(&self, h: usize) -> Result<()> {
        if self.grid < 2 {
            return Err(Error::Invalid(format!(
                "a flow grid needs at least 2 points per axis, got {}",
                self.grid
            )));
        }
        if !(self.margin.is_finite() && self.margin >= 0.0) {
            return Err(Error::Invalid(format!(
                "margin must be zero or positive, got {}",
                self.margin
            )));
        }
        if let Some(input) = &self.input {
            check_finite("the constant input", input)?;
        }
        if let Others::State(s) = &self.others {
            check_finite("the state of the other regions", s)?;
        }
        // Every grid point is a full state: the states, the next states, and their copies as
        // rows (four [G, H] arrays of f64).
        let points = self.grid.saturating_mul(self.grid);
        memory::ensure_fits(
            format!("a flow field on a {0}x{0} grid of {h} units", self.grid),
            memory::f64_bytes(&[points, h]).saturating_mul(4),
        )
    }
}

impl Default for FlowOptions {
    fn default() -> Self {
        FlowOptions {
            regions: Vec::new(),
            grid: 21,
            margin: 0.15,
            others: Others::Mean,
            input: None,
        }
    }
}

/// A flow field on a grid in a PCA plane. Grid point `(i, j)` (`i` along the first axis, `j`
/// along the second) is entry `j * xs.len() + i` of the per-point vectors.
#[derive(Clone, Debug)]
pub struct FlowField {
    /// The state space (`x` or `h`).
    pub kind: StateKind,
    /// The regions of the field.
    pub regions: Vec<String>,
    /// Their hidden units, in declaration order.
    pub units: Vec<usize>,
    /// The PCA (2 components) of the regions' states on the trajectories.
    pub pca: Pca,
    /// Grid coordinates along the first principal axis.
    pub xs: Vec<f64>,
    /// Grid coordinates along the second principal axis.
    pub ys: Vec<f64>,
    /// `F(s) - s` of the regions' units, projected on the two axes.
    pub velocity: Vec<[f64; 2]>,
    /// The length of the projected velocity.
    pub speed: Vec<f64>,
    /// The length of the regions' full velocity (all their units, not only the plane's part).
    pub full_speed: Vec<f64>,
    /// The trajectories, projected (one list of points per trajectory).
    pub trajectories: Vec<Vec<[f64; 2]>>,
}

impl FlowField {
    /// The grid points in PCA coordinates, in the order of the per-point vectors.
    #[must_use]
    pub fn points(&self) -> Vec<[f64; 2]> {
        self.ys.iter().flat_map(|&y| self.xs.iter().map(move |&x| [x, y])).collect()
    }

    /// The field as JSON (grid axes, velocity, speeds, PCA; trajectories left out).
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({
            "state": self.kind.symbol(),
            "regions": self.regions,
            "units": self.units,
            "xs": self.xs,
            "ys": self.ys,
            "velocity": self.velocity,
            "speed": self.speed,
            "full_speed": self.full_speed,
            "pca": self.pca.to_json(),
        })
    }

    /// Writes `xs` `[nx]`, `ys` `[ny]`, `velocity` `[ny, nx, 2]`, `speed` and `full_speed`
    /// `[ny, nx]`, `components` `[2, S]` and `mean` `[S]` as `f64` safetensors.
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        let cpu = candle_core::Device::Cpu;
        let (nx, ny, s) = (self.xs.len(), self.ys.len(), self.units.len());
        let tensors = vec![
            ("xs".to_owned(), Tensor::from_slice(&self.xs, nx, &cpu)?),
            ("ys".to_owned(), Tensor::from_slice(&self.ys, ny, &cpu)?),
            (
                "velocity".to_owned(),
                Tensor::from_vec(
                    self.velocity.iter().flatten().copied().collect(),
                    (ny, nx, 2),
                    &cpu,
                )?,
            ),
            ("speed".to_owned(), Tensor::from_slice(&self.speed, (ny, nx), &cpu)?),
            ("full_speed".to_owned(), Tensor::from_slice(&self.full_speed, (ny, nx), &cpu)?),
            (
                "components".to_owned(),
                Tensor::from_vec(self.pca.components.concat(), (2, s), &cpu)?,
            ),
            ("mean".to_owned(), Tensor::from_slice(&self.pca.mean, s, &cpu)?),
        ];
        crate::checkpoint::write_safetensors(path, tensors, None)
    }

    /// The linearized flow `(J_SS - I)(s - s*_S)` around `fixed_point` (a full state `[H]`),
    /// on this field's grid and plane: `J_SS` is the Jacobian block of this field's regions,
    /// the other regions held at the fixed point.
    pub fn linearized(
        &self,
        net: &Network,
        fixed_point: &Tensor,
        input: Option<&[f64]>,
    ) -> Result<FlowField> {
        let zeros = vec![0.0; net.input_size()];
        let map = StepMap::new(net, input.unwrap_or(&zeros))?;
        let h = net.hidden_size();
        if fixed_point.dims() != [h] {
            return Err(Error::Shape {
                what: "fixed point".into(),
                expected: format!("[{h}] (H = {h})"),
                got: fixed_point.dims().to_vec(),
            });
        }
        check_finite("the fixed point", &fixed_point.to_dtype(DType::F64)?.to_vec1::<f64>()?)?;
        let jacobian = map.jacobian(fixed_point)?;
        let j_ss: Vec<Vec<f64>> =
            select(&select(&jacobian, &self.units, 0)?, &self.units, 1)?.to_vec2()?;
        let star: Vec<f64> = fixed_point.to_dtype(DType::F64)?.to_vec1()?;
        let star_s: Vec<f64> = self.units.iter().map(|&u| star[u]).collect();
        let mut field = self.clone();
        field.velocity.clear();
        field.speed.clear();
        field.full_speed.clear();
        for p in self.points() {
            let s = self.pca.reconstruct(&p);
            let delta: Vec<f64> = s.iter().zip(&star_s).map(|(a, b)| a - b).collect();
            let v: Vec<f64> = j_ss
                .iter()
                .zip(&delta)
                .map(|(row, d)| row.iter().zip(&delta).map(|(j, e)| j * e).sum::<f64>() - d)
                .collect();
            field.push(&v);
        }
        Ok(field)
    }

    fn push(&mut self, v: &[f64]) {
        let projected = self.pca.project_vector(v);
        self.speed.push(projected[0].hypot(projected[1]));
        self.velocity.push([projected[0], projected[1]]);
        self.full_speed.push(v.iter().map(|a| a * a).sum::<f64>().sqrt());
    }
}

impl Pca {
    /// The components of a displacement `[D]` along the axes (no mean subtracted).
    #[must_use]
    pub fn project_vector(&self, v: &[f64]) -> Vec<f64> {
        self.components.iter().map(|c| c.iter().zip(v).map(|(a, b)| a * b).sum()).collect()
    }
}

/// The flow field of `net` from trajectories `states` (`[B, T, H]`, in the space of
/// [`StateKind::of`], e.g. from [`super::state_trajectory`]).
pub fn flow_field(net: &Network, states: &Tensor, options: &FlowOptions) -> Result<FlowField> {
    let h = net.hidden_size();
    options.validate(h)?;
    let (b, t) = match states.dims() {
        [b, t, n] if *n == h && *b * *t > 0 => (*b, *t),
        _ => {
            return Err(Error::Shape {
                what: "trajectories".into(),
                expected: format!("[B, T, {h}] with B, T > 0 (H = {h})"),
                got: states.dims().to_vec(),
            });
        }
    };
    let names: Vec<&str> = options.regions.iter().map(String::as_str).collect();
    let (regions, units) = subset_units(net, &names)?;
    if units.len() < 2 {
        return Err(Error::Invalid(format!(
            "a flow field needs at least 2 units to draw a plane; {} has {}",
            regions.join(", "),
            units.len()
        )));
    }
    let zeros = vec![0.0; net.input_size()];
    let map = StepMap::new(net, options.input.as_deref().unwrap_or(&zeros))?;
    let rows = rows_f64("trajectories", states)?;
    if let Some((k, _)) = rows.iter().enumerate().find(|(_, r)| r.iter().any(|v| !v.is_finite())) {
        return Err(Error::Invalid(format!(
            "the trajectories have NaN or infinite states (trial {}, step {}): the network \
             diverged on its input, and a flow field cannot be drawn around them",
            k / t,
            k % t
        )));
    }
    let sub: Vec<Vec<f64>> = rows.iter().map(|r| units.iter().map(|&u| r[u]).collect()).collect();
    let pca = Pca::fit_rows(&sub, 2)?;
    let projected: Vec<Vec<f64>> = sub.iter().map(|r| pca.project(r)).collect();
    let trajectories: Vec<Vec<[f64; 2]>> = (0..b)
        .map(|k| projected[k * t..(k + 1) * t].iter().map(|p| [p[0], p[1]]).collect())
        .collect();
    let axis = |dim: usize| -> Vec<f64> {
        let (lo, hi) = projected.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p[dim]), hi.max(p[dim]))
        });
        let pad = if hi > lo { options.margin * (hi - lo) } else { 0.5 };
        let (lo, hi) = (lo - pad, hi + pad);
        (0..options.grid).map(|i| lo + (hi - lo) * i as f64 / (options.grid - 1) as f64).collect()
    };
    let (xs, ys) = (axis(0), axis(1));
    let base: Option<Vec<f64>> = match &options.others {
        Others::Mean => Some(
            (0..h).map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / rows.len() as f64).collect(),
        ),
        Others::State(s) if s.len() == h => Some(s.clone()),
        Others::State(s) => {
            return Err(Error::Shape {
                what: "state of the other regions".into(),
                expected: format!("[{h}] (a full state, H = {h})"),
                got: vec![s.len()],
            });
        }
        Others::Nearest => None,
    };
    let mut field = FlowField {
        kind: map.kind(),
        regions,
        units,
        pca,
        xs,
        ys,
        velocity: Vec::new(),
        speed: Vec::new(),
        full_speed: Vec::new(),
        trajectories,
    };
    let points = field.points();
    let full = grid_states(&field, &points, base.as_deref(), &rows, &projected);
    let full = Tensor::from_vec(full, (points.len(), h), map.device())?;
    let next: Vec<Vec<f64>> = map.apply(&full)?.to_vec2()?;
    let full: Vec<Vec<f64>> = full.to_vec2()?;
    for (f, s) in next.iter().zip(&full) {
        let v: Vec<f64> = field.units.iter().map(|&u| f[u] - s[u]).collect();
        field.push(&v);
    }
    Ok(field)
}

/// The full states `[G, H]` (flattened) of the grid points: the field's units on the PCA plane,
/// the other units from `base`, or from the trajectory sample nearest in the plane.
fn grid_states(
    field: &FlowField,
    points: &[[f64; 2]],
    base: Option<&[f64]>,
    rows: &[Vec<f64>],
    projected: &[Vec<f64>],
) -> Vec<f64> {
    let h = rows.first().map_or(0, Vec::len);
    let mut full = Vec::with_capacity(points.len() * h);
    for p in points {
        let mut state = match base {
            Some(s) => s.to_vec(),
            None => {
                let nearest = (0..projected.len())
                    .min_by(|&a, &c| {
                        let d = |q: &[f64]| (q[0] - p[0]).powi(2) + (q[1] - p[1]).powi(2);
                        d(&projected[a]).total_cmp(&d(&projected[c]))
                    })
                    .unwrap_or(0);
                rows[nearest].clone()
            }
        };
        for (&u, v) in field.units.iter().zip(field.pca.reconstruct(p)) {
            state[u] = v;
        }
        full.extend(state);
    }
    full
}
