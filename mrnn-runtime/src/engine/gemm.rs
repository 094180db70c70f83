//! Matrix products of the host kernel, with the right operand packed once per call and reused at
//! every step.
//!
//! The recurrence multiplies by the same `W` (or `W^T`) T times. On CPUs with AVX-512 the right
//! operand is packed once into panels of [`NR`] columns (row `p` of a panel is [`NR`] contiguous
//! floats) and a register-blocked microkernel ([`MR_MAX`] rows x [`NR`] columns of
//! accumulators; the left operand is broadcast from memory) runs over them. The left operand is
//! either packed by row blocks ([`PackedLhs`], for the weight gradient's transposed operand) or
//! read in place ([`InPlace`], the rows of one step wherever they lie in a sequence). Sums of
//! outer products of the rows of a small network (its weight gradients) read both operands in
//! place ([`add_outer_products`]: the left one transposed, the right one by masked loads).
//!
//! The `gemm` crate that candle uses has no stable AVX-512 kernel and repacks its operands on every call:
//! at `[32 x 1024] x [1024 x 1024]` it ran ~40 GFLOP/s per thread here. Elsewhere (AVX2, ARM)
//! the products go through the `gemm` crate, on a contiguous row-major copy of the operand.
//!
//! Large products are split by column panels over the engine's threads (module `pool`); small
//! ones stay on the calling thread, because waking a worker costs tens of microseconds on small
//! VMs.

/// A matrix operand: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Operand<'a> {
    pub(super) data: &'a [f32],
    pub(super) rs: usize,
    pub(super) cs: usize,
}

impl<'a> Operand<'a> {
    pub(super) fn new(data: &'a [f32], rs: usize, cs: usize) -> Self {
        Operand { data, rs, cs }
    }

    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }

    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }
}

/// Columns per panel: two AVX-512 registers of `f32`.
pub(super) const NR: usize = 32;
/// Rows per microkernel call: `2 * MR_MAX` accumulators, two panel registers and a broadcast fit
/// in the 32 vector registers with room to spare (at 14 rows the compiler spilled a panel
/// register on every iteration).
const MR_MAX: usize = 12;
/// Depth of one pass over a panel: a `KC x NR` slice of it (32 KiB) stays in L1 while every row
/// block of the left operand goes by.
const KC: usize = 256;
/// Products with fewer multiply-adds than this stay on one thread (see the module docs).
const PARALLEL_MIN: usize = 1 << 22;

/// A right operand `[k x n]`, laid out for [`matmul`].
#[derive(Debug)]
pub(super) struct Packed {
    k: usize,
    n: usize,
    layout: Layout,
}

#[derive(Debug)]
enum Layout {
    /// Panel `q` holds columns `q * NR..`, `k` rows of [`NR`] floats (zero past `n`).
    Panels(Vec<f32>),
    /// Row-major `[k x n]`, for the `gemm` crate.
    RowMajor(Vec<f32>),
}

impl Packed {
    /// Packs the `k x n` matrix `src` (any strides: transposes pack as cheaply as copies).
    pub(super) fn new(src: Operand<'_>, k: usize, n: usize) -> Self {
        Self::with_kernel(src, k, n, Kernel::detect())
    }

    /// Packs the `k x n` matrix whose row `p` is `row(p)[..n]`: operands assembled from
    /// several buffers (the rates one step back, the first from the initial state) pack without
    /// being copied together first.
    pub(super) fn from_rows<'a>(k: usize, n: usize, row: impl Fn(usize) -> &'a [f32]) -> Self {
        Self::rows_with_kernel(k, n, row, Kernel::detect())
    }

    fn with_kernel(src: Operand<'_>, k: usize, n: usize, kernel: Kernel) -> Self {
        assert!(src.fits(k, n), "packed operand out of bounds");
        if src.cs == 1 {
            return Self::rows_with_kernel(k, n, |p| &src.data[p * src.rs..], kernel);
        }
        let layout = match kernel {
            Kernel::Avx512 => {
                let panels = n.div_ceil(NR);
                let mut data = vec![0f32; panels * k * NR];
                for (q, panel) in data.chunks_exact_mut(k * NR).enumerate() {
                    let j0 = q * NR;
                    let width = NR.min(n - j0);
                    for (p, row) in panel.chunks_exact_mut(NR).enumerate() {
                        for (jj, v) in row[..width].iter_mut().enumerate() {
                            *v = src.at(p, j0 + jj);
                        }
                    }
                }
                Layout::Panels(data)
            }
            Kernel::Portable => {
                let mut data = Vec::with_capacity(k * n);
                for p in 0..k {
                    data.extend((0..n).map(|j| src.at(p, j)));
                }
                Layout::RowMajor(data)
            }
        };
        Packed { k, n, layout }
    }

    fn rows_with_kernel<'a>(
        k: usize,
        n: usize,
        row: impl Fn(usize) -> &'a [f32],
        kernel: Kernel,
    ) -> Self {
        let layout = match kernel {
            Kernel::Avx512 => {
                let panels = n.div_ceil(NR);
                let mut data = vec![0f32; panels * k * NR];
                for p in 0..k {
                    let src = &row(p)[..n];
                    for (q, part) in src.chunks(NR).enumerate() {
                        let at = (q * k + p) * NR;
                        data[at..at + part.len()].copy_from_slice(part);
                    }
                }
                Layout::Panels(data)
            }
            Kernel::Portable => {
                let mut data = Vec::with_capacity(k * n);
                for p in 0..k {
                    data.extend_from_slice(&row(p)[..n]);
                }
                Layout::RowMajor(data)
            }
        };
        Packed { k, n, layout }
    }

    fn kernel(&self) -> Kernel {
        match self.layout {
            Layout::Panels(_) => Kernel::Avx512,
            Layout::RowMajor(_) => Kernel::Portable,
        }
    }

    pub(super) fn rows(&self) -> usize {
        self.k
    }

    pub(super) fn cols(&self) -> usize {
        self.n
    }
}

/// Which implementation runs the products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    /// The packed-panel microkernel of this module.
    Avx512,
    /// The `gemm` crate.
    Portable,
}

impl Kernel {
    fn detect() -> Self {
        match super::fast_math::simd() {
            super::fast_math::Simd::Avx512 => Kernel::Avx512,
            _ => Kernel::Portable,
        }
    }
}

/// `dst (m x n, row stride ld) = [dst +] scale * lhs (m x k) * rhs (k x n)`, with `k x n` the
/// shape of `rhs`. `parallel`: large products may split over the engine's threads (callers
/// already running on several threads pass `false`).
#[allow(clippy::too_many_arguments, reason = "one GEMM call's operands")]
pub(super) fn matmul(
    dst: &mut [f32],
    ld: usize,
    m: usize,
    accumulate: bool,
    lhs: Operand<'_>,
    rhs: &Packed,
    scale: f32,
    parallel: bool,
) {
    let mut packed = PackedLhs::default();
    packed.pack_with(lhs, m, rhs.k, rhs.kernel());
    matmul_packed(dst, ld, accumulate, &packed, 0, rhs, scale, parallel);
}

/// A left operand `[m x k]` laid out for [`matmul_packed`]: by row blocks (see [`row_blocks`];
/// the microkernel broadcasts from one pointer that advances by a block's height per column)
/// or row-major (for the `gemm` crate). Packed once, it serves every product by a part of the
/// right-hand matrix (the blocks of a block-sparse `W`); repacked, it reuses its buffer.
#[derive(Debug, Default)]
pub(super) struct PackedLhs {
    data: Vec<f32>,
    m: usize,
    k: usize,
    row_blocks: bool,
}

impl PackedLhs {
    /// Packs the `m x k` matrix `src`.
    pub(super) fn pack(&mut self, src: Operand<'_>, m: usize, k: usize) {
        self.pack_with(src, m, k, Kernel::detect());
    }

