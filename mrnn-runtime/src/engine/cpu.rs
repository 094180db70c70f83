//! The recurrence on the host, for CPU tensors: one product per step by a matrix packed once
//! per call (module `gemm`), into preallocated buffers, and fused elementwise loops, forward and
//! backward. candle's per-op dispatch and allocation cost tens of microseconds per step, which is
//! most of the time at the sizes neuroscience networks have (H of a few hundred).
//!
//! Threads split the trials: the recurrence is independent across trials, so each thread runs
//! the whole time loop on its own rows and the threads meet once per call instead of once per
//! step (waking a worker costs tens of microseconds, as long as a whole step at H = 256). The
//! weight gradient, one large product over all steps and trials, splits by columns instead.
//!
//! With a block structure ([`Block`]: one per connection, chosen by the compiler when few region
//! pairs are connected) every product runs over the connected blocks only: the others are zero.
//!
//! Layouts: every matrix is row-major; `w` is `[H, H]` (destination rows); sequences are
//! `[T, B, H]` or `[B, T, H]` (the caller's layout, so that no transpose is ever copied). Each
//! step works on contiguous `[b, H]` scratch buffers gathered from and scattered to the
//! sequences: O(b H) copies per step beside an O(b H^2) product.

use std::ops::Range;

use mrnn_ir::Activation;

use super::fast_math::{apply, mul_slope};
use super::gemm::{Operand, Packed, PackedLhs, matmul_packed};
use super::pool;
use super::{Block, Update};

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
    fn len(self) -> usize {
        self.steps * self.batch * self.hidden
    }

    /// Where row `b` of step `t` starts in a sequence.
    fn row(self, t: usize, b: usize) -> usize {
        if self.batch_first {
            (b * self.steps + t) * self.hidden
        } else {
            (t * self.batch + b) * self.hidden
        }
    }

    /// Copies the rows of trials `b0..` at step `t` of `seq` into the contiguous `dst`.
    fn gather(self, seq: &[f32], t: usize, b0: usize, dst: &mut [f32]) {
        let h = self.hidden;
        for (b, row) in dst.chunks_exact_mut(h).enumerate() {
            let r = self.row(t, b0 + b);
            row.copy_from_slice(&seq[r..r + h]);
        }
    }

    /// The threads to split the trials of this run over: all the engine's threads, when the run is
    /// large enough to pay for waking it.
    pub(super) fn threads(self) -> usize {
        // Below this many multiply-adds per product sequence the whole run takes less than
        // waking a worker costs several times over.
        const SPLIT_MIN: usize = 1 << 20;
        if self.len() * self.hidden < SPLIT_MIN { 1 } else { pool::threads() }
    }

    /// Hands trials to `threads` threads: `work(trials, parallel)` for consecutive ranges
    /// covering `0..batch` (`parallel`: the products inside may split over the pool themselves,
    /// when the trials were not split).
    fn split_trials<R: Send>(
        self,
        threads: usize,
        work: impl Fn(Range<usize>, bool) -> R + Sync,
    ) -> Vec<R> {
        let threads = threads.min(self.batch);
        if threads <= 1 {
            return vec![work(0..self.batch, true)];
        }
        let per = self.batch.div_ceil(threads);
        pool::run(self.batch.div_ceil(per), |task| {
            work(task * per..self.batch.min((task + 1) * per), false)
        })
    }
}

/// A sequence buffer that several threads write at once, each the rows of its own trials.
#[derive(Clone, Copy)]
struct Rows {
    ptr: *mut f32,
    len: usize,
    dims: Dims,
}

// SAFETY: the threads of one split write disjoint rows (their own trials) and read only rows
// they wrote; the buffer outlives the split.
unsafe impl Send for Rows {}
unsafe impl Sync for Rows {}

impl Rows {
    fn new(seq: &mut [f32], dims: Dims) -> Self {
        Rows { ptr: seq.as_mut_ptr(), len: seq.len(), dims }
    }

