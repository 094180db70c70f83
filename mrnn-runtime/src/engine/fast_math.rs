//! Elementwise activations and their slopes on host slices, written to vectorize: the time loop
//! of the CPU kernel spends its non-GEMM time here. `tanh` is a rational approximation (the one
//! Eigen and XNNPACK use), within a few ulp of `f32::tanh` and several times faster.

use mrnn_ir::Activation;

/// `tanh(x)` to within ~2e-7 absolute error, vectorizable (no branches but selects).
#[inline]
#[must_use]
#[allow(clippy::excessive_precision, reason = "coefficients as published, rounded by the compiler")]
pub fn tanh(x: f32) -> f32 {
    // Beyond this the f32 result is +-1 anyway.
    const CLAMP: f32 = 7.905_311_1;
    const A1: f32 = 4.893_524_558_917_86e-3;
    const A3: f32 = 6.372_619_288_754_36e-4;
    const A5: f32 = 1.485_722_357_179_79e-5;
    const A7: f32 = 5.122_297_090_371_14e-8;
    const A9: f32 = -8.604_671_522_137_35e-11;
    const A11: f32 = 2.000_187_904_824_77e-13;
    const A13: f32 = -2.760_768_477_423_55e-16;
    const B0: f32 = 4.893_525_185_543_85e-3;
    const B2: f32 = 2.268_434_632_439_00e-3;
    const B4: f32 = 1.185_347_056_866_54e-4;
    const B6: f32 = 1.198_258_394_667_02e-6;
    let tiny = x.abs() < 4e-4;
    let c = x.clamp(-CLAMP, CLAMP);
    let x2 = c * c;
    let p = c * (A1 + x2 * (A3 + x2 * (A5 + x2 * (A7 + x2 * (A9 + x2 * (A11 + x2 * A13))))));
    let q = B0 + x2 * (B2 + x2 * (B4 + x2 * B6));
    if tiny { x } else { p / q }
}

/// Which vector instructions the host kernels run with, detected once: the crate is compiled
/// for the x86-64 baseline (SSE2, 4 lanes), and the elementwise loops are a fifth of a small
/// network's forward pass (`phi` on every state, every step) when left there. The GEMM picks
/// its microkernel by it too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Simd {
    Avx512,
    Avx2,
    Baseline,
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

/// A public function that runs `$body` (an `#[inline(always)]` function) compiled for AVX-512
/// or AVX2 when the CPU has them: the compiler vectorizes the same loop 16 or 8 lanes wide.
macro_rules! multiversioned {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $body:ident) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
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
                match simd() {
                    // SAFETY: the CPU has the features (detected by `simd`).
                    Simd::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    Simd::Avx2 => return unsafe { avx2($($arg),*) },
                    Simd::Baseline => {}
                }
            }
            $body($($arg),*);
        }
    };
}

multiversioned! {
    /// Writes `phi(x)` into `h`.
    pub fn apply(activation: Activation, x: &[f32], h: &mut [f32]) => apply_loop
}

multiversioned! {
    /// `phi'(z)` as a function of `h = phi(z)` (every activation here has one): multiplies `g`
    /// in place, `g *= phi'`.
    pub fn mul_slope(activation: Activation, h: &[f32], g: &mut [f32]) => mul_slope_loop
}

multiversioned! {
    /// `acc[c, j] += sum_r u[r, c] g[r, j]` for row-major `g` `[R, H]` and `u` `[R, C]` (`acc`
    /// `[C, H]`), plus `sums[j] += sum_r g[r, j]`: one pass over the rows, for the weight and bias
    /// gradients of a projection from few inputs (a GEMM would pad `C` to a full panel).
    pub(crate) fn add_row_products(
        g: &[f32],
        u: &[f32],
        acc: &mut [f32],
        sums: &mut [f32]
    ) => add_row_products_loop
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

#[allow(clippy::inline_always, reason = "inlined into each instruction set's version")]
#[inline(always)]
fn apply_loop(activation: Activation, x: &[f32], h: &mut [f32]) {
    let pairs = h.iter_mut().zip(x);
    match activation {
        Activation::Relu => {
            for (h, &x) in pairs {
                *h = x.max(0.0);
            }
        }
        Activation::Tanh => {
            for (h, &x) in pairs {
                *h = tanh(x);
            }
        }
        // sigmoid(x) = (1 + tanh(x / 2)) / 2: no overflow, and the fast tanh.
        Activation::Sigmoid => {
            for (h, &x) in pairs {
                *h = 0.5 + 0.5 * tanh(0.5 * x);
            }
        }
        // ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|): never overflows.
        Activation::Softplus => {
            for (h, &x) in pairs {
                *h = x.max(0.0) + (-x.abs()).exp().ln_1p();
            }
        }
        Activation::Linear => h.copy_from_slice(x),
    }
}

#[allow(clippy::inline_always, reason = "inlined into each instruction set's version")]
#[inline(always)]
fn mul_slope_loop(activation: Activation, h: &[f32], g: &mut [f32]) {
    let pairs = g.iter_mut().zip(h);
    match activation {
        Activation::Relu => {
            for (g, &h) in pairs {
                if h <= 0.0 {
                    *g = 0.0;
                }
            }
        }
        Activation::Tanh => {
            for (g, &h) in pairs {
                *g *= 1.0 - h * h;
            }
        }
        Activation::Sigmoid => {
            for (g, &h) in pairs {
                *g *= h * (1.0 - h);
            }
        }
        // softplus'(z) = sigmoid(z) = 1 - e^{-softplus(z)}.
        Activation::Softplus => {
            for (g, &h) in pairs {
                *g *= -(-h).exp_m1();
            }
        }
        Activation::Linear => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every instruction set the CPU has gives the baseline's values (the vector versions
    /// reassociate nothing: each element is computed alone).
    #[test]
    fn vector_versions_equal_the_baseline() {
        let xs: Vec<f32> = (-400..=400).map(|i| i as f32 * 0.037).collect();
        for activation in Activation::ALL {
            let (mut base, mut fast) = (vec![0.0; xs.len()], vec![0.0; xs.len()]);
            apply_loop(activation, &xs, &mut base);
            apply(activation, &xs, &mut fast);
            assert_eq!(base, fast, "{activation:?}");
            let (mut gb, mut gf) = (xs.clone(), xs.clone());
            mul_slope_loop(activation, &base, &mut gb);
            mul_slope(activation, &base, &mut gf);
            assert_eq!(gb, gf, "{activation:?} slope");
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
