//! Eigendecompositions of real square matrices in `f64` (faer's multishift QR with aggressive
//! early deflation: Hessenberg form, real Schur form, eigenvectors by back substitution), every
//! eigenpair checked by its residual; and the stability of a discrete-time map read off its
//! eigenvalues.
//!
//! The solver is tried in several ways until every eigenpair passes the residual check (the
//! matrix as it is; the same after a random orthogonal change of basis, which breaks the exact
//! symmetries of silent units and identity blocks that can stall a QR sweep; the complex Schur
//! form); the most accurate attempt is kept, and its residuals go with the result so that a
//! pair that failed every attempt is never presented as good.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::{self, ComputeEigenvectors};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par, Spec, c64};
use nalgebra::{Complex, DMatrix};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::{Error, Result, memory};

/// The largest relative residual `|A v - lambda v| / (|A|_F |v|)` an eigenpair may have to count
/// as accurate. A backward-stable solver gives about `n * 1e-16`; this leaves room for 1000s of
/// units and for the clustered eigenvalues of defective (Jordan) blocks.
pub const RESIDUAL_TOL: f64 = 1e-8;

/// The eigenvalues of a real square matrix, sorted by decreasing modulus (a complex pair with
/// the positive imaginary part first), optionally unit-norm eigenvectors, and the residual of
/// every eigenpair.
#[derive(Clone, Debug)]
pub struct Eigen {
    /// Eigenvalues, largest modulus first.
    pub values: Vec<Complex<f64>>,
    /// Column `k` is a unit-norm eigenvector of `values[k]` (its largest entry real and
    /// positive), when asked for.
    pub vectors: Option<DMatrix<Complex<f64>>>,
    /// `residuals[k]` is `|A v - lambda v| / (|A|_F |v|)` for `values[k]` and its eigenvector
    /// (computed whether or not the vectors are kept); infinite for a pair the solver could
    /// not produce. At most [`RESIDUAL_TOL`] for a pair that can be trusted.
    pub residuals: Vec<f64>,
}

impl Eigen {
    /// The largest eigenvalue modulus (the spectral radius); 0 for an empty matrix.
    #[must_use]
    pub fn max_abs(&self) -> f64 {
        self.values.first().map_or(0.0, |z| z.norm())
    }

    /// The worst residual over the eigenpairs (0 for an empty matrix; infinite when a pair
    /// could not be produced).
    #[must_use]
    pub fn max_residual(&self) -> f64 {
        self.residuals
            .iter()
            .fold(0.0, |a: f64, &r| if r.is_nan() { f64::INFINITY } else { a.max(r) })
    }

    /// How many eigenpairs fail the residual check (residual above [`RESIDUAL_TOL`]).
    #[must_use]
    pub fn inaccurate(&self) -> usize {
        self.residuals.iter().filter(|r| r.is_nan() || **r > RESIDUAL_TOL).count()
    }

    /// Whether every eigenpair passes the residual check.
    #[must_use]
    pub fn is_accurate(&self) -> bool {
        self.inaccurate() == 0
    }
}

/// The bytes [`decompose`] needs for an `n x n` matrix: the solver's workspace, a copy of the
/// matrix, the real and complex eigenvectors and the products of the residual check.
#[must_use]
pub fn workspace_bytes(n: usize) -> u64 {
    let scratch = evd::evd_scratch::<c64>(
        n,
        ComputeEigenvectors::No,
        ComputeEigenvectors::Yes,
        Par::Seq,
        Spec::default(),
    );
    // Matrix copies: 3 real (A, a rotated A, real vectors) and 4 real-sized halves of the
    // complex vectors and their products (8 bytes each per entry), plus 2 complex ones.
    memory::f64_bytes(&[n, n]).saturating_mul(11).saturating_add(scratch.size_bytes() as u64)
}