    /// Copies the contiguous `src` into the rows of trials `b0..` at step `t`.
    ///
    /// # Safety
    /// No other thread may access these rows meanwhile.
    unsafe fn scatter(self, src: &[f32], t: usize, b0: usize) {
        let h = self.dims.hidden;
        for (b, row) in src.chunks_exact(h).enumerate() {
            let r = self.dims.row(t, b0 + b);
            assert!(r + h <= self.len, "row out of bounds");
            // SAFETY: in bounds (checked); the caller guarantees exclusive access.
            unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), self.ptr.add(r), h) };
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

impl Matrix<'_> {
    /// `W^T` packed for `out[b, i] (+)= scale * sum_j h[b, j] W[i, j]`, the forward's product.
    fn transposed(&self) -> StepProduct {
        let n = self.hidden;
        let parts = match self.blocks {
            None => vec![Part::whole(Packed::new(Operand::new(self.w, 1, n), n, n))],
            Some(blocks) => blocks
                .iter()
                .map(|b| Part {
                    input: b.cols.start,
                    output: b.rows.start,
                    rhs: Packed::new(
                        Operand::new(&self.w[b.rows.start * n + b.cols.start..], 1, n),
                        b.cols.len(),
                        b.rows.len(),
                    ),
                })
                .collect(),
        };
        StepProduct { parts, dense: self.blocks.is_none(), hidden: n }
    }

    /// `W` packed for `out[b, j] (+)= scale * sum_i a[b, i] W[i, j]`, the backward's product.
    fn plain(&self) -> StepProduct {
        let n = self.hidden;
        let parts = match self.blocks {
            None => vec![Part::whole(Packed::new(Operand::new(self.w, n, 1), n, n))],
            Some(blocks) => blocks
                .iter()
                .map(|b| Part {
                    input: b.rows.start,
                    output: b.cols.start,
                    rhs: Packed::new(
                        Operand::new(&self.w[b.rows.start * n + b.cols.start..], n, 1),
                        b.rows.len(),
                        b.cols.len(),
                    ),
                })
                .collect(),
        };
        StepProduct { parts, dense: self.blocks.is_none(), hidden: n }
    }

    /// `grad[i, j] += sum_r a[r, i] p[r, j]` over `rows` rows of the `[rows, H]` `a` and `p`, on
    /// the connected blocks only (the others stay zero: the mask zeroes them anyway).
    /// `scratch` holds the packed `a^T` of a dense product (reused from call to call).
    fn add_outer(
        &self,
        grad: &mut [f32],
        a: &[f32],
        p: &[f32],
        rows: usize,
        scratch: &mut PackedLhs,
    ) {
        let n = self.hidden;
        let p = |r: usize| &p[r * n..];
        match self.blocks {
            None => {
                let rhs = Packed::from_rows(rows, n, p);
                scratch.pack(Operand::new(a, 1, n), n, rows);
                matmul_packed(grad, n, true, scratch, 0, &rhs, 1.0, false);
            }
            Some(blocks) => {
                // Blocks share their regions: each region's rows of `a^T` and columns of `p` are
                // packed once, not once per block.
                let mut lhs: Vec<(Range<usize>, PackedLhs)> = Vec::new();
                let mut rhs: Vec<(Range<usize>, Packed)> = Vec::new();
                for b in blocks {
                    if !lhs.iter().any(|(r, _)| *r == b.rows) {
                        let mut packed = PackedLhs::default();
                        packed.pack(Operand::new(&a[b.rows.start..], 1, n), b.rows.len(), rows);
                        lhs.push((b.rows.clone(), packed));
                    }
                    if !rhs.iter().any(|(c, _)| *c == b.cols) {
                        let c = b.cols.clone();
                        let packed = Packed::from_rows(rows, c.len(), |row| &p(row)[c.start..]);
                        rhs.push((c, packed));
                    }
                }
                for b in blocks {
                    let lhs = lhs.iter().find(|(r, _)| *r == b.rows).map(|(_, l)| l);
                    let rhs = rhs.iter().find(|(c, _)| *c == b.cols).map(|(_, r)| r);
                    let (Some(lhs), Some(rhs)) = (lhs, rhs) else {
                        unreachable!("every block's region was packed above")
                    };
                    matmul_packed(
                        &mut grad[b.rows.start * n + b.cols.start..],
                        n,
                        true,
                        lhs,
                        0,
                        rhs,
                        1.0,
                        false,
                    );
                }
            }
        }
    }
}

