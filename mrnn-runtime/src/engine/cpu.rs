//! The recurrence on the host, for CPU tensors: one GEMM per step (through the `gemm` crate that
//! candle itself uses, into preallocated buffers) and fused elementwise loops, forward and
//! backward. candle's per-op dispatch and allocation cost tens of microseconds per step, which is
//! most of the time at the sizes neuroscience networks have (H of a few hundred).
//!
//! With a block structure ([`Block`]: one per connection, chosen by the compiler when few region
//! pairs are connected) every product runs over the connected blocks only: the others are zero.
//!
//! Layouts: every matrix is row-major; `w` is `[H, H]` (destination rows); sequences are
//! time-major `[T, B, H]`.

use mrnn_ir::Activation;

use super::fast_math::{apply, mul_slope};
use super::{Block, Update};

/// A matrix operand of [`matmul`]: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
struct Operand<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> Operand<'a> {
    fn new(data: &'a [f32], rs: usize, cs: usize) -> Self {
        Operand { data, rs, cs }
    }

    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// `dst (m x n, row stride ld) = [dst +] scale * lhs (m x k) * rhs (k x n)`.
fn matmul(
    dst: &mut [f32],
    ld: usize,
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
    lhs: Operand<'_>,
    rhs: Operand<'_>,
    scale: f32,
) {
    let dst_fits = m == 0 || n == 0 || (m - 1) * ld + n <= dst.len();
    assert!(dst_fits && lhs.fits(m, k) && rhs.fits(k, n), "matmul operands out of bounds");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in 0..m {
                dst[row * ld..row * ld + n].fill(0.0);
            }
        }
        return;
    }
    // Threads pay off only on products big enough to split; below that, rayon's hand-off costs
    // more than the product.
    let threads = rayon_threads();
    let parallelism = if threads > 1 && m * n * k >= 1 << 17 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the bounds of every operand were checked above against the strides gemm will
    // use; `dst` does not alias `lhs` or `rhs` (it is borrowed mutably).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            ld.cast_signed(),
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs.cast_signed(),
            lhs.rs.cast_signed(),
            rhs.data.as_ptr(),
            rhs.cs.cast_signed(),
            rhs.rs.cast_signed(),
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The threads GEMM may use: rayon's pool size (set from `RAYON_NUM_THREADS`), read once.
fn rayon_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
    })
}

/// Sizes of a run.
#[derive(Clone, Copy, Debug)]
pub(super) struct Dims {
    pub(super) steps: usize,
    pub(super) batch: usize,
    pub(super) hidden: usize,
}

impl Dims {
    fn step(self) -> usize {
        self.batch * self.hidden
    }
}

/// The recurrent matrix and how to multiply by it.
pub(super) struct Matrix<'a> {
    /// `[H, H]`, destination rows.
    pub(super) w: &'a [f32],
    /// The connected blocks, or `None` to use the whole matrix.
    pub(super) blocks: Option<&'a [Block]>,
    pub(super) hidden: usize,
}