    fn pack_with(&mut self, src: Operand<'_>, m: usize, k: usize, kernel: Kernel) {
        assert!(src.fits(m, k), "packed operand out of bounds");
        (self.m, self.k, self.row_blocks) = (m, k, kernel == Kernel::Avx512);
        // Every element is written below: resize (and zero) only when the shape changes.
        if self.data.len() != m * k {
            self.data.clear();
            self.data.resize(m * k, 0.0);
        }
        if self.row_blocks {
            pack_row_blocks(src, m, k, &mut self.data);
        } else {
            for (i, row) in self.data.chunks_exact_mut(k.max(1)).take(m).enumerate() {
                for (p, v) in row.iter_mut().enumerate() {
                    *v = src.at(i, p);
                }
            }
        }
    }
}

/// `dst (m x n, row stride ld) = [dst +] scale * lhs[:, k0..k0 + k] * rhs (k x n)`, with `m`
/// the rows of `lhs` and `k x n` the shape of `rhs`; `parallel` as for [`matmul`].
#[allow(clippy::too_many_arguments, reason = "one GEMM call's operands")]
pub(super) fn matmul_packed(
    dst: &mut [f32],
    ld: usize,
    accumulate: bool,
    lhs: &PackedLhs,
    k0: usize,
    rhs: &Packed,
    scale: f32,
    parallel: bool,
) {
    let threads = if parallel { super::pool::threads() } else { 1 };
    matmul_packed_on(dst, ld, accumulate, lhs, k0, rhs, scale, threads);
}

#[allow(clippy::too_many_arguments, reason = "one GEMM call's operands")]
fn matmul_packed_on(
    dst: &mut [f32],
    ld: usize,
    accumulate: bool,
    lhs: &PackedLhs,
    k0: usize,
    rhs: &Packed,
    scale: f32,
    threads: usize,
) {
    let (m, n, k) = (lhs.m, rhs.n, rhs.k);
    let dst_fits = m == 0 || n == 0 || (m - 1) * ld + n <= dst.len();
    assert!(dst_fits && k0 + k <= lhs.k, "matmul operands out of bounds");
    assert_eq!(lhs.row_blocks, rhs.kernel() == Kernel::Avx512, "operands packed for two kernels");
    // SAFETY: bounds checked above; `dst` is borrowed mutably, so no operand aliases it.
    unsafe {
        let (lhs, rhs) = (Lhs::Packed { lhs, k0 }, Rhs::Packed(rhs));
        product(dst.as_mut_ptr(), ld, accumulate, lhs, rhs, scale, threads);
    }
}

/// A left operand `[m x k]` read where it lies, unpacked: row `i` is the `k` floats from
/// `ptr + i * rs` (the rows of one step of a `[B, T, H]` sequence lie `T H` apart). Per-step
/// products read their left operand once per panel, so packing it first (a strided copy of the
/// whole operand, every step) costs more than the unit-stride broadcasts it saves; and the rows
/// need not be gathered out of the sequence first. Raw parts, because the caller writes other
/// rows of the same buffer meanwhile.
#[derive(Clone, Copy, Debug)]
pub(super) struct InPlace {
    pub(super) ptr: *const f32,
    pub(super) rs: usize,
    pub(super) m: usize,
    pub(super) k: usize,
}

/// `dst (m x n, row stride ld) = [dst +] scale * lhs (m x k) * rhs (k x n)`, with `lhs` read in
/// place; `parallel` as for [`matmul`].
///
/// # Safety
/// `lhs` must be valid for reads of its `m` rows of `k >= rhs.rows()` floats, `dst` valid for
/// writes of `m` rows of `rhs.cols()` floats `ld` apart, and neither may be accessed by anyone
/// else meanwhile except for reads of `lhs`; the two may not overlap.
#[allow(clippy::too_many_arguments, reason = "one GEMM call's operands")]
pub(super) unsafe fn matmul_in_place(
    dst: *mut f32,
    ld: usize,
    accumulate: bool,
    lhs: InPlace,
    rhs: &Packed,
    scale: f32,
    parallel: bool,
) {
    assert!(rhs.k <= lhs.k, "matmul operands out of bounds");
    let threads = if parallel { super::pool::threads() } else { 1 };
    // SAFETY: forwarded from the caller.
    unsafe { product(dst, ld, accumulate, Lhs::InPlace(lhs), Rhs::Packed(rhs), scale, threads) };
}

/// `dst (m x n, row stride ld) += scale * sum_p a_p^T b_p`: the outer products of `k` pairs of
/// rows, `a_p` of `m` floats and `b_p` of `n` floats (`a` is `k` rows of `m`, `b` `k` rows of
/// `n`), summed on the calling thread. Both are read where they lie, unpacked: a weight
/// gradient `adjoints^T rates` of a small network then costs no copy of either sequence. With
/// rows a few hundred bytes long the unit-stride reads of the microkernel stay cheap; long rows
/// (a large `H`) are better packed first (rows 4 KiB apart share cache sets).
///
/// # Safety
/// `a` and `b` must be valid for reads of their rows, `dst` valid for reads and writes of `m`
/// rows of `n` floats `ld` apart, and nobody else may write any of them meanwhile; `dst` may
/// not overlap the others.
pub(super) unsafe fn add_outer_products(
    dst: *mut f32,
    ld: usize,
    a: InPlace,
    b: InPlace,
    scale: f32,
) {
    // SAFETY: forwarded from the caller.
    unsafe { outer_products_on(Kernel::detect(), dst, ld, a, b, scale) };
}

/// [`add_outer_products`] on `kernel`.
///
/// # Safety
/// As [`add_outer_products`]; AVX-512F available for [`Kernel::Avx512`].
unsafe fn outer_products_on(
    kernel: Kernel,
    dst: *mut f32,
    ld: usize,
    a: InPlace,
    b: InPlace,
    scale: f32,
) {
    assert_eq!(a.m, b.m, "outer products of unpaired rows");
    let lhs = Lhs::Transposed { ptr: a.ptr, rs: a.rs, m: a.k };
    // SAFETY: forwarded from the caller; one thread.
    unsafe { product(dst, ld, true, lhs, Rhs::InPlace(b, kernel), scale, 1) };
}

/// The rest of a forward step, fused into the stores of its product
/// `v = scale * (h_{t-1} W^T + u_t W_in^T)` ([`matmul_step`]): `x = [keep * prev +] v +
/// scale * bias`, then `phi(x)`. Each row block is finished while its accumulators are in
/// registers: no pass of its own over the rows for the leak, the bias, the input product or
/// the activation (four passes over a step's rows before; 10% faster flip-flop training steps).
#[derive(Clone, Copy)]
pub(super) struct StepFinish<'a> {
    /// The state of the step before (leaky), rows `ld` apart, times `keep`.
    pub(super) prev: Option<(*const f32, usize)>,
    pub(super) keep: f32,
    /// `[n]`, times `scale`.
    pub(super) bias: &'a [f32],
    pub(super) activation: mrnn_ir::Activation,
    /// Leaky: `phi(x)` goes to these rows (`ld` apart) and `x` to the product's. Elman
    /// (`None`): `phi(x)` goes to the product's rows.
    pub(super) rates: Option<(*mut f32, usize)>,
}

/// Whether [`matmul_step`] runs on this CPU for a product of depth `k` plus inputs of depth
/// `k_in` (one depth slice each, on the AVX-512 kernel).
pub(super) fn fuses_steps(k: usize, k_in: usize) -> bool {
    Kernel::detect() == Kernel::Avx512 && k <= KC && k_in <= KC
}

