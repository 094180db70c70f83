//! The recurrence on the host, for CPU tensors: one GEMM per step (through the `gemm` crate that
//! candle itself uses, into preallocated buffers) and fused elementwise loops, forward and
//! backward. candle's per-op dispatch and allocation cost tens of microseconds per step, which is
//! most of the time at the sizes neuroscience networks have (H of a few hundred).
//!
//! With a block structure ([`Block`]: one per connection, chosen by the compiler when few region
//! pairs are connected) every product runs over the connected blocks only: the others are zero.
//!
//! Layouts: every matrix is row-major; `w` is `[H, H]` (destination rows); sequences are
//! `[T, B, H]` or `[B, T, H]` (the caller's layout, so that no transpose is ever copied). Each
//! step works on contiguous `[B, H]` scratch buffers gathered from and scattered to the
//! sequences: O(B H) copies per step beside an O(B H^2) product.

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
    // Threads pay off only on products big enough to split: waking the second worker costs
    // tens of microseconds here, more than a [32 x 256] x [256 x 256] product takes (99 us on one
    // thread, 138 us split in two). Above the threshold each thread takes a block of output
    // columns (32 x 1024 x 1024: 3.4 ms on one thread, 1.7 ms on two; gemm's own parallel mode
    // gave 2.3 ms).
    let threads = rayon_threads().min(n);
    if threads > 1 && m * n * k >= 1 << 23 {
        let chunk = n.div_ceil(threads);
        let base = SendPtr(dst.as_mut_ptr());
        rayon::scope(|scope| {
            for c0 in (0..n).step_by(chunk) {
                let cols = chunk.min(n - c0);
                scope.spawn(move |_| {
                    // SAFETY: every task writes its own columns c0..c0 + cols of the rows of
                    // `dst` (bounds checked above for the whole matrix), so no two tasks touch
                    // the same element, and `dst` outlives the scope.
                    let dst = unsafe { base.add(c0) };
                    unsafe {
                        gemm_raw(dst, ld, (m, cols, k), accumulate, lhs, rhs.columns(c0), scale);
                    }
                });
            }
        });
    } else {
        // SAFETY: bounds checked above; `dst` is borrowed mutably, so it aliases no operand.
        unsafe { gemm_raw(dst.as_mut_ptr(), ld, (m, n, k), accumulate, lhs, rhs, scale) };
    }
}

/// A pointer that may cross to another thread (each task writes disjoint elements).
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);

// SAFETY: used only to hand disjoint column blocks of one matrix to scoped tasks.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// # Safety
    /// `offset` must stay inside the allocation.
    unsafe fn add(self, offset: usize) -> *mut f32 {
        // SAFETY: the caller keeps `offset` inside the allocation.
        unsafe { self.0.add(offset) }
    }
}

impl<'a> Operand<'a> {
    /// The same operand from column `c0` on.
    fn columns(self, c0: usize) -> Operand<'a> {
        Operand { data: &self.data[c0 * self.cs..], rs: self.rs, cs: self.cs }
    }
}

/// One single-threaded GEMM call.
///
/// # Safety
/// `dst` must be valid for writes of an `m x n` matrix with row stride `ld`, and `lhs`/`rhs`
/// must hold `m x k` and `k x n` matrices (checked by [`matmul`]).
unsafe fn gemm_raw(
    dst: *mut f32,
    ld: usize,
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
    lhs: Operand<'_>,
    rhs: Operand<'_>,
    scale: f32,
) {
    // SAFETY: the caller guarantees the bounds.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
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
            gemm::Parallelism::None,
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
    /// Sequences are `[B, T, H]` (else `[T, B, H]`).
    pub(super) batch_first: bool,
}

impl Dims {
    fn step(self) -> usize {
        self.batch * self.hidden
    }

    /// Where row `b` of step `t` starts in a sequence.
    fn row(self, t: usize, b: usize) -> usize {
        if self.batch_first {
            (b * self.steps + t) * self.hidden
        } else {
            (t * self.batch + b) * self.hidden
        }
    }

    /// Copies step `t` of `seq` into the contiguous `[B, H]` `dst`.
    fn gather(self, seq: &[f32], t: usize, dst: &mut [f32]) {
        let h = self.hidden;
        for (b, row) in dst.chunks_exact_mut(h).enumerate() {
            let r = self.row(t, b);
            row.copy_from_slice(&seq[r..r + h]);
        }
    }

    /// Copies the contiguous `[B, H]` `src` into step `t` of `seq`.
    fn scatter(self, src: &[f32], t: usize, seq: &mut [f32]) {
        let h = self.hidden;
        for (b, row) in src.chunks_exact(h).enumerate() {
            let r = self.row(t, b);
            seq[r..r + h].copy_from_slice(row);
        }
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

/// `W^T` stored contiguously: GEMM reads its right operand far faster row-major than through
/// the transposed strides of `W` (measured 2.3x at H = 256, B = 32), and the forward pass
/// multiplies by `W^T` at every step.
fn transpose(w: &[f32], n: usize) -> Vec<f32> {
    let mut t = vec![0f32; n * n];
    for (i, row) in w.chunks_exact(n).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            t[j * n + i] = v;
        }
    }
    t
}