/// Decomposes `m` (square, finite). With `vectors`, the eigenvectors are kept too; they are
/// computed in any case, `O(n^3)`, for the residual check. Never fails on a finite square
/// matrix that fits in memory: a pair that no attempt of the solver got right is reported
/// through [`Eigen::residuals`] instead.
///
/// ```
/// use mrnn_runtime::analysis::eigen::decompose;
/// // A rotation by 90 degrees scaled by 2: eigenvalues +-2i.
/// let m = nalgebra::DMatrix::from_row_slice(2, 2, &[0.0, -2.0, 2.0, 0.0]);
/// let e = decompose(&m, true)?;
/// assert!((e.values[0].im - 2.0).abs() < 1e-12 && e.values[0].re.abs() < 1e-12);
/// assert!(e.is_accurate() && e.max_residual() < 1e-14);
/// let v = e.vectors.unwrap().column(0).into_owned();
/// let mv = m.map(|x| nalgebra::Complex::new(x, 0.0)) * &v;
/// assert!((mv - v * e.values[0]).norm() < 1e-12);
/// # Ok::<(), mrnn_runtime::Error>(())
/// ```
pub fn decompose(m: &DMatrix<f64>, vectors: bool) -> Result<Eigen> {
    decompose_with(m, vectors, ATTEMPTS)
}

/// The ways the solver is tried, in order, until every eigenpair passes the check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attempt {
    /// The real Schur form of the matrix.
    Real,
    /// The real Schur form after a similarity by a random Householder reflection (seeded):
    /// the same eigenvalues, with the structure that can stall QR (exact zero rows and
    /// columns, identical diagonal entries) mixed away.
    Reflected(u64),
    /// The complex Schur form (complex shifts).
    Complex,
}

const ATTEMPTS: &[Attempt] =
    &[Attempt::Real, Attempt::Reflected(1), Attempt::Complex, Attempt::Reflected(2)];

/// What one attempt produced: eigenvalues, complex eigenvectors (columns) and residuals.
struct Pairs {
    values: Vec<c64>,
    vectors: Mat<c64>,
    residuals: Vec<f64>,
}

impl Pairs {
    fn worst(&self) -> f64 {
        self.residuals
            .iter()
            .fold(0.0, |a: f64, &r| if r.is_nan() { f64::INFINITY } else { a.max(r) })
    }
}

fn decompose_with(m: &DMatrix<f64>, vectors: bool, attempts: &[Attempt]) -> Result<Eigen> {
    let n = m.nrows();
    if n != m.ncols() {
        return Err(Error::Shape {
            what: "matrix to decompose".into(),
            expected: "a square matrix".into(),
            got: vec![m.nrows(), m.ncols()],
        });
    }
    if n == 0 {
        return Ok(Eigen {
            values: Vec::new(),
            vectors: vectors.then(|| DMatrix::zeros(0, 0)),
            residuals: Vec::new(),
        });
    }
    if m.iter().any(|v| !v.is_finite()) {
        return Err(Error::Invalid(
            "cannot decompose: the matrix has NaN or infinite entries".into(),
        ));
    }
    memory::ensure_fits(format!("the eigendecomposition of a {n}x{n} matrix"), workspace_bytes(n))?;
    // Scaled by a power of two (exact) so that the largest entry is about 1: entries near
    // f64::MAX would overflow inside the solver, and tiny ones underflow.
    let largest = m.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let exponent = if largest > 0.0 { largest.log2().floor().clamp(-1000.0, 1000.0) } else { 0.0 };
    let scale = 2f64.powi(-(exponent as i32));
    let a = Mat::<f64>::from_fn(n, n, |i, j| m[(i, j)] * scale);
    let mut best: Option<Pairs> = None;
    for &attempt in attempts {
        let pairs = solve(&a, attempt)?;
        let better = best.as_ref().is_none_or(|b| pairs.worst() < b.worst());
        if better {
            best = Some(pairs);
        }
        if best.as_ref().is_some_and(|b| b.worst() <= RESIDUAL_TOL) {
            break;
        }
    }
    let Some(pairs) = best else {
        return Err(Error::Invalid("no eigensolver attempt was configured".into()));
    };
    Ok(finish(&pairs, scale, vectors))
}