/// One forward step in one pass: `dst (m x n, row stride ld) = x` and the rates as `finish`
/// says, with `v = scale * (lhs rhs + inputs.0 inputs.1)` (`lhs` and the inputs read in place).
/// Only where [`fuses_steps`] says so. `parallel`: split by column panels over the engine's
/// threads when large (as [`matmul`]).
///
/// # Safety
/// As [`matmul_in_place`] for both products and `dst`; `finish.prev` valid for reads and
/// `finish.rates` for writes of `m` rows of `n` floats, none aliasing another operand.
#[allow(clippy::too_many_arguments, reason = "one step's operands")]
pub(super) unsafe fn matmul_step(
    dst: *mut f32,
    ld: usize,
    lhs: InPlace,
    rhs: &Packed,
    inputs: (InPlace, &Packed),
    scale: f32,
    finish: &StepFinish<'_>,
    parallel: bool,
) {
    let (u, w_in) = inputs;
    let (m, n, k) = (lhs.m, rhs.n, rhs.k);
    assert!(fuses_steps(k, w_in.k), "a fused step on a CPU or depth it does not run on");
    assert!(rhs.k <= lhs.k && w_in.k <= u.k && u.m == m && w_in.n == n, "step operands");
    assert_eq!(finish.bias.len(), n, "bias of the step");
    if m == 0 || n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let (Layout::Panels(panels), Layout::Panels(in_panels)) = (&rhs.layout, &w_in.layout)
        else {
            unreachable!("`fuses_steps` holds: both are packed in panels")
        };
        let threads = if parallel { super::pool::threads() } else { 1 };
        let panel_count = n.div_ceil(NR);
        let threads = threads.min(panel_count);
        let base = SendPtr(dst);
        let step = avx512::Step { lhs, panels, u, in_panels, k, k_in: w_in.k, n, scale };
        let finish = SendFinish(*finish);
        let run = |cols: std::ops::Range<usize>| {
            // SAFETY: the caller's bounds; AVX-512 (`fuses_steps`); each task its own columns.
            unsafe { avx512::step_columns(base.get(), ld, cols, &step, &finish.get()) };
        };
        if threads > 1 && m * n * k >= PARALLEL_MIN {
            let per_task = panel_count.div_ceil(threads) * NR;
            super::pool::run(n.div_ceil(per_task), |task| {
                run(task * per_task..n.min((task + 1) * per_task));
            });
        } else {
            run(0..n);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (dst, ld, scale, parallel);
}

/// A [`StepFinish`] handed to the tasks of one step (each writes its own columns).
#[derive(Clone, Copy)]
struct SendFinish<'a>(StepFinish<'a>);

// SAFETY: the tasks write disjoint columns of the rows, and the rows outlive the scoped tasks.
unsafe impl Send for SendFinish<'_> {}
unsafe impl Sync for SendFinish<'_> {}

impl<'a> SendFinish<'a> {
    /// The finish (a method, so that closures capture the `Send` wrapper, not its field).
    fn get(self) -> StepFinish<'a> {
        self.0
    }
}

/// The left operand of a product.
#[derive(Clone, Copy)]
enum Lhs<'a> {
    /// Columns `k0..` of a packed operand.
    Packed {
        lhs: &'a PackedLhs,
        k0: usize,
    },
    InPlace(InPlace),
    /// The transpose of rows read in place: element `(i, p)` is at `ptr + p * rs + i`, for
    /// `i < m`.
    Transposed {
        ptr: *const f32,
        rs: usize,
        m: usize,
    },
}

impl Lhs<'_> {
    fn rows(self) -> usize {
        match self {
            Lhs::Packed { lhs, .. } => lhs.m,
            Lhs::InPlace(lhs) => lhs.m,
            Lhs::Transposed { m, .. } => m,
        }
    }

    /// Where element `(0, 0)` lies, and the steps to the next row and to the next column (for
    /// the `gemm` crate: a packed operand is then row-major).
    fn layout(self) -> (*const f32, usize, usize) {
        match self {
            Lhs::Packed { lhs, k0 } => (lhs.data[k0..].as_ptr(), lhs.k, 1),
            Lhs::InPlace(lhs) => (lhs.ptr, lhs.rs, 1),
            Lhs::Transposed { ptr, rs, .. } => (ptr, 1, rs),
        }
    }
}

/// The right operand of a product.
#[derive(Clone, Copy)]
enum Rhs<'a> {
    Packed(&'a Packed),
    /// `m` rows of `k` floats (the operand is `m x k`) read in place, by the products of
    /// `kernel`.
    InPlace(InPlace, Kernel),
}

impl Rhs<'_> {
    fn rows(self) -> usize {
        match self {
            Rhs::Packed(rhs) => rhs.k,
            Rhs::InPlace(rhs, _) => rhs.m,
        }
    }

    fn cols(self) -> usize {
        match self {
            Rhs::Packed(rhs) => rhs.n,
            Rhs::InPlace(rhs, _) => rhs.k,
        }
    }
}

/// The product of [`matmul_packed_on`], [`matmul_in_place`] and [`add_outer_products`], split
/// by column panels over `threads` when large.
///
/// # Safety
/// `dst` valid for writes of the `m x n` result with row stride `ld` and not aliased by the
/// operands; `lhs` valid for reads of `m` rows of its columns up to `rhs.rows()` (from `k0`),
/// and `rhs` of its rows when read in place.
#[allow(clippy::too_many_arguments, reason = "one GEMM call's operands")]
unsafe fn product(
    dst: *mut f32,
    ld: usize,
    accumulate: bool,
    lhs: Lhs<'_>,
    rhs: Rhs<'_>,
    scale: f32,
    threads: usize,
) {
    let (m, n, k) = (lhs.rows(), rhs.cols(), rhs.rows());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in 0..m {
                // SAFETY: row `row` of `dst` holds `n` writable floats (the caller).
                unsafe { std::slice::from_raw_parts_mut(dst.add(row * ld), n).fill(0.0) };
            }
        }
        return;
    }
    let panels = n.div_ceil(NR);
    let threads = threads.min(panels);
    let base = SendPtr(dst);
    let operands = Operands(lhs, rhs);
    // SAFETY (both calls below): the caller guarantees the bounds and that nothing aliases
    // `dst`; each task writes only its own columns.
    if threads > 1 && m * n * k >= PARALLEL_MIN {
        let per_task = panels.div_ceil(threads) * NR;
        super::pool::run(n.div_ceil(per_task), |task| {
            let cols = task * per_task..n.min((task + 1) * per_task);
            let (lhs, rhs) = operands.get();
            unsafe { columns(base, ld, cols, accumulate, lhs, rhs, scale) };
        });
    } else {
        unsafe { columns(base, ld, 0..n, accumulate, lhs, rhs, scale) };
    }
}

/// The operands handed to the tasks of one product, which only read them.
#[derive(Clone, Copy)]
struct Operands<'a>(Lhs<'a>, Rhs<'a>);

// SAFETY: the operands are only read, and outlive the scoped tasks of the product.
unsafe impl Send for Operands<'_> {}
unsafe impl Sync for Operands<'_> {}

impl<'a> Operands<'a> {
    /// The operands (a method, so that closures capture the `Send` wrapper, not its fields).
    fn get(self) -> (Lhs<'a>, Rhs<'a>) {
        (self.0, self.1)
    }
}

/// The heights of the row blocks of an `m`-row left operand: near-equal (32 rows: 11 + 11 + 10,
/// not 12 + 12 + 8), at most [`MR_MAX`].
fn row_blocks(m: usize) -> impl Iterator<Item = (usize, usize)> {
    let blocks = m.div_ceil(MR_MAX);
    let (height, taller) = (m / blocks, m % blocks);
    (0..blocks).scan(0, move |start, b| {
        let rows = height + usize::from(b < taller);
        let block = (*start, rows);
        *start += rows;
        Some(block)
    })
}

