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
//! The results are still those of the dense product, NaN included: a matrix with anything but
//! zeros outside its blocks (a NaN weight times a mask of 0 is NaN) is multiplied whole
//! ([`Matrix::new`]), and the terms `0 * v_j` that the blocks skip, which IEEE arithmetic makes
//! NaN for a NaN or infinite `v_j`, make the outputs they reach NaN ([`Coverage`]).
//!
//! Layouts: every matrix is row-major; `w` is `[H, H]` (destination rows); sequences are
//! `[T, B, H]` or `[B, T, H]` (the caller's layout, so that no transpose is ever copied). The
//! loops read and write the rows of each step where they lie in the sequences ([`Span`]): the
//! products take their left operand in place and write rows any distance apart, and the
//! elementwise passes go row by row (once over all rows when they are contiguous). Gathering
//! each step into contiguous scratch and scattering it back cost a tenth of a run at H = 350
//! and a quarter at H = 30.
//!
//! With the input projection in the loop and a dense matrix of up to 256 units, a forward step
//! is one pass ([`StepFinish`]): the microkernel sums the products by `W` and `W_in` and
//! finishes the update (leak, bias, activation) as it stores each row block: 10% faster
//! flip-flop training steps than the four passes it replaces.

use std::ops::Range;

use mrnn_ir::Activation;

use super::fast_math::{
    AdjointTerms, adjoint_step, all_finite, all_zero, apply, blend, mark_non_finite, mul_slope,
    rows_finite,
};
use super::gemm::{
    InPlace, Operand, Packed, PackedLhs, StepFinish, add_outer_products, fuses_steps,
    matmul_in_place, matmul_packed, matmul_step,
};
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

    /// `rows` rows of `hidden` floats of `buf` from this span's start, read in place.
    fn rows_of(self, buf: &[f32], rows: usize, hidden: usize) -> InPlace {
        let end = if rows == 0 { 0 } else { self.start + (rows - 1) * self.stride + hidden };
        assert!(end <= buf.len(), "rows out of bounds");
        InPlace { ptr: buf.as_ptr().wrapping_add(self.start), rs: self.stride, m: rows, k: hidden }
    }
}

/// Networks up to this many units sum the outer products of their weight gradients over rows
/// read where they lie ([`add_outer_products`]: 17% faster flip-flop training steps, 4-8% on
/// CBGTCL, the same at H = 256); larger ones pack the rows first: their products are long
/// enough to pay for it, and rows 4 KiB apart would share cache sets.
const OUTER_IN_PLACE_MAX: usize = 512;

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
    /// `[H, H]`, destination rows, `ld` floats apart.
    pub(super) w: &'a [f32],
    /// The connected blocks, or `None` to use the whole matrix.
    pub(super) blocks: Option<&'a [Block]>,
    pub(super) hidden: usize,
    /// Floats between rows of `w`: H, or more when `w` is the first columns of a wider matrix
    /// (see [`Input`]).
    pub(super) ld: usize,
}

impl<'a> Matrix<'a> {
    /// The matrix `w` (`[H, H]`, rows `ld` apart), multiplied by `blocks` unless a NaN or an
    /// infinity lies outside them (a NaN raw weight times a mask of 0 is NaN), which the dense
    /// product counts: then whole. A finite matrix is taken at its word (zero outside the
    /// blocks: [`super::Recurrence::with_blocks`]) after one vectorized pass over it; one with
    /// a non-finite weight is checked entry by entry outside the blocks.
    pub(super) fn new(w: &'a [f32], blocks: Option<&'a [Block]>, hidden: usize, ld: usize) -> Self {
        let blocks = blocks.filter(|blocks| {
            if all_finite(&w[..hidden * ld]) {
                return true;
            }
            let coverage = Coverage::new(hidden, blocks.iter().map(|b| (&b.rows, &b.cols)));
            coverage.segments.iter().all(|(rows, cols)| {
                rows.clone().all(|i| {
                    let row = &w[i * ld..i * ld + hidden];
                    coverage.gaps(cols).all(|gap| all_zero(&row[gap]))
                })
            })
        });
        Matrix { w, blocks, hidden, ld }
    }
}

/// Which entries of an `[n, n]` matrix a set of blocks covers: the rows cut into segments at
/// every block's row boundaries, each with the merged column ranges of the blocks over it. For
/// the terms a block product skips (outside the blocks): the dense product's `0 * v_j` there is
/// NaN for a NaN or infinite `v_j`.
#[derive(Debug)]
struct Coverage {
    /// (rows, sorted disjoint columns covered in those rows).
    segments: Vec<(Range<usize>, Vec<Range<usize>>)>,
    n: usize,
}

