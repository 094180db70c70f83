//! Elementwise activations and their slopes on host slices, written to vectorize: the time loop
//! of the CPU kernel spends its non-GEMM time here. `tanh` is a rational approximation (the one
//! Eigen and XNNPACK use), within a few ulp of `f32::tanh` and several times faster.
//!
//! NaN and infinities go through as IEEE arithmetic takes them, on every instruction set:
//! `relu(NaN)`, `tanh(NaN)`, `phi'(NaN)` are NaN, `tanh(+-inf)` is `+-1`, `relu(inf)` is `inf`,
//! `sigmoid(-inf)` is 0. No clamp may let a NaN become a number: `f32::max`/`min` return the
//! operand that is not NaN, and so do the `max`/`min` instructions when the NaN is their first
//! operand (they return the second on an unordered compare), so the code here writes relu as
//! `if x < 0 { 0 } else { x }` (one `max` with `x` second) and orders the operands of the
//! intrinsics' clamps with `x` second. Tests run every variant of every loop (baseline, AVX2,
//! AVX-512, whichever the CPU has) on NaN and infinities in every position of a row.

use mrnn_ir::Activation;

/// The coefficients of [`tanh`]'s rational approximation `p(x) / q(x)` (as published).
#[allow(clippy::excessive_precision, reason = "coefficients as published, rounded by the compiler")]
mod tanh_coefficients {
    /// Beyond this the f32 result is +-1 anyway.
    pub(super) const CLAMP: f32 = 7.905_311_1;
    /// Below this (in magnitude) `tanh(x)` is `x` in f32.
    pub(super) const TINY: f32 = 4e-4;
    pub(super) const A1: f32 = 4.893_524_558_917_86e-3;
    pub(super) const A3: f32 = 6.372_619_288_754_36e-4;
    pub(super) const A5: f32 = 1.485_722_357_179_79e-5;
    pub(super) const A7: f32 = 5.122_297_090_371_14e-8;
    pub(super) const A9: f32 = -8.604_671_522_137_35e-11;
    pub(super) const A11: f32 = 2.000_187_904_824_77e-13;
    pub(super) const A13: f32 = -2.760_768_477_423_55e-16;
    pub(super) const B0: f32 = 4.893_525_185_543_85e-3;
    pub(super) const B2: f32 = 2.268_434_632_439_00e-3;
    pub(super) const B4: f32 = 1.185_347_056_866_54e-4;
    pub(super) const B6: f32 = 1.198_258_394_667_02e-6;
}

/// `tanh(x)` to within ~2e-7 absolute error, vectorizable (no branches but selects).
#[inline]
#[must_use]
pub fn tanh(x: f32) -> f32 {
    use tanh_coefficients::{A1, A3, A5, A7, A9, A11, A13, B0, B2, B4, B6, CLAMP, TINY};
    let tiny = x.abs() < TINY;
    let c = x.clamp(-CLAMP, CLAMP);
    let x2 = c * c;
    let p = c * (A1 + x2 * (A3 + x2 * (A5 + x2 * (A7 + x2 * (A9 + x2 * (A11 + x2 * A13))))));
    let q = B0 + x2 * (B2 + x2 * (B4 + x2 * B6));
    if tiny { x } else { p / q }
}

/// [`tanh`] on 16 lanes, its division replaced by a reciprocal estimate refined by one Newton
/// step (to about 2^-28, below f32 rounding): the division waited on the divider, half of the
/// activation's time in the fused forward step. Within ~1e-7 of [`tanh`]. For code compiled
/// with AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn tanh_avx512(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::{
        _CMP_GE_OQ, _CMP_LE_OQ, _CMP_LT_OQ, _mm512_abs_ps, _mm512_add_ps, _mm512_cmp_ps_mask,
        _mm512_mask_blend_ps, _mm512_max_ps, _mm512_min_ps, _mm512_mul_ps, _mm512_rcp14_ps,
        _mm512_set1_ps, _mm512_sub_ps,
    };
    use tanh_coefficients::{A1, A3, A5, A7, A9, A11, A13, B0, B2, B4, B6, CLAMP, TINY};
    let k = _mm512_set1_ps;
    // An unordered compare (NaN) is false: a NaN takes the rational branch, NaN throughout.
    let tiny = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_abs_ps(x), k(TINY));
    // `min`/`max` return their second operand when either is NaN: `x` goes second, so that a
    // NaN stays NaN (the other order made tanh(NaN) = 1).
    let c = _mm512_max_ps(k(-CLAMP), _mm512_min_ps(k(CLAMP), x));
    // At and beyond the clamp the scalar division gives +-1 exactly; the refined reciprocal
    // can leave the last bit (0.99999994 for an infinity): those lanes take +-1 (an unordered
    // compare is false: NaN stays).
    let high = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, k(CLAMP));
    let low = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(x, k(-CLAMP));
    let x2 = _mm512_mul_ps(c, c);
    let horner = |acc, coefficient| _mm512_add_ps(k(coefficient), _mm512_mul_ps(x2, acc));
    let p = [A11, A9, A7, A5, A3, A1].into_iter().fold(k(A13), horner);
    let p = _mm512_mul_ps(c, p);
    let q = [B4, B2, B0].into_iter().fold(k(B6), horner);
    let r = _mm512_rcp14_ps(q);
    let r = _mm512_mul_ps(r, _mm512_sub_ps(k(2.0), _mm512_mul_ps(q, r)));
    let h = _mm512_mask_blend_ps(tiny, _mm512_mul_ps(p, r), x);
    _mm512_mask_blend_ps(low, _mm512_mask_blend_ps(high, h, k(1.0)), k(-1.0))
}

/// Which vector instructions the host kernels run with, detected once: the crate is compiled
/// for the x86-64 baseline (SSE2, 4 lanes), and the elementwise loops are a fifth of a small
/// network's forward pass (`phi` on every state, every step) when left there. The GEMM picks
/// its microkernel by it too. Ordered from the baseline up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Simd {
    Baseline,
    Avx2,
    Avx512,
}