/// `lhs` (`m x k`) as [`row_blocks`], each `k` columns of its `mr` rows: element `(i0 + r, p)`
/// of the block starting at row `i0` lies at `i0 * k + p * mr + r`.
fn pack_row_blocks(lhs: Operand<'_>, m: usize, k: usize, out: &mut [f32]) {
    for (i0, mr) in row_blocks(m) {
        let block = &mut out[i0 * k..(i0 + mr) * k];
        if lhs.cs == 1 {
            // Row-major rows (a `[B, H]` state): read each row once, write it strided.
            for r in 0..mr {
                let row = &lhs.data[(i0 + r) * lhs.rs..][..k];
                for (column, &v) in block.chunks_exact_mut(mr).zip(row) {
                    column[r] = v;
                }
            }
        } else if lhs.rs == 1 {
            // Contiguous columns (a transposed operand): copy `mr` floats per column.
            for (p, column) in block.chunks_exact_mut(mr).enumerate() {
                let at = i0 + p * lhs.cs;
                column.copy_from_slice(&lhs.data[at..at + mr]);
            }
        } else {
            for (p, column) in block.chunks_exact_mut(mr).enumerate() {
                for (r, v) in column.iter_mut().enumerate() {
                    *v = lhs.at(i0 + r, p);
                }
            }
        }
    }
}

