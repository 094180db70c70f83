//! Eigen-decompositions of real square matrices in `f64` (nalgebra's real Schur form, made
//! triangular over the complex numbers, then eigenvectors by back substitution), and the
//! stability of a discrete-time map read off its eigenvalues.

use nalgebra::{Complex, DMatrix, DVector};
use serde::Serialize;

use crate::{Error, Result};

/// The eigenvalues of a real square matrix, sorted by decreasing modulus (a complex pair with
/// the positive imaginary part first), and optionally unit-norm eigenvectors.
#[derive(Clone, Debug)]
pub struct Eigen {
    /// Eigenvalues, largest modulus first.
    pub values: Vec<Complex<f64>>,
    /// Column `k` is a unit-norm eigenvector of `values[k]` (its largest entry real and
    /// positive), when asked for.
    pub vectors: Option<DMatrix<Complex<f64>>>,
}

impl Eigen {
    /// The largest eigenvalue modulus (the spectral radius); 0 for an empty matrix.
    #[must_use]
    pub fn max_abs(&self) -> f64 {
        self.values.first().map_or(0.0, |z| z.norm())
    }
}

/// Decomposes `m` (square, finite). With `vectors`, also computes eigenvectors: `O(n^3)` in all,
/// from the same Schur form.
///
/// ```
/// use mrnn_runtime::analysis::eigen::decompose;
/// // A rotation by 90 degrees scaled by 2: eigenvalues +-2i.
/// let m = nalgebra::DMatrix::from_row_slice(2, 2, &[0.0, -2.0, 2.0, 0.0]);
/// let e = decompose(&m, true)?;
/// assert!((e.values[0].im - 2.0).abs() < 1e-12 && e.values[0].re.abs() < 1e-12);
/// let v = e.vectors.unwrap().column(0).into_owned();
/// let mv = m.map(|x| nalgebra::Complex::new(x, 0.0)) * &v;
/// assert!((mv - v * e.values[0]).norm() < 1e-12);
/// # Ok::<(), mrnn_runtime::Error>(())
/// ```
pub fn decompose(m: &DMatrix<f64>, vectors: bool) -> Result<Eigen> {
    let n = m.nrows();
    if n != m.ncols() {
        return Err(Error::Shape {
            what: "matrix to decompose".into(),
            expected: "a square matrix".into(),
            got: vec![m.nrows(), m.ncols()],
        });
    }
    if n == 0 {
        return Ok(Eigen { values: Vec::new(), vectors: vectors.then(|| DMatrix::zeros(0, 0)) });
    }
    if m.iter().any(|v| !v.is_finite()) {
        return Err(Error::Invalid(
            "cannot decompose: the matrix has NaN or infinite entries".into(),
        ));
    }
    // The same iteration cap as `linalg::eigenvalues`: an error rather than a hang.
    let schur =
        nalgebra::Schur::try_new(m.clone(), f64::EPSILON, 1000 * n.max(10)).ok_or_else(|| {
            Error::Invalid(format!("the Schur decomposition of a {n}x{n} matrix did not converge"))
        })?;
    let (q, t) = schur.unpack();
    let (mut tc, mut qc) = (complex(&t), complex(&q));
    triangularize_blocks(&t, &mut tc, &mut qc);
    let values: Vec<Complex<f64>> = (0..n).map(|k| tc[(k, k)]).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        let (za, zb) = (values[a], values[b]);
        zb.norm().total_cmp(&za.norm()).then(zb.im.total_cmp(&za.im)).then(a.cmp(&b))
    });
    let vecs = vectors.then(|| {
        let scale = t.norm().max(f64::MIN_POSITIVE);
        let mut out = DMatrix::<Complex<f64>>::zeros(n, n);
        for (col, &k) in order.iter().enumerate() {
            out.set_column(col, &eigenvector(&tc, &qc, k, scale));
        }
        out
    });
    Ok(Eigen { values: order.iter().map(|&k| values[k]).collect(), vectors: vecs })
}

fn complex(m: &DMatrix<f64>) -> DMatrix<Complex<f64>> {
    m.map(|v| Complex::new(v, 0.0))
}