impl Matrix<'_> {
    /// `out[b, i] (+)= scale * sum_j h[b, j] W[i, j]` for a `[batch, H]` `h`.
    fn times_transposed(
        &self,
        out: &mut [f32],
        h: &[f32],
        batch: usize,
        accumulate: bool,
        scale: f32,
    ) {
        let n = self.hidden;
        match self.blocks {
            None => matmul(
                out,
                n,
                (batch, n, n),
                accumulate,
                Operand::new(h, n, 1),
                Operand::new(self.w, 1, n),
                scale,
            ),
            Some(blocks) => {
                if !accumulate {
                    out[..batch * n].fill(0.0);
                }
                for b in blocks {
                    let (rows, cols) = (b.rows.clone(), b.cols.clone());
                    matmul(
                        &mut out[rows.start..],
                        n,
                        (batch, rows.len(), cols.len()),
                        true,
                        Operand::new(&h[cols.start..], n, 1),
                        Operand::new(&self.w[rows.start * n + cols.start..], 1, n),
                        scale,
                    );
                }
            }
        }
    }

    /// `out[b, j] (+)= scale * sum_i a[b, i] W[i, j]` for a `[batch, H]` `a`.
    fn times(&self, out: &mut [f32], a: &[f32], batch: usize, accumulate: bool, scale: f32) {
        let n = self.hidden;
        match self.blocks {
            None => matmul(
                out,
                n,
                (batch, n, n),
                accumulate,
                Operand::new(a, n, 1),
                Operand::new(self.w, n, 1),
                scale,
            ),
            Some(blocks) => {
                if !accumulate {
                    out[..batch * n].fill(0.0);
                }
                for b in blocks {
                    let (rows, cols) = (b.rows.clone(), b.cols.clone());
                    matmul(
                        &mut out[cols.start..],
                        n,
                        (batch, cols.len(), rows.len()),
                        true,
                        Operand::new(&a[rows.start..], n, 1),
                        Operand::new(&self.w[rows.start * n + cols.start..], n, 1),
                        scale,
                    );
                }
            }
        }
    }

    /// `grad[i, j] (+)= scale * sum_r a[r, i] p[r, j]` over `rows` rows of `[rows, H]` `a` and
    /// `p`, on the connected blocks only (the others stay zero: the mask zeroes them anyway).
    fn outer(
        &self,
        grad: &mut [f32],
        a: &[f32],
        p: &[f32],
        rows: usize,
        accumulate: bool,
        scale: f32,
    ) {
        let n = self.hidden;
        match self.blocks {
            None => matmul(
                grad,
                n,
                (n, n, rows),
                accumulate,
                Operand::new(a, 1, n),
                Operand::new(p, n, 1),
                scale,
            ),
            Some(blocks) => {
                for b in blocks {
                    let (r, c) = (b.rows.clone(), b.cols.clone());
                    matmul(
                        &mut grad[r.start * n + c.start..],
                        n,
                        (r.len(), c.len(), rows),
                        accumulate,
                        Operand::new(&a[r.start..], 1, n),
                        Operand::new(&p[c.start..], n, 1),
                        scale,
                    );
                }
            }
        }
    }
}

/// The output of the forward loop: `states` (`x_1..x_T` for leaky, `h_1..h_T` for Elman) and,
/// for leaky dynamics, `rates` `h_1..h_T` (empty for Elman, where they are the states).
pub(super) struct Forward {
    pub(super) states: Vec<f32>,
    pub(super) rates: Vec<f32>,
}

pub(super) fn forward(
    update: Update,
    activation: Activation,
    w: &Matrix<'_>,
    drive: &[f32],
    init: &[f32],
    d: Dims,
) -> Forward {
    let bh = d.step();
    match update {
        Update::Leaky { alpha } => {
            let alpha = alpha as f32;
            let mut states = vec![0f32; d.steps * bh];
            let mut rates = vec![0f32; d.steps * bh];
            let mut h0 = vec![0f32; bh];
            apply(activation, init, &mut h0);
            for t in 0..d.steps {
                let (done_x, rest_x) = states.split_at_mut(t * bh);
                let x = &mut rest_x[..bh];
                let x_prev = if t == 0 { init } else { &done_x[(t - 1) * bh..] };
                let d_t = &drive[t * bh..(t + 1) * bh];
                for ((x, &xp), &dt) in x.iter_mut().zip(x_prev).zip(d_t) {
                    *x = (1.0 - alpha) * xp + alpha * dt;
                }
                let (done_h, rest_h) = rates.split_at_mut(t * bh);
                let h_prev: &[f32] = if t == 0 { &h0 } else { &done_h[(t - 1) * bh..] };
                w.times_transposed(x, h_prev, d.batch, true, alpha);
                apply(activation, x, &mut rest_h[..bh]);
            }
            Forward { states, rates }
        }
        Update::Elman => {
            let mut states = vec![0f32; d.steps * bh];
            let mut z = vec![0f32; bh];
            for t in 0..d.steps {
                z.copy_from_slice(&drive[t * bh..(t + 1) * bh]);
                let (done, rest) = states.split_at_mut(t * bh);
                let h_prev = if t == 0 { init } else { &done[(t - 1) * bh..] };
                w.times_transposed(&mut z, h_prev, d.batch, true, 1.0);
                apply(activation, &z, &mut rest[..bh]);
            }
            Forward { states, rates: Vec::new() }
        }
    }
}

/// What the backward pass reads: the initial state, the forward's output, and the gradients
/// of the outputs: `grad_states` (`x` for leaky, `h` for Elman) and, for leaky dynamics,
/// `grad_rates` (`h`).
pub(super) struct Backward<'a> {
    pub(super) init: &'a [f32],
    pub(super) out: &'a Forward,
    pub(super) grad_states: &'a [f32],
    pub(super) grad_rates: &'a [f32],
}

