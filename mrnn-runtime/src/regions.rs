//! Queries by region name: unit ranges, activity of some regions, blocks of the effective
//! weights, and the reassembly of partial states. Parent names (`alm` for `alm_exc` and
//! `alm_inh`) stand for their children in declaration order.

use std::ops::Range;

use candle_core::{D, Tensor};
use mrnn_ir::Source;

use crate::network::shape_error;
use crate::{Error, Network, Result};

impl Network {
    /// The recurrent regions a name stands for (indices into the architecture's regions): the
    /// region itself, or a parent's children in declaration order.
    fn resolve_recurrent(&self, name: &str) -> Result<Vec<usize>> {
        let regions = self.arch.regions();
        if let Some(k) = regions.iter().position(|r| r.name == name) {
            return Ok(vec![k]);
        }
        let children: Vec<usize> = regions
            .iter()
            .enumerate()
            .filter(|(_, r)| r.parent.as_deref() == Some(name))
            .map(|(k, _)| k)
            .collect();
        if children.is_empty() { Err(self.unknown(name, false)) } else { Ok(children) }
    }

    /// An [`Error::UnknownRegion`] listing the names that would have worked.
    fn unknown(&self, name: &str, with_inputs: bool) -> Error {
        let mut known: Vec<String> =
            self.arch.regions().iter().map(|r| format!("`{}`", r.name)).collect();
        let mut parents: Vec<String> = Vec::new();
        for p in self.arch.regions().iter().filter_map(|r| r.parent.as_deref()) {
            let p = format!("`{p}` (parent)");
            if !parents.contains(&p) {
                parents.push(p);
            }
        }
        known.extend(parents);
        if with_inputs {
            known.extend(self.arch.inputs().iter().map(|r| format!("`{}` (input)", r.name)));
        }
        Error::UnknownRegion { name: name.to_owned(), known: known.join(", ") }
    }

    /// The units `[start, end)` of a recurrent region in the hidden vector. A parent name works
    /// when its children are contiguous.
    ///
    /// ```
    /// # let json = r#"{"recurrent_regions": [{"name": "a", "num_units": 3, "sign": "pos"}, {"name": "b", "num_units": 2, "sign": "neg"}],
    /// #   "recurrent_connections": [{"src_region": "a", "dst_region": "b"}, {"src_region": "b", "dst_region": "a"}]}"#;
    /// # let arch = mrnn_ir::compile_json(json, "n.json").unwrap().architecture;
    /// let net = mrnn_runtime::Network::new(arch, &mrnn_runtime::Device::Cpu)?;
    /// assert_eq!(net.region_range("b")?, 3..5);
    /// assert!(net.region_range("c").is_err());
    /// # Ok::<(), mrnn_runtime::Error>(())
    /// ```
    pub fn region_range(&self, name: &str) -> Result<Range<usize>> {
        let regions = self.resolve_recurrent(name)?;
        let rs = self.arch.regions();
        let start = rs[regions[0]].offset;
        let mut end = start;
        for &k in &regions {
            if rs[k].offset != end {
                return Err(Error::Invalid(format!(
                    "the regions of `{name}` are not contiguous in the hidden vector; use `activity` to gather them"
                )));
            }
            end += rs[k].units;
        }
        Ok(start..end)
    }

    /// The units `[start, end)` of an input region in the input vector.
    pub fn input_range(&self, name: &str) -> Result<Range<usize>> {
        self.arch.input_region(name).map(mrnn_ir::InputRegion::range).ok_or_else(|| {
            let known = self
                .arch
                .inputs()
                .iter()
                .map(|r| format!("`{}`", r.name))
                .collect::<Vec<_>>()
                .join(", ");
            Error::UnknownRegion { name: name.to_owned(), known: format!("input regions: {known}") }
        })
    }

    /// The hidden units of the listed regions, in the order listed (parents expanded to their
    /// children in declaration order).
    pub fn hidden_units(&self, names: &[&str]) -> Result<Vec<usize>> {
        let mut units = Vec::new();
        for name in names {
            for k in self.resolve_recurrent(name)? {
                units.extend(self.arch.regions()[k].range());
            }
        }
        Ok(units)
    }

    /// The hidden units of the listed regions in declaration order, each once (for square
    /// blocks of the weights).
    fn declared_units(&self, names: &[&str]) -> Result<Vec<usize>> {
        let mut picked = vec![false; self.arch.regions().len()];
        for name in names {
            for k in self.resolve_recurrent(name)? {
                picked[k] = true;
            }
        }
        Ok(self
            .arch
            .regions()
            .iter()
            .zip(picked)
            .filter(|(_, p)| *p)
            .flat_map(|(r, _)| r.range())
            .collect())
    }