/// Columns `cols` of the product (`cols.start` a multiple of [`NR`]).
///
/// # Safety
/// `dst` must be valid for writes of the whole `m x n` result with row stride `ld`, and no
/// other thread may touch its columns `cols`; the operands as for [`product`].
unsafe fn columns(
    dst: SendPtr,
    ld: usize,
    cols: std::ops::Range<usize>,
    accumulate: bool,
    lhs: Lhs<'_>,
    rhs: Rhs<'_>,
    scale: f32,
) {
    let m = lhs.rows();
    // The right operand's element (0, 0) and row step for the `gemm` crate, or the panels.
    let row_major = match rhs {
        Rhs::Packed(Packed { layout: Layout::RowMajor(data), n, .. }) => Some((data.as_ptr(), *n)),
        Rhs::Packed(Packed { layout: Layout::Panels(_), .. }) | Rhs::InPlace(_, Kernel::Avx512) => {
            None
        }
        Rhs::InPlace(b, Kernel::Portable) => Some((b.ptr, b.rs)),
    };
    match row_major {
        #[cfg(target_arch = "x86_64")]
        None => {
            // SAFETY: panels, and in-place operands on this path, exist only where AVX-512 was
            // detected, and a packed left operand is packed by row blocks to match (checked by
            // `matmul_packed_on`); the caller guarantees the bounds of `dst` and the operands.
            unsafe { avx512::columns(dst.0, ld, cols, accumulate, lhs, rhs, scale) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        None => unreachable!("the AVX-512 kernel runs only on x86_64"),
        Some((b, b_rs)) => {
            let (n, k) = (cols.len(), rhs.rows());
            let (a, a_rs, a_cs) = lhs.layout();
            // SAFETY: the caller guarantees the bounds of `dst` and the operands (`m` rows of
            // `lhs` as its layout says, `k` rows of `rhs` `b_rs` apart).
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    dst.0.add(cols.start),
                    1,
                    ld.cast_signed(),
                    accumulate,
                    a,
                    a_cs.cast_signed(),
                    a_rs.cast_signed(),
                    b.add(cols.start),
                    1,
                    b_rs.cast_signed(),
                    1.0,
                    scale,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    //! The microkernel: `MR` rows by [`NR`] columns of accumulators in registers.

    use std::arch::x86_64::{
        __m512, _MM_HINT_T0, _mm_load_ss, _mm_prefetch, _mm512_add_ps, _mm512_broadcastss_ps,
        _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps,
        _mm512_mul_ps, _mm512_set1_ps, _mm512_setzero_ps,
    };

    use mrnn_ir::Activation;

    use super::super::fast_math;
    use super::{InPlace, KC, Layout, Lhs, MR_MAX, NR, Packed, Rhs, StepFinish, row_blocks};

    /// `$tile.rows::<MR, ...>(args)` with the constant `MR` equal to the row count `$mr`
    /// (1..=[`MR_MAX`]): one instance of a microkernel per row-block height.
    macro_rules! by_height {
        ($mr:expr, $tile:ident.rows::<_ $(, $g:tt)*>($($arg:expr),*)) => {
            match $mr {
                1 => $tile.rows::<1 $(, $g)*>($($arg),*),
                2 => $tile.rows::<2 $(, $g)*>($($arg),*),
                3 => $tile.rows::<3 $(, $g)*>($($arg),*),
                4 => $tile.rows::<4 $(, $g)*>($($arg),*),
                5 => $tile.rows::<5 $(, $g)*>($($arg),*),
                6 => $tile.rows::<6 $(, $g)*>($($arg),*),
                7 => $tile.rows::<7 $(, $g)*>($($arg),*),
                8 => $tile.rows::<8 $(, $g)*>($($arg),*),
                9 => $tile.rows::<9 $(, $g)*>($($arg),*),
                10 => $tile.rows::<10 $(, $g)*>($($arg),*),
                11 => $tile.rows::<11 $(, $g)*>($($arg),*),
                12 => $tile.rows::<12 $(, $g)*>($($arg),*),
                _ => unreachable!("row blocks are at most MR_MAX = {MR_MAX} high"),
            }
        };
    }

    /// Columns `cols` of `dst = [dst +] scale * lhs * rhs`, `lhs` packed by row blocks or in
    /// place, `rhs` packed in panels or in place.
    ///
    /// # Safety
    /// AVX-512F must be available; `dst` valid for the `m x n` result with row stride `ld`;
    /// `lhs` packed by row blocks with columns `k0..k0 + k`, or valid for reads of its `m` rows
    /// (or columns) of `k` floats; `rhs` packed in panels, or valid for reads of its rows.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn columns(
        dst: *mut f32,
        ld: usize,
        cols: std::ops::Range<usize>,
        accumulate: bool,
        lhs: Lhs<'_>,
        rhs: Rhs<'_>,
        scale: f32,
    ) {
        let (n, k, m) = (rhs.cols(), rhs.rows(), lhs.rows());
        // Where row p0 of panel q starts, and the step to the next row.
        let (b_base, b_panel, b_step, b_in_place, stream) = match rhs {
            Rhs::Packed(Packed { layout: Layout::Panels(panels), .. }) => {
                let stream = std::mem::size_of_val(panels.as_slice()) > STREAM_MIN;
                (panels.as_ptr(), k * NR, NR, false, stream)
            }
            Rhs::Packed(Packed { layout: Layout::RowMajor(_), .. }) => {
                unreachable!("row-major operands go to the gemm crate")
            }
            Rhs::InPlace(b, _) => (b.ptr, NR, b.rs, true, false),
        };
        let tile = |q: usize, p0: usize| {
            let kc = KC.min(k - p0);
            let add = accumulate || p0 > 0;
            let width = NR.min(n - q * NR);
            let b = b_base.wrapping_add(q * b_panel + p0 * b_step);
            for (i0, mr) in row_blocks(m) {
                // Where column p0 of rows i0.. starts, and the steps to the next column and row.
                let (a, a_step, a_row) = match lhs {
                    // SAFETY: the block of rows i0..i0 + mr holds `lhs.k` columns of `mr`
                    // floats from `i0 * lhs.k` on, and k0 + p0 + kc <= lhs.k.
                    Lhs::Packed { lhs, k0 } => unsafe {
                        (lhs.data.as_ptr().add(i0 * lhs.k + (k0 + p0) * mr), mr, 1)
                    },
                    Lhs::InPlace(lhs) => (lhs.ptr.wrapping_add(i0 * lhs.rs + p0), 1, lhs.rs),
                    Lhs::Transposed { ptr, rs, .. } => (ptr.wrapping_add(p0 * rs + i0), rs, 1),
                };
                // SAFETY: the operands hold what the tile reads (above, and the caller for
                // operands in place); rows i0..i0 + mr, columns q * NR..q * NR + width of
                // `dst` exist.
                unsafe {
                    let c = dst.add(i0 * ld + q * NR);
                    let tile = Tile {
                        kc,
                        a,
                        a_step,
                        a_row,
                        stream,
                        b,
                        b_step,
                        b_in_place,
                        c,
                        ld,
                        width,
                        add,
                        scale,
                    };
                    tile.run(mr);
                }
            }
        };
        let panels_range = cols.start / NR..cols.end.div_ceil(NR);
        if m * k * size_of::<f32>() <= A_IN_CACHE {
            // A small left operand (the state of a few trials) stays in cache whatever the
            // order: go through the packed right operand in memory order, one panel after the
            // other, which the hardware prefetcher streams (a `W` larger than L2 comes from L3
            // at every step; 45% faster at [16 x 1024] x [1024 x 1024]).
            for q in panels_range {
                for p0 in (0..k).step_by(KC) {
                    tile(q, p0);
                }
            }
        } else {
            // A large one: each depth slice of it stays in L2 while every panel goes by.
            for p0 in (0..k).step_by(KC) {
                for q in panels_range.clone() {
                    tile(q, p0);
                }
            }
        }
    }

    /// The operands of a fused step ([`super::matmul_step`]).
    pub(super) struct Step<'a> {
        pub(super) lhs: InPlace,
        pub(super) panels: &'a [f32],
        pub(super) u: InPlace,
        pub(super) in_panels: &'a [f32],
        pub(super) k: usize,
        pub(super) k_in: usize,
        pub(super) n: usize,
        pub(super) scale: f32,
    }

    // SAFETY: the tasks of one step only read the operands, which outlive them.
    unsafe impl Send for Step<'_> {}
    unsafe impl Sync for Step<'_> {}

    /// Columns `cols` of a fused step (`cols.start` a multiple of [`NR`]).
    ///
    /// # Safety
    /// AVX-512F; as [`super::matmul_step`], `k` and `k_in` at most [`KC`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn step_columns(
        dst: *mut f32,
        ld: usize,
        cols: std::ops::Range<usize>,
        step: &Step<'_>,
        finish: &StepFinish<'_>,
    ) {
        let (m, n) = (step.lhs.m, step.n);
        for q in cols.start / NR..cols.end.div_ceil(NR) {
            let (j0, width) = (q * NR, NR.min(n - q * NR));
            for (i0, mr) in row_blocks(m) {
                let tile = StepTile {
                    pairs: [
                        (
                            step.lhs.ptr.wrapping_add(i0 * step.lhs.rs),
                            step.lhs.rs,
                            step.panels.as_ptr().wrapping_add(q * step.k * NR),
                            step.k,
                        ),
                        (
                            step.u.ptr.wrapping_add(i0 * step.u.rs),
                            step.u.rs,
                            step.in_panels.as_ptr().wrapping_add(q * step.k_in * NR),
                            step.k_in,
                        ),
                    ],
                    c: dst.wrapping_add(i0 * ld + j0),
                    ld,
                    width,
                    scale: step.scale,
                    prev: finish.prev.map(|(p, pld)| (p.wrapping_add(i0 * pld + j0), pld)),
                    keep: finish.keep,
                    bias: finish.bias[j0..].as_ptr(),
                    rates: finish.rates.map(|(r, rld)| (r.wrapping_add(i0 * rld + j0), rld)),
                };
                // SAFETY: the tile's rows and columns lie within the operands (the caller).
                unsafe { tile.run(mr, finish.activation) };
            }
        }
    }

    /// One microkernel call of a fused step: `v = scale * sum of the pairs' products` for
    /// `mr` rows by `width` columns, then the finish of [`StepFinish`].
    struct StepTile {
        /// (`a`, its row step, `b`, depth): `kc` columns of rows in place by `kc` rows of a
        /// panel, summed into the same accumulators.
        pairs: [(*const f32, usize, *const f32, usize); 2],
        c: *mut f32,
        ld: usize,
        width: usize,
        scale: f32,
        prev: Option<(*const f32, usize)>,
        keep: f32,
        /// The bias at the tile's columns (`width` floats).
        bias: *const f32,
        rates: Option<(*mut f32, usize)>,
    }

    impl StepTile {
        /// # Safety
        /// AVX-512F; the pointers valid for the sizes documented on the fields.
        #[target_feature(enable = "avx512f")]
        unsafe fn run(&self, mr: usize, activation: Activation) {
            // One instance per activation (a closure the compiler inlines into the stores): tanh
            // in intrinsics, the others lane by lane.
            macro_rules! by_activation {
                ($($act:ident)*) => {
                    match activation {
                        Activation::Tanh => {
                            let phi = |x: __m512| fast_math::tanh_avx512(x);
                            // SAFETY: forwarded from the caller.
                            unsafe { self.by_rows(mr, phi) }
                        }
                        $(Activation::$act => {
                            let phi = |x: __m512| {
                                // SAFETY: 16 floats either way.
                                let x: [f32; 16] = unsafe { std::mem::transmute(x) };
                                let h = x.map(|x| fast_math::phi(Activation::$act, x));
                                // SAFETY: as above.
                                unsafe { std::mem::transmute::<[f32; 16], __m512>(h) }
                            };
                            // SAFETY: forwarded from the caller.
                            unsafe { self.by_rows(mr, phi) }
                        })*
                    }
                };
            }
            by_activation!(Relu Sigmoid Softplus Linear);
        }

        /// # Safety
        /// As [`StepTile::run`].
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn by_rows(&self, mr: usize, phi: impl Fn(__m512) -> __m512 + Copy) {
            // SAFETY: forwarded from the caller.
            unsafe { by_height!(mr, self.rows::<_>(phi)) }
        }

        /// # Safety
        /// As [`StepTile::run`].
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn rows<const MR: usize>(&self, phi: impl Fn(__m512) -> __m512) {
            let mut lo: [__m512; MR_MAX] = [_mm512_setzero_ps(); MR_MAX];
            let mut hi: [__m512; MR_MAX] = [_mm512_setzero_ps(); MR_MAX];
            macro_rules! unroll {
                ($body:ident: $($i:literal)*) => { $( if $i < MR { $body!($i); } )* };
            }
            // SAFETY: each pair's `b` holds kc rows of NR floats and its `a` MR rows of kc
            // floats `a_row` apart.
            unsafe {
                // Written out for each pair: a loop over the pairs kept the accumulators in
                // memory.
                macro_rules! pair {
                    ($pair:expr) => {
                        let (a0, a_row, b0, kc) = $pair;
                        let (mut a, mut b) = (a0, b0);
                        for _ in 0..kc {
                            let b0 = _mm512_loadu_ps(b);
                            let b1 = _mm512_loadu_ps(b.wrapping_add(16));
                            macro_rules! fma {
                                ($i:literal) => {
                                    let at = a.wrapping_add($i * a_row);
                                    let ai = _mm512_broadcastss_ps(_mm_load_ss(at));
                                    lo[$i] = _mm512_fmadd_ps(ai, b0, lo[$i]);
                                    hi[$i] = _mm512_fmadd_ps(ai, b1, hi[$i]);
                                };
                            }
                            unroll!(fma: 0 1 2 3 4 5 6 7 8 9 10 11);
                            a = a.wrapping_add(1);
                            b = b.wrapping_add(NR);
                        }
                    };
                }
                pair!(self.pairs[0]);
                pair!(self.pairs[1]);
            }
            let mask = |from: usize| -> u16 {
                let cols = self.width.saturating_sub(from).min(16);
                ((1u32 << cols) - 1) as u16
            };
            let (m0, m1) = (mask(0), mask(16));
            let (scale, keep) = (_mm512_set1_ps(self.scale), _mm512_set1_ps(self.keep));
            // SAFETY: the tile's rows of `c`, `prev` and `rates` have `width` floats from
            // their pointers; masked lanes are neither read nor written.
            unsafe {
                let bias0 = _mm512_maskz_loadu_ps(m0, self.bias);
                let bias1 = _mm512_maskz_loadu_ps(m1, self.bias.wrapping_add(16));
                macro_rules! finish {
                    ($i:literal) => {
                        let mut x0 = _mm512_mul_ps(_mm512_add_ps(lo[$i], bias0), scale);
                        let mut x1 = _mm512_mul_ps(_mm512_add_ps(hi[$i], bias1), scale);
                        if let Some((prev, pld)) = self.prev {
                            let p = prev.wrapping_add($i * pld);
                            x0 = _mm512_fmadd_ps(keep, _mm512_maskz_loadu_ps(m0, p), x0);
                            let p1 = _mm512_maskz_loadu_ps(m1, p.wrapping_add(16));
                            x1 = _mm512_fmadd_ps(keep, p1, x1);
                        }
                        let c = self.c.wrapping_add($i * self.ld);
                        _mm512_mask_storeu_ps(c, m0, x0);
                        _mm512_mask_storeu_ps(c.wrapping_add(16), m1, x1);
                    };
                }
                unroll!(finish: 0 1 2 3 4 5 6 7 8 9 10 11);
                // The activation from the rows just stored (in L1), in a function of its own:
                // inlined here, its constants took registers from the accumulators, which the
                // loop above then spilled.
                let (to, to_ld) = self.rates.unwrap_or((self.c, self.ld));
                activate_rows(self.c, self.ld, to, to_ld, MR, (m0, m1), phi);
            }
        }
    }

    /// `to[i] = phi(from[i])` for `rows` rows of the masked lanes, `ld` and `to_ld` apart (the
    /// same rows in place for Elman).
    ///
    /// # Safety
    /// AVX-512F; the rows valid for the masked lanes.
    #[target_feature(enable = "avx512f")]
    #[inline(never)]
    unsafe fn activate_rows(
        from: *const f32,
        ld: usize,
        to: *mut f32,
        to_ld: usize,
        rows: usize,
        (m0, m1): (u16, u16),
        phi: impl Fn(__m512) -> __m512,
    ) {
        for i in 0..rows {
            for (half, mask) in [(0, m0), (16, m1)] {
                // SAFETY: the caller's rows; masked lanes are neither read nor written.
                unsafe {
                    let x = _mm512_maskz_loadu_ps(mask, from.wrapping_add(i * ld + half));
                    _mm512_mask_storeu_ps(to.wrapping_add(i * to_ld + half), mask, phi(x));
                }
            }
        }
    }

    /// Right operands larger than this (bytes, half of L2 here) are prefetched ahead.
    const STREAM_MIN: usize = 1 << 20;

    /// Rows of a panel between the one the microkernel loads and the one it prefetches.
    const PREFETCH: usize = 16;

    /// Left operands up to this size (bytes) are traversed once per panel.
    const A_IN_CACHE: usize = 256 * 1024;

    /// One microkernel call: `c (mr x width) = [c +] scale * a (mr x kc) * b (kc x NR)`.
    struct Tile {
        kc: usize,
        /// Element `(r, p)` of `a` is at `a + p * a_step + r * a_row`: packed (`a_row` 1) or
        /// in place (`a_step` 1).
        a: *const f32,
        a_step: usize,
        a_row: usize,
        /// Prefetch the panel ahead (a right operand that does not fit in L2).
        stream: bool,
        /// `kc` rows of [`NR`] floats, `b_step` apart: a packed panel (`b_step` = [`NR`]), or
        /// rows in place (`b_in_place`: only their first `width` floats are read).
        b: *const f32,
        b_step: usize,
        b_in_place: bool,
        c: *mut f32,
        ld: usize,
        width: usize,
        add: bool,
        scale: f32,
    }

    impl Tile {
        /// # Safety
        /// AVX-512F; the pointers valid for the sizes documented on the fields.
        #[target_feature(enable = "avx512f")]
        unsafe fn run(&self, mr: usize) {
            // One instance per row count, left operand layout and prefetching: the packed
            // instance keeps constant offsets, and panels in L2 pay no prefetch instructions.
            macro_rules! by_rows {
                ($strided:literal, $stream:literal, $b_in_place:literal) => {
                    by_height!(mr, self.rows::<_, $strided, $stream, $b_in_place>())
                };
            }
            // SAFETY: forwarded from the caller.
            unsafe {
                match (self.a_row != 1, self.stream, self.b_in_place) {
                    (false, false, false) => by_rows!(false, false, false),
                    (false, true, false) => by_rows!(false, true, false),
                    (true, false, false) => by_rows!(true, false, false),
                    (true, true, false) => by_rows!(true, true, false),
                    // Rows in place pair with a transposed left operand (`add_outer_products`)
                    // and are never prefetched.
                    (false, false, true) => by_rows!(false, false, true),
                    (_, _, true) => unreachable!("right operands in place pair with `Transposed`"),
                }
            }
        }

        /// # Safety
        /// As [`Tile::run`].
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn rows<
            const MR: usize,
            const STRIDED: bool,
            const STREAM: bool,
            const B_IN_PLACE: bool,
        >(
            &self,
        ) {
            // MR_MAX-long arrays indexed by constants only (the `unroll!` below): they live in
            // registers, and the rows past MR are dead code.
            let mut lo: [__m512; MR_MAX] = [_mm512_setzero_ps(); MR_MAX];
            let mut hi: [__m512; MR_MAX] = [_mm512_setzero_ps(); MR_MAX];
            macro_rules! unroll {
                ($body:ident: $($i:literal)*) => { $( if $i < MR { $body!($i); } )* };
            }
            let mask = |from: usize| -> u16 {
                let cols = self.width.saturating_sub(from).min(16);
                ((1u32 << cols) - 1) as u16
            };
            let (m0, m1) = (mask(0), mask(16));
            let (mut a, mut b) = (self.a, self.b);
            // SAFETY: `b` holds kc rows of NR floats (of `width` in place: the masked loads
            // read no further), `a` kc columns of MR floats. Pointers advance with
            // `wrapping_add` (no overflow checks in the hot loop).
            unsafe {
                for _ in 0..self.kc {
                    // A right operand larger than L2 streams from L3 (`W` at H = 1024): ask for
                    // the panel a few rows ahead of the loads (a prefetch never faults, past
                    // the end too). 7-11% faster at H = 1024; within L2 it only costs.
                    if STREAM {
                        _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(PREFETCH * NR).cast());
                        _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(PREFETCH * NR + 16).cast());
                    }
                    let (b0, b1) = if B_IN_PLACE {
                        (
                            _mm512_maskz_loadu_ps(m0, b),
                            _mm512_maskz_loadu_ps(m1, b.wrapping_add(16)),
                        )
                    } else {
                        (_mm512_loadu_ps(b), _mm512_loadu_ps(b.wrapping_add(16)))
                    };
                    macro_rules! fma {
                        ($i:literal) => {
                            // An intrinsic load: a raw deref would carry debug-build checks.
                            let at = if STRIDED { $i * self.a_row } else { $i };
                            let ai = _mm512_broadcastss_ps(_mm_load_ss(a.wrapping_add(at)));
                            lo[$i] = _mm512_fmadd_ps(ai, b0, lo[$i]);
                            hi[$i] = _mm512_fmadd_ps(ai, b1, hi[$i]);
                        };
                    }
                    unroll!(fma: 0 1 2 3 4 5 6 7 8 9 10 11);
                    a = a.wrapping_add(self.a_step);
                    b = b.wrapping_add(if B_IN_PLACE { self.b_step } else { NR });
                }
            }
            let scale = _mm512_set1_ps(self.scale);
            // SAFETY: row i of `c` has `width` writable floats; masked lanes are not touched.
            unsafe {
                macro_rules! store {
                    ($i:literal) => {
                        let c = self.c.wrapping_add($i * self.ld);
                        let mut v0 = _mm512_mul_ps(lo[$i], scale);
                        let mut v1 = _mm512_mul_ps(hi[$i], scale);
                        if self.add {
                            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, c));
                            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, c.wrapping_add(16)));
                        }
                        _mm512_mask_storeu_ps(c, m0, v0);
                        _mm512_mask_storeu_ps(c.wrapping_add(16), m1, v1);
                    };
                }
                unroll!(store: 0 1 2 3 4 5 6 7 8 9 10 11);
            }
        }
    }
}