impl Matrix<'_> {
    /// `out[b, i] (+)= scale * sum_j h[b, j] W[i, j]` for a `[batch, H]` `h`, given `w_t`, the
    /// contiguous transpose of `W` (see [`transpose`]).
    fn times_transposed(
        &self,
        w_t: &[f32],
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
                Operand::new(w_t, n, 1),
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
                        Operand::new(&w_t[cols.start * n + rows.start..], n, 1),
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

/// The output of the forward loop, in the sequences' layout: `states` (`x_1..x_T` for leaky,
/// `h_1..h_T` for Elman) and, for leaky dynamics, `rates` `h_1..h_T` (empty for Elman, where
/// they are the states).
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
    let w_t = transpose(w.w, d.hidden);
    let mut states = vec![0f32; d.steps * bh];
    let mut cur = vec![0f32; bh];
    let mut d_t = vec![0f32; bh];
    match update {
        Update::Leaky { alpha } => {
            let alpha = alpha as f32;
            let mut rates = vec![0f32; d.steps * bh];
            let mut x_prev = init.to_vec();
            let mut h_prev = vec![0f32; bh];
            apply(activation, init, &mut h_prev);
            for t in 0..d.steps {
                d.gather(drive, t, &mut d_t);
                for ((x, &xp), &dt) in cur.iter_mut().zip(&x_prev).zip(&d_t) {
                    *x = (1.0 - alpha) * xp + alpha * dt;
                }
                w.times_transposed(&w_t, &mut cur, &h_prev, d.batch, true, alpha);
                apply(activation, &cur, &mut h_prev);
                d.scatter(&cur, t, &mut states);
                d.scatter(&h_prev, t, &mut rates);
                std::mem::swap(&mut x_prev, &mut cur);
            }
            Forward { states, rates }
        }
        Update::Elman => {
            let mut h_prev = init.to_vec();
            for t in 0..d.steps {
                d.gather(drive, t, &mut cur);
                w.times_transposed(&w_t, &mut cur, &h_prev, d.batch, true, 1.0);
                apply(activation, &cur, &mut h_prev);
                d.scatter(&h_prev, t, &mut states);
            }
            Forward { states, rates: Vec::new() }
        }
    }
}

/// What the backward pass reads: the initial state, the forward's output, and the gradient of
/// the loss with respect to the states (`x` for leaky, in total, the path through `h = phi(x)`
/// included; `h` for Elman), in the sequences' layout.
pub(super) struct Backward<'a> {
    pub(super) init: &'a [f32],
    pub(super) out: &'a Forward,
    pub(super) grad: &'a [f32],
}

/// Gradients `(w [H, H], drive (the sequences' layout), init [B, H])`.
pub(super) fn backward(
    update: Update,
    activation: Activation,
    w: &Matrix<'_>,
    b: &Backward<'_>,
    d: Dims,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (bh, h, steps) = (d.step(), d.hidden, d.steps);
    let mut adjoint = vec![0f32; steps * bh];
    let (mut next, mut cur, mut tmp, mut slope) =
        (vec![0f32; bh], vec![0f32; bh], vec![0f32; bh], vec![0f32; bh]);
    let mut grad_w = vec![0f32; h * h];
    let mut grad_init = vec![0f32; bh];
    // The rates each step multiplied W by, in the sequences' layout: h_0, then h_1..h_{T-1}.
    let mut before = vec![0f32; steps * bh];
    let mut h0 = vec![0f32; bh];
    let sequence = match update {
        Update::Leaky { .. } => {
            apply(activation, b.init, &mut h0);
            &b.out.rates
        }
        Update::Elman => {
            h0.copy_from_slice(b.init);
            &b.out.states
        }
    };
    d.scatter(&h0, 0, &mut before);
    for t in 1..steps {
        d.gather(sequence, t - 1, &mut tmp);
        d.scatter(&tmp, t, &mut before);
    }
    match update {
        Update::Leaky { alpha } => {
            let alpha = alpha as f32;
            // a_t (dL/dx_{t+1} in total) = g_t + (1 - a) a_{t+1} + phi'(x_{t+1}) (a a_{t+1} W)
            for t in (0..steps).rev() {
                d.gather(b.grad, t, &mut cur);
                if t + 1 < steps {
                    w.times(&mut tmp, &next, d.batch, false, alpha);
                    d.gather(&b.out.rates, t, &mut slope);
                    mul_slope(activation, &slope, &mut tmp);
                    for ((a, &v), &n) in cur.iter_mut().zip(&tmp).zip(&next) {
                        *a += (1.0 - alpha) * n + v;
                    }
                }
                d.scatter(&cur, t, &mut adjoint);
                std::mem::swap(&mut next, &mut cur);
            }
            // dL/dx_0 = (1 - a) a_0 + a phi'(x_0) (a_0 W), with h_0 = phi(x_0).
            w.times(&mut tmp, &next, d.batch, false, alpha);
            mul_slope(activation, &h0, &mut tmp);
            for ((g, &a), &v) in grad_init.iter_mut().zip(&next).zip(&tmp) {
                *g = (1.0 - alpha) * a + v;
            }
            // dL/dW = a sum_t a_t^T h_t over every (step, trial) row at once.
            w.outer(&mut grad_w, &adjoint, &before, steps * d.batch, false, alpha);
            // dL/dd_t = a a_t
            for a in &mut adjoint {
                *a *= alpha;
            }
        }
        Update::Elman => {
            // delta_t (dL/dz_{t+1}) = (g_t + delta_{t+1} W) phi'(z_{t+1})
            for t in (0..steps).rev() {
                d.gather(b.grad, t, &mut cur);
                if t + 1 < steps {
                    w.times(&mut cur, &next, d.batch, true, 1.0);
                }
                d.gather(&b.out.states, t, &mut slope);
                mul_slope(activation, &slope, &mut cur);
                d.scatter(&cur, t, &mut adjoint);
                std::mem::swap(&mut next, &mut cur);
            }
            w.times(&mut grad_init, &next, d.batch, false, 1.0);
            w.outer(&mut grad_w, &adjoint, &before, steps * d.batch, false, 1.0);
        }
    }
    (grad_w, adjoint, grad_init)
}