/// A per-step product `out (+)= scale * v M` of `[B, H]` rows by a matrix packed once per call:
/// the whole matrix, or one part per connected block.
struct StepProduct {
    parts: Vec<Part>,
    /// One part covering the whole matrix.
    dense: bool,
    hidden: usize,
}

/// One block of a [`StepProduct`]: `out[:, output..] += v[:, input..] rhs`.
struct Part {
    input: usize,
    output: usize,
    rhs: Packed,
}

impl Part {
    fn whole(rhs: Packed) -> Self {
        Part { input: 0, output: 0, rhs }
    }
}

impl StepProduct {
    /// `out (+)= scale * v M` for `batch` rows of `v`, packed once into `lhs` (the caller's
    /// buffer, reused every step) for all the parts.
    #[allow(clippy::too_many_arguments, reason = "one product's operands and its scratch")]
    fn apply(
        &self,
        lhs: &mut PackedLhs,
        out: &mut [f32],
        v: &[f32],
        batch: usize,
        accumulate: bool,
        scale: f32,
        parallel: bool,
    ) {
        let n = self.hidden;
        if !self.dense && !accumulate {
            out[..batch * n].fill(0.0);
        }
        lhs.pack(Operand::new(v, n, 1), batch, n);
        for part in &self.parts {
            assert!(part.input + part.rhs.rows() <= n && part.output + part.rhs.cols() <= n);
            matmul_packed(
                &mut out[part.output..],
                n,
                accumulate || !self.dense,
                lhs,
                part.input,
                &part.rhs,
                scale,
                parallel,
            );
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
    threads: usize,
) -> Forward {
    let w_t = w.transposed();
    let mut states = vec![0f32; d.len()];
    let mut rates = match update {
        Update::Leaky { .. } => vec![0f32; d.len()],
        Update::Elman => Vec::new(),
    };
    let (states_out, rates_out) = (Rows::new(&mut states, d), Rows::new(&mut rates, d));
    d.split_trials(threads, |trials, parallel| {
        let run = Loop { activation, product: &w_t, d, trials, parallel };
        // SAFETY: each split writes the rows of its own trials only.
        unsafe { run.forward(update, drive, init, states_out, rates_out) };
    });
    Forward { states, rates }
}

/// The time loop over some trials of a run.
struct Loop<'a> {
    activation: Activation,
    product: &'a StepProduct,
    d: Dims,
    trials: Range<usize>,
    parallel: bool,
}

impl Loop<'_> {
    /// The forward loop.
    ///
    /// # Safety
    /// No other thread may access the rows of these trials in `states` and `rates`.
    unsafe fn forward(
        &self,
        update: Update,
        drive: &[f32],
        init: &[f32],
        states: Rows,
        rates: Rows,
    ) {
        let (h, b0, nb) = (self.d.hidden, self.trials.start, self.trials.len());
        let init = &init[b0 * h..(b0 + nb) * h];
        let mut cur = vec![0f32; nb * h];
        let mut lhs = PackedLhs::default();
        match update {
            Update::Leaky { alpha } => {
                let alpha = alpha as f32;
                let mut d_t = vec![0f32; nb * h];
                let mut x_prev = init.to_vec();
                let mut h_prev = vec![0f32; nb * h];
                apply(self.activation, init, &mut h_prev);
                for t in 0..self.d.steps {
                    self.d.gather(drive, t, b0, &mut d_t);
                    for ((x, &xp), &dt) in cur.iter_mut().zip(&x_prev).zip(&d_t) {
                        *x = (1.0 - alpha) * xp + alpha * dt;
                    }
                    self.product.apply(&mut lhs, &mut cur, &h_prev, nb, true, alpha, self.parallel);
                    apply(self.activation, &cur, &mut h_prev);
                    // SAFETY: the caller guarantees exclusive access to these rows.
                    unsafe {
                        states.scatter(&cur, t, b0);
                        rates.scatter(&h_prev, t, b0);
                    }
                    std::mem::swap(&mut x_prev, &mut cur);
                }
            }
            Update::Elman => {
                let mut h_prev = init.to_vec();
                for t in 0..self.d.steps {
                    self.d.gather(drive, t, b0, &mut cur);
                    self.product.apply(&mut lhs, &mut cur, &h_prev, nb, true, 1.0, self.parallel);
                    apply(self.activation, &cur, &mut h_prev);
                    // SAFETY: as above.
                    unsafe { states.scatter(&h_prev, t, b0) };
                }
            }
        }
    }