/// Every level this CPU runs, the baseline first: tests run each variant of a kernel on it.
#[cfg(test)]
pub(super) fn levels() -> Vec<Simd> {
    [Simd::Baseline, Simd::Avx2, Simd::Avx512].into_iter().filter(|&l| l <= simd()).collect()
}

pub(super) fn simd() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        static SIMD: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
        *SIMD.get_or_init(|| {
            if std::arch::is_x86_feature_detected!("avx512f") {
                Simd::Avx512
            } else if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                Simd::Avx2
            } else {
                Simd::Baseline
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    Simd::Baseline
}

/// A function `$name` that runs `$body` (an `#[inline(always)]` function) compiled for AVX-512
/// or AVX2 when the CPU has them: the compiler vectorizes the same loop 16 or 8 lanes wide.
/// `$on` takes the level to run at (at most the CPU's), so that tests can run every variant.
macro_rules! multiversioned {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident / $on:ident($($arg:ident: $ty:ty),* $(,)?) => $body:ident
    ) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            $on(simd(), $($arg),*);
        }

        #[doc = concat!("[`", stringify!($name), "`] compiled for `level`, or for the highest")]
        /// level the CPU has when that is lower.
        fn $on(level: Simd, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) {
                    $body($($arg),*);
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    $body($($arg),*);
                }
                match level.min(simd()) {
                    // SAFETY: the CPU has the features (detected by `simd`).
                    Simd::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    Simd::Avx2 => return unsafe { avx2($($arg),*) },
                    Simd::Baseline => {}
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = level;
            $body($($arg),*);
        }
    };
}

multiversioned! {
    /// Writes `phi(x)` into `h`.
    pub fn apply / apply_on(activation: Activation, x: &[f32], h: &mut [f32]) => apply_loop
}

multiversioned! {
    /// `phi'(z)` as a function of `h = phi(z)` (every activation here has one): multiplies `g`
    /// in place, `g *= phi'` (NaN where `h` is NaN, except for the linear activation, whose
    /// slope is 1 everywhere).
    pub fn mul_slope / mul_slope_on(activation: Activation, h: &[f32], g: &mut [f32]) => mul_slope_loop
}

multiversioned! {
    /// `acc[c, j] += sum_r u[r, c] g[r, j]` for row-major `g` `[R, H]` and `u` `[R, C]` (`acc`
    /// `[C, H]`), plus `sums[j] += sum_r g[r, j]`: one pass over the rows, for the weight and bias
    /// gradients of a projection from few inputs (a GEMM would pad `C` to a full panel).
    pub(crate) fn add_row_products / add_row_products_on(
        g: &[f32],
        u: &[f32],
        acc: &mut [f32],
        sums: &mut [f32]
    ) => add_row_products_loop
}

multiversioned! {
    /// Sets `bad[j]` (never clears it) for every column `j` where one of the `rows` rows of
    /// `len` floats of `data`, `stride` apart, holds NaN or an infinity: the block products'
    /// stand-in for the `0 * NaN` terms they skip (module `cpu`).
    pub(super) fn mark_non_finite / mark_non_finite_on(
        data: &[f32],
        rows: usize,
        stride: usize,
        len: usize,
        bad: &mut [bool]
    ) => mark_non_finite_loop
}

/// The magnitude bits of an `f32` at and above which it is NaN or infinite.
const NON_FINITE_BITS: u32 = 0x7f80_0000;

/// Whether all of `x` is finite: the largest magnitude, compared as integers (an integer
/// maximum vectorizes; a float one over NaN does not), is below the infinities'.
#[allow(clippy::inline_always, reason = "inlined into each instruction set's version")]
#[inline(always)]
fn finite_loop(x: &[f32]) -> bool {
    max_magnitude(x) < NON_FINITE_BITS
}

/// The largest magnitude's bits in `x` (0 for none). A plain reduction, which the compiler
/// vectorizes and unrolls (four `vpmaxud` per iteration with AVX-512): an array of 16 partial
/// maxima, as the other loops here keep, was vectorized across chunks instead (each lane its
/// own reduction), and made the checks of the block products cost 10-20% of a step.
#[allow(clippy::inline_always, reason = "inlined into each instruction set's version")]
#[inline(always)]
fn max_magnitude(x: &[f32]) -> u32 {
    x.iter().map(|v| v.to_bits() & 0x7fff_ffff).fold(0, u32::max)
}

/// Whether every float of `x` is zero (either sign): the magnitudes' bits combined by `or`, as
/// integers (a float compare would stop at the first nonzero and not vectorize).
#[allow(clippy::inline_always, reason = "inlined into each instruction set's version")]
#[inline(always)]
fn zero_loop(x: &[f32]) -> bool {
    x.iter().fold(0, |m, v| m | (v.to_bits() & 0x7fff_ffff)) == 0
}

/// [`rows_finite`] for one instruction set.
///
/// # Safety
/// As [`rows_finite`].
#[allow(clippy::inline_always, reason = "inlined into each instruction set's version")]
#[inline(always)]
unsafe fn rows_finite_loop(ptr: *const f32, rows: usize, stride: usize, len: usize) -> bool {
    (0..rows).all(|r| {
        // SAFETY: row `r` holds `len` readable floats (the caller).
        finite_loop(unsafe { std::slice::from_raw_parts(ptr.add(r * stride), len) })
    })
}

/// Whether the `rows` rows of `len` floats from `ptr`, `stride` apart, are all finite: one call
/// per step of the block products rather than one per row, and only the rows themselves are
/// read (the floats between them may be other threads' trials).
///
/// # Safety
/// Each row must be valid for reads, and not written meanwhile.
pub(super) unsafe fn rows_finite(ptr: *const f32, rows: usize, stride: usize, len: usize) -> bool {
    // SAFETY (all three): forwarded from the caller; the features were detected by `simd`.
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512(ptr: *const f32, rows: usize, stride: usize, len: usize) -> bool {
            unsafe { rows_finite_loop(ptr, rows, stride, len) }
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(ptr: *const f32, rows: usize, stride: usize, len: usize) -> bool {
            unsafe { rows_finite_loop(ptr, rows, stride, len) }
        }
        match simd() {
            Simd::Avx512 => return unsafe { avx512(ptr, rows, stride, len) },
            Simd::Avx2 => return unsafe { avx2(ptr, rows, stride, len) },
            Simd::Baseline => {}
        }
    }
    unsafe { rows_finite_loop(ptr, rows, stride, len) }
}