/// Turns every 2x2 diagonal block of the real Schur form `t` into an upper triangle with a
/// unitary change of basis (applied to `tc` on both sides and to the basis `qc`), so that
/// `m = qc tc qc^H` with `tc` upper triangular.
fn triangularize_blocks(
    t: &DMatrix<f64>,
    tc: &mut DMatrix<Complex<f64>>,
    qc: &mut DMatrix<Complex<f64>>,
) {
    let n = t.nrows();
    let mut k = 0;
    while k < n {
        // nalgebra zeroes the subdiagonal exactly where it deflated: a nonzero entry marks a
        // 2x2 block (a complex pair).
        if k + 1 >= n || t[(k + 1, k)] == 0.0 {
            k += 1;
            continue;
        }
        let (a, b, c, d) = (tc[(k, k)], tc[(k, k + 1)], tc[(k + 1, k)], tc[(k + 1, k + 1)]);
        let half_trace = (a + d) * 0.5;
        let disc = (half_trace * half_trace - (a * d - b * c)).sqrt();
        let lambda = half_trace + disc;
        // (B - lambda I) v = 0 from either row; the longer candidate is the better conditioned.
        let (r1, r2) = ([b, lambda - a], [lambda - d, c]);
        let norm = |v: &[Complex<f64>; 2]| (v[0].norm_sqr() + v[1].norm_sqr()).sqrt();
        let v = if norm(&r1) >= norm(&r2) { r1 } else { r2 };
        let len = norm(&v);
        if len > 0.0 {
            // G = [v, v_perp] is unitary and G^H B G is upper triangular.
            let (g00, g10) = (v[0] / len, v[1] / len);
            let (g01, g11) = (-g10.conj(), g00.conj());
            for m in [&mut *tc, &mut *qc] {
                for i in 0..n {
                    let (x, y) = (m[(i, k)], m[(i, k + 1)]);
                    m[(i, k)] = x * g00 + y * g10;
                    m[(i, k + 1)] = x * g01 + y * g11;
                }
            }
            for j in 0..n {
                let (x, y) = (tc[(k, j)], tc[(k + 1, j)]);
                tc[(k, j)] = g00.conj() * x + g10.conj() * y;
                tc[(k + 1, j)] = g01.conj() * x + g11.conj() * y;
            }
            tc[(k + 1, k)] = Complex::new(0.0, 0.0);
        }
        k += 2;
    }
}

/// The eigenvector of the `k`-th diagonal entry of the triangular `tc`, in the original basis:
/// back substitution in `tc`, then `qc y`, normalized with its largest entry real positive.
fn eigenvector(
    tc: &DMatrix<Complex<f64>>,
    qc: &DMatrix<Complex<f64>>,
    k: usize,
    scale: f64,
) -> DVector<Complex<f64>> {
    let n = tc.nrows();
    let lambda = tc[(k, k)];
    let mut y = DVector::<Complex<f64>>::zeros(n);
    y[k] = Complex::new(1.0, 0.0);
    // A repeated eigenvalue makes a denominator vanish; a tiny shift gives the usual
    // (nearly parallel) vectors of a defective matrix instead of infinities. Not below 1e-150:
    // complex division squares the denominator, which must not underflow to 0.
    let tiny = (f64::EPSILON * scale).max(1e-150);
    for j in (0..k).rev() {
        let mut s = Complex::new(0.0, 0.0);
        for l in j + 1..=k {
            s += tc[(j, l)] * y[l];
        }
        let mut den = tc[(j, j)] - lambda;
        if den.norm() < tiny {
            den = Complex::new(tiny, 0.0);
        }
        y[j] = -s / den;
    }
    let mut v = qc.columns(0, k + 1) * y.rows(0, k + 1);
    let biggest = v.iter().copied().max_by(|a, b| a.norm().total_cmp(&b.norm()));
    if let Some(big) = biggest.filter(|z| z.norm() > 0.0) {
        let phase = big.conj() / big.norm();
        v *= phase;
        let len = v.norm();
        v /= Complex::new(len, 0.0);
    }
    v
}

/// The stability of a fixed point of a discrete-time map, from its Jacobian's eigenvalues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stability {
    /// Every eigenvalue strictly inside the unit circle (by more than the tolerance).
    Stable,
    /// The largest modulus is within the tolerance of 1, and none is clearly outside.
    Marginal,
    /// Some eigenvalues inside and some outside the unit circle.
    Saddle,
    /// Every eigenvalue outside the unit circle.
    Unstable,
}