    /// The reverse loop: writes `dL/dd_t` into `adjoint` and `dL/dinit` into `grad_init`, and
    /// returns these trials' part of `dL/dW`.
    ///
    /// # Safety
    /// No other thread may access the rows of these trials in `adjoint` and `grad_init`.
    unsafe fn backward(
        &self,
        update: Update,
        w: &Matrix<'_>,
        b: &Backward<'_>,
        adjoint: Rows,
        grad_init: Rows,
    ) -> Vec<f32> {
        let (h, b0, nb) = (self.d.hidden, self.trials.start, self.trials.len());
        let init = &b.init[b0 * h..(b0 + nb) * h];
        let (mut next, mut cur, mut tmp, mut slope) =
            (vec![0f32; nb * h], vec![0f32; nb * h], vec![0f32; nb * h], vec![0f32; nb * h]);
        let mut out = vec![0f32; nb * h];
        let mut lhs = PackedLhs::default();
        // The rates each step multiplied W by: h_0 (phi(x_0) for leaky dynamics), then the
        // sequence's rates one step back.
        let mut h0 = init.to_vec();
        if let Update::Leaky { .. } = update {
            apply(self.activation, init, &mut h0);
        }
        // dL/dW = sum_t adjoint_t^T h_{t-1}: the pair of step t + 1 joins at step t, when the
        // rates h_t it needs are gathered anyway (for phi'); step 0's pairs with h_0 at the end.
        let mut outer = OuterProducts::new(w, nb);
        match update {
            Update::Leaky { alpha } => {
                let alpha = alpha as f32;
                // a_t = dL/dx_{t+1} in total, from dL/dh_{t+1} (g_t) and dL/dx_{t+1} (e_t)
                // directly: a_t = phi'(x_{t+1}) (g_t + a a_{t+1} W) + (1 - a) a_{t+1} + e_t
                for t in (0..self.d.steps).rev() {
                    self.d.gather(b.grad_h, t, b0, &mut cur);
                    if t + 1 < self.d.steps {
                        self.product.apply(
                            &mut lhs,
                            &mut cur,
                            &next,
                            nb,
                            true,
                            alpha,
                            self.parallel,
                        );
                    }
                    self.d.gather(b.rates, t, b0, &mut slope);
                    mul_slope(self.activation, &slope, &mut cur);
                    if t + 1 < self.d.steps {
                        for (a, &n) in cur.iter_mut().zip(&next) {
                            *a += (1.0 - alpha) * n;
                        }
                        outer.push(&next, &slope);
                    }
                    if let Some(grad_x) = b.grad_x {
                        self.d.gather(grad_x, t, b0, &mut tmp);
                        for (a, &e) in cur.iter_mut().zip(&tmp) {
                            *a += e;
                        }
                    }
                    // dL/dd_t = a a_t
                    for (o, &a) in out.iter_mut().zip(&cur) {
                        *o = alpha * a;
                    }
                    // SAFETY: the caller guarantees exclusive access to these rows.
                    unsafe { adjoint.scatter(&out, t, b0) };
                    std::mem::swap(&mut next, &mut cur);
                }
                outer.push(&next, &h0);
                // dL/dx_0 = (1 - a) a_0 + a phi'(x_0) (a_0 W), with h_0 = phi(x_0).
                self.product.apply(&mut lhs, &mut tmp, &next, nb, false, alpha, self.parallel);
                mul_slope(self.activation, &h0, &mut tmp);
                for ((g, &a), &v) in out.iter_mut().zip(&next).zip(&tmp) {
                    *g = (1.0 - alpha) * a + v;
                }
            }
            Update::Elman => {
                // delta_t (dL/dz_{t+1}) = (g_t + delta_{t+1} W) phi'(z_{t+1})
                for t in (0..self.d.steps).rev() {
                    self.d.gather(b.grad_h, t, b0, &mut cur);
                    if t + 1 < self.d.steps {
                        self.product.apply(&mut lhs, &mut cur, &next, nb, true, 1.0, self.parallel);
                    }
                    self.d.gather(b.rates, t, b0, &mut slope);
                    mul_slope(self.activation, &slope, &mut cur);
                    if t + 1 < self.d.steps {
                        outer.push(&next, &slope);
                    }
                    // SAFETY: as above.
                    unsafe { adjoint.scatter(&cur, t, b0) };
                    std::mem::swap(&mut next, &mut cur);
                }
                outer.push(&next, &h0);
                self.product.apply(&mut lhs, &mut out, &next, nb, false, 1.0, self.parallel);
            }
        }
        // SAFETY: as above; `grad_init` is `[B, H]`, one "step".
        unsafe { grad_init.scatter(&out, 0, b0) };
        // Leaky: the adjoints pushed are dL/dx; dL/dd_t = a dL/dx_{t+1}.
        let scale = match update {
            Update::Leaky { alpha } => Some(alpha as f32),
            Update::Elman => None,
        };
        outer.finish(scale)
    }
}