/// A function `$name(x: &[f32]) -> bool` that runs `$body` compiled for the CPU's vector width,
/// and `$on` that takes the level (as [`multiversioned`], for tests).
macro_rules! multiversioned_check {
    ($(#[$meta:meta])* $vis:vis fn $name:ident / $on:ident => $body:ident) => {
        $(#[$meta])*
        $vis fn $name(x: &[f32]) -> bool {
            $on(simd(), x)
        }

        #[doc = concat!("[`", stringify!($name), "`] compiled for `level` (at most the CPU's).")]
        fn $on(level: Simd, x: &[f32]) -> bool {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512(x: &[f32]) -> bool {
                    $body(x)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2(x: &[f32]) -> bool {
                    $body(x)
                }
                match level.min(simd()) {
                    // SAFETY: the CPU has the features (detected by `simd`).
                    Simd::Avx512 => return unsafe { avx512(x) },
                    // SAFETY: as above.
                    Simd::Avx2 => return unsafe { avx2(x) },
                    Simd::Baseline => {}
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = level;
            $body(x)
        }
    };
}

multiversioned_check! {
    /// Whether every float of `x` is finite (no NaN, no infinity), at the CPU's vector width.
    pub(super) fn all_finite / all_finite_on => finite_loop
}

multiversioned_check! {
    /// Whether every float of `x` is zero (either sign), at the CPU's vector width.
    pub(super) fn all_zero / all_zero_on => zero_loop
}

#[allow(clippy::inline_always, reason = "inlined into each instruction set's version")]
#[inline(always)]
fn mark_non_finite_loop(data: &[f32], rows: usize, stride: usize, len: usize, bad: &mut [bool]) {
    let bad = &mut bad[..len];
    for r in 0..rows {
        let row = &data[r * stride..r * stride + len];
        if finite_loop(row) {
            continue;
        }
        for (b, v) in bad.iter_mut().zip(row) {
            *b |= !v.is_finite();
        }
    }
}

#[allow(clippy::inline_always, reason = "inlined into each instruction set's version")]
#[inline(always)]
fn add_row_products_loop(g: &[f32], u: &[f32], acc: &mut [f32], sums: &mut [f32]) {
    let h = sums.len();
    if h == 0 {
        return;
    }
    let c = acc.len() / h;
    for (r, g_row) in g.chunks_exact(h).enumerate() {
        for (s, &v) in sums.iter_mut().zip(g_row) {
            *s += v;
        }
        for (acc_row, &uv) in acc.chunks_exact_mut(h).zip(&u[r * c..(r + 1) * c]) {
            for (a, &v) in acc_row.iter_mut().zip(g_row) {
                *a += uv * v;
            }
        }
    }
}

/// The leaky update before the recurrent product: `x = keep * prev + gain * drive`.
pub(super) fn blend(keep: f32, prev: &[f32], gain: f32, drive: &[f32], x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd() == Simd::Avx512 {
        // SAFETY: the CPU has AVX-512F (detected by `simd`).
        return unsafe { blend_avx512(keep, prev, gain, drive, x) };
    }
    blend_portable(keep, prev, gain, drive, x);
}

multiversioned! {
    /// [`blend`] for the CPUs without AVX-512.
    fn blend_portable / blend_portable_on(
        keep: f32,
        prev: &[f32],
        gain: f32,
        drive: &[f32],
        x: &mut [f32]
    ) => blend_loop
}

/// [`blend`] in AVX-512 intrinsics, the tail by masked loads and stores: however written, the
/// loop's body is too cheap for the compiler, which vectorized across 16-float chunks (gathers
/// and scatters) and left rows of a few dozen units to a scalar remainder loop.
///
/// # Safety
/// AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn blend_avx512(keep: f32, prev: &[f32], gain: f32, drive: &[f32], x: &mut [f32]) {
    use std::arch::x86_64::{
        _mm512_add_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_mul_ps, _mm512_set1_ps,
    };
    let n = x.len();
    let (prev, drive) = (&prev[..n], &drive[..n]);
    let (keep, gain) = (_mm512_set1_ps(keep), _mm512_set1_ps(gain));
    for at in (0..n).step_by(LANES) {
        let mask = if n - at >= LANES { u16::MAX } else { (1u16 << (n - at)) - 1 };
        // SAFETY: the masked lanes are `at..n`, within all three slices.
        unsafe {
            let p = _mm512_maskz_loadu_ps(mask, prev.as_ptr().add(at));
            let d = _mm512_maskz_loadu_ps(mask, drive.as_ptr().add(at));
            // Not fused: the same roundings as the portable version.
            let v = _mm512_add_ps(_mm512_mul_ps(keep, p), _mm512_mul_ps(gain, d));
            _mm512_mask_storeu_ps(x.as_mut_ptr().add(at), mask, v);
        }
    }
}

/// The terms of one step of the reverse recurrence on a row (or rows) of adjoints `a`:
/// `a = phi'(h) (g + [a]) + carry * [next] + [e]`, then `out = scale * a` (see
/// [`adjoint_step`]).
pub(super) struct AdjointTerms<'a> {
    pub(super) activation: Activation,
    /// dL/dh of the step.
    pub(super) g: &'a [f32],
    /// The rates `h = phi(z)` of the step (for `phi'`).
    pub(super) h: &'a [f32],
    /// `a` holds the product by the matrix (else it is overwritten).
    pub(super) with_a: bool,
    /// `(1 - alpha, a_{t+1})` for leaky dynamics after the last step.
    pub(super) next: Option<(f32, &'a [f32])>,
    /// dL/dx of the step, when the loss reads the states.
    pub(super) e: Option<&'a [f32]>,
    pub(super) scale: f32,
}

multiversioned! {
    /// One step of the reverse recurrence, elementwise ([`AdjointTerms`]).
    pub(super) fn adjoint_step / adjoint_step_on(
        terms: &AdjointTerms<'_>,
        a: &mut [f32],
        out: &mut [f32]
    ) => adjoint_step_loop
}

/// Lanes of the widest vectors: the loops below go over chunks of this many, and finish a
/// shorter tail by redoing the last full chunk of the row. Rows of a few dozen units (the
/// flip-flop network has 30) otherwise end in a scalar loop that costs as much as the vector
/// part (and a tail padded through a stack buffer stalls on store forwarding).
const LANES: usize = 16;

/// `out[i] = f(x[i])`, chunk by chunk (see [`LANES`]; recomputing an element is harmless, as
/// `x` and `out` are distinct).
#[allow(clippy::inline_always, reason = "inlined into each instruction set's version")]
#[inline(always)]
fn map_lanes(x: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32) {
    let n = x.len().min(out.len());
    let (x, out) = (&x[..n], &mut out[..n]);
    if n < LANES {
        for (o, &x) in out.iter_mut().zip(x) {
            *o = f(x);
        }
        return;
    }
    let (xs, _) = x.as_chunks::<LANES>();
    let (outs, _) = out.as_chunks_mut::<LANES>();
    for (o, x) in outs.iter_mut().zip(xs) {
        for (o, &x) in o.iter_mut().zip(x) {
            *o = f(x);
        }
    }
    if !n.is_multiple_of(LANES) {
        for (o, &x) in out[n - LANES..].iter_mut().zip(&x[n - LANES..]) {
            *o = f(x);
        }
    }
}

/// `g[i] = f(h[i], g[i])`, chunk by chunk (see [`LANES`]): the last full chunk of `g` is read
/// before anything is written, so that redoing it starts from the original values.
#[allow(clippy::inline_always, reason = "inlined into each instruction set's version")]
#[inline(always)]
fn update_lanes(h: &[f32], g: &mut [f32], f: impl Fn(f32, f32) -> f32) {
    let n = h.len().min(g.len());
    let (h, g) = (&h[..n], &mut g[..n]);
    if n < LANES {
        for (g, &h) in g.iter_mut().zip(h) {
            *g = f(h, *g);
        }
        return;
    }
    let mut last = [0f32; LANES];
    last.copy_from_slice(&g[n - LANES..]);
    let (hs, _) = h.as_chunks::<LANES>();
    let (gs, _) = g.as_chunks_mut::<LANES>();
    for (g, h) in gs.iter_mut().zip(hs) {
        for (g, &h) in g.iter_mut().zip(h) {
            *g = f(h, *g);
        }
    }
    if !n.is_multiple_of(LANES) {
        for ((g, &h), &l) in g[n - LANES..].iter_mut().zip(&h[n - LANES..]).zip(&last) {
            *g = f(h, l);
        }
    }
}

/// `max(x, 0)`, NaN for NaN: `f32::max` would return 0 (it returns the operand that is not
/// NaN). Compiles to one `max` instruction with `x` as the operand returned on NaN.
#[allow(clippy::inline_always, reason = "inlined into each instruction set's version")]
#[inline(always)]
fn relu(x: f32) -> f32 {
    if x < 0.0 { 0.0 } else { x }
}

/// `phi(x)`, NaN for NaN.
#[allow(clippy::inline_always, reason = "inlined into each instruction set's version")]
#[inline(always)]
pub(super) fn phi(activation: Activation, x: f32) -> f32 {
    match activation {
        Activation::Relu => relu(x),
        Activation::Tanh => tanh(x),
        // sigmoid(x) = (1 + tanh(x / 2)) / 2: no overflow, and the fast tanh.
        Activation::Sigmoid => 0.5 + 0.5 * tanh(0.5 * x),
        // ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|): never overflows.
        Activation::Softplus => relu(x) + (-x.abs()).exp().ln_1p(),
        Activation::Linear => x,
    }
}

/// `g * phi'(z)`, with `phi'` as a function of `h = phi(z)` (every activation here has one).
/// IEEE products: NaN when `h` is NaN (but for the linear activation), and `0 * g` where relu
/// is flat, NaN for an infinite or NaN `g` (a bare 0 would hide it).
#[allow(clippy::inline_always, reason = "inlined into each instruction set's version")]
#[inline(always)]
pub(super) fn times_slope(activation: Activation, h: f32, g: f32) -> f32 {
    match activation {
        // h = 0 (flat) or NaN: g * (0 * h) is 0, or NaN for a NaN h or a non-finite g.
        Activation::Relu => {
            if h > 0.0 {
                g
            } else {
                g * (0.0 * h)
            }
        }
        Activation::Tanh => g * (1.0 - h * h),
        Activation::Sigmoid => g * (h * (1.0 - h)),
        // softplus'(z) = sigmoid(z) = 1 - e^{-softplus(z)}.
        Activation::Softplus => g * -(-h).exp_m1(),
        Activation::Linear => g,
    }
}

// One loop per activation (the match outside): each vectorizes on its own.
#[allow(clippy::inline_always, reason = "inlined into each instruction set's version")]
#[inline(always)]
fn apply_loop(activation: Activation, x: &[f32], h: &mut [f32]) {
    match activation {
        Activation::Relu => map_lanes(x, h, |x| phi(Activation::Relu, x)),
        Activation::Tanh => map_lanes(x, h, |x| phi(Activation::Tanh, x)),
        Activation::Sigmoid => map_lanes(x, h, |x| phi(Activation::Sigmoid, x)),
        Activation::Softplus => map_lanes(x, h, |x| phi(Activation::Softplus, x)),
        Activation::Linear => h.copy_from_slice(x),
    }
}

#[allow(clippy::inline_always, reason = "inlined into each instruction set's version")]
#[inline(always)]
fn mul_slope_loop(activation: Activation, h: &[f32], g: &mut [f32]) {
    match activation {
        Activation::Relu => update_lanes(h, g, |h, g| times_slope(Activation::Relu, h, g)),
        Activation::Tanh => update_lanes(h, g, |h, g| times_slope(Activation::Tanh, h, g)),
        Activation::Sigmoid => update_lanes(h, g, |h, g| times_slope(Activation::Sigmoid, h, g)),
        Activation::Softplus => {
            update_lanes(h, g, |h, g| times_slope(Activation::Softplus, h, g));
        }
        Activation::Linear => {}
    }
}

#[allow(clippy::inline_always, reason = "inlined into each instruction set's version")]
#[inline(always)]
fn blend_loop(keep: f32, prev: &[f32], gain: f32, drive: &[f32], x: &mut [f32]) {
    let n = x.len();
    let (prev, drive) = (&prev[..n], &drive[..n]);
    if n < LANES {
        for ((x, &p), &d) in x.iter_mut().zip(prev).zip(drive) {
            *x = keep * p + gain * d;
        }
        return;
    }
    // Whole chunks of all three (a slice of runtime length left this loop scalar).
    // One array expression per chunk: written as a loop over the chunk's lanes, the compiler
    // vectorized across chunks instead (gathers and scatters, with a scalar remainder that ran
    // whole rows of a few dozen units).
    let one = |x: &mut [f32; LANES], p: &[f32; LANES], d: &[f32; LANES]| {
        *x = std::array::from_fn(|l| keep * p[l] + gain * d[l]);
    };
    for (c, x) in x.as_chunks_mut::<LANES>().0.iter_mut().enumerate() {
        one(x, chunk(prev, c * LANES), chunk(drive, c * LANES));
    }
    // The tail: the last full chunk again (`x` is neither input).
    if !n.is_multiple_of(LANES) {
        let at = n - LANES..n;
        let (x, p, d) = (&mut x[at.clone()], &prev[at.clone()], &drive[at]);
        if let (Ok(x), Ok(p), Ok(d)) = (x.try_into(), p.try_into(), d.try_into()) {
            one(x, p, d);
        }
    }
}

#[allow(clippy::inline_always, reason = "inlined into each instruction set's version")]
#[inline(always)]
fn adjoint_step_loop(terms: &AdjointTerms<'_>, a: &mut [f32], out: &mut [f32]) {
    // One fused loop per combination of terms and activation, so that the loop body has no
    // branch left to vectorize around (the compiler does not unswitch loops at this level).
    macro_rules! by_terms {
        ($act:expr) => {{
            let slope = |h: f32, g: f32| times_slope($act, h, g);
            match (terms.with_a, terms.next.is_some(), terms.e.is_some()) {
                (false, false, false) => adjoint_row::<false, false, false>(terms, a, out, slope),
                (false, false, true) => adjoint_row::<false, false, true>(terms, a, out, slope),
                (false, true, false) => adjoint_row::<false, true, false>(terms, a, out, slope),
                (false, true, true) => adjoint_row::<false, true, true>(terms, a, out, slope),
                (true, false, false) => adjoint_row::<true, false, false>(terms, a, out, slope),
                (true, false, true) => adjoint_row::<true, false, true>(terms, a, out, slope),
                (true, true, false) => adjoint_row::<true, true, false>(terms, a, out, slope),
                (true, true, true) => adjoint_row::<true, true, true>(terms, a, out, slope),
            }
        }};
    }
    match terms.activation {
        Activation::Relu => by_terms!(Activation::Relu),
        Activation::Tanh => by_terms!(Activation::Tanh),
        Activation::Sigmoid => by_terms!(Activation::Sigmoid),
        Activation::Softplus => by_terms!(Activation::Softplus),
        Activation::Linear => by_terms!(Activation::Linear),
    }
}

/// [`adjoint_step_loop`] for one combination of terms (`WITH_A`: `a` holds the product; `NEXT`,
/// `E`: those terms are given).
#[allow(clippy::inline_always, reason = "inlined into each instruction set's version")]
#[inline(always)]
fn adjoint_row<const WITH_A: bool, const NEXT: bool, const E: bool>(
    terms: &AdjointTerms<'_>,
    a: &mut [f32],
    out: &mut [f32],
    slope: impl Fn(f32, f32) -> f32,
) {
    let n = a.len();
    let (g, h, out) = (&terms.g[..n], &terms.h[..n], &mut out[..n]);
    let (carry, next) = terms.next.map_or((0.0, &[][..]), |(c, next)| (c, &next[..n]));
    let e = terms.e.map_or(&[][..], |e| &e[..n]);
    let scale = terms.scale;
    let lane = |a: f32, g: f32, h: f32, next: f32, e: f32| {
        let mut v = if WITH_A { a + g } else { g };
        v = slope(h, v);
        if NEXT {
            v += carry * next;
        }
        if E {
            v += e;
        }
        v
    };
    if n < LANES {
        for i in 0..n {
            let (next, e) = (if NEXT { next[i] } else { 0.0 }, if E { e[i] } else { 0.0 });
            let v = lane(a[i], g[i], h[i], next, e);
            a[i] = v;
            out[i] = scale * v;
        }
        return;
    }
    // Chunk by chunk on arrays (see `LANES`): indexing the slices left the loop with a 4-wide
    // and a scalar tail as long as its 16-wide body at 30 units. Absent terms read `g` in
    // their place, unused (the flags are constants).
    let (next, e) = (if NEXT { next } else { g }, if E { e } else { g });
    let one = |a_in: &[f32; LANES],
               a: &mut [f32; LANES],
               (g, h, next, e): (&[f32; LANES], &[f32; LANES], &[f32; LANES], &[f32; LANES]),
               out: &mut [f32; LANES]| {
        for l in 0..LANES {
            let v = lane(a_in[l], g[l], h[l], next[l], e[l]);
            a[l] = v;
            out[l] = scale * v;
        }
    };
    // The tail redoes the last full chunk, from `a` as it was.
    let mut last = [0f32; LANES];
    last.copy_from_slice(&a[n - LANES..]);
    let terms = |at: usize| (chunk(g, at), chunk(h, at), chunk(next, at), chunk(e, at));
    let whole = n - n % LANES;
    let chunks = a[..whole].as_chunks_mut::<LANES>().0.iter_mut();
    for (c, (a, out)) in chunks.zip(out[..whole].as_chunks_mut::<LANES>().0).enumerate() {
        let a_in = *a;
        one(&a_in, a, terms(c * LANES), out);
    }
    if whole < n {
        let at = n - LANES;
        let a = &mut a[at..].as_chunks_mut::<LANES>().0[0];
        one(&last, a, terms(at), &mut out[at..].as_chunks_mut::<LANES>().0[0]);
    }
}

/// The [`LANES`] floats of `s` from `at`, as an array.
#[allow(clippy::inline_always, reason = "inlined into each instruction set's version")]
#[inline(always)]
fn chunk(s: &[f32], at: usize) -> &[f32; LANES] {
    &s[at..at + LANES].as_chunks::<LANES>().0[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every instruction set the CPU has gives the baseline's values (the vector versions
    /// reassociate nothing: each element is computed alone).
    #[test]
    fn vector_versions_equal_the_baseline() {
        let xs: Vec<f32> = (-400..=400).map(|i| i as f32 * 0.037).collect();
        for level in levels() {
            for activation in Activation::ALL {
                let (mut base, mut fast) = (vec![0.0; xs.len()], vec![0.0; xs.len()]);
                apply_loop(activation, &xs, &mut base);
                apply_on(level, activation, &xs, &mut fast);
                assert_eq!(base, fast, "{level:?} {activation:?}");
                let (mut gb, mut gf) = (xs.clone(), xs.clone());
                mul_slope_loop(activation, &base, &mut gb);
                mul_slope_on(level, activation, &base, &mut gf);
                assert_eq!(gb, gf, "{level:?} {activation:?} slope");
            }
        }
    }

    /// The IEEE value of each activation at the points where a clamp could lose it.
    fn ieee_phi(activation: Activation, x: f32) -> f32 {
        match (activation, x) {
            (_, x) if x.is_nan() => f32::NAN,
            (Activation::Linear, x) => x,
            (Activation::Relu | Activation::Softplus, f32::INFINITY) => f32::INFINITY,
            (Activation::Relu | Activation::Softplus | Activation::Sigmoid, f32::NEG_INFINITY) => {
                0.0
            }
            (Activation::Tanh | Activation::Sigmoid, f32::INFINITY) => 1.0,
            (Activation::Tanh, f32::NEG_INFINITY) => -1.0,
            _ => unreachable!("not a special point: {x}"),
        }
    }

    /// Bitwise equality, with every NaN equal to every NaN.
    fn same(a: f32, b: f32) -> bool {
        (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits() || (a == 0.0 && b == 0.0)
    }

    fn assert_same(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(same(g, w), "{what}: element {i} is {g}, expected {w}");
        }
    }

    const SPECIAL: [f32; 3] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];

    /// `phi` of NaN and of the infinities is what IEEE arithmetic gives: relu(NaN) = NaN,
    /// tanh(NaN) = NaN, tanh(+-inf) = +-1, relu(inf) = inf, sigmoid(-inf) = 0, ...; the slopes
    /// at a NaN rate are NaN (linear: 1), and a non-finite `g` stays non-finite where relu is
    /// flat (`0 * inf` is NaN, not 0).
    #[test]
    fn special_values_follow_ieee() {
        for activation in Activation::ALL {
            for x in SPECIAL {
                let want = ieee_phi(activation, x);
                let got = phi(activation, x);
                assert!(same(got, want), "{activation:?}({x}) = {got}, expected {want}");
            }
            let h_nan = times_slope(activation, f32::NAN, 1.0);
            assert_eq!(h_nan.is_nan(), activation != Activation::Linear, "{activation:?}'(NaN)");
            for g in SPECIAL {
                // At a rate where each slope is finite (relu: flat, 0).
                let h = phi(activation, -0.5);
                let got = times_slope(activation, h, g);
                assert!(!got.is_finite(), "{activation:?}: g = {g} times the slope at h = {h}");
            }
        }
        assert!(same(tanh(f32::INFINITY), 1.0) && same(tanh(f32::NEG_INFINITY), -1.0));
    }

    /// Rows of `n` values with `special` planted at `at`, the rest ordinary values.
    fn planted(n: usize, at: usize, special: f32, seed: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..n).map(|i| ((i + seed) as f32 * 0.73).sin() * 2.0).collect();
        if at < n {
            v[at] = special;
        }
        v
    }

    /// Every variant of every elementwise loop (each instruction set the CPU has: the AVX-512
    /// and AVX2 versions where present) gives, on NaN and infinities planted anywhere in rows of
    /// any length (the scalar rows below 16, whole chunks, the tail that redoes the last chunk),
    /// the values of the scalar definitions: NaN where they are NaN.
    #[test]
    fn every_variant_propagates_nan_and_infinities() {
        for level in levels() {
            for n in [1usize, 5, 15, 16, 17, 30, 32, 33, 47] {
                for at in [0, n / 2, n.saturating_sub(1), n.saturating_sub(9)] {
                    for special in SPECIAL {
                        let what = format!("{level:?} n={n} at={at} value={special}");
                        let x = planted(n, at, special, 1);
                        let other = planted(n, n, 0.0, 2);
                        for activation in Activation::ALL {
                            let what = format!("{what} {activation:?}");
                            let mut h = vec![0.0; n];
                            apply_on(level, activation, &x, &mut h);
                            let want: Vec<f32> = x.iter().map(|&x| phi(activation, x)).collect();
                            assert_same(&h, &want, &format!("{what}: phi"));
                            assert!(same(h[at], ieee_phi(activation, special)), "{what}: phi");
                            // A special rate, then a special gradient.
                            for (hs, gs) in [(&h, &other), (&want_rates(activation, n), &x)] {
                                let mut g = gs.clone();
                                mul_slope_on(level, activation, hs, &mut g);
                                let want: Vec<f32> = hs
                                    .iter()
                                    .zip(gs.iter())
                                    .map(|(&h, &g)| times_slope(activation, h, g))
                                    .collect();
                                assert_same(&g, &want, &format!("{what}: slope"));
                            }
                            adjoint_terms_propagate(level, activation, (&x, &other), &what);
                        }
                        for (prev, drive) in [(&x, &other), (&other, &x)] {
                            let want: Vec<f32> =
                                prev.iter().zip(drive).map(|(p, d)| 0.75 * p + 0.25 * d).collect();
                            let mut b = vec![0.0; n];
                            blend_portable_on(level, 0.75, prev, 0.25, drive, &mut b);
                            assert_same(&b, &want, &format!("{what}: blend"));
                            let mut b = vec![0.0; n];
                            blend(0.75, prev, 0.25, drive, &mut b);
                            assert_same(&b, &want, &format!("{what}: blend"));
                            assert!(!b[at].is_finite(), "{what}: blend");
                        }
                        let mut bad = vec![false; n];
                        mark_non_finite_on(level, &x, 1, n, n, &mut bad);
                        let want: Vec<bool> = (0..n).map(|i| i == at).collect();
                        assert_eq!(bad, want, "{what}: non-finite columns");
                        assert!(!all_finite_on(level, &x), "{what}: all finite");
                        assert!(all_finite_on(level, &other), "{what}: all finite");
                        // Two rows 2n apart, the special value in the second: found; in
                        // the floats between the rows: not read.
                        let mut rows = vec![0.5f32; 3 * n];
                        rows[2 * n + at] = special;
                        // SAFETY: two rows of n floats, 2n apart, in `rows`.
                        assert!(!unsafe { rows_finite(rows.as_ptr(), 2, 2 * n, n) }, "{what}");
                        rows[2 * n + at] = 0.5;
                        rows[n + at] = special;
                        // SAFETY: as above.
                        assert!(unsafe { rows_finite(rows.as_ptr(), 2, 2 * n, n) }, "{what}");
                        let mut zeros = vec![-0.0; n];
                        assert!(all_zero_on(level, &zeros), "{what}: all zero");
                        zeros[at] = special;
                        assert!(!all_zero_on(level, &zeros), "{what}: all zero");
                        zeros[at] = 1e-45;
                        assert!(!all_zero_on(level, &zeros), "{what}: all zero");
                        let (mut acc, mut sums) = (vec![0.0; n], vec![0.0; n]);
                        add_row_products_on(level, &x, &[1.5], &mut acc, &mut sums);
                        assert!(!acc[at].is_finite() && !sums[at].is_finite(), "{what}: rows");
                    }
                }
            }
        }
    }

    /// Ordinary rates of each activation (all positive, so that relu's slope is 1).
    fn want_rates(activation: Activation, n: usize) -> Vec<f32> {
        (0..n).map(|i| phi(activation, 0.1 + i as f32 * 0.01)).collect()
    }

    /// The slices of an adjoint step's terms `(g, h, a, next, e)`.
    type Terms<'a> = (&'a [f32], &'a [f32], &'a [f32], &'a [f32], &'a [f32]);

    /// [`adjoint_step_on`] with the special values of `x` in each of its terms in turn gives the
    /// scalar definition's values.
    fn adjoint_terms_propagate(
        level: Simd,
        activation: Activation,
        (x, other): (&[f32], &[f32]),
        what: &str,
    ) {
        let n = x.len();
        let rates = want_rates(activation, n);
        let mut h_special = vec![0.0; n];
        apply_on(level, activation, x, &mut h_special);
        // (g, h, a, next, e): one of them special at a time.
        let cases: [Terms<'_>; 5] = [
            (x, &rates, other, other, other),
            (other, &h_special, other, other, other),
            (other, &rates, x, other, other),
            (other, &rates, other, x, other),
            (other, &rates, other, other, x),
        ];
        for (case, (g, h, a0, next, e)) in cases.into_iter().enumerate() {
            let terms = AdjointTerms {
                activation,
                g,
                h,
                with_a: true,
                next: Some((0.75, next)),
                e: Some(e),
                scale: 0.5,
            };
            let (mut a, mut out) = (a0.to_vec(), vec![0.0; n]);
            adjoint_step_on(level, &terms, &mut a, &mut out);
            let want: Vec<f32> = (0..n)
                .map(|i| times_slope(activation, h[i], a0[i] + g[i]) + 0.75 * next[i] + e[i])
                .collect();
            assert_same(&a, &want, &format!("{what}: adjoint (term {case})"));
            let want: Vec<f32> = want.iter().map(|v| 0.5 * v).collect();
            assert_same(&out, &want, &format!("{what}: adjoint out (term {case})"));
        }
    }

    /// The AVX-512 tanh of NaN is NaN and of the infinities +-1 (its clamp once returned 1 for
    /// NaN), wherever the value sits among the 16 lanes.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn vector_tanh_propagates_nan() {
        #[target_feature(enable = "avx512f")]
        fn sixteen(x: [f32; 16]) -> [f32; 16] {
            // SAFETY: 16 floats either way.
            unsafe {
                use std::arch::x86_64::__m512;
                let h = tanh_avx512(std::mem::transmute::<[f32; 16], __m512>(x));
                std::mem::transmute::<__m512, [f32; 16]>(h)
            }
        }
        if simd() != Simd::Avx512 {
            return;
        }
        for lane in 0..16 {
            for special in SPECIAL {
                let mut x: [f32; 16] = std::array::from_fn(|i| i as f32 * 0.3 - 2.0);
                x[lane] = special;
                // SAFETY: AVX-512F (checked above).
                let got = unsafe { sixteen(x) };
                for (i, (&x, &h)) in x.iter().zip(&got).enumerate() {
                    if i == lane {
                        let want = ieee_phi(Activation::Tanh, special);
                        assert!(same(h, want), "tanh({x}) = {h} in lane {lane}, expected {want}");
                    } else {
                        assert!((h - tanh(x)).abs() <= 2e-7, "tanh({x}) = {h} in lane {i}");
                    }
                }
            }
        }
    }

    /// The AVX-512 tanh stays within 2e-7 of the scalar one, from tiny arguments to the clamp.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn vector_tanh_equals_the_scalar_one() {
        #[target_feature(enable = "avx512f")]
        fn sixteen(x: [f32; 16]) -> [f32; 16] {
            // SAFETY: 16 floats either way.
            unsafe {
                use std::arch::x86_64::__m512;
                let h = tanh_avx512(std::mem::transmute::<[f32; 16], __m512>(x));
                std::mem::transmute::<__m512, [f32; 16]>(h)
            }
        }
        if simd() != Simd::Avx512 {
            return;
        }
        let xs: Vec<f32> =
            (-20_000..=20_000).map(|i| i as f32 * 5e-4).chain([1e-5, -3e-4, 9.0, -50.0]).collect();
        for chunk in xs.chunks(16) {
            let mut x = [0f32; 16];
            x[..chunk.len()].copy_from_slice(chunk);
            // SAFETY: AVX-512F (checked above).
            let got = unsafe { sixteen(x) };
            for (&x, &h) in x.iter().zip(&got) {
                assert!((h - tanh(x)).abs() <= 2e-7, "tanh({x}): {h} != {}", tanh(x));
            }
        }
    }

    /// Rows of every length up to three chunks (the tails redo the last full chunk) give what
    /// the elementwise definitions give, in every fused loop.
    #[test]
    fn rows_of_any_length_equal_elementwise_definitions() {
        for n in 0..=3 * LANES + 1 {
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
            let y: Vec<f32> = (0..n).map(|i| (i as f32 * 0.91).cos()).collect();
            let z: Vec<f32> = (0..n).map(|i| (i as f32 * 0.13).sin()).collect();
            for activation in Activation::ALL {
                let mut h = vec![f32::NAN; n];
                apply(activation, &x, &mut h);
                let want: Vec<f32> = x.iter().map(|&x| phi(activation, x)).collect();
                assert_eq!(h, want, "{activation:?} n={n}");
                let mut g = y.clone();
                mul_slope(activation, &h, &mut g);
                let want: Vec<f32> =
                    h.iter().zip(&y).map(|(&h, &g)| times_slope(activation, h, g)).collect();
                assert_eq!(g, want, "{activation:?} slope n={n}");
                for (with_a, next, e) in (0..8).map(|c| (c & 1 == 1, c & 2 == 2, c & 4 == 4)) {
                    let terms = AdjointTerms {
                        activation,
                        g: &y,
                        h: &h,
                        with_a,
                        next: next.then_some((0.75, &z[..])),
                        e: e.then_some(&x[..]),
                        scale: 0.5,
                    };
                    let (mut a, mut out) = (z.clone(), vec![f32::NAN; n]);
                    adjoint_step(&terms, &mut a, &mut out);
                    let want: Vec<f32> = (0..n)
                        .map(|i| {
                            let base = if with_a { z[i] + y[i] } else { y[i] };
                            let mut v = times_slope(activation, h[i], base);
                            if next {
                                v += 0.75 * z[i];
                            }
                            if e {
                                v += x[i];
                            }
                            v
                        })
                        .collect();
                    let what = format!("{activation:?} n={n} with_a={with_a} next={next} e={e}");
                    assert_eq!(a, want, "adjoint {what}");
                    let want: Vec<f32> = want.iter().map(|a| 0.5 * a).collect();
                    assert_eq!(out, want, "out {what}");
                }
            }
            let want: Vec<f32> = x.iter().zip(&y).map(|(x, y)| 0.9 * x + 0.1 * y).collect();
            let mut b = vec![f32::NAN; n];
            blend(0.9, &x, 0.1, &y, &mut b);
            assert_eq!(b, want, "blend n={n}");
            let mut b = vec![f32::NAN; n];
            blend_portable(0.9, &x, 0.1, &y, &mut b);
            assert_eq!(b, want, "portable blend n={n}");
        }
    }

    /// Row products over any number of rows equal the plain sums.
    #[test]
    fn row_products_equal_the_plain_sums() {
        let (c, h) = (3, 21);
        for rows in 0..=9 {
            let g: Vec<f32> =
                (0..rows * h).map(|k| ((k * 37 % 101) as f32 - 50.0) / 50.0).collect();
            let u: Vec<f32> = (0..rows * c).map(|k| ((k * 53 % 97) as f32 - 48.0) / 48.0).collect();
            let (mut acc, mut sums) = (vec![0.5f32; c * h], vec![0.25f32; h]);
            add_row_products(&g, &u, &mut acc, &mut sums);
            for j in 0..h {
                let want: f32 = 0.25 + (0..rows).map(|r| g[r * h + j]).sum::<f32>();
                assert!((sums[j] - want).abs() < 1e-5, "rows={rows} sum {j}");
                for k in 0..c {
                    let want: f32 =
                        0.5 + (0..rows).map(|r| u[r * c + k] * g[r * h + j]).sum::<f32>();
                    assert!((acc[k * h + j] - want).abs() < 1e-5, "rows={rows} ({k}, {j})");
                }
            }
        }
    }

    #[test]
    fn tanh_is_accurate() {
        let mut worst = 0f32;
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-4;
            worst = worst.max((tanh(x) - x.tanh()).abs());
        }
        for x in [-1e30f32, -50.0, 50.0, 1e30, 1e-8, -1e-8, 0.0] {
            worst = worst.max((tanh(x) - x.tanh()).abs());
        }
        assert!(worst < 5e-7, "max error {worst}");
        assert!(tanh(f32::NAN).is_nan());
    }

    #[test]
    fn activations_and_slopes_match_the_definitions() {
        let xs: Vec<f32> = (-40..=40).map(|i| i as f32 * 0.25).collect();
        let mut h = vec![0.0; xs.len()];
        for activation in Activation::ALL {
            apply(activation, &xs, &mut h);
            let mut g = vec![1.0; xs.len()];
            mul_slope(activation, &h, &mut g);
            for ((&x, &h), &g) in xs.iter().zip(&h).zip(&g) {
                let x64 = f64::from(x);
                let sig = 1.0 / (1.0 + (-x64).exp());
                let (want_h, want_g) = match activation {
                    Activation::Relu => (x64.max(0.0), if x > 0.0 { 1.0 } else { 0.0 }),
                    Activation::Tanh => (x64.tanh(), 1.0 - x64.tanh().powi(2)),
                    Activation::Sigmoid => (sig, sig * (1.0 - sig)),
                    Activation::Softplus => (x64.exp().ln_1p(), sig),
                    Activation::Linear => (x64, 1.0),
                };
                assert!(
                    (f64::from(h) - want_h).abs() < 1e-5,
                    "{activation:?}({x}) = {h}, want {want_h}"
                );
                assert!(
                    (f64::from(g) - want_g).abs() < 1e-5,
                    "{activation:?}'({x}) = {g}, want {want_g}"
                );
            }
        }
    }
}