impl Stability {
    /// Classifies eigenvalues: `|z| < 1 - tol` counts as inside, `|z| > 1 + tol` as outside.
    #[must_use]
    pub fn of(values: &[Complex<f64>], tol: f64) -> Stability {
        let outside = unstable_dimensions(values, tol);
        let inside = values.iter().filter(|z| z.norm() < 1.0 - tol).count();
        if outside == 0 {
            if inside == values.len() { Stability::Stable } else { Stability::Marginal }
        } else if outside == values.len() {
            Stability::Unstable
        } else {
            Stability::Saddle
        }
    }

    /// The name used in files and plots (`stable`, `marginal`, `saddle`, `unstable`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Stability::Stable => "stable",
            Stability::Marginal => "marginal",
            Stability::Saddle => "saddle",
            Stability::Unstable => "unstable",
        }
    }
}

/// How many eigenvalues lie outside the unit circle by more than `tol`.
#[must_use]
pub fn unstable_dimensions(values: &[Complex<f64>], tol: f64) -> usize {
    values.iter().filter(|z| z.norm() > 1.0 + tol).count()
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn check_pairs(m: &DMatrix<f64>) {
        let e = decompose(m, true).unwrap();
        let v = e.vectors.as_ref().unwrap();
        let mc = complex(m);
        for (k, z) in e.values.iter().enumerate() {
            let col = v.column(k).into_owned();
            let residual = (&mc * &col - &col * *z).norm();
            assert!(
                residual < 1e-9 * m.norm().max(1.0),
                "eigenpair {k} ({z}): residual {residual}"
            );
            assert!((col.norm() - 1.0).abs() < 1e-12);
        }
        let mut moduli: Vec<f64> = e.values.iter().map(|z| z.norm()).collect();
        assert!(moduli.windows(2).all(|w| w[0] >= w[1]), "sorted by modulus");
        // Same spectrum as nalgebra's own eigenvalues.
        let mut theirs: Vec<f64> =
            m.clone().complex_eigenvalues().iter().map(|z| z.norm()).collect();
        theirs.sort_by(|a, b| b.total_cmp(a));
        moduli.sort_by(|a, b| b.total_cmp(a));
        for (a, b) in moduli.iter().zip(&theirs) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
    }

    #[test]
    fn eigenpairs_of_random_matrices() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for n in [1, 2, 3, 7, 30] {
            let m = DMatrix::from_fn(n, n, |_, _| rng.random_range(-1.0..1.0));
            check_pairs(&m);
        }
    }

    #[test]
    fn eigenpairs_of_structured_matrices() {
        // Rotation (complex pair), a triangular matrix, and a symmetric one.
        check_pairs(&DMatrix::from_row_slice(2, 2, &[0.0, -1.0, 1.0, 0.0]));
        check_pairs(&DMatrix::from_row_slice(3, 3, &[1.0, 2.0, 3.0, 0.0, 4.0, 5.0, 0.0, 0.0, 6.0]));
        check_pairs(&DMatrix::from_row_slice(2, 2, &[2.0, 1.0, 1.0, 2.0]));
        // Zero (every vector is an eigenvector) and a repeated diagonal.
        check_pairs(&DMatrix::zeros(3, 3));
        check_pairs(&DMatrix::from_diagonal_element(4, 4, 0.5));
    }

    #[test]
    fn classifies_stability() {
        let z = |re: f64, im: f64| Complex::new(re, im);
        assert_eq!(Stability::of(&[z(0.5, 0.0), z(0.0, 0.9)], 1e-9), Stability::Stable);
        assert_eq!(Stability::of(&[z(1.5, 0.0), z(0.1, 0.0)], 1e-9), Stability::Saddle);
        assert_eq!(Stability::of(&[z(1.5, 0.0), z(0.0, -2.0)], 1e-9), Stability::Unstable);
        assert_eq!(Stability::of(&[z(1.0, 0.0), z(0.1, 0.0)], 1e-9), Stability::Marginal);
        assert_eq!(unstable_dimensions(&[z(1.5, 0.0), z(0.0, 1.2), z(0.0, 0.5)], 0.0), 2);
    }

    #[test]
    fn rejects_bad_matrices() {
        assert!(decompose(&DMatrix::zeros(2, 3), false).is_err());
        let mut m = DMatrix::zeros(2, 2);
        m[(0, 0)] = f64::NAN;
        assert!(decompose(&m, false).is_err());
        assert!(decompose(&DMatrix::zeros(0, 0), true).unwrap().values.is_empty());
    }
}
