//! Dense linear algebra that candle lacks (eigenvalues, spectral radius), done in `f64` on the
//! host (faer's eigensolver, nalgebra matrices at the interface).

use candle_core::{DType, Tensor};
use nalgebra::{Complex, DMatrix};

use crate::analysis::eigen::{RESIDUAL_TOL, decompose};
use crate::{Error, Result};

/// Copies a 2-D tensor into an `f64` nalgebra matrix (on the host).
pub fn to_dmatrix(t: &Tensor) -> Result<DMatrix<f64>> {
    let (rows, cols) = t.dims2()?;
    let data = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    // candle is row-major, nalgebra column-major.
    Ok(DMatrix::from_row_slice(rows, cols, &data))
}

/// The eigenvalues of a square matrix (through [`crate::analysis::eigen::decompose`]).
///
/// An error when the matrix is not square or not finite, does not fit in memory, or when some
/// eigenpair fails the residual check on every attempt of the solver (its values would not be
/// trustworthy; [`crate::analysis::eigen::decompose`] returns them with their residuals).
pub fn eigenvalues(t: &Tensor) -> Result<Vec<Complex<f64>>> {
    let m = to_dmatrix(t)?;
    let n = m.nrows();
    if n != m.ncols() {
        return Err(Error::Shape {
            what: "matrix for eigenvalues".into(),
            expected: "a square matrix".into(),
            got: vec![m.nrows(), m.ncols()],
        });
    }
    if m.iter().any(|v| !v.is_finite()) {
        return Err(Error::Invalid(
            "cannot compute eigenvalues: the matrix has NaN or infinite entries".into(),
        ));
    }
    let eigen = decompose(&m, false)?;
    if !eigen.is_accurate() {
        return Err(Error::Invalid(format!(
            "the eigenvalues of a {n}x{n} matrix failed the residual check: {} of {n} pairs \
             have |A v - lambda v| / (|A| |v|) above {RESIDUAL_TOL:e} (worst {:.1e})",
            eigen.inaccurate(),
            eigen.max_residual()
        )));
    }
    Ok(eigen.values)
}

/// The largest modulus of the eigenvalues of a square matrix.
///
/// Exactly 0 when the matrix's nonzero pattern has no cycle (a feedforward chain of regions, or
/// no connection at all): such a matrix is nilpotent, but a numerical eigensolver would return
/// rounding noise of order `eps^(1/k)` for it, which scaling would then blow up.
pub fn spectral_radius(t: &Tensor) -> Result<f64> {
    let m = to_dmatrix(t)?;
    if m.is_square() && !has_cycle(&m) {
        return Ok(0.0);
    }
    Ok(eigenvalues(t)?.iter().map(|z| z.norm()).fold(0.0, f64::max))
}

/// Whether the directed graph with an edge `j -> i` for every nonzero `m[(i, j)]` has a cycle
/// (Kahn's algorithm: a graph is acyclic exactly when repeatedly removing nodes without incoming
/// edges removes them all).
fn has_cycle(m: &DMatrix<f64>) -> bool {
    let n = m.nrows();
    let mut indegree: Vec<usize> =
        (0..n).map(|i| (0..n).filter(|&j| m[(i, j)] != 0.0).count()).collect();
    let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut removed = 0;
    while let Some(j) = ready.pop() {
        removed += 1;
        for i in 0..n {
            if m[(i, j)] != 0.0 {
                indegree[i] -= 1;
                if indegree[i] == 0 {
                    ready.push(i);
                }
            }
        }
    }
    removed < n
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn rotation_has_unit_radius_and_complex_pair() {
        // [[0, -2], [2, 0]] has eigenvalues +-2i.
        let t = Tensor::from_vec(vec![0f32, -2.0, 2.0, 0.0], (2, 2), &Device::Cpu).unwrap();
        let ev = eigenvalues(&t).unwrap();
        assert_eq!(ev.len(), 2);
        assert!(ev.iter().all(|z| z.re.abs() < 1e-12 && (z.im.abs() - 2.0).abs() < 1e-12));
        assert!((spectral_radius(&t).unwrap() - 2.0).abs() < 1e-12);
    }

    #[test]
    fn nilpotent_patterns_have_radius_zero() {
        // Strictly lower triangular: acyclic, nilpotent.
        let t = Tensor::from_vec(
            vec![0f32, 0.0, 0.0, 1.0, 0.0, 0.0, 2.0, 3.0, 0.0],
            (3, 3),
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(spectral_radius(&t).unwrap().to_bits(), 0f64.to_bits());
        // A self-loop makes a cycle.
        let t = Tensor::from_vec(
            vec![0f32, 0.0, 0.0, 1.0, 0.0, 0.0, 2.0, 3.0, 0.5],
            (3, 3),
            &Device::Cpu,
        )
        .unwrap();
        assert!((spectral_radius(&t).unwrap() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn rejects_non_square_and_nan() {
        let t = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(eigenvalues(&t), Err(Error::Shape { .. })));
        let t = Tensor::from_vec(vec![f32::NAN, 0.0, 0.0, 1.0], (2, 2), &Device::Cpu).unwrap();
        assert!(matches!(eigenvalues(&t), Err(Error::Invalid(_))));
    }
}