/// `dL/dW = scale * sum_t adjoint_t^T h_{t-1}`, accumulated while the reverse loop runs: the
/// rows of several steps are collected and multiplied in by one product of depth
/// ~[`Self::DEPTH`], while they are still in cache (one product over all steps at the end would
/// first copy both `[T B, H]` sequences into the packed layout, on one thread).
struct OuterProducts<'a> {
    w: &'a Matrix<'a>,
    grad: Vec<f32>,
    adjoints: Vec<f32>,
    before: Vec<f32>,
    /// Rows per product.
    rows: usize,
    lhs: PackedLhs,
}

impl<'a> OuterProducts<'a> {
    const DEPTH: usize = 256;

    fn new(w: &'a Matrix<'a>, trials: usize) -> Self {
        let h = w.hidden;
        let rows = Self::DEPTH.div_ceil(trials).max(1) * trials;
        OuterProducts {
            w,
            grad: vec![0f32; h * h],
            adjoints: Vec::with_capacity(rows * h),
            before: Vec::with_capacity(rows * h),
            rows,
            lhs: PackedLhs::default(),
        }
    }

    fn push(&mut self, adjoints: &[f32], before: &[f32]) {
        self.adjoints.extend_from_slice(adjoints);
        self.before.extend_from_slice(before);
        if self.adjoints.len() >= self.rows * self.w.hidden {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let rows = self.adjoints.len() / self.w.hidden;
        if rows > 0 {
            self.w.add_outer(&mut self.grad, &self.adjoints, &self.before, rows, &mut self.lhs);
        }
        self.adjoints.clear();
        self.before.clear();
    }

    /// The gradient, times `scale` if any.
    fn finish(mut self, scale: Option<f32>) -> Vec<f32> {
        self.flush();
        if let Some(scale) = scale {
            for g in &mut self.grad {
                *g *= scale;
            }
        }
        self.grad
    }
}

/// What the backward pass reads, in the sequences' layout: the initial state, the rates
/// `h_1..h_T` the forward produced, and the gradient of the loss with respect to them and, for
/// leaky dynamics when the loss reads them, to the states `x_1..x_T`.
pub(super) struct Backward<'a> {
    pub(super) init: &'a [f32],
    pub(super) rates: &'a [f32],
    pub(super) grad_h: &'a [f32],
    pub(super) grad_x: Option<&'a [f32]>,
}