/// Runs one attempt on the (scaled) matrix `a`.
fn solve(a: &Mat<f64>, attempt: Attempt) -> Result<Pairs> {
    let n = a.nrows();
    let (values, vectors) = match attempt {
        Attempt::Real => real_evd(a)?,
        Attempt::Reflected(seed) => {
            let u = random_unit(n, seed);
            let (values, v) = real_evd(&reflect_similarity(a, &u))?;
            (values, reflect_columns(&v, &u))
        }
        Attempt::Complex => complex_evd(a)?,
    };
    let residuals = residuals(a, &values, &vectors);
    Ok(Pairs { values, vectors, residuals })
}

fn workspace(req: faer::dyn_stack::StackReq, n: usize) -> Result<MemBuffer> {
    MemBuffer::try_new(req).map_err(|_| Error::TooLarge {
        what: format!("the eigendecomposition of a {n}x{n} matrix"),
        needed: req.size_bytes() as u64,
        limit: memory::limit().unwrap_or(0),
    })
}

/// faer's real eigendecomposition: eigenvalues and complex eigenvectors. (faer reports only
/// non-finite input as an error; a QR sweep that did not converge shows in the residuals.)
fn real_evd(a: &Mat<f64>) -> Result<(Vec<c64>, Mat<c64>)> {
    let n = a.nrows();
    let mut s_re = faer::diag::Diag::<f64>::zeros(n);
    let mut s_im = faer::diag::Diag::<f64>::zeros(n);
    let mut u = Mat::<f64>::zeros(n, n);
    let req = evd::evd_scratch::<f64>(
        n,
        ComputeEigenvectors::No,
        ComputeEigenvectors::Yes,
        Par::Seq,
        Spec::default(),
    );
    let mut buffer = workspace(req, n)?;
    let done = evd::evd_real(
        a.as_ref(),
        s_re.as_mut(),
        s_im.as_mut(),
        None,
        Some(u.as_mut()),
        Par::Seq,
        MemStack::new(&mut buffer),
        Spec::default(),
    );
    let nan = c64::new(f64::NAN, f64::NAN);
    if done.is_err() {
        return Ok((vec![nan; n], Mat::from_fn(n, n, |_, _| nan)));
    }
    // A complex pair sits in two columns: the real and imaginary parts of the eigenvector of
    // the first value; the second value and vector are their conjugates.
    let mut values = vec![nan; n];
    let mut vectors = Mat::<c64>::zeros(n, n);
    let mut j = 0;
    while j < n {
        if s_im[j] == 0.0 || j + 1 == n {
            values[j] = c64::new(s_re[j], s_im[j]);
            for i in 0..n {
                vectors[(i, j)] = c64::new(u[(i, j)], 0.0);
            }
            j += 1;
        } else {
            values[j] = c64::new(s_re[j], s_im[j]);
            values[j + 1] = c64::new(s_re[j], -s_im[j]);
            for i in 0..n {
                vectors[(i, j)] = c64::new(u[(i, j)], u[(i, j + 1)]);
                vectors[(i, j + 1)] = c64::new(u[(i, j)], -u[(i, j + 1)]);
            }
            j += 2;
        }
    }
    Ok((values, vectors))
}

/// faer's complex eigendecomposition of the real matrix `a`.
fn complex_evd(a: &Mat<f64>) -> Result<(Vec<c64>, Mat<c64>)> {
    let n = a.nrows();
    let ac = Mat::<c64>::from_fn(n, n, |i, j| c64::new(a[(i, j)], 0.0));
    let mut s = faer::diag::Diag::<c64>::zeros(n);
    let mut u = Mat::<c64>::zeros(n, n);
    let req = evd::evd_scratch::<c64>(
        n,
        ComputeEigenvectors::No,
        ComputeEigenvectors::Yes,
        Par::Seq,
        Spec::default(),
    );
    let mut buffer = workspace(req, n)?;
    let done = evd::evd_cplx(
        ac.as_ref(),
        s.as_mut(),
        None,
        Some(u.as_mut()),
        Par::Seq,
        MemStack::new(&mut buffer),
        Spec::default(),
    );
    let nan = c64::new(f64::NAN, f64::NAN);
    if done.is_err() {
        return Ok((vec![nan; n], Mat::from_fn(n, n, |_, _| nan)));
    }
    Ok(((0..n).map(|k| s[k]).collect(), u))
}

