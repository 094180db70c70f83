//! Currents: the input each recurrent region receives from each recurrent region and from each
//! input region over a trajectory, `W_eff[dst, src] a_src(t)` (the source's rates or input),
//! summarized as region-by-source matrices and kept as time courses.

use std::path::Path;

use candle_core::{DType, Tensor};
use mrnn_ir::Source;
use serde_json::{Value, json};

use crate::{Error, Forward, Network, Result, activation};

/// A source of current: a recurrent region or an input region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentSource {
    /// The region's name.
    pub name: String,
    /// Whether it is an input region.
    pub input: bool,
}

/// The currents over a trajectory. Matrices are indexed `[target][source]`.
#[derive(Clone, Debug)]
pub struct Currents {
    /// The receiving recurrent regions.
    pub targets: Vec<String>,
    /// Every recurrent region, then every input region (when an input was given).
    pub sources: Vec<CurrentSource>,
    /// Whether the architecture connects the source to the target (unconnected pairs carry
    /// zero current).
    pub connected: Vec<Vec<bool>>,
    /// The signed current, averaged over time, trials and the target's units.
    pub mean: Vec<Vec<f64>>,
    /// The absolute current, averaged the same way.
    pub mean_abs: Vec<Vec<f64>>,
    /// The current into each unit of the target over time (`[..., n_target]`, the leading
    /// dimensions of the activity given), for connected pairs.
    pub time_courses: Vec<Vec<Option<Tensor>>>,
}

impl Currents {
    /// The summary as JSON: `targets`, `sources` (with `input` flags), `connected`, `mean`,
    /// `mean_abs`.
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({
            "targets": self.targets,
            "sources": self.sources.iter().map(|s| json!({"name": s.name, "input": s.input})).collect::<Vec<_>>(),
            "connected": self.connected,
            "mean": self.mean,
            "mean_abs": self.mean_abs,
        })
    }

    /// Writes the time course of every connected pair as `"{target}<-{source}"`, and the
    /// matrices as `mean` and `mean_abs` (`[targets, sources]`), as `f32` safetensors.
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        let cpu = candle_core::Device::Cpu;
        let (r, c) = (self.targets.len(), self.sources.len());
        let matrix = |m: &Vec<Vec<f64>>| -> Result<Tensor> {
            let flat: Vec<f32> = m.iter().flatten().map(|&v| v as f32).collect();
            Ok(Tensor::from_vec(flat, (r, c), &cpu)?)
        };
        let mut tensors = vec![
            ("mean".to_owned(), matrix(&self.mean)?),
            ("mean_abs".to_owned(), matrix(&self.mean_abs)?),
        ];
        for (target, row) in self.targets.iter().zip(&self.time_courses) {
            for (source, course) in self.sources.iter().zip(row) {
                if let Some(course) = course {
                    let course = course.to_device(&cpu)?.to_dtype(DType::F32)?.contiguous()?;
                    tensors.push((format!("{target}<-{}", source.name), course));
                }
            }
        }
        crate::checkpoint::write_safetensors(path, tensors, None)
    }
}