/// Gradients `(w [H, H], drive (the sequences' layout), init [B, H])`.
pub(super) fn backward(
    update: Update,
    activation: Activation,
    w: &Matrix<'_>,
    b: &Backward<'_>,
    d: Dims,
    threads: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let h = d.hidden;
    let w_p = w.plain();
    let mut adjoint = vec![0f32; d.len()];
    let mut grad_init = vec![0f32; d.batch * h];
    let adjoint_out = Rows::new(&mut adjoint, d);
    let init_out = Rows::new(&mut grad_init, Dims { steps: 1, ..d });
    let parts = d.split_trials(threads, |trials, parallel| {
        let run = Loop { activation, product: &w_p, d, trials, parallel };
        // SAFETY: each split writes the rows of its own trials only.
        unsafe { run.backward(update, w, b, adjoint_out, init_out) }
    });
    let mut parts = parts.into_iter();
    let mut grad_w = parts.next().unwrap_or_else(|| vec![0f32; h * h]);
    for part in parts {
        for (g, p) in grad_w.iter_mut().zip(part) {
            *g += p;
        }
    }
    (grad_w, adjoint, grad_init)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::values;

    /// Trials split over threads give the same sequences and gradients as one thread, in both
    /// layouts, dense and by blocks, leaky and Elman, with uneven splits (5 trials, 2 and 3
    /// threads).
    #[test]
    fn split_trials_equal_one_thread() {
        let (steps, batch, hidden) = (6, 5, 9);
        let blocks = [
            Block { rows: 0..4, cols: 0..4 },
            Block { rows: 4..9, cols: 0..4 },
            Block { rows: 0..4, cols: 6..9 },
        ];
        let mut w = values(hidden * hidden, 1);
        for (i, row) in w.chunks_exact_mut(hidden).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                if !blocks.iter().any(|b| b.rows.contains(&i) && b.cols.contains(&j)) {
                    *v = 0.0;
                }
                *v *= 0.4;
            }
        }
        let (drive, init, grad, grad_x) = (
            values(steps * batch * hidden, 2),
            values(batch * hidden, 3),
            values(steps * batch * hidden, 4),
            values(steps * batch * hidden, 5),
        );
        for batch_first in [false, true] {
            for update in [Update::Leaky { alpha: 0.25 }, Update::Elman] {
                for with_blocks in [false, true] {
                    let d = Dims { steps, batch, hidden, batch_first };
                    let matrix =
                        Matrix { w: &w, blocks: with_blocks.then_some(&blocks[..]), hidden };
                    let run = |threads| {
                        let out =
                            forward(update, Activation::Tanh, &matrix, &drive, &init, d, threads);
                        let rates =
                            if out.rates.is_empty() { &out.states } else { &out.rates }.clone();
                        let grad_x = matches!(update, Update::Leaky { .. }).then_some(&grad_x[..]);
                        let args = Backward { init: &init, rates: &rates, grad_h: &grad, grad_x };
                        let grads = backward(update, Activation::Tanh, &matrix, &args, d, threads);
                        (out.states, rates, grads)
                    };
                    let one = run(1);
                    for threads in [2, 3] {
                        let many = run(threads);
                        let what = format!(
                            "{update:?} batch_first={batch_first} blocks={with_blocks} \
                             threads={threads}"
                        );
                        assert_eq!(one.0, many.0, "{what}: states");
                        assert_eq!(one.1, many.1, "{what}: rates");
                        assert_eq!(one.2.1, many.2.1, "{what}: drive gradient");
                        assert_eq!(one.2.2, many.2.2, "{what}: initial-state gradient");
                        // Summed per thread, then across threads: equal up to rounding.
                        for (x, y) in one.2.0.iter().zip(&many.2.0) {
                            assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "{what}: dL/dW");
                        }
                    }
                }
            }
        }
    }
}