/// A unit vector with Gaussian-like entries drawn from `seed`.
fn random_unit(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut u: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let norm = u.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm > 0.0 {
        for v in &mut u {
            *v /= norm;
        }
    } else {
        u[0] = 1.0;
    }
    u
}

/// `H a H` with `H = I - 2 u u^T` (orthogonal and its own inverse): `O(n^2)`.
fn reflect_similarity(a: &Mat<f64>, u: &[f64]) -> Mat<f64> {
    let n = a.nrows();
    // B = H a = a - 2 u (u^T a), then B H = B - 2 (B u) u^T.
    let uta: Vec<f64> = (0..n).map(|j| (0..n).map(|i| u[i] * a[(i, j)]).sum()).collect();
    let mut b = Mat::<f64>::from_fn(n, n, |i, j| a[(i, j)] - 2.0 * u[i] * uta[j]);
    let bu: Vec<f64> = (0..n).map(|i| (0..n).map(|j| b[(i, j)] * u[j]).sum()).collect();
    for j in 0..n {
        for i in 0..n {
            b[(i, j)] -= 2.0 * bu[i] * u[j];
        }
    }
    b
}

/// `H v` for every column of `v` (eigenvectors of `H a H` back to those of `a`).
fn reflect_columns(v: &Mat<c64>, u: &[f64]) -> Mat<c64> {
    let n = v.nrows();
    let mut out = v.clone();
    for j in 0..v.ncols() {
        let dot: c64 = (0..n).map(|i| v[(i, j)] * u[i]).sum();
        for i in 0..n {
            out[(i, j)] -= dot * (2.0 * u[i]);
        }
    }
    out
}

/// `|a v_k - lambda_k v_k| / (|a|_F |v_k|)` for every pair; infinite where `v_k` is zero or
/// not finite.
fn residuals(a: &Mat<f64>, values: &[c64], v: &Mat<c64>) -> Vec<f64> {
    let n = a.nrows();
    let norm_a = a.norm_l2();
    let re = Mat::<f64>::from_fn(n, n, |i, j| v[(i, j)].re);
    let im = Mat::<f64>::from_fn(n, n, |i, j| v[(i, j)].im);
    let mut av_re = Mat::<f64>::zeros(n, n);
    let mut av_im = Mat::<f64>::zeros(n, n);
    matmul(&mut av_re, Accum::Replace, a, &re, 1.0, Par::Seq);
    matmul(&mut av_im, Accum::Replace, a, &im, 1.0, Par::Seq);
    (0..n)
        .map(|k| {
            let lambda = values[k];
            let (mut r2, mut v2) = (0.0, 0.0);
            for i in 0..n {
                let x = v[(i, k)];
                let r = c64::new(av_re[(i, k)], av_im[(i, k)]) - lambda * x;
                r2 += r.norm_sqr();
                v2 += x.norm_sqr();
            }
            let (r, vn) = (r2.sqrt(), v2.sqrt());
            if !(r.is_finite() && vn.is_finite() && lambda.is_finite()) || vn == 0.0 {
                f64::INFINITY
            } else if r == 0.0 {
                0.0
            } else {
                r / (norm_a * vn).max(f64::MIN_POSITIVE)
            }
        })
        .collect()
}