    /// The columns of `t` (`[..., H]`) of the listed regions, in the order listed.
    pub fn activity(&self, t: &Tensor, names: &[&str]) -> Result<Tensor> {
        let h = self.hidden_size();
        if t.dims().last() != Some(&h) {
            return Err(shape_error("activity tensor", t, format!("[..., {h}] (H = {h} last)")));
        }
        let units = self.hidden_units(names)?;
        select(t, &units, D::Minus1)
    }

    /// The square block of the effective recurrent matrix among the listed regions, rows and
    /// columns in declaration order.
    pub fn weight_subset(&self, names: &[&str]) -> Result<Tensor> {
        let units = self.declared_units(names)?;
        let w = self.w_rec_eff()?;
        let rows = select(&w, &units, 0)?;
        select(&rows, &units, 1)
    }

    /// The block of the effective weights from region `from` (recurrent, input, or a parent)
    /// into region `to` (recurrent or parent): rows of `to`, columns of `from`. Input sources
    /// read `W_inp_eff`.
    pub fn projection(&self, to: &str, from: &str) -> Result<Tensor> {
        let rows = self.hidden_units(&[to])?;
        let (w, cols) = if let Some(k) = self.arch.inputs().iter().position(|r| r.name == from) {
            (self.w_inp_eff()?, self.arch.source_range(Source::Input(k)).collect::<Vec<_>>())
        } else {
            let cols = self.hidden_units(&[from]).map_err(|_| self.unknown(from, true))?;
            (self.w_rec_eff()?, cols)
        };
        select(&select(&w, &rows, 0)?, &cols, 1)
    }

    /// Scatters two partial states into a full `[..., H]` state: `a.0` holds the units of the
    /// regions `a.1` (in that order, as [`Network::activity`] returns them), likewise `b`. Units
    /// in neither are zero; a unit in both is an error. Differentiable in both parts.
    pub fn combine(&self, a: (&Tensor, &[&str]), b: (&Tensor, &[&str])) -> Result<Tensor> {
        let h = self.hidden_size();
        let (ua, ub) = (self.hidden_units(a.1)?, self.hidden_units(b.1)?);
        for (what, t, units) in [("first part", a.0, &ua), ("second part", b.0, &ub)] {
            if t.dims().last() != Some(&units.len()) {
                return Err(shape_error(
                    what,
                    t,
                    format!("[..., {}] (the units of its regions)", units.len()),
                ));
            }
        }
        let (da, db) = (a.0.dims(), b.0.dims());
        if da[..da.len() - 1] != db[..db.len() - 1] {
            return Err(shape_error(
                "second part",
                b.0,
                format!("the leading dimensions of the first part, {:?}", &da[..da.len() - 1]),
            ));
        }
        // Column `k` of the result reads column `source[k]` of [a | b | 0].
        let zero_col = ua.len() + ub.len();
        let mut source = vec![zero_col; h];
        for (k, &u) in ua.iter().chain(&ub).enumerate() {
            if source[u] != zero_col {
                let region = self
                    .arch
                    .regions()
                    .iter()
                    .find(|r| r.range().contains(&u))
                    .map_or("?", |r| &r.name);
                return Err(Error::Invalid(format!(
                    "combine: unit {u} (region `{region}`) is in both parts"
                )));
            }
            source[u] = k;
        }
        let a0 = a.0.to_dtype(crate::network::DTYPE)?;
        let b0 = b.0.to_dtype(crate::network::DTYPE)?;
        let mut zero_dims = da.to_vec();
        if let Some(last) = zero_dims.last_mut() {
            *last = 1;
        }
        let zeros = Tensor::zeros(zero_dims, crate::network::DTYPE, a.0.device())?;
        let all = Tensor::cat(&[&a0, &b0, &zeros], D::Minus1)?;
        select(&all, &source, D::Minus1)
    }
}

/// `index_select` along `dim` with host indices.
fn select<Dim: candle_core::shape::Dim>(t: &Tensor, idx: &[usize], dim: Dim) -> Result<Tensor> {
    let idx: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
    let n = idx.len();
    let idx = Tensor::from_vec(idx, n, t.device())?;
    Ok(t.contiguous()?.index_select(&idx, dim)?)
}