/// A pointer that may cross to another thread (each task writes disjoint elements).
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);

// SAFETY: used only to hand disjoint column blocks of one matrix to scoped tasks.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so that closures capture the `Send` wrapper, not its field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::values;

    /// The kernels this CPU runs: the portable one, and the AVX-512 one where it exists.
    fn kernels() -> Vec<Kernel> {
        let mut kernels = vec![Kernel::Portable];
        if Kernel::detect() == Kernel::Avx512 {
            kernels.push(Kernel::Avx512);
        }
        kernels
    }

    /// A product by a slice of a packed left operand's columns (as the blocks of a block-sparse
    /// matrix use it) equals the triple loop over those columns.
    #[test]
    fn products_by_column_slices_of_a_packed_operand() {
        let (m, n, k, wide, k0) = (13, 40, 30, 50, 7);
        let a = values(m * wide, 5);
        let b = values(k * n, 6);
        for kernel in kernels() {
            let mut lhs = PackedLhs::default();
            lhs.pack_with(Operand::new(&a, wide, 1), m, wide, kernel);
            let rhs = Packed::with_kernel(Operand::new(&b, n, 1), k, n, kernel);
            let mut dst = vec![0f32; m * n];
            matmul_packed_on(&mut dst, n, false, &lhs, k0, &rhs, 1.0, 1);
            for i in 0..m {
                for j in 0..n {
                    let dot: f32 = (0..k).map(|p| a[i * wide + k0 + p] * b[p * n + j]).sum();
                    assert!((dst[i * n + j] - dot).abs() < 1e-4, "{kernel:?} ({i}, {j})");
                }
            }
        }
    }

    /// A left operand read in place, its rows further apart than they are long (the rows of
    /// one step of a `[B, T, H]` sequence), equals the triple loop on every kernel, split over
    /// threads or not.
    #[test]
    fn products_by_rows_in_place_equal_the_triple_loop() {
        for kernel in kernels() {
            // The last is larger than half of L2: its panels are prefetched ahead.
            let shapes = [
                (1, 3, 2, 1),
                (13, 40, 30, 1),
                (25, 70, 300, 1),
                (40, 330, 400, 3),
                (5, 700, 400, 1),
            ];
            for (m, n, k, threads) in shapes {
                for accumulate in [false, true] {
                    let rs = k + 11;
                    let a = values(m * rs, 7);
                    let b = values(k * n, 8);
                    let rhs = Packed::with_kernel(Operand::new(&b, n, 1), k, n, kernel);
                    let ld = n + 2;
                    let mut dst = values(m * ld, 9);
                    let mut expected = dst.clone();
                    let lhs = InPlace { ptr: a.as_ptr(), rs, m, k };
                    // SAFETY: `a` holds m rows of k floats rs apart; `dst` m rows of n floats
                    // ld apart; two buffers.
                    unsafe {
                        product(
                            dst.as_mut_ptr(),
                            ld,
                            accumulate,
                            Lhs::InPlace(lhs),
                            Rhs::Packed(&rhs),
                            0.5,
                            threads,
                        );
                    }
                    for i in 0..m {
                        for j in 0..n {
                            let dot: f32 = (0..k).map(|p| a[i * rs + p] * b[p * n + j]).sum();
                            let e = &mut expected[i * ld + j];
                            *e = if accumulate { *e } else { 0.0 } + 0.5 * dot;
                        }
                    }
                    for (x, y) in dst.iter().zip(&expected) {
                        assert!(
                            (x - y).abs() < 1e-4,
                            "{kernel:?} {m}x{n}x{k} accumulate={accumulate}: {x} != {y}"
                        );
                    }
                }
            }
        }
    }

    /// Sums of outer products of rows read in place (rows further apart than they are long,
    /// widths across the panel edges) equal the plain triple loop on every kernel.
    #[test]
    fn outer_products_in_place_equal_the_triple_loop() {
        for kernel in kernels() {
            // (m, n, k): the rows of `a` are m long, those of `b` n long, k pairs.
            for (m, n, k) in [(1, 1, 1), (30, 30, 256), (13, 3, 300), (3, 30, 17), (40, 70, 513)] {
                let (a_rs, b_rs, ld) = (m + 5, n + 9, n + 2);
                let a = values(k * a_rs, 11);
                let b = values(k * b_rs, 12);
                let mut dst = values(m * ld, 13);
                let mut expected = dst.clone();
                let rows = |ptr: &[f32], rs, len| InPlace { ptr: ptr.as_ptr(), rs, m: k, k: len };
                // SAFETY: `a` holds k rows of m floats a_rs apart, `b` k rows of n floats b_rs
                // apart, `dst` m rows of n floats ld apart; three buffers.
                unsafe {
                    outer_products_on(
                        kernel,
                        dst.as_mut_ptr(),
                        ld,
                        rows(&a, a_rs, m),
                        rows(&b, b_rs, n),
                        0.5,
                    );
                }
                for i in 0..m {
                    for j in 0..n {
                        let dot: f32 = (0..k).map(|p| a[p * a_rs + i] * b[p * b_rs + j]).sum();
                        expected[i * ld + j] += 0.5 * dot;
                    }
                }
                for (x, y) in dst.iter().zip(&expected) {
                    assert!((x - y).abs() < 1e-3, "{kernel:?} {m}x{n}x{k}: {x} != {y}");
                }
            }
        }
    }

    /// A fused forward step equals its parts one after the other (the products, the leak, the
    /// bias, the activation), leaky and Elman, for every activation, on shapes across the
    /// row-block and panel edges, split over threads or not; columns past `n` stay untouched.
    #[test]
    fn fused_steps_equal_their_parts() {
        use mrnn_ir::Activation;
        if !fuses_steps(1, 1) {
            return; // The AVX-512 kernel only (callers check `fuses_steps`).
        }
        let shapes =
            [(1, 1, 1, 1), (5, 30, 30, 3), (13, 33, 33, 5), (25, 70, 64, 1), (64, 256, 256, 3)];
        for activation in Activation::ALL {
            for shape in shapes {
                for leaky in [false, true] {
                    fused_step_against_parts(activation, shape, leaky, None);
                }
            }
        }
    }

    /// A NaN or an infinity in any operand of a fused step (the rates one step back, the
    /// inputs, `W`, `W_in`, the bias, the previous state), anywhere across the row blocks and
    /// the two halves of a panel, comes out as the parts give it: NaN where they are NaN, for
    /// every activation (the AVX-512 tanh's clamp once turned NaN into 1, relu's `max` into 0).
    #[test]
    fn fused_steps_propagate_nan_and_infinities() {
        use mrnn_ir::Activation;
        if !fuses_steps(1, 1) {
            return; // The AVX-512 kernel only (callers check `fuses_steps`).
        }
        let (m, n, k, k_in) = (13, 40, 30, 3);
        for activation in Activation::ALL {
            for leaky in [false, true] {
                for special in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                    // (operand, index): a = 0, u = 1, w = 2, w_in = 3, bias = 4, prev = 5.
                    let plants = [
                        (0, 0),
                        (0, 12 * (k + 3) + 29),
                        (1, 7 * (k_in + 2) + 2),
                        (2, 5 * n + 17),
                        (2, 31),
                        (3, 2 * n + 39),
                        (4, 16),
                        (5, 6 * (n + 5) + 33),
                    ];
                    for (operand, at) in plants {
                        let plant = Some((operand, at, special));
                        fused_step_against_parts(activation, (m, n, k, k_in), leaky, plant);
                    }
                }
            }
        }
    }

    /// Runs one fused step on `(m, n, k, k_in)` operands (with `special` planted at index `at`
    /// of operand `which`: `a`, `u`, `w`, `w_in`, `bias`, `prev`) and compares it with its parts.
    fn fused_step_against_parts(
        activation: mrnn_ir::Activation,
        (m, n, k, k_in): (usize, usize, usize, usize),
        leaky: bool,
        plant: Option<(usize, usize, f32)>,
    ) {
        let (rs, u_rs, ld) = (k + 3, k_in + 2, n + 5);
        let mut operands = [
            values(m * rs, 21),
            values(m * u_rs, 22),
            values(k * n, 23),
            values(k_in * n, 24),
            values(n, 25),
            values(m * ld, 26),
        ];
        if let Some((which, at, value)) = plant {
            operands[which][at] = value;
        }
        let [a, u, w, w_in, bias, prev] = &operands;
        let rhs = Packed::new(Operand::new(w, n, 1), k, n);
        let rhs_in = Packed::new(Operand::new(w_in, n, 1), k_in, n);
        let (scale, keep) = (0.3, 0.7);
        let (mut dst, mut rates) = (vec![f32::NAN; m * ld], vec![f32::NAN; m * ld]);
        let finish = StepFinish {
            prev: leaky.then_some((prev.as_ptr(), ld)),
            keep,
            bias,
            activation,
            rates: leaky.then_some((rates.as_mut_ptr(), ld)),
        };
        let lhs = InPlace { ptr: a.as_ptr(), rs, m, k };
        let inputs = (InPlace { ptr: u.as_ptr(), rs: u_rs, m, k: k_in }, &rhs_in);
        // SAFETY: every operand holds the rows and columns its strides say; five buffers.
        unsafe {
            let out = dst.as_mut_ptr();
            matmul_step(out, ld, lhs, &rhs, inputs, scale, &finish, m >= 64);
        }
        let what = format!("{activation:?} {m}x{n}x{k}+{k_in} leaky={leaky} planted {plant:?}");
        for i in 0..m {
            for j in 0..ld {
                let (x_at, h_at) = (dst[i * ld + j], rates[i * ld + j]);
                if j >= n {
                    assert!(x_at.is_nan() && h_at.is_nan(), "{what}: ({i}, {j}) written");
                    continue;
                }
                let dot: f32 = (0..k).map(|p| a[i * rs + p] * w[p * n + j]).sum::<f32>()
                    + (0..k_in).map(|c| u[i * u_rs + c] * w_in[c * n + j]).sum::<f32>();
                let kept = if leaky { keep * prev[i * ld + j] } else { 0.0 };
                let x = kept + scale * (dot + bias[j]);
                let h = super::super::fast_math::phi(activation, x);
                let close = |got: f32, want: f32| {
                    if want.is_finite() {
                        (got - want).abs() <= 1e-4 * want.abs().max(1.0)
                    } else {
                        (got.is_nan() && want.is_nan()) || got.to_bits() == want.to_bits()
                    }
                };
                if leaky {
                    assert!(close(x_at, x), "{what}: x ({i}, {j}) {x_at} != {x}");
                    assert!(close(h_at, h), "{what}: h ({i}, {j}) {h_at} != {h}");
                } else {
                    assert!(close(x_at, h), "{what}: h ({i}, {j}) {x_at} != {h}");
                }
            }
        }
    }

    /// A NaN or an infinity in either operand of a product comes out where the triple loop puts
    /// it, on every kernel (the `gemm` crate's and the AVX-512 one), accumulating or not.
    #[test]
    fn products_propagate_nan_and_infinities() {
        let (m, n, k) = (15, 40, 33);
        for kernel in kernels() {
            for special in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                for (in_lhs, at) in
                    [(true, 0), (true, 14 * k + 32), (false, 5), (false, 20 * n + 39)]
                {
                    for accumulate in [false, true] {
                        let (mut a, mut b) = (values(m * k, 1), values(k * n, 2));
                        if in_lhs {
                            a[at] = special;
                        } else {
                            b[at] = special;
                        }
                        let mut lhs = PackedLhs::default();
                        lhs.pack_with(Operand::new(&a, k, 1), m, k, kernel);
                        let rhs = Packed::with_kernel(Operand::new(&b, n, 1), k, n, kernel);
                        let mut dst = values(m * n, 3);
                        let mut want = dst.clone();
                        matmul_packed_on(&mut dst, n, accumulate, &lhs, 0, &rhs, 0.5, 1);
                        for i in 0..m {
                            for j in 0..n {
                                let dot: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                                let e = &mut want[i * n + j];
                                *e = if accumulate { *e } else { 0.0 } + 0.5 * dot;
                            }
                        }
                        let what = format!(
                            "{kernel:?} {special} in {} at {at}, accumulate={accumulate}",
                            if in_lhs { "lhs" } else { "rhs" }
                        );
                        for (x, y) in dst.iter().zip(&want) {
                            let same = if y.is_finite() {
                                (x - y).abs() < 1e-4
                            } else {
                                (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()
                            };
                            assert!(same, "{what}: {x} != {y}");
                        }
                    }
                }
            }
        }
    }

    /// Every kernel, on shapes that cross the row-block, panel and depth edges, with row-major
    /// and transposed left operands, accumulating or not, equals the plain triple loop.
    #[test]
    fn products_equal_the_triple_loop() {
        for kernel in kernels() {
            // The last one is large enough to split over threads.
            let shapes = [(1, 1, 1), (3, 5, 2), (14, 32, 7), (15, 33, 257), (32, 70, 300)];
            for (m, n, k) in shapes.into_iter().chain([(40, 330, 400)]) {
                for lhs_transposed in [false, true] {
                    for accumulate in [false, true] {
                        let ld = n + 3;
                        let a = values(m * k, 1);
                        let lhs = if lhs_transposed {
                            Operand::new(&a, 1, m)
                        } else {
                            Operand::new(&a, k, 1)
                        };
                        let b = values(k * n, 2);
                        // The right operand row-major or as a transpose (column-major).
                        let b_op = if lhs_transposed {
                            Operand::new(&b, n, 1)
                        } else {
                            Operand::new(&b, 1, k)
                        };
                        let rhs = Packed::with_kernel(b_op, k, n, kernel);
                        let mut dst = values(m * ld, 3);
                        let mut expected = dst.clone();
                        let mut packed = PackedLhs::default();
                        packed.pack_with(lhs, m, k, kernel);
                        matmul_packed_on(&mut dst, ld, accumulate, &packed, 0, &rhs, 0.5, 3);
                        for i in 0..m {
                            for j in 0..n {
                                let dot: f32 = (0..k).map(|p| lhs.at(i, p) * b_op.at(p, j)).sum();
                                let e = &mut expected[i * ld + j];
                                *e = if accumulate { *e } else { 0.0 } + 0.5 * dot;
                            }
                        }
                        for (x, y) in dst.iter().zip(&expected) {
                            assert!(
                                (x - y).abs() < 1e-4,
                                "{kernel:?} {m}x{n}x{k} transposed={lhs_transposed} \
                                 accumulate={accumulate}: {x} != {y}"
                            );
                        }
                    }
                }
            }
        }
    }
}
