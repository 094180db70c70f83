//! Principal component analysis of states (`[..., D]` tensors) in `f64` on the host, for
//! drawing trajectories, fixed points and flow fields in a few dimensions.

use candle_core::{DType, Tensor};
use nalgebra::{DMatrix, SymmetricEigen};
use serde_json::{Value, json};

use crate::{Error, Result};

/// A fitted PCA: `coords = components (s - mean)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Pca {
    /// The mean of the data `[D]`.
    pub mean: Vec<f64>,
    /// Unit-norm principal axes `[k][D]`, largest variance first; each axis's largest entry
    /// is positive, so that fits of the same data agree in sign.
    pub components: Vec<Vec<f64>>,
    /// The variance along each axis.
    pub explained_variance: Vec<f64>,
    /// The total variance of the data (the sum over all `D` axes).
    pub total_variance: f64,
}

impl Pca {
    /// Fits `k` components to the rows of `data` (`[..., D]`, leading dimensions flattened).
    pub fn fit(data: &Tensor, k: usize) -> Result<Pca> {
        let rows = rows_f64("PCA data", data)?;
        Pca::fit_rows(&rows, k)
    }

    /// Fits `k` components to points given as rows.
    pub fn fit_rows(rows: &[Vec<f64>], k: usize) -> Result<Pca> {
        let d = rows.first().map_or(0, Vec::len);
        if rows.is_empty() || d == 0 {
            return Err(Error::Invalid("PCA needs at least one point with coordinates".into()));
        }
        if rows.iter().any(|r| r.len() != d) {
            return Err(Error::Invalid("PCA points have different dimensions".into()));
        }
        if k == 0 || k > d {
            return Err(Error::Invalid(format!(
                "cannot fit {k} principal components to {d}-dimensional points (1 to {d})"
            )));
        }
        if rows.iter().flatten().any(|v| !v.is_finite()) {
            return Err(Error::Invalid("PCA data has NaN or infinite entries".into()));
        }
        let n = rows.len() as f64;
        let mean: Vec<f64> = (0..d).map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n).collect();
        let mut cov = DMatrix::<f64>::zeros(d, d);
        for r in rows {
            let c = nalgebra::DVector::from_iterator(d, r.iter().zip(&mean).map(|(v, m)| v - m));
            cov.syger(1.0 / n, &c, &c, 1.0);
        }
        // `syger` fills the lower triangle only.
        cov.fill_upper_triangle_with_lower_triangle();
        let eig = SymmetricEigen::new(cov);
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]).then(a.cmp(&b)));
        let components = order[..k]
            .iter()
            .map(|&c| {
                let mut axis: Vec<f64> = eig.eigenvectors.column(c).iter().copied().collect();
                let big = axis
                    .iter()
                    .copied()
                    .fold(0.0, |m: f64, v| if v.abs() > m.abs() { v } else { m });
                if big < 0.0 {
                    for v in &mut axis {
                        *v = -*v;
                    }
                }
                axis
            })
            .collect();
        Ok(Pca {
            mean,
            components,
            explained_variance: order[..k].iter().map(|&c| eig.eigenvalues[c].max(0.0)).collect(),
            total_variance: eig.eigenvalues.iter().map(|v| v.max(0.0)).sum(),
        })
    }

    /// The number of components `k`.
    #[must_use]
    pub fn dims(&self) -> usize {
        self.components.len()
    }

    /// The dimension `D` of the data.
    #[must_use]
    pub fn data_dims(&self) -> usize {
        self.mean.len()
    }

    /// The coordinates of one point `[D]` on the axes `[k]`.
    #[must_use]
    pub fn project(&self, point: &[f64]) -> Vec<f64> {
        self.components
            .iter()
            .map(|c| c.iter().zip(point).zip(&self.mean).map(|((a, p), m)| a * (p - m)).sum())
            .collect()
    }

    /// The point `[D]` at coordinates `[k]` in the plane (or space) of the axes through the
    /// mean.
    #[must_use]
    pub fn reconstruct(&self, coords: &[f64]) -> Vec<f64> {
        let mut p = self.mean.clone();
        for (c, &w) in self.components.iter().zip(coords) {
            for (pj, cj) in p.iter_mut().zip(c) {
                *pj += w * cj;
            }
        }
        p
    }

    /// The coordinates of every row of `data` (`[..., D]`), as rows.
    pub fn project_rows(&self, data: &Tensor) -> Result<Vec<Vec<f64>>> {
        let rows = rows_f64("data to project", data)?;
        if rows.first().is_some_and(|r| r.len() != self.data_dims()) {
            return Err(Error::Shape {
                what: "data to project".into(),
                expected: format!("[..., {}] (the PCA's dimension)", self.data_dims()),
                got: data.dims().to_vec(),
            });
        }
        Ok(rows.iter().map(|r| self.project(r)).collect())
    }

    /// The fraction of the total variance along each axis.
    #[must_use]
    pub fn explained_ratio(&self) -> Vec<f64> {
        self.explained_variance
            .iter()
            .map(|v| if self.total_variance > 0.0 { v / self.total_variance } else { 0.0 })
            .collect()
    }

    /// The fit as JSON (`mean`, `components`, `explained_variance`, `explained_ratio`).
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({
            "mean": self.mean,
            "components": self.components,
            "explained_variance": self.explained_variance,
            "explained_ratio": self.explained_ratio(),
        })
    }
}

/// The rows of a `[..., D]` tensor in `f64` on the host.
pub(crate) fn rows_f64(what: &str, t: &Tensor) -> Result<Vec<Vec<f64>>> {
    let Some(&d) = t.dims().last() else {
        return Err(Error::Shape {
            what: what.to_owned(),
            expected: "[..., D]".into(),
            got: vec![],
        });
    };
    let flat = t.detach().to_dtype(DType::F64)?.reshape(((), d))?;
    Ok(flat.to_vec2()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_axes_of_an_ellipse() {
        // Points on an ellipse with semi-axes 3 (along (1, 1)/sqrt 2) and 1, centred at (2, -1).
        let r = std::f64::consts::FRAC_1_SQRT_2;
        let rows: Vec<Vec<f64>> = (0..360)
            .map(|i| {
                let t = f64::from(i).to_radians();
                let (a, b) = (3.0 * t.cos(), t.sin());
                vec![2.0 + r * (a - b), -1.0 + r * (a + b)]
            })
            .collect();
        let pca = Pca::fit_rows(&rows, 2).unwrap();
        assert!((pca.mean[0] - 2.0).abs() < 1e-9 && (pca.mean[1] + 1.0).abs() < 1e-9);
        assert!((pca.components[0][0] - r).abs() < 1e-9 && (pca.components[0][1] - r).abs() < 1e-9);
        // Variance of 3 cos t over a full turn is 9/2.
        assert!((pca.explained_variance[0] - 4.5).abs() < 1e-9);
        assert!((pca.explained_variance[1] - 0.5).abs() < 1e-9);
        let back = pca.reconstruct(&pca.project(&rows[10]));
        assert!((back[0] - rows[10][0]).abs() < 1e-9 && (back[1] - rows[10][1]).abs() < 1e-9);
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(Pca::fit_rows(&[], 1).is_err());
        assert!(Pca::fit_rows(&[vec![1.0, 2.0]], 3).is_err());
        assert!(Pca::fit_rows(&[vec![1.0, 2.0], vec![1.0]], 1).is_err());
        assert!(Pca::fit_rows(&[vec![f64::NAN]], 1).is_err());
    }
}