impl Coverage {
    /// The coverage of blocks given as (rows, columns).
    fn new<'b>(
        n: usize,
        blocks: impl Iterator<Item = (&'b Range<usize>, &'b Range<usize>)>,
    ) -> Self {
        let blocks: Vec<_> = blocks.collect();
        let mut cuts: Vec<usize> = blocks.iter().flat_map(|(r, _)| [r.start, r.end]).collect();
        cuts.extend([0, n]);
        cuts.sort_unstable();
        cuts.dedup();
        let segments = cuts
            .windows(2)
            .map(|w| w[0]..w[1])
            .filter(|rows| !rows.is_empty())
            .map(|rows| {
                let mut cols: Vec<Range<usize>> = blocks
                    .iter()
                    .filter(|(r, c)| r.start <= rows.start && rows.end <= r.end && !c.is_empty())
                    .map(|(_, c)| (*c).clone())
                    .collect();
                cols.sort_unstable_by_key(|c| c.start);
                let mut merged: Vec<Range<usize>> = Vec::with_capacity(cols.len());
                for c in cols {
                    match merged.last_mut() {
                        Some(last) if c.start <= last.end => last.end = last.end.max(c.end),
                        _ => merged.push(c),
                    }
                }
                (rows, merged)
            })
            .collect();
        Coverage { segments, n }
    }

    /// The column ranges of `0..n` outside `covered` (sorted, disjoint).
    fn gaps<'c>(&self, covered: &'c [Range<usize>]) -> impl Iterator<Item = Range<usize>> + 'c {
        let n = self.n;
        let starts = std::iter::once(0).chain(covered.iter().map(|c| c.end));
        let ends = covered.iter().map(|c| c.start).chain(std::iter::once(n));
        starts.zip(ends).filter(|(a, b)| a < b).map(|(a, b)| a..b)
    }

    /// After a block product `out = M v` (rows of `out` `ld` apart, of `v` as it says), sets to
    /// NaN the outputs that the dense product would have made NaN: those of a row whose input
    /// has a NaN or infinity in a column the output's blocks do not cover (`0 * inf` and
    /// `0 * NaN` are NaN). One pass over `v` to find the rows with one (rare), more only there.
    ///
    /// # Safety
    /// `v` valid for reads of its rows, `out` for writes of as many rows of `n` floats `ld`
    /// apart, the two not overlapping.
    unsafe fn poison(&self, out: *mut f32, ld: usize, v: InPlace) {
        let n = self.n;
        // SAFETY: the caller's rows.
        if unsafe { rows_finite(v.ptr, v.m, v.rs, n) } {
            return;
        }
        let mut bad = Vec::new();
        let mut before = Vec::new();
        for r in 0..v.m {
            // SAFETY: row `r` of `v` holds `n` floats (the caller).
            let row = unsafe { std::slice::from_raw_parts(v.ptr.add(r * v.rs), n) };
            if all_finite(row) {
                continue;
            }
            bad.clear();
            bad.resize(n, false);
            mark_non_finite(row, 1, n, n, &mut bad);
            // before[j]: bad columns before j.
            before.clear();
            before.push(0usize);
            for &b in &bad {
                before.push(before[before.len() - 1] + usize::from(b));
            }
            let total = before[n];
            for (outputs, covered) in &self.segments {
                let inside: usize = covered.iter().map(|c| before[c.end] - before[c.start]).sum();
                if inside < total {
                    // SAFETY: row `r` of `out` holds `n` writable floats (the caller).
                    let row = unsafe { std::slice::from_raw_parts_mut(out.add(r * ld), n) };
                    row[outputs.clone()].fill(f32::NAN);
                }
            }
        }
    }

    /// Sets to NaN the entries of `grad` (`[n, n]`) outside the blocks whose row is marked in
    /// `bad_rows` or column in `bad_cols`: what the dense weight gradient `sum a^T p` holds there
    /// when a factor of one of its terms was NaN or infinite (for the mask's 0 to make NaN).
    fn poison_outside(&self, grad: &mut [f32], bad_rows: &[bool], bad_cols: &[bool]) {
        let n = self.n;
        for (rows, covered) in &self.segments {
            for i in rows.clone() {
                let row = &mut grad[i * n..(i + 1) * n];
                for gap in self.gaps(covered) {
                    for j in gap {
                        if bad_rows[i] || bad_cols[j] {
                            row[j] = f32::NAN;
                        }
                    }
                }
            }
        }
    }
}