/// Sorts the pairs (largest modulus first, positive imaginary part first within a pair),
/// undoes the scaling of the eigenvalues and normalizes the vectors.
fn finish(pairs: &Pairs, scale: f64, keep_vectors: bool) -> Eigen {
    let n = pairs.values.len();
    let values: Vec<Complex<f64>> = pairs.values.iter().map(|z| z / scale).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        let (za, zb) = (values[a], values[b]);
        zb.norm().total_cmp(&za.norm()).then(zb.im.total_cmp(&za.im)).then(a.cmp(&b))
    });
    let vectors = keep_vectors.then(|| {
        let mut out = DMatrix::<Complex<f64>>::zeros(n, n);
        for (col, &k) in order.iter().enumerate() {
            let biggest = (0..n)
                .map(|i| pairs.vectors[(i, k)])
                .max_by(|a, b| a.norm().total_cmp(&b.norm()))
                .filter(|z| z.norm() > 0.0 && z.norm().is_finite());
            // Unit norm with the largest entry real and positive: eigenvectors are defined up
            // to a complex factor, and this makes them comparable between runs.
            let phase = biggest.map_or(Complex::new(1.0, 0.0), |big| big.conj() / big.norm());
            let norm = (0..n).map(|i| pairs.vectors[(i, k)].norm_sqr()).sum::<f64>().sqrt();
            let norm = if norm > 0.0 && norm.is_finite() { norm } else { 1.0 };
            for i in 0..n {
                out[(i, col)] = pairs.vectors[(i, k)] * phase / norm;
            }
        }
        out
    });
    Eigen {
        values: order.iter().map(|&k| values[k]).collect(),
        vectors,
        residuals: order.iter().map(|&k| pairs.residuals[k]).collect(),
    }
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

    /// Checks the contract on `m` (residuals recomputed here with nalgebra, unit norm, largest
    /// entry real positive, sorted, conjugate pairs, trace) and returns the decomposition.
    fn check_pairs_with(m: &DMatrix<f64>, attempts: &[Attempt]) -> Eigen {
        let e = decompose_with(m, true, attempts).unwrap();
        let n = m.nrows();
        assert_eq!((e.values.len(), e.residuals.len()), (n, n));
        assert!(e.is_accurate(), "worst residual {:e}", e.max_residual());
        let v = e.vectors.as_ref().unwrap();
        // Checked on the matrix scaled to a largest entry of 1 (its norm may overflow).
        let largest = if m.amax() > 0.0 { m.amax() } else { 1.0 };
        let m = &(m / largest);
        let mc = m.map(|x| Complex::new(x, 0.0));
        let norm = m.norm().max(f64::MIN_POSITIVE);
        for (k, z) in e.values.iter().enumerate() {
            let z = &(z / largest);
            let col = v.column(k).into_owned();
            let residual = (&mc * &col - &col * *z).norm() / norm;
            assert!(residual < 1e-12 * (n as f64).max(10.0), "eigenpair {k} ({z}): {residual}");
            assert!((col.norm() - 1.0).abs() < 1e-12);
            let big = col.iter().max_by(|a, b| a.norm().total_cmp(&b.norm())).unwrap();
            assert!(big.im.abs() < 1e-12 && big.re > 0.0, "{big}");
        }
        let moduli: Vec<f64> = e.values.iter().map(|z| z.norm()).collect();
        assert!(moduli.windows(2).all(|w| w[0] >= w[1]), "sorted by modulus");
        // The spectrum of a real matrix is closed under conjugation, and sums to the trace.
        let values: Vec<Complex<f64>> = e.values.iter().map(|z| z / largest).collect();
        for z in &values {
            let partner = values.iter().map(|w| (w - z.conj()).norm()).fold(f64::MAX, f64::min);
            assert!(partner < 1e-6 * norm.max(1.0), "{z} has no conjugate");
        }
        let sum: Complex<f64> = values.iter().sum();
        assert!((sum.re - m.trace()).abs() < 1e-9 * norm * n as f64, "{sum} vs {}", m.trace());
        assert!(sum.im.abs() < 1e-9 * norm * n as f64);
        e
    }

    fn check_pairs(m: &DMatrix<f64>) -> Eigen {
        check_pairs_with(m, ATTEMPTS)
    }

    fn random(n: usize, seed: u64) -> DMatrix<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        DMatrix::from_fn(n, n, |_, _| rng.random_range(-1.0..1.0))
    }

    #[test]
    fn eigenpairs_of_random_matrices() {
        for (n, seed) in [(1, 1), (2, 2), (3, 3), (7, 4), (30, 5), (150, 6)] {
            check_pairs(&random(n, seed));
        }
    }

    #[test]
    fn eigenpairs_of_structured_matrices() {
        // Rotation (complex pair), a triangular matrix, and a symmetric one.
        let e = check_pairs(&DMatrix::from_row_slice(2, 2, &[0.0, -1.0, 1.0, 0.0]));
        assert!(e.values[0].im > 0.0, "the positive imaginary part first");
        check_pairs(&DMatrix::from_row_slice(3, 3, &[1.0, 2.0, 3.0, 0.0, 4.0, 5.0, 0.0, 0.0, 6.0]));
        check_pairs(&DMatrix::from_row_slice(2, 2, &[2.0, 1.0, 1.0, 2.0]));
        // Zero (every vector is an eigenvector) and a repeated diagonal.
        let e = check_pairs(&DMatrix::zeros(3, 3));
        assert!(e.values.iter().all(|z| z.norm() == 0.0));
        check_pairs(&DMatrix::from_diagonal_element(4, 4, 0.5));
    }

    #[test]
    fn repeated_and_defective_eigenvalues() {
        // Identity blocks beside a random block, coupled one way.
        let mut m = DMatrix::<f64>::identity(60, 60) * 0.9;
        let r = random(20, 7);
        m.view_mut((40, 40), (20, 20)).copy_from(&r);
        m.view_mut((0, 40), (40, 20)).copy_from(&(random(40, 8).columns(0, 20) * 0.3));
        let e = check_pairs(&m);
        assert_eq!(e.values.iter().filter(|z| (*z - 0.9).norm() < 1e-12).count(), 40);
        // Jordan blocks (defective: one eigenvector per block), sizes 2 to 5.
        let mut j = DMatrix::<f64>::zeros(14, 14);
        let mut at = 0;
        for (size, lambda) in [(2, 0.5), (3, -0.7), (4, 0.5), (5, 1.0)] {
            for k in 0..size {
                j[(at + k, at + k)] = lambda;
                if k + 1 < size {
                    j[(at + k, at + k + 1)] = 1.0;
                }
            }
            at += size;
        }
        check_pairs(&j);
        // The same blocks hidden by an orthogonal change of basis.
        let q = random(14, 9).qr().q();
        check_pairs(&(&q * &j * q.transpose()));
    }

    #[test]
    fn silent_units_leave_zero_columns() {
        // The leaky Jacobian of a relu network with most units silent: (1 - a) I + a W D, D
        // zero on the silent units (their columns are (1 - a) e_j: a repeated eigenvalue).
        let n = 140;
        let w = random(n, 10) * (3.0 / (n as f64).sqrt());
        let active: Vec<bool> = (0..n).map(|i| i % 5 == 0).collect();
        let m = DMatrix::from_fn(n, n, |i, j| {
            let eye = if i == j { 0.9 } else { 0.0 };
            eye + if active[j] { 0.1 * w[(i, j)] } else { 0.0 }
        });
        let e = check_pairs(&m);
        assert!(e.values.iter().filter(|z| (*z - 0.9).norm() < 1e-9).count() >= n - 28);
        // The Elman form diag(D) W: zero rows.
        let m = DMatrix::from_fn(n, n, |i, j| if active[i] { w[(i, j)] } else { 0.0 });
        let e = check_pairs(&m);
        assert!(e.values.iter().filter(|z| z.norm() < 1e-12).count() >= n - 28);
    }

    #[test]
    fn every_attempt_gives_correct_pairs() {
        // Each fallback of the solver holds the same contract on its own.
        let mut m = random(40, 11);
        for i in 0..10 {
            m.column_mut(i).fill(0.0);
            m[(i, i)] = 0.25;
        }
        for attempt in ATTEMPTS {
            let e = check_pairs_with(&m, &[*attempt]);
            assert_eq!(e.values.iter().filter(|z| (*z - 0.25).norm() < 1e-9).count(), 10);
        }
    }

    #[test]
    fn extreme_scales_neither_overflow_nor_underflow() {
        for scale in [1e300, 1e-300, 1e-310] {
            let m = random(12, 12) * scale;
            let e = check_pairs(&m);
            let reference = check_pairs(&random(12, 12));
            for (a, b) in e.values.iter().zip(&reference.values) {
                assert!((a / scale - b).norm() < 1e-9 * b.norm().max(1.0), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn inaccurate_pairs_are_counted() {
        let e = Eigen {
            values: vec![Complex::new(1.0, 0.0); 3],
            vectors: None,
            residuals: vec![1e-15, 1e-3, f64::NAN],
        };
        assert_eq!(e.inaccurate(), 2);
        assert!(!e.is_accurate());
        assert!(e.max_residual().is_infinite());
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