/// The currents into `targets` (recurrent region names or parents; all regions when empty)
/// from every recurrent region (`rates` `[..., H]`, the rates that enter each step) and from
/// every input region (`input` `[..., I]` with the same leading dimensions, when given). The
/// current at index `t` is what the rates and input at index `t` send.
pub fn currents(
    net: &Network,
    rates: &Tensor,
    input: Option<&Tensor>,
    targets: &[&str],
) -> Result<Currents> {
    let arch = net.architecture();
    let (h, i) = (net.hidden_size(), net.input_size());
    if rates.dims().last() != Some(&h) {
        return Err(Error::Shape {
            what: "rates".into(),
            expected: format!("[..., {h}] (H = {h} last)"),
            got: rates.dims().to_vec(),
        });
    }
    let lead = &rates.dims()[..rates.rank() - 1];
    if let Some(u) = input {
        let want: Vec<usize> = lead.iter().copied().chain([i]).collect();
        if u.dims() != want.as_slice() {
            return Err(Error::Shape {
                what: "input".into(),
                expected: format!("{want:?} (the rates' leading dimensions, then I = {i})"),
                got: u.dims().to_vec(),
            });
        }
    }
    // Targets: declared regions (parents expanded), each once, in the order asked.
    let mut target_ids: Vec<usize> = Vec::new();
    let names: Vec<&str> = if targets.is_empty() {
        arch.regions().iter().map(|r| r.name.as_ref()).collect()
    } else {
        targets.to_vec()
    };
    for name in names {
        let units = net.hidden_units(&[name])?;
        for (k, r) in arch.regions().iter().enumerate() {
            if units.contains(&r.offset) && !target_ids.contains(&k) {
                target_ids.push(k);
            }
        }
    }
    let mut sources: Vec<(CurrentSource, Source)> = arch
        .regions()
        .iter()
        .enumerate()
        .map(|(k, r)| {
            (CurrentSource { name: r.name.to_string(), input: false }, Source::Recurrent(k))
        })
        .collect();
    if input.is_some() {
        sources.extend(arch.inputs().iter().enumerate().map(|(k, r)| {
            (CurrentSource { name: r.name.to_string(), input: true }, Source::Input(k))
        }));
    }
    let rates = rates.detach().to_dtype(DType::F32)?;
    let flat_rates = rates.reshape(((), h))?;
    let flat_input =
        input.map(|u| u.detach().to_dtype(DType::F32)?.reshape(((), i))).transpose()?;
    let (mut connected, mut mean, mut mean_abs, mut courses) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for &k in &target_ids {
        let target = &arch.regions()[k];
        let (mut c_row, mut m_row, mut a_row, mut t_row) = (vec![], vec![], vec![], vec![]);
        for (source, src) in &sources {
            let linked = arch.connections().iter().any(|c| c.dst == k && c.src == *src);
            c_row.push(linked);
            if !linked {
                m_row.push(0.0);
                a_row.push(0.0);
                t_row.push(None);
                continue;
            }
            let block = net.projection(&target.name, &source.name)?.detach();
            let range = arch.source_range(*src);
            let activity = match src {
                Source::Recurrent(_) => flat_rates.narrow(1, range.start, range.len())?,
                Source::Input(_) => flat_input
                    .as_ref()
                    .ok_or_else(|| Error::Invalid("an input source without input".into()))?
                    .narrow(1, range.start, range.len())?,
            };
            let current = activity.matmul(&block.t()?)?;
            m_row.push(f64::from(current.mean_all()?.to_scalar::<f32>()?));
            a_row.push(f64::from(current.abs()?.mean_all()?.to_scalar::<f32>()?));
            let dims: Vec<usize> = lead.iter().copied().chain([target.units]).collect();
            t_row.push(Some(current.reshape(dims)?));
        }
        connected.push(c_row);
        mean.push(m_row);
        mean_abs.push(a_row);
        courses.push(t_row);
    }
    Ok(Currents {
        targets: target_ids.iter().map(|&k| arch.regions()[k].name.to_string()).collect(),
        sources: sources.into_iter().map(|(s, _)| s).collect(),
        connected,
        mean,
        mean_abs,
        time_courses: courses,
    })
}

/// Runs `net` on `input` (the network's layout) and returns the currents that drive each step:
/// step `t` receives `W h_t` (with `h_0` the initial rates) and `W_in u_t`, as in the
/// dynamics. Time courses are in the network's layout.
pub fn currents_of_run(
    net: &Network,
    input: &Tensor,
    options: &Forward,
    targets: &[&str],
) -> Result<Currents> {
    let out = net.forward(input, options)?;
    let settings = net.architecture().settings();
    let (time_dim, b) = if settings.batch_first { (1, input.dim(0)?) } else { (0, input.dim(1)?) };
    let steps = out.h.dim(time_dim)?;
    if steps == 0 {
        return Err(Error::Invalid("currents need an input of at least one step".into()));
    }
    let h0 = match (&options.h0, &options.x0) {
        (Some(h0), _) => h0.clone(),
        (None, Some(x0)) => activation::apply(settings.activation, x0)?,
        (None, None) => activation::apply(settings.activation, &net.initial_state(b)?)?,
    };
    let h0 = h0.to_dtype(out.h.dtype())?.unsqueeze(time_dim)?;
    let rates = if steps > 1 {
        Tensor::cat(&[&h0, &out.h.narrow(time_dim, 0, steps - 1)?], time_dim)?
    } else {
        h0
    };
    currents(net, &rates, Some(input), targets)
}