impl Matrix<'_> {
    /// `W^T` packed for `out[b, i] (+)= scale * sum_j h[b, j] W[i, j]`, the forward's product.
    fn transposed(&self) -> StepProduct {
        let n = self.hidden;
        let parts = match self.blocks {
            None => vec![Part::whole(Packed::new(Operand::new(self.w, 1, self.ld), n, n))],
            Some(blocks) => blocks
                .iter()
                .map(|b| Part {
                    input: b.cols.start,
                    output: b.rows.start,
                    rhs: Packed::new(
                        Operand::new(&self.w[b.rows.start * self.ld + b.cols.start..], 1, self.ld),
                        b.cols.len(),
                        b.rows.len(),
                    ),
                })
                .collect(),
        };
        StepProduct::new(parts, n)
    }

    /// `W` packed for `out[b, j] (+)= scale * sum_i a[b, i] W[i, j]`, the backward's product.
    fn plain(&self) -> StepProduct {
        let n = self.hidden;
        let parts = match self.blocks {
            None => vec![Part::whole(Packed::new(Operand::new(self.w, self.ld, 1), n, n))],
            Some(blocks) => blocks
                .iter()
                .map(|b| Part {
                    input: b.rows.start,
                    output: b.cols.start,
                    rhs: Packed::new(
                        Operand::new(&self.w[b.rows.start * self.ld + b.cols.start..], self.ld, 1),
                        b.rows.len(),
                        b.cols.len(),
                    ),
                })
                .collect(),
        };
        StepProduct::new(parts, n)
    }

    /// `grad[i, j] += sum_r a[r, i] p[r, j]` over the rows of `a` and `p` (`[rows, H]` each,
    /// read in place), on the connected blocks only (the others stay zero: the mask zeroes
    /// them anyway). `scratch` holds the packed `a^T` of a dense product of a large network
    /// (reused from call to call).
    ///
    /// # Safety
    /// `a` and `p` must be valid for reads of their rows, which nobody writes meanwhile.
    unsafe fn add_outer(
        &self,
        grad: &mut [f32],
        a: InPlace,
        p: InPlace,
        scratch: &mut PackedLhs,
        parallel: bool,
    ) {
        let n = self.hidden;
        assert!(a.m == p.m && a.k == n && p.k == n && grad.len() == n * n, "outer product shapes");
        let rows = a.m;
        if rows == 0 {
            return;
        }
        let whole = [Block { rows: 0..n, cols: 0..n }];
        if n <= OUTER_IN_PLACE_MAX {
            for b in self.blocks.unwrap_or(&whole) {
                let a = InPlace { ptr: a.ptr.wrapping_add(b.rows.start), k: b.rows.len(), ..a };
                let p = InPlace { ptr: p.ptr.wrapping_add(b.cols.start), k: b.cols.len(), ..p };
                let dst = &mut grad[b.rows.start * n + b.cols.start..];
                // SAFETY: the block's rows of `grad` (n floats apart) lie in `dst`; the rows of
                // `a` and `p` are the caller's, and their columns within the block.
                unsafe { add_outer_products(dst.as_mut_ptr(), n, a, p, 1.0) };
            }
            return;
        }
        let (a_rs, p_rs) = (a.rs, p.rs);
        // SAFETY: the caller's rows: `rows` of `n` floats, `rs` apart.
        let (a, p) = unsafe {
            (
                std::slice::from_raw_parts(a.ptr, (rows - 1) * a_rs + n),
                std::slice::from_raw_parts(p.ptr, (rows - 1) * p_rs + n),
            )
        };
        let p = |r: usize| &p[r * p_rs..];
        match self.blocks {
            None => {
                let rhs = Packed::from_rows(rows, n, p);
                scratch.pack(Operand::new(a, 1, a_rs), n, rows);
                matmul_packed(grad, n, true, scratch, 0, &rhs, 1.0, parallel);
            }
            Some(blocks) => {
                // Blocks share their regions: each region's rows of `a^T` and columns of `p` are
                // packed once, not once per block.
                let mut lhs: Vec<(Range<usize>, PackedLhs)> = Vec::new();
                let mut rhs: Vec<(Range<usize>, Packed)> = Vec::new();
                for b in blocks {
                    if !lhs.iter().any(|(r, _)| *r == b.rows) {
                        let mut packed = PackedLhs::default();
                        let at = Operand::new(&a[b.rows.start..], 1, a_rs);
                        packed.pack(at, b.rows.len(), rows);
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
    /// By parts: which inputs each output's parts cover (outputs as rows), for NaN.
    coverage: Option<Coverage>,
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
    /// The product by `parts`: dense when there is one part from 0 covering the whole matrix.
    fn new(parts: Vec<Part>, hidden: usize) -> Self {
        let dense = matches!(
            &parts[..],
            [p] if p.input == 0 && p.output == 0 && p.rhs.rows() == hidden && p.rhs.cols() == hidden
        );
        let coverage = (!dense).then(|| {
            let ranges: Vec<(Range<usize>, Range<usize>)> = parts
                .iter()
                .map(|p| (p.output..p.output + p.rhs.cols(), p.input..p.input + p.rhs.rows()))
                .collect();
            Coverage::new(hidden, ranges.iter().map(|(o, i)| (o, i)))
        });
        StepProduct { parts, dense, hidden, coverage }
    }

    /// The projection of `drive` when [`StepProduct::step`] runs for it: a projection in the
    /// loop, a dense product and a kernel that fuses steps.
    fn fused<'d>(&self, drive: Drive<'d>) -> Option<&'d Input<'d>> {
        match drive {
            Drive::Projected(input) if self.dense && fuses_steps(self.hidden, input.inputs) => {
                Some(input)
            }
            _ => None,
        }
    }

    /// A whole forward step with the projection in the loop, in one pass (see
    /// [`StepFinish`]): `out = finish(scale * (v M + u_t W_in^T))`, `u_t` the inputs of
    /// `trials` at step `t`. Only for the input [`StepProduct::fused`] returns.
    ///
    /// # Safety
    /// As [`StepProduct::apply`], and as [`matmul_step`] for `finish`.
    #[allow(clippy::too_many_arguments, reason = "one step's operands")]
    unsafe fn step(
        &self,
        (out, ld): (*mut f32, usize),
        v: InPlace,
        (input, d, t, trials): (&Input<'_>, Dims, usize, &Range<usize>),
        scale: f32,
        finish: &StepFinish<'_>,
        parallel: bool,
    ) {
        let u = input.rows(d, t, trials);
        // SAFETY: forwarded from the caller; `u` lies in the input (checked by `rows`).
        unsafe {
            let inputs = (u, &input.w_in_t);
            matmul_step(out, ld, v, &self.parts[0].rhs, inputs, scale, finish, parallel);
        }
    }

    /// `out (+)= scale * v M` for the rows of `v` (read in place), into rows of `out` `ld`
    /// apart. By blocks, `v` is looked over for NaN and infinities (see [`Coverage`]) unless
    /// `v_finite` says it holds none.
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
        v_finite: bool,
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
        if let Some(coverage) = &self.coverage
            && !v_finite
        {
            // SAFETY: the caller's rows.
            unsafe { coverage.poison(out, ld, v) };
        }
    }
}

/// The input projection run inside the loop, `d_t = u_t W_in^T + b`, instead of a drive
/// sequence computed before it: the `[B, T, H]` drive is then neither written nor read, and
/// its gradient (written by the reverse loop, zeroed and added by candle, read by the
/// projection's backward) never exists: the weight and bias gradients are summed step by step
/// from rows still in cache. For few inputs (the products by `W_in` are thin).
pub(super) struct Input<'a> {
    /// `u`, in the sequences' layout with `inputs` features.
    pub(super) u: &'a [f32],
    pub(super) inputs: usize,
    /// `W_in^T`, packed.
    w_in_t: Packed,
    /// `b`.
    bias: Vec<f32>,
}

impl<'a> Input<'a> {
    /// The projection by columns `hidden..hidden + inputs` (`W_in`) and `hidden + inputs` (`b`)
    /// of the `[H, ld]` matrix `weights` (see [`Matrix::ld`]).
    pub(super) fn new(u: &'a [f32], weights: &[f32], hidden: usize, inputs: usize) -> Self {
        let ld = hidden + inputs + 1;
        assert!(weights.len() >= hidden * ld, "input weights out of bounds");
        let w_in_t = Packed::new(Operand::new(&weights[hidden..], 1, ld), inputs, hidden);
        let bias = (0..hidden).map(|i| weights[i * ld + hidden + inputs]).collect();
        Input { u, inputs, w_in_t, bias }
    }

    /// The inputs of trials `trials.start..` at step `t`, read in place.
    fn rows(&self, d: Dims, t: usize, trials: &Range<usize>) -> InPlace {
        let span = Dims { hidden: self.inputs, ..d }.span(t, trials.start);
        let end = span.start + (trials.len().max(1) - 1) * span.stride + self.inputs;
        assert!(end <= self.u.len(), "input rows out of bounds");
        InPlace {
            ptr: self.u[span.start..].as_ptr(),
            rs: span.stride,
            m: trials.len(),
            k: self.inputs,
        }
    }
}

/// What enters each step besides the recurrent input.
#[derive(Clone, Copy)]
pub(super) enum Drive<'a> {
    /// A sequence in the sequences' layout.
    Given(&'a [f32]),
    /// The input projection, computed in the loop.
    Projected(&'a Input<'a>),
}

/// The output of the forward loop, in the sequences' layout: `states` (`x_1..x_T` for leaky,
/// `h_1..h_T` for Elman; empty for leaky dynamics when not kept) and, for leaky dynamics,
/// `rates` `h_1..h_T` (empty for Elman, where they are the states).
pub(super) struct Forward {
    pub(super) states: Vec<f32>,
    pub(super) rates: Vec<f32>,
}

#[allow(clippy::too_many_arguments, reason = "one run's inputs and settings")]
pub(super) fn forward(
    update: Update,
    activation: Activation,
    w: &Matrix<'_>,
    drive: Drive<'_>,
    init: &[f32],
    d: Dims,
    threads: usize,
    keep_states: bool,
) -> Forward {
    let w_t = w.transposed();
    let (mut states, mut rates) = (Vec::new(), Vec::new());
    let leaky = matches!(update, Update::Leaky { .. });
    let rates_len = if leaky { d.len() } else { 0 };
    let states_len = if leaky && !keep_states { 0 } else { d.len() };
    let (states_out, rates_out) =
        (Rows::uninit(&mut states, states_len, d), Rows::uninit(&mut rates, rates_len, d));
    d.split_trials(threads, |trials, parallel| {
        let run = Loop { activation, product: &w_t, d, trials, parallel };
        let states = (states_len > 0).then_some(states_out);
        // SAFETY: each split writes the rows of its own trials only.
        unsafe { run.forward(update, drive, init, states, rates_out) };
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
    /// The forward loop. `states` `None`: leaky states not kept (only the rates are written).
    ///
    /// # Safety
    /// No other thread may access the rows of these trials in `states` and `rates`.
    unsafe fn forward(
        &self,
        update: Update,
        drive: Drive<'_>,
        init: &[f32],
        states: Option<Rows>,
        rates: Rows,
    ) {
        let (h, b0, nb) = (self.d.hidden, self.trials.start, self.trials.len());
        let init = &init[b0 * h..(b0 + nb) * h];
        match (update, states) {
            // SAFETY (both): forwarded from the caller.
            (Update::Leaky { alpha }, states) => unsafe {
                self.forward_leaky(alpha as f32, drive, init, states, rates);
            },
            (Update::Elman, Some(states)) => unsafe { self.forward_elman(drive, init, states) },
            (Update::Elman, None) => unreachable!("Elman's states are its rates: always kept"),
        }
    }

    /// The leaky forward loop (see [`Loop::forward`]).
    ///
    /// # Safety
    /// As [`Loop::forward`].
    unsafe fn forward_leaky(
        &self,
        alpha: f32,
        drive: Drive<'_>,
        init: &[f32],
        states: Option<Rows>,
        rates: Rows,
    ) {
        let (h, b0, nb) = (self.d.hidden, self.trials.start, self.trials.len());
        let step = |t: usize| self.d.span(t, b0);
        // States not kept go to two buffers of these trials' rows, which the steps take in
        // turn: the state of step t - 1 is read at step t only.
        let (kept, mut spare) = (states.is_some(), Vec::new());
        let states = states.unwrap_or_else(|| {
            let dims = Dims { steps: 1, batch: 2 * nb, hidden: h, batch_first: false };
            Rows::uninit(&mut spare, 2 * nb * h, dims)
        });
        let x_at = |t: usize| if kept { step(t) } else { Span::contiguous((t % 2) * nb, h) };
        let mut h0 = vec![0f32; nb * h];
        apply(self.activation, init, &mut h0);
        let fused = self.product.fused(drive);
        for t in 0..self.d.steps {
            // x_t = (1 - a) x_{t-1} + a d_t, then += a h_{t-1} W^T below.
            let before = if t == 0 { Span::contiguous(0, h) } else { x_at(t - 1) };
            let v = if t == 0 { Span::of(&h0, h) } else { rates.in_place(step(t - 1), nb) };
            if let Some(input) = fused {
                let prev = if t == 0 {
                    (init.as_ptr(), h)
                } else {
                    (states.at(before, nb).cast_const(), before.stride)
                };
                let finish = StepFinish {
                    prev: Some(prev),
                    keep: 1.0 - alpha,
                    bias: &input.bias,
                    activation: self.activation,
                    rates: Some((rates.at(step(t), nb), step(t).stride)),
                };
                let out = (states.at(x_at(t), nb), x_at(t).stride);
                let at = (input, self.d, t, &self.trials);
                // SAFETY: the rows of these trials (the caller's exclusive access), in
                // bounds (checked by `at`); step t - 1's rows are not step t's, and
                // states, rates and inputs are three buffers.
                unsafe { self.product.step(out, v, at, alpha, &finish, self.parallel) };
                continue;
            }
            each_row(nb, h, [before, x_at(t), step(t)], |[p, x, d], len| {
                // SAFETY: rows of these trials (the caller's exclusive access); step
                // t - 1's rows are not step t's.
                let (prev, x_t) = unsafe {
                    let prev = if t == 0 { &init[p..p + len] } else { states.slice(p, len) };
                    (prev, states.slice_mut(x, len))
                };
                match drive {
                    Drive::Given(drive) => {
                        blend(1.0 - alpha, prev, alpha, &drive[d..d + len], x_t);
                    }
                    // The bias now, the inputs' product below.
                    Drive::Projected(input) => {
                        for (x_t, prev) in x_t.chunks_exact_mut(h).zip(prev.chunks_exact(h)) {
                            blend(1.0 - alpha, prev, alpha, &input.bias, x_t);
                        }
                    }
                }
            });
            let out = states.at(x_at(t), nb);
            if let Drive::Projected(input) = drive {
                let u = input.rows(self.d, t, &self.trials);
                // SAFETY: the rows of these trials (the caller's exclusive access), in
                // bounds (checked by `at` and `rows`); `u` is another buffer.
                unsafe {
                    matmul_in_place(out, x_at(t).stride, true, u, &input.w_in_t, alpha, false);
                }
            }
            // SAFETY: the rows of these trials, in bounds (checked by `at`); rates and
            // states are two buffers.
            unsafe {
                self.product.apply(out, x_at(t).stride, v, true, alpha, self.parallel, false);
            };
            each_row(nb, h, [x_at(t), step(t)], |[x, r], len| {
                // SAFETY: as above; two buffers.
                unsafe {
                    apply(self.activation, states.slice(x, len), rates.slice_mut(r, len));
                };
            });
        }
    }

    /// The Elman forward loop (see [`Loop::forward`]).
    ///
    /// # Safety
    /// As [`Loop::forward`].
    unsafe fn forward_elman(&self, drive: Drive<'_>, init: &[f32], states: Rows) {
        let (h, b0, nb) = (self.d.hidden, self.trials.start, self.trials.len());
        let step = |t: usize| self.d.span(t, b0);
        // h_t = phi(d_t + h_{t-1} W^T), the sum formed in `z`.
        let mut z = vec![0f32; nb * h];
        let fused = self.product.fused(drive);
        for t in 0..self.d.steps {
            let v = if t == 0 { Span::of(init, h) } else { states.in_place(step(t - 1), nb) };
            if let Some(input) = fused {
                let finish = StepFinish {
                    prev: None,
                    keep: 0.0,
                    bias: &input.bias,
                    activation: self.activation,
                    rates: None,
                };
                let out = (states.at(step(t), nb), step(t).stride);
                let at = (input, self.d, t, &self.trials);
                // SAFETY: as in the leaky loop.
                unsafe { self.product.step(out, v, at, 1.0, &finish, self.parallel) };
                continue;
            }
            match drive {
                Drive::Given(drive) => {
                    each_row(nb, h, [Span::contiguous(0, h), step(t)], |[c, x], len| {
                        z[c..c + len].copy_from_slice(&drive[x..x + len]);
                    });
                }
                Drive::Projected(input) => {
                    for z in z.chunks_exact_mut(h) {
                        z.copy_from_slice(&input.bias);
                    }
                    let u = input.rows(self.d, t, &self.trials);
                    // SAFETY: `z` is this loop's own, `nb` rows of H; `u` another buffer.
                    unsafe {
                        matmul_in_place(z.as_mut_ptr(), h, true, u, &input.w_in_t, 1.0, false);
                    }
                }
            }
            // SAFETY: `z` is this loop's own; `v` rows of these trials (the caller).
            unsafe { self.product.apply(z.as_mut_ptr(), h, v, true, 1.0, self.parallel, false) };
            each_row(nb, h, [Span::contiguous(0, h), step(t)], |[c, x], len| {
                // SAFETY: as above.
                unsafe { apply(self.activation, &z[c..c + len], states.slice_mut(x, len)) };
            });
        }
    }

    /// Whether the rows of these trials in the sequence `seq`, at every step, are all finite.
    fn trials_finite(&self, seq: &[f32]) -> bool {
        let (h, d) = (self.d.hidden, self.d);
        // Rows of one trial, one step apart: consecutive when batch first.
        let step_stride = if d.batch_first { h } else { d.batch * h };
        d.steps == 0
            || self.trials.clone().all(|trial| {
                let start = d.row(0, trial);
                let end = start + (d.steps - 1) * step_stride + h;
                let rows = &seq[start..end];
                // SAFETY: the trial's rows lie in `rows` (its last row ends at `end`), a
                // borrowed slice.
                unsafe { rows_finite(rows.as_ptr(), d.steps, step_stride, h) }
            })
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
    ) -> Share {
        let (h, b0, nb) = (self.d.hidden, self.trials.start, self.trials.len());
        let init_rows = Span::contiguous(b0, h);
        let init = &b.init[b0 * h..(b0 + nb) * h];
        let step = |t: usize| self.d.span(t, b0);
        let scratch = Span::contiguous(0, h);
        // a_{t+1} and a_t (dL/dx or dL/dz of steps t + 1 and t), each `[nb, H]`.
        let (mut next, mut cur) = (vec![0f32; nb * h], vec![0f32; nb * h]);
        // dL/dW = sum_t adjoint_t^T h_{t-1}: the pair of step t + 1 joins at step t, when the
        // rates h_t it needs are read anyway (for phi'); step 0's pairs with h_0 at the end.
        let mut outer = OuterProducts::new(w, nb, self.parallel);
        // By blocks, NaN and infinities are looked for (see `Coverage`): in these trials' rates
        // once for the run, in the adjoints once per step (for the product and the gradient).
        let blocked = w.blocks.is_some();
        let rates_finite = !blocked || self.trials_finite(b.rates);
        let finite = |a: &[f32]| !blocked || all_finite(a);
        let (alpha, leaky) = match update {
            Update::Leaky { alpha } => (alpha as f32, true),
            Update::Elman => (1.0, false),
        };
        // With the projection in the loop: dL/dd_t goes to `step_out`, then into the weight and
        // bias gradients of the projection (`[I, H]` and `[H]`), with the step's inputs.
        let mut step_out = vec![0f32; if b.input.is_some() { nb * h } else { 0 }];
        let mut inputs =
            b.input.map(|input| (InputProducts::new(input.inputs, h, nb), vec![0f32; h]));
        // Leaky: a_t = dL/dx_{t+1} in total, from dL/dh_{t+1} (g_t) and dL/dx_{t+1} (e_t):
        //   a_t = phi'(x_{t+1}) (g_t + a a_{t+1} W) + (1 - a) a_{t+1} + e_t, dL/dd_t = a a_t.
        // Elman: a_t = dL/dz_{t+1} = phi'(z_{t+1}) (g_t + a_{t+1} W), dL/dd_t = a_t.
        for t in (0..self.d.steps).rev() {
            let last = t + 1 == self.d.steps;
            let next_finite = last || finite(&next);
            if !last {
                // SAFETY: `cur` and `next` are this loop's own buffers.
                unsafe {
                    let v = Span::of(&next, h);
                    let (out, parallel) = (cur.as_mut_ptr(), self.parallel);
                    self.product.apply(out, h, v, false, alpha, parallel, next_finite);
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
                let out = if b.input.is_some() {
                    &mut step_out[c..c + len]
                } else {
                    // SAFETY: the rows of these trials (the caller's exclusive access).
                    unsafe { adjoint.slice_mut(s, len) }
                };
                adjoint_step(&terms, &mut cur[c..c + len], out);
            });
            if let (Some(input), Some((products, sums))) = (b.input, &mut inputs) {
                products.push(input.rows(self.d, t, &self.trials), &step_out);
                for row in step_out.chunks_exact(h) {
                    for (s, &g) in sums.iter_mut().zip(row) {
                        *s += g;
                    }
                }
            }
            if !last {
                outer.push(&next, b.rates, step(t), (next_finite, rates_finite));
            }
            std::mem::swap(&mut next, &mut cur);
        }
        // Now `next` is a_0.
        let out = grad_init.at(init_rows, nb);
        let v = Span::of(&next, h);
        let next_finite = finite(&next);
        if leaky {
            let mut h0 = vec![0f32; nb * h];
            apply(self.activation, init, &mut h0);
            outer.push(&next, &h0, scratch, (next_finite, finite(&h0)));
            // dL/dx_0 = (1 - a) a_0 + a phi'(x_0) (a_0 W), with h_0 = phi(x_0).
            // SAFETY: `cur` is this loop's own.
            unsafe {
                let (out, parallel) = (cur.as_mut_ptr(), self.parallel);
                self.product.apply(out, h, v, false, alpha, parallel, next_finite);
            };
            mul_slope(self.activation, &h0, &mut cur);
            // SAFETY: the rows of these trials (the caller's exclusive access).
            let g = unsafe { grad_init.slice_mut(init_rows.start, nb * h) };
            for ((g, &a), &v) in g.iter_mut().zip(&next).zip(&cur) {
                *g = (1.0 - alpha) * a + v;
            }
        } else {
            outer.push(&next, b.init, init_rows, (next_finite, finite(init)));
            // dL/dh_0 = a_0 W.
            // SAFETY: as above; `grad_init` and `next` are two buffers.
            unsafe { self.product.apply(out, h, v, false, 1.0, self.parallel, next_finite) };
        }
        // Leaky: the adjoints pushed are dL/dx; dL/dd_t = a dL/dx_{t+1}.
        Share {
            w: outer.finish(leaky.then_some(alpha)),
            input: inputs.map(|(products, sums)| (products.finish(), sums)),
        }
    }
}

/// `dL/dW = scale * sum_t adjoint_t^T h_{t-1}`, accumulated while the reverse loop runs: the
/// rows of several steps are collected and multiplied in by one product of depth
/// ~[`Self::depth`], while they are still in cache (one product over all steps at the end would
/// first copy both `[T B, H]` sequences into the packed layout, on one thread).
struct OuterProducts<'a> {
    w: &'a Matrix<'a>,
    grad: Vec<f32>,
    adjoints: Vec<f32>,
    before: Vec<f32>,
    /// Rows per product.
    rows: usize,
    lhs: PackedLhs,
    /// The products may split over the engine's threads (the trials were not split).
    parallel: bool,
    /// By blocks: the columns of the adjoints and of the rates that held a NaN or infinity,
    /// which make the dense gradient non-finite outside the blocks too (see [`Coverage`]).
    bad: Option<(Vec<bool>, Vec<bool>)>,
}

impl<'a> OuterProducts<'a> {
    /// Rows per product: 256, or 512 when the `[H, H]` sum no longer fits in L2 (H >= 512):
    /// every product reads and writes the whole sum once, so deeper products pay for it
    /// (4% faster at H = 1024), while at H <= 350 they only keep more rows waiting (6-8%
    /// slower on CBGTCL and the flip-flop network).
    fn depth(hidden: usize) -> usize {
        if hidden >= 512 { 512 } else { 256 }
    }

    fn new(w: &'a Matrix<'a>, trials: usize, parallel: bool) -> Self {
        let h = w.hidden;
        let rows = Self::depth(w.hidden).div_ceil(trials).max(1) * trials;
        OuterProducts {
            w,
            grad: vec![0f32; h * h],
            adjoints: Vec::with_capacity(rows * h),
            before: Vec::with_capacity(rows * h),
            rows,
            lhs: PackedLhs::default(),
            parallel,
            bad: w.blocks.is_some().then(|| (vec![false; h], vec![false; h])),
        }
    }

    /// Adds the pairs of the contiguous `adjoints` and the rows of `before` at `span`; `finite`
    /// says whether each is known to hold no NaN or infinity (else they are looked over).
    fn push(&mut self, adjoints: &[f32], before: &[f32], span: Span, finite: (bool, bool)) {
        let h = self.w.hidden;
        let rows = adjoints.len() / h.max(1);
        if let Some((bad_a, bad_p)) = &mut self.bad {
            if !finite.0 {
                mark_non_finite(adjoints, rows, h, h, bad_a);
            }
            if rows > 0 && !finite.1 {
                mark_non_finite(&before[span.start..], rows, span.stride, h, bad_p);
            }
        }
        if self.adjoints.is_empty() && rows >= self.rows {
            // A whole product's rows at once (many trials per thread): multiplied where they
            // lie, not copied together first.
            let (a, p) = (Span::of(adjoints, h), span.rows_of(before, rows, h));
            // SAFETY: rows of two buffers borrowed for the call.
            unsafe { self.w.add_outer(&mut self.grad, a, p, &mut self.lhs, self.parallel) };
            return;
        }
        self.adjoints.extend_from_slice(adjoints);
        each_row(adjoints.len() / h.max(1), h, [span], |[at], len| {
            self.before.extend_from_slice(&before[at..at + len]);
        });
        if self.adjoints.len() >= self.rows * self.w.hidden {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let h = self.w.hidden;
        let (a, p) = (Span::of(&self.adjoints, h), Span::of(&self.before, h));
        // SAFETY: this collection's own buffers, borrowed for the call.
        unsafe { self.w.add_outer(&mut self.grad, a, p, &mut self.lhs, self.parallel) };
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
        if let (Some((bad_a, bad_p)), Some(blocks)) = (&self.bad, self.w.blocks)
            && (bad_a.contains(&true) || bad_p.contains(&true))
        {
            let coverage = Coverage::new(self.w.hidden, blocks.iter().map(|b| (&b.rows, &b.cols)));
            coverage.poison_outside(&mut self.grad, bad_a, bad_p);
        }
        self.grad
    }
}

/// `dL/dW_in^T = sum_t u_t^T (dL/dd_t)` (`[I, H]`) for a projection run in the loop, summed
/// like [`OuterProducts`]: the rows of several steps are collected and multiplied in by one
/// product (one row at a time, the `[I, H]` sum is loaded and stored for every multiply-add).
struct InputProducts {
    inputs: usize,
    hidden: usize,
    sum: Vec<f32>,
    u: Vec<f32>,
    grads: Vec<f32>,
    rows: usize,
    lhs: PackedLhs,
}

impl InputProducts {
    /// Rows per product (the `[I, H]` sum stays in cache: the depth of [`OuterProducts`] for
    /// small networks).
    const DEPTH: usize = 256;

    fn new(inputs: usize, hidden: usize, trials: usize) -> Self {
        let rows = Self::DEPTH.div_ceil(trials).max(1) * trials;
        InputProducts {
            inputs,
            hidden,
            sum: vec![0f32; inputs * hidden],
            u: Vec::with_capacity(rows * inputs),
            grads: Vec::with_capacity(rows * hidden),
            rows,
            lhs: PackedLhs::default(),
        }
    }

    /// Adds the pairs of the inputs `u` (read in place) and the contiguous drive gradients.
    fn push(&mut self, u: InPlace, grads: &[f32]) {
        if self.hidden <= OUTER_IN_PLACE_MAX && self.grads.is_empty() && u.m >= self.rows {
            // A whole product's rows at once: multiplied where they lie (as `OuterProducts`).
            // SAFETY: `u` lies in the input (checked by `Input::rows`), `grads` is borrowed;
            // the sum is `[I, H]`.
            unsafe {
                let g = Span::of(grads, self.hidden);
                add_outer_products(self.sum.as_mut_ptr(), self.hidden, u, g, 1.0);
            }
            return;
        }
        for r in 0..u.m {
            // SAFETY: the caller's `InPlace` rows lie in the input (checked by `Input::rows`).
            let row = unsafe { std::slice::from_raw_parts(u.ptr.add(r * u.rs), u.k) };
            self.u.extend_from_slice(row);
        }
        self.grads.extend_from_slice(grads);
        if self.grads.len() >= self.rows * self.hidden {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let rows = self.grads.len() / self.hidden.max(1);
        if rows > 0 && self.hidden <= OUTER_IN_PLACE_MAX {
            let (u, g) = (Span::of(&self.u, self.inputs), Span::of(&self.grads, self.hidden));
            // SAFETY: this collection's own buffers; the sum is `[I, H]`.
            unsafe { add_outer_products(self.sum.as_mut_ptr(), self.hidden, u, g, 1.0) };
        } else if rows > 0 {
            let (i, h) = (self.inputs, self.hidden);
            let rhs = Packed::from_rows(rows, h, |r| &self.grads[r * h..]);
            // u^T: element (c, r) is u[r * I + c].
            self.lhs.pack(Operand::new(&self.u, 1, i), i, rows);
            matmul_packed(&mut self.sum, h, true, &self.lhs, 0, &rhs, 1.0, false);
        }
        self.u.clear();
        self.grads.clear();
    }

    fn finish(mut self) -> Vec<f32> {
        self.flush();
        self.sum
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
    /// The input projection, when the forward ran it in the loop.
    pub(super) input: Option<&'a Input<'a>>,
}

/// The gradients of a backward pass.
pub(super) struct Grads {
    /// `[H, H]`.
    pub(super) w: Vec<f32>,
    /// `dL/dd_t` in the sequences' layout; empty when the projection ran in the loop.
    pub(super) drive: Vec<f32>,
    /// `([I, H] = dL/dW_in^T, [H] = dL/db)` when the projection ran in the loop.
    pub(super) input: Option<(Vec<f32>, Vec<f32>)>,
    /// `[B, H]`.
    pub(super) init: Vec<f32>,
}

/// One split's share of the weight gradients.
struct Share {
    w: Vec<f32>,
    input: Option<(Vec<f32>, Vec<f32>)>,
}

/// The gradients of the loss, given [`Backward`]'s sequences.
pub(super) fn backward(
    update: Update,
    activation: Activation,
    w: &Matrix<'_>,
    b: &Backward<'_>,
    d: Dims,
    threads: usize,
) -> Grads {
    let h = d.hidden;
    let w_p = w.plain();
    let (mut adjoint, mut grad_init) = (Vec::new(), Vec::new());
    let adjoint_len = if b.input.is_some() { 0 } else { d.len() };
    let adjoint_out = Rows::uninit(&mut adjoint, adjoint_len, d);
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
    let mut total = parts.next().unwrap_or_else(|| Share { w: vec![0f32; h * h], input: None });
    for part in parts {
        for (g, p) in total.w.iter_mut().zip(part.w) {
            *g += p;
        }
        if let (Some((acc, sums)), Some((p_acc, p_sums))) = (&mut total.input, part.input) {
            for (g, p) in acc.iter_mut().zip(p_acc).chain(sums.iter_mut().zip(p_sums)) {
                *g += p;
            }
        }
    }
    Grads { w: total.w, drive: adjoint, input: total.input, init: grad_init }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::values;

    /// Scales the first `hidden` columns of each row (`ld` apart) of `w` to a stable recurrent
    /// matrix, zero outside `blocks`.
    fn within_blocks(w: &mut [f32], hidden: usize, ld: usize, blocks: &[Block]) {
        for (i, row) in w.chunks_exact_mut(ld).enumerate() {
            for (j, v) in row[..hidden].iter_mut().enumerate() {
                if !blocks.iter().any(|b| b.rows.contains(&i) && b.cols.contains(&j)) {
                    *v = 0.0;
                }
                *v *= 0.4;
            }
        }
    }

    /// Trials split over threads give the same sequences and gradients as one thread, in both
    /// layouts, dense and by blocks, leaky and Elman, with uneven splits (5 trials, 2 and 3
    /// threads): bit for bit with this module's AVX-512 microkernel, whose arithmetic per row is
    /// the same whatever the rows around it. The `gemm` crate (the products on other CPUs) picks
    /// its kernel and its blocking of the sum by the product's size (a single row goes to a
    /// matrix-vector kernel that sums in another order), so there a thread's share of the trials
    /// changes the rounding: equal to within a few ulp.
    #[test]
    fn split_trials_equal_one_thread() {
        // 600 trials: one thread multiplies a step's rows where they lie, three collect two
        // steps' rows per product (see `OuterProducts::push`).
        for (steps, batch) in [(6, 5), (2, 600)] {
            split_trials_equal_one_thread_at(steps, batch);
        }
    }

    /// Equal bit for bit where the products are this module's (AVX-512), else to within a few
    /// ulp (see [`split_trials_equal_one_thread`]).
    fn same(a: &[f32], b: &[f32], what: &str) {
        if crate::engine::fast_math::simd() == crate::engine::fast_math::Simd::Avx512 {
            assert_eq!(a, b, "{what}");
            return;
        }
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-6 * x.abs().max(1.0), "{what}: [{i}] {x} vs {y}");
        }
    }

    fn split_trials_equal_one_thread_at(steps: usize, batch: usize) {
        let hidden = 9;
        let blocks = [
            Block { rows: 0..4, cols: 0..4 },
            Block { rows: 4..9, cols: 0..4 },
            Block { rows: 0..4, cols: 6..9 },
        ];
        let mut w = values(hidden * hidden, 1);
        within_blocks(&mut w, hidden, hidden, &blocks);
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
                    let blocks = with_blocks.then_some(&blocks[..]);
                    let matrix = Matrix { w: &w, blocks, hidden, ld: hidden };
                    let run = |threads| {
                        let drive = Drive::Given(&drive);
                        let out = forward(
                            update,
                            Activation::Tanh,
                            &matrix,
                            drive,
                            &init,
                            d,
                            threads,
                            true,
                        );
                        let rates =
                            if out.rates.is_empty() { &out.states } else { &out.rates }.clone();
                        let grad_x = matches!(update, Update::Leaky { .. }).then_some(&grad_x[..]);
                        let args = Backward {
                            init: &init,
                            rates: &rates,
                            grad_h: &grad,
                            grad_x,
                            input: None,
                        };
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
                        same(&one.0, &many.0, &format!("{what}: states"));
                        same(&one.1, &many.1, &format!("{what}: rates"));
                        // Leaky states not kept (each step's in a buffer of two): the same rates.
                        let drive = Drive::Given(&drive);
                        let rates_only = forward(
                            update,
                            Activation::Tanh,
                            &matrix,
                            drive,
                            &init,
                            d,
                            threads,
                            false,
                        );
                        if matches!(update, Update::Leaky { .. }) {
                            assert!(rates_only.states.is_empty(), "{what}: states not kept");
                            same(&rates_only.rates, &one.1, &format!("{what}: rates only"));
                        }
                        same(&one.2.drive, &many.2.drive, &format!("{what}: drive gradient"));
                        same(&one.2.init, &many.2.init, &format!("{what}: initial-state gradient"));
                        // Summed per thread, then across threads: equal up to rounding.
                        for (x, y) in one.2.w.iter().zip(&many.2.w) {
                            assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "{what}: dL/dW");
                        }
                    }
                }
            }
        }
    }

    /// The projection run inside the loop gives what a drive projected first gives: the same
    /// sequences, the same recurrent and initial-state gradients, and the projection's weight
    /// and bias gradients equal the drive gradient's products with the inputs. Both layouts,
    /// leaky and Elman, dense and by blocks, split over threads or not.
    #[test]
    fn projection_in_the_loop_equals_a_projected_drive() {
        // 300 trials: one thread multiplies a step's rows where they lie, two collect them.
        for (steps, batch) in [(5, 4), (2, 300)] {
            projection_in_the_loop_at(steps, batch);
        }
    }

    /// Asserts that `a` and `b` are equal within rounding.
    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "{what}: {x} != {y}");
        }
    }

    /// `dL/dW_in^T [c, j] = sum_r u[r, c] dL/dd[r, j]` and `dL/db = sum_r dL/dd[r]`, from the
    /// inputs `u` `[R, inputs]` and the drive gradient `[R, H]`.
    fn projection_gradients(u: &[f32], drive: &[f32], inputs: usize) -> (Vec<f32>, Vec<f32>) {
        let rows = u.len() / inputs;
        let hidden = drive.len() / rows;
        let w_in_t = (0..inputs * hidden)
            .map(|k| {
                let (c, j) = (k / hidden, k % hidden);
                (0..rows).map(|r| u[r * inputs + c] * drive[r * hidden + j]).sum()
            })
            .collect();
        let bias = (0..hidden).map(|j| (0..rows).map(|r| drive[r * hidden + j]).sum()).collect();
        (w_in_t, bias)
    }

    fn projection_in_the_loop_at(steps: usize, batch: usize) {
        let (hidden, inputs) = (7, 3);
        let ld = hidden + inputs + 1;
        let blocks = [Block { rows: 0..4, cols: 0..7 }, Block { rows: 4..7, cols: 2..5 }];
        // [W | W_in | b], W zero outside the blocks.
        let mut weights = values(hidden * ld, 11);
        within_blocks(&mut weights, hidden, ld, &blocks);
        let (u, init, grad, grad_x) = (
            values(steps * batch * inputs, 12),
            values(batch * hidden, 13),
            values(steps * batch * hidden, 14),
            values(steps * batch * hidden, 15),
        );
        let w: Vec<f32> = weights.chunks_exact(ld).flat_map(|r| r[..hidden].to_vec()).collect();
        for batch_first in [false, true] {
            // The inputs and the drive (u W_in^T + b) in this layout, rows in the same order.
            let d = Dims { steps, batch, hidden, batch_first };
            let mut drive = vec![0f32; steps * batch * hidden];
            for (r, row) in drive.chunks_exact_mut(hidden).enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    let dot: f32 =
                        (0..inputs).map(|c| u[r * inputs + c] * weights[j * ld + hidden + c]).sum();
                    *v = dot + weights[j * ld + hidden + inputs];
                }
            }
            for update in [Update::Leaky { alpha: 0.25 }, Update::Elman] {
                for with_blocks in [false, true] {
                    let blocks = with_blocks.then_some(&blocks[..]);
                    let what = format!("{update:?} batch_first={batch_first} blocks={with_blocks}");
                    let plain = Matrix { w: &w, blocks, hidden, ld: hidden };
                    let wide = Matrix { w: &weights, blocks, hidden, ld };
                    let input = Input::new(&u, &weights, hidden, inputs);
                    let grad_x = matches!(update, Update::Leaky { .. }).then_some(&grad_x[..]);
                    let given = forward(
                        update,
                        Activation::Tanh,
                        &plain,
                        Drive::Given(&drive),
                        &init,
                        d,
                        1,
                        true,
                    );
                    let rates = if given.rates.is_empty() { &given.states } else { &given.rates };
                    let args = Backward { init: &init, rates, grad_h: &grad, grad_x, input: None };
                    let want = backward(update, Activation::Tanh, &plain, &args, d, 1);
                    for threads in [1, 2] {
                        let what = format!("{what} threads={threads}");
                        let drive = Drive::Projected(&input);
                        let got = forward(
                            update,
                            Activation::Tanh,
                            &wide,
                            drive,
                            &init,
                            d,
                            threads,
                            true,
                        );
                        close(&given.states, &got.states, &format!("{what}: states"));
                        close(&given.rates, &got.rates, &format!("{what}: rates"));
                        // Leaky states not kept: the same rates, no states.
                        let rates_only = forward(
                            update,
                            Activation::Tanh,
                            &wide,
                            drive,
                            &init,
                            d,
                            threads,
                            false,
                        );
                        if matches!(update, Update::Leaky { .. }) {
                            assert!(rates_only.states.is_empty(), "{what}: states not kept");
                            assert_eq!(rates_only.rates, got.rates, "{what}: rates only");
                        } else {
                            assert_eq!(rates_only.states, got.states, "{what}: Elman's rates");
                        }
                        let rates = if got.rates.is_empty() { &got.states } else { &got.rates };
                        let args = Backward {
                            init: &init,
                            rates,
                            grad_h: &grad,
                            grad_x,
                            input: Some(&input),
                        };
                        let grads = backward(update, Activation::Tanh, &wide, &args, d, threads);
                        close(&want.w, &grads.w, &format!("{what}: dL/dW"));
                        close(&want.init, &grads.init, &format!("{what}: dL/dinit"));
                        assert!(grads.drive.is_empty(), "{what}: no drive gradient");
                        let (w_in_t, bias) = grads.input.expect("the projection's gradients");
                        let (want_w_in_t, want_bias) =
                            projection_gradients(&u, &want.drive, inputs);
                        close(&want_w_in_t, &w_in_t, &format!("{what}: dL/dW_in"));
                        close(&want_bias, &bias, &format!("{what}: dL/db"));
                    }
                }
            }
        }
    }
}
