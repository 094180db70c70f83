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
//! `[T, B, H]` or `[B, T, H]` (the caller's layout, so that no transpose is ever copied). The
//! loops read and write the rows of each step where they lie in the sequences ([`Span`]): the
//! products take their left operand in place and write rows any distance apart, and the
//! elementwise passes go row by row (once over all rows when they are contiguous). Gathering
//! each step into contiguous scratch and scattering it back cost a tenth of a run at H = 350
//! and a quarter at H = 30.

use std::ops::Range;

use mrnn_ir::Activation;

use super::fast_math::{AdjointTerms, adjoint_step, apply, blend, mul_slope};
use super::gemm::{InPlace, Operand, Packed, PackedLhs, matmul_in_place, matmul_packed};
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

    /// The rows of trials `b0..` at step `t` of a sequence.
    fn span(self, t: usize, b0: usize) -> Span {
        let stride = if self.batch_first { self.steps * self.hidden } else { self.hidden };
        Span { start: self.row(t, b0), stride }
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

/// Rows of `H` floats for consecutive trials in a buffer: row `i` starts at `start + i * stride`
/// (a step of a sequence, or a contiguous `[B, H]` buffer with `stride` H).
#[derive(Clone, Copy, Debug)]
struct Span {
    start: usize,
    stride: usize,
}

impl Span {
    /// The rows of a contiguous `[B, H]` buffer from row `row` on.
    fn contiguous(row: usize, hidden: usize) -> Self {
        Span { start: row * hidden, stride: hidden }
    }

    /// The same rows of a contiguous `[B, H]` buffer, read in place by a product.
    fn of(rows: &[f32], hidden: usize) -> InPlace {
        InPlace { ptr: rows.as_ptr(), rs: hidden, m: rows.len() / hidden.max(1), k: hidden }
    }
}

/// Calls `f(offsets, len)` over the `rows` rows of `hidden` floats that `spans` describe (one
/// offset per span): once for all of them when every span is contiguous, else row by row.
fn each_row<const N: usize>(
    rows: usize,
    hidden: usize,
    spans: [Span; N],
    mut f: impl FnMut([usize; N], usize),
) {
    if spans.iter().all(|s| s.stride == hidden) {
        f(spans.map(|s| s.start), rows * hidden);
    } else {
        for i in 0..rows {
            f(spans.map(|s| s.start + i * s.stride), hidden);
        }
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
    /// The `len` floats of `buf`'s spare capacity, which the loops fill without reading them
    /// first: zeroing outputs of several MB before overwriting them was a tenth of a run.
    /// Call [`Rows::filled`] once every element has been written.
    fn uninit(buf: &mut Vec<f32>, len: usize, dims: Dims) -> Self {
        buf.clear();
        buf.reserve_exact(len);
        Rows { ptr: buf.spare_capacity_mut().as_mut_ptr().cast(), len, dims }
    }

    /// Hands the filled floats to `buf`.
    ///
    /// # Safety
    /// `self` comes from [`Rows::uninit`] on `buf`, and every one of its floats was written.
    unsafe fn filled(self, buf: &mut Vec<f32>) {
        assert!(std::ptr::eq(buf.as_ptr(), self.ptr) && self.len <= buf.capacity());
        // SAFETY: initialized (the caller), within the capacity (checked).
        unsafe { buf.set_len(self.len) };
    }

    /// The `len` floats from `at`, to write.
    ///
    /// # Safety
    /// Nothing else may access them while the slice lives.
    unsafe fn slice_mut<'b>(self, at: usize, len: usize) -> &'b mut [f32] {
        assert!(at + len <= self.len, "rows out of bounds");
        // SAFETY: in bounds (checked); the caller guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(at), len) }
    }

    /// The `len` floats from `at`, to read.
    ///
    /// # Safety
    /// Nothing may write them while the slice lives.
    unsafe fn slice<'b>(self, at: usize, len: usize) -> &'b [f32] {
        assert!(at + len <= self.len, "rows out of bounds");
        // SAFETY: in bounds (checked); the caller guarantees no concurrent writes.
        unsafe { std::slice::from_raw_parts(self.ptr.add(at), len) }
    }

    /// The first of the `rows` rows of `span`, checked to lie in the buffer.
    fn at(self, span: Span, rows: usize) -> *mut f32 {
        let end =
            if rows == 0 { 0 } else { span.start + (rows - 1) * span.stride + self.dims.hidden };
        assert!(end <= self.len, "rows out of bounds");
        self.ptr.wrapping_add(span.start)
    }

    /// The `rows` rows of `span`, read in place by a product.
    fn in_place(self, span: Span, rows: usize) -> InPlace {
        let h = self.dims.hidden;
        InPlace { ptr: self.at(span, rows), rs: span.stride, m: rows, k: h }
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
    /// `out (+)= scale * v M` for the rows of `v` (read in place), into rows of `out` `ld`
    /// apart.
    ///
    /// # Safety
    /// `v` valid for reads of its rows (`k` = H floats each), `out` for writes of as many rows
    /// of H floats `ld` apart; nothing else may access `out`'s rows meanwhile, and the two may
    /// not overlap.
    #[allow(clippy::too_many_arguments, reason = "one product's operands and its options")]
    unsafe fn apply(
        &self,
        out: *mut f32,
        ld: usize,
        v: InPlace,
        accumulate: bool,
        scale: f32,
        parallel: bool,
    ) {
        let n = self.hidden;
        assert_eq!(v.k, n, "step product by rows of another width");
        if !self.dense && !accumulate {
            for row in 0..v.m {
                // SAFETY: row `row` of `out` holds `n` writable floats (the caller).
                unsafe { std::slice::from_raw_parts_mut(out.add(row * ld), n).fill(0.0) };
            }
        }
        for part in &self.parts {
            assert!(part.input + part.rhs.rows() <= n && part.output + part.rhs.cols() <= n);
            let lhs = InPlace { ptr: v.ptr.wrapping_add(part.input), ..v };
            // SAFETY: the part's columns lie within the rows (checked above); the caller
            // guarantees the rest.
            unsafe {
                matmul_in_place(
                    out.add(part.output),
                    ld,
                    accumulate || !self.dense,
                    lhs,
                    &part.rhs,
                    scale,
                    parallel,
                );
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
    threads: usize,
) -> Forward {
    let w_t = w.transposed();
    let (mut states, mut rates) = (Vec::new(), Vec::new());
    let rates_len = match update {
        Update::Leaky { .. } => d.len(),
        Update::Elman => 0,
    };
    let (states_out, rates_out) =
        (Rows::uninit(&mut states, d.len(), d), Rows::uninit(&mut rates, rates_len, d));
    d.split_trials(threads, |trials, parallel| {
        let run = Loop { activation, product: &w_t, d, trials, parallel };
        // SAFETY: each split writes the rows of its own trials only.
        unsafe { run.forward(update, drive, init, states_out, rates_out) };
    });
    // SAFETY: the splits cover every trial, and the loop writes every row of each step.
    unsafe {
        states_out.filled(&mut states);
        rates_out.filled(&mut rates);
    }
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
        let step = |t: usize| self.d.span(t, b0);
        match update {
            Update::Leaky { alpha } => {
                let alpha = alpha as f32;
                let mut h0 = vec![0f32; nb * h];
                apply(self.activation, init, &mut h0);
                for t in 0..self.d.steps {
                    // x_t = (1 - a) x_{t-1} + a d_t, then += a h_{t-1} W^T below.
                    let before = if t == 0 { Span::contiguous(0, h) } else { step(t - 1) };
                    each_row(nb, h, [before, step(t)], |[p, x], len| {
                        // SAFETY: rows of these trials (the caller's exclusive access); step
                        // t - 1's rows are not step t's.
                        let (prev, x_t) = unsafe {
                            let prev =
                                if t == 0 { &init[p..p + len] } else { states.slice(p, len) };
                            (prev, states.slice_mut(x, len))
                        };
                        blend(1.0 - alpha, prev, alpha, &drive[x..x + len], x_t);
                    });
                    let v = if t == 0 { Span::of(&h0, h) } else { rates.in_place(step(t - 1), nb) };
                    let out = states.at(step(t), nb);
                    // SAFETY: the rows of these trials, in bounds (checked by `at`); rates and
                    // states are two buffers.
                    unsafe {
                        self.product.apply(out, step(t).stride, v, true, alpha, self.parallel);
                    };
                    each_row(nb, h, [step(t)], |[x], len| {
                        // SAFETY: as above; two buffers.
                        unsafe {
                            apply(self.activation, states.slice(x, len), rates.slice_mut(x, len));
                        };
                    });
                }
            }
            Update::Elman => {
                // h_t = phi(d_t + h_{t-1} W^T), the sum formed in `z`.
                let mut z = vec![0f32; nb * h];
                for t in 0..self.d.steps {
                    each_row(nb, h, [Span::contiguous(0, h), step(t)], |[c, x], len| {
                        z[c..c + len].copy_from_slice(&drive[x..x + len]);
                    });
                    let v =
                        if t == 0 { Span::of(init, h) } else { states.in_place(step(t - 1), nb) };
                    // SAFETY: `z` is this loop's own; `v` rows of these trials (the caller).
                    unsafe { self.product.apply(z.as_mut_ptr(), h, v, true, 1.0, self.parallel) };
                    each_row(nb, h, [Span::contiguous(0, h), step(t)], |[c, x], len| {
                        // SAFETY: as above.
                        unsafe { apply(self.activation, &z[c..c + len], states.slice_mut(x, len)) };
                    });
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
        let init_rows = Span::contiguous(b0, h);
        let init = &b.init[b0 * h..(b0 + nb) * h];
        let step = |t: usize| self.d.span(t, b0);
        let scratch = Span::contiguous(0, h);
        // a_{t+1} and a_t (dL/dx or dL/dz of steps t + 1 and t), each `[nb, H]`.
        let (mut next, mut cur) = (vec![0f32; nb * h], vec![0f32; nb * h]);
        // dL/dW = sum_t adjoint_t^T h_{t-1}: the pair of step t + 1 joins at step t, when the
        // rates h_t it needs are read anyway (for phi'); step 0's pairs with h_0 at the end.
        let mut outer = OuterProducts::new(w, nb);
        let (alpha, leaky) = match update {
            Update::Leaky { alpha } => (alpha as f32, true),
            Update::Elman => (1.0, false),
        };
        // Leaky: a_t = dL/dx_{t+1} in total, from dL/dh_{t+1} (g_t) and dL/dx_{t+1} (e_t):
        //   a_t = phi'(x_{t+1}) (g_t + a a_{t+1} W) + (1 - a) a_{t+1} + e_t, dL/dd_t = a a_t.
        // Elman: a_t = dL/dz_{t+1} = phi'(z_{t+1}) (g_t + a_{t+1} W), dL/dd_t = a_t.
        for t in (0..self.d.steps).rev() {
            let last = t + 1 == self.d.steps;
            if !last {
                // SAFETY: `cur` and `next` are this loop's own buffers.
                unsafe {
                    let v = Span::of(&next, h);
                    self.product.apply(cur.as_mut_ptr(), h, v, false, alpha, self.parallel);
                }
            }
            each_row(nb, h, [scratch, step(t)], |[c, s], len| {
                let terms = AdjointTerms {
                    activation: self.activation,
                    g: &b.grad_h[s..s + len],
                    h: &b.rates[s..s + len],
                    with_a: !last,
                    next: (leaky && !last).then(|| (1.0 - alpha, &next[c..c + len])),
                    e: b.grad_x.map(|e| &e[s..s + len]),
                    scale: alpha,
                };
                // SAFETY: the rows of these trials (the caller's exclusive access).
                let out = unsafe { adjoint.slice_mut(s, len) };
                adjoint_step(&terms, &mut cur[c..c + len], out);
            });
            if !last {
                outer.push(&next, b.rates, step(t));
            }
            std::mem::swap(&mut next, &mut cur);
        }
        // Now `next` is a_0.
        let out = grad_init.at(init_rows, nb);
        let v = Span::of(&next, h);
        if leaky {
            let mut h0 = vec![0f32; nb * h];
            apply(self.activation, init, &mut h0);
            outer.push(&next, &h0, scratch);
            // dL/dx_0 = (1 - a) a_0 + a phi'(x_0) (a_0 W), with h_0 = phi(x_0).
            // SAFETY: `cur` is this loop's own.
            unsafe { self.product.apply(cur.as_mut_ptr(), h, v, false, alpha, self.parallel) };
            mul_slope(self.activation, &h0, &mut cur);
            // SAFETY: the rows of these trials (the caller's exclusive access).
            let g = unsafe { grad_init.slice_mut(init_rows.start, nb * h) };
            for ((g, &a), &v) in g.iter_mut().zip(&next).zip(&cur) {
                *g = (1.0 - alpha) * a + v;
            }
        } else {
            outer.push(&next, b.init, init_rows);
            // dL/dh_0 = a_0 W.
            // SAFETY: as above; `grad_init` and `next` are two buffers.
            unsafe { self.product.apply(out, h, v, false, 1.0, self.parallel) };
        }
        // Leaky: the adjoints pushed are dL/dx; dL/dd_t = a dL/dx_{t+1}.
        outer.finish(leaky.then_some(alpha))
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

    /// Adds the pairs of the contiguous `adjoints` and the rows of `before` at `span`.
    fn push(&mut self, adjoints: &[f32], before: &[f32], span: Span) {
        let h = self.w.hidden;
        self.adjoints.extend_from_slice(adjoints);
        each_row(adjoints.len() / h.max(1), h, [span], |[at], len| {
            self.before.extend_from_slice(&before[at..at + len]);
        });
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
    let (mut adjoint, mut grad_init) = (Vec::new(), Vec::new());
    let adjoint_out = Rows::uninit(&mut adjoint, d.len(), d);
    let init_out = Rows::uninit(&mut grad_init, d.batch * h, Dims { steps: 1, ..d });
    let parts = d.split_trials(threads, |trials, parallel| {
        let run = Loop { activation, product: &w_p, d, trials, parallel };
        // SAFETY: each split writes the rows of its own trials only.
        unsafe { run.backward(update, w, b, adjoint_out, init_out) }
    });
    // SAFETY: the splits cover every trial, and the loop writes every row of each step and
    // every initial state.
    unsafe {
        adjoint_out.filled(&mut adjoint);
        init_out.filled(&mut grad_init);
    }
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