/// Gradients `(w [H, H], drive [T, B, H], init [B, H])`.
pub(super) fn backward(
    update: Update,
    activation: Activation,
    w: &Matrix<'_>,
    b: &Backward<'_>,
    d: Dims,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (bh, h, steps) = (d.step(), d.hidden, d.steps);
    let mut adjoint = vec![0f32; steps * bh];
    let mut tmp = vec![0f32; bh];
    let mut grad_w = vec![0f32; h * h];
    let mut grad_init = vec![0f32; bh];
    match update {
        Update::Leaky { alpha } => {
            let alpha = alpha as f32;
            // a_t (dL/dx_{t+1} in total) = (1 - a) a_{t+1} + gx_t + phi'(x_{t+1}) (gh_t + a a_{t+1} W)
            for t in (0..steps).rev() {
                let (now, later) = adjoint.split_at_mut((t + 1) * bh);
                let a = &mut now[t * bh..];
                let next = (t + 1 < steps).then(|| &later[..bh]);
                match next {
                    Some(next) => w.times(&mut tmp, next, d.batch, false, alpha),
                    None => tmp.fill(0.0),
                }
                for (v, &g) in tmp.iter_mut().zip(&b.grad_rates[t * bh..(t + 1) * bh]) {
                    *v += g;
                }
                mul_slope(activation, &b.out.rates[t * bh..(t + 1) * bh], &mut tmp);
                let gx = &b.grad_states[t * bh..(t + 1) * bh];
                match next {
                    Some(next) => {
                        for (((a, &v), &g), &n) in a.iter_mut().zip(&tmp).zip(gx).zip(next) {
                            *a = (1.0 - alpha) * n + g + v;
                        }
                    }
                    None => {
                        for ((a, &v), &g) in a.iter_mut().zip(&tmp).zip(gx) {
                            *a = g + v;
                        }
                    }
                }
            }
            // dL/dx_0 = (1 - a) a_0 + a phi'(x_0) (a_0 W), with h_0 = phi(x_0).
            let a0 = &adjoint[..bh];
            let mut h0 = vec![0f32; bh];
            apply(activation, b.init, &mut h0);
            w.times(&mut tmp, a0, d.batch, false, alpha);
            mul_slope(activation, &h0, &mut tmp);
            for ((g, &a), &v) in grad_init.iter_mut().zip(a0).zip(&tmp) {
                *g = (1.0 - alpha) * a + v;
            }
            // dL/dW = a sum_t a_t^T h_t (h_0 = phi(x_0), then the rates), as two products.
            weight_gradient(w, &mut grad_w, &adjoint, &h0, &b.out.rates, d, alpha);
            // dL/dd_t = a a_t
            for a in &mut adjoint {
                *a *= alpha;
            }
        }
        Update::Elman => {
            // delta_t (dL/dz_{t+1}) = (gh_t + delta_{t+1} W) phi'(z_{t+1})
            for t in (0..steps).rev() {
                let (now, later) = adjoint.split_at_mut((t + 1) * bh);
                let delta = &mut now[t * bh..];
                delta.copy_from_slice(&b.grad_states[t * bh..(t + 1) * bh]);
                if t + 1 < steps {
                    w.times(delta, &later[..bh], d.batch, true, 1.0);
                }
                mul_slope(activation, &b.out.states[t * bh..(t + 1) * bh], delta);
            }
            w.times(&mut grad_init, &adjoint[..bh], d.batch, false, 1.0);
            weight_gradient(w, &mut grad_w, &adjoint, b.init, &b.out.states, d, 1.0);
        }
    }
    (grad_w, adjoint, grad_init)
}

/// `grad_w = scale * (adj_0^T first + sum_{t >= 1} adj_t^T rates_{t-1})`: the rates before each
/// step are `first` and then the first `T - 1` outputs, each a `[B, H]` block.
fn weight_gradient(
    w: &Matrix<'_>,
    grad_w: &mut [f32],
    adjoint: &[f32],
    first: &[f32],
    rates: &[f32],
    d: Dims,
    scale: f32,
) {
    let bh = d.step();
    w.outer(grad_w, &adjoint[..bh], first, d.batch, false, scale);
    let later = (d.steps - 1) * d.batch;
    w.outer(grad_w, &adjoint[bh..], &rates[..later * d.hidden], later, true, scale);
}
