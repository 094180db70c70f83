//! Losses as fused ops, because candle's generic elementwise ops and their backward cost some
//! 20% of a training step: `mean(x^2)` (the rate regulariser), the MSE and the masked MSE.
//!
//! As a chain of candle ops, each loss makes several passes over `[B, T, H]` tensors of several
//! MB, and its backward gives every node of the chain a gradient of its own (a zeroed tensor,
//! then an add). On the CPU each loss here is one custom op instead: the forward reads its
//! inputs once into the scalar, the backward writes the prediction's gradient in one pass and
//! nothing else (the target and the mask are constants). Other devices and dtypes, strided
//! inputs, and a target or mask that carries a gradient of its own get the same formula as
//! candle ops, so that autograd stays exact in every case.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Device, Layout, Shape, Storage, Tensor,
};

use crate::engine::{cpu_values, pool};
use crate::{Error, Result};

/// `mean(x^2)` over all elements of `x`: a scalar (rank-0) tensor, differentiable with respect
/// to `x`. The rate regulariser of training.
///
/// ```
/// use mrnn_runtime::{Device, Tensor, loss};
///
/// let x = Tensor::new(&[1f32, -2.0, 3.0, 2.0], &Device::Cpu)?;
/// assert_eq!(loss::mean_square(&x)?.to_scalar::<f32>()?, 4.5);
/// # Ok::<(), mrnn_runtime::Error>(())
/// ```
pub fn mean_square(x: &Tensor) -> Result<Tensor> {
    mean_square_in(x, parts_for(x.elem_count()))
}

/// `mean((prediction - target)^2)`: a scalar (rank-0) tensor. `target` must have the
/// prediction's shape. Differentiable with respect to both.
///
/// ```
/// use mrnn_runtime::{Device, Tensor, loss};
///
/// let p = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu)?;
/// let t = Tensor::new(&[[1f32, 0.0], [3.0, 6.0]], &Device::Cpu)?;
/// assert_eq!(loss::mse(&p, &t)?.to_scalar::<f32>()?, 2.0);
/// # Ok::<(), mrnn_runtime::Error>(())
/// ```
pub fn mse(prediction: &Tensor, target: &Tensor) -> Result<Tensor> {
    expect_prediction_shape("the MSE's target", target, prediction)?;
    mse_in(prediction, target, parts_for(prediction.elem_count()))
}

/// `sum(mask * (prediction - target)^2) / max(sum(mask), 1e-12)`: a scalar (rank-0) tensor, the
/// task loss of training. `target` and `mask` must have the prediction's shape (as the tasks
/// build them: `[B, T, O]`, the mask weighting each element). Differentiable with respect to all
/// three.
///
/// ```
/// use mrnn_runtime::{Device, Tensor, loss};
///
/// let p = Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu)?;
/// let t = Tensor::new(&[0f32, 0.0, 0.0], &Device::Cpu)?;
/// let mask = Tensor::new(&[1f32, 1.0, 0.0], &Device::Cpu)?;
/// assert_eq!(loss::masked_mse(&p, &t, &mask)?.to_scalar::<f32>()?, 2.5);
/// # Ok::<(), mrnn_runtime::Error>(())
/// ```
pub fn masked_mse(prediction: &Tensor, target: &Tensor, mask: &Tensor) -> Result<Tensor> {
    expect_prediction_shape("the masked MSE's target", target, prediction)?;
    expect_prediction_shape("the masked MSE's mask", mask, prediction)?;
    masked_mse_in(prediction, target, mask, parts_for(prediction.elem_count()))
}

/// [`mean_square`], its forward split into `parts` sums.
fn mean_square_in(x: &Tensor, parts: usize) -> Result<Tensor> {
    if !fused(x, &[]) {
        return Ok(x.sqr()?.mean_all()?);
    }
    Ok(x.apply_op1_arc(Arc::new(Box::new(MeanSquare { parts })))?)
}

/// [`mse`] on checked shapes, its forward split into `parts` sums.
fn mse_in(prediction: &Tensor, target: &Tensor, parts: usize) -> Result<Tensor> {
    if !fused(prediction, &[target]) {
        return Ok(prediction.sub(target)?.sqr()?.mean_all()?);
    }
    Ok(prediction.apply_op2_arc(target, Arc::new(Box::new(Mse { parts })))?)
}

/// [`masked_mse`] on checked shapes, its forward split into `parts` sums.
fn masked_mse_in(
    prediction: &Tensor,
    target: &Tensor,
    mask: &Tensor,
    parts: usize,
) -> Result<Tensor> {
    if !fused(prediction, &[target, mask]) {
        let weighted = prediction.sub(target)?.sqr()?.mul(mask)?.sum_all()?;
        let count = mask.sum_all()?;
        return Ok(weighted.div(&count.clamp(MIN_WEIGHT, f64::INFINITY)?)?);
    }
    let op = MaskedMse { parts, denominator: OnceLock::new() };
    Ok(prediction.apply_op3_arc(target, mask, Arc::new(Box::new(op)))?)
}

/// The least denominator of the masked MSE: an all-zero mask gives a zero loss, not a NaN.
const MIN_WEIGHT: f64 = 1e-12;

/// A target or mask of another shape than the prediction's is refused by name, on every path
/// (candle's own error would name neither tensor).
fn expect_prediction_shape(what: &str, t: &Tensor, prediction: &Tensor) -> Result<()> {
    if t.dims() == prediction.dims() {
        return Ok(());
    }
    Err(Error::Shape {
        what: what.to_owned(),
        expected: format!("{:?} (the prediction's shape)", prediction.dims()),
        got: t.dims().to_vec(),
    })
}

/// Whether the fused op computes a loss: contiguous f32 CPU tensors, and `constants` that
/// carry no gradient (the op's backward computes the prediction's gradient only).
fn fused(prediction: &Tensor, constants: &[&Tensor]) -> bool {
    let host = |t: &Tensor| {
        matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32 && t.is_contiguous()
    };
    host(prediction) && constants.iter().all(|t| host(t) && !t.track_op())
}

/// f32 accumulators that the sums keep side by side, so that the compiler vectorizes them (one
/// running sum could not be: its additions may not be reordered).
const LANES: usize = 16;

/// Elements per block: each lane sums `BLOCK / LANES` terms in f32, then the block's lanes are
/// added to f64 lanes, so that the total is accurate at any size.
const BLOCK: usize = 16 * LANES;

/// Inputs up to this many elements (1 MiB of f32) are summed on the calling thread alone: a
/// memory-bound pass this short is not worth waking the helpers for (a threshold of the order of
/// the engine's own, not tuned by measurement).
const SPLIT_MIN: usize = 1 << 18;

/// How many sums a forward over `len` elements is split into.
fn parts_for(len: usize) -> usize {
    if len > SPLIT_MIN { pool::threads() } else { 1 }
}

/// `sum(range)` over about `parts` ranges of `0..len`, on the engine's threads. The ranges start
/// at multiples of [`BLOCK`], so each block's f32 lanes are the same whatever the split: only
/// the order of the f64 additions differs.
fn split<R: Send>(len: usize, parts: usize, sum: impl Fn(Range<usize>) -> R + Sync) -> Vec<R> {
    let per = len.div_ceil(parts.max(1)).next_multiple_of(BLOCK).max(BLOCK);
    pool::run(len.div_ceil(per), |part| sum(part * per..len.min((part + 1) * per)))
}

/// A new gradient `[len]` written in one pass, `write(range, out)` filling `out` with elements
/// `range`, split over the engine's threads like the forward's sums (large inputs). Nothing is
/// zeroed first.
fn gradient(
    len: usize,
    parts: usize,
    write: impl Fn(Range<usize>, &mut [std::mem::MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    /// The spare capacity of the result, shared by the tasks (each writes its own range).
    #[derive(Clone, Copy)]
    struct Spare(*mut std::mem::MaybeUninit<f32>);
    // SAFETY: the tasks write disjoint ranges, and the buffer outlives them (`pool::run` returns
    // after all of them).
    unsafe impl Send for Spare {}
    unsafe impl Sync for Spare {}
    impl Spare {
        /// The range's elements (a method, so that closures capture the `Send` wrapper).
        ///
        /// # Safety
        /// The range lies in the capacity, and no other task touches it.
        unsafe fn range<'a>(self, r: &Range<usize>) -> &'a mut [std::mem::MaybeUninit<f32>] {
            // SAFETY: forwarded from the caller.
            unsafe { std::slice::from_raw_parts_mut(self.0.add(r.start), r.len()) }
        }
    }
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let spare = Spare(out.spare_capacity_mut().as_mut_ptr());
    let per = len.div_ceil(parts.max(1)).max(1);
    pool::run(len.div_ceil(per), |part| {
        let r = part * per..len.min((part + 1) * per);
        // SAFETY: `r` lies in `0..len`, within the capacity; the parts' ranges are disjoint.
        write(r.clone(), unsafe { spare.range(&r) });
    });
    // SAFETY: the parts cover `0..len`, and each wrote every element of its range.
    unsafe { out.set_len(len) };
    out
}

/// A sum of f32 terms taken a block at a time (see [`BLOCK`]).
///
/// Each kernel below first writes a block's terms into a buffer, then adds the buffer: two
/// loops that vectorize at the runtime's `opt-level = 2` (checked in the assembly). Computed
/// and summed in one loop, the terms of the masked MSE stayed scalar.
#[derive(Default)]
struct BlockSum {
    lanes: [f64; LANES],
}

impl BlockSum {
    fn add(&mut self, terms: &[f32; BLOCK]) {
        let rows = terms.as_chunks::<LANES>().0;
        // Lane by lane down the rows: the same additions as `lane[l] += row[l]` row after row.
        let block: [f32; LANES] =
            std::array::from_fn(|l| rows.iter().fold(0.0, |sum, row| sum + row[l]));
        for (total, b) in self.lanes.iter_mut().zip(block) {
            *total += f64::from(b);
        }
    }

    fn total(&self) -> f64 {
        self.lanes.iter().sum()
    }
}

/// `sum(x^2)`.
fn sum_squares(x: &[f32]) -> f64 {
    let (blocks, tail) = x.as_chunks::<BLOCK>();
    let (mut sum, mut terms) = (BlockSum::default(), [0f32; BLOCK]);
    for x in blocks {
        for (term, &x) in terms.iter_mut().zip(x) {
            *term = x * x;
        }
        sum.add(&terms);
    }
    sum.total() + tail.iter().map(|&x| f64::from(x * x)).sum::<f64>()
}

/// `sum((p - t)^2)` for slices of one length.
fn sum_squared_differences(p: &[f32], t: &[f32]) -> f64 {
    let ((p_blocks, p_tail), (t_blocks, t_tail)) = (p.as_chunks::<BLOCK>(), t.as_chunks::<BLOCK>());
    let (mut sum, mut terms) = (BlockSum::default(), [0f32; BLOCK]);
    for (p, t) in p_blocks.iter().zip(t_blocks) {
        for ((term, &p), &t) in terms.iter_mut().zip(p).zip(t) {
            *term = (p - t) * (p - t);
        }
        sum.add(&terms);
    }
    let tail: f64 = p_tail.iter().zip(t_tail).map(|(&p, &t)| f64::from((p - t) * (p - t))).sum();
    sum.total() + tail
}

/// `(sum(m (p - t)^2), sum(m))` for slices of one length.
fn masked_sums(p: &[f32], t: &[f32], m: &[f32]) -> (f64, f64) {
    let ((p_blocks, p_tail), (t_blocks, t_tail), (m_blocks, m_tail)) =
        (p.as_chunks::<BLOCK>(), t.as_chunks::<BLOCK>(), m.as_chunks::<BLOCK>());
    let (mut weighted, mut count) = (BlockSum::default(), BlockSum::default());
    let mut terms = [0f32; BLOCK];
    for ((p, t), m) in p_blocks.iter().zip(t_blocks).zip(m_blocks) {
        for (((term, &p), &t), &m) in terms.iter_mut().zip(p).zip(t).zip(m) {
            *term = (p - t) * (p - t) * m;
        }
        weighted.add(&terms);
        count.add(m);
    }
    let (mut weighted, mut count) = (weighted.total(), count.total());
    for ((&p, &t), &m) in p_tail.iter().zip(t_tail).zip(m_tail) {
        weighted += f64::from((p - t) * (p - t) * m);
        count += f64::from(m);
    }
    (weighted, count)
}

/// The values of a contiguous f32 CPU tensor, borrowed from its storage in a backward.
fn values<'a>(storage: &'a Storage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    match storage {
        Storage::Cpu(storage) => cpu_values(storage, layout),
        _ => Err(candle_core::Error::Msg("the fused loss needs CPU tensors".to_owned())),
    }
}

/// A forward's result: the rank-0 f32 tensor `value`.
fn scalar(value: f64) -> (CpuStorage, Shape) {
    (CpuStorage::F32(vec![value as f32]), Shape::from(()))
}

/// The gradient of the loss arriving at the op: a scalar (not 1 when the loss is scaled or
/// part of a sum).
fn incoming(grad: &Tensor) -> candle_core::Result<f64> {
    Ok(f64::from(grad.to_scalar::<f32>()?))
}

/// The op of [`mean_square`]: the gradient is `g * 2 x / n`.
struct MeanSquare {
    parts: usize,
}

impl CustomOp1 for MeanSquare {
    fn name(&self) -> &'static str {
        "mrnn-mean-square"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = cpu_values(x, layout)?;
        let sum: f64 = split(x.len(), self.parts, |r| sum_squares(&x[r])).into_iter().sum();
        Ok(scalar(sum / x.len() as f64))
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let scale = (2.0 * incoming(grad)? / x.elem_count() as f64) as f32;
        let (storage, layout) = x.storage_and_layout();
        let x_values = values(&storage, layout)?;
        let out = gradient(x_values.len(), self.parts, |r, out| {
            for (o, &v) in out.iter_mut().zip(&x_values[r]) {
                o.write(scale * v);
            }
        });
        Ok(Some(Tensor::from_vec(out, x.shape(), &Device::Cpu)?))
    }
}

/// The op of [`mse`]: the gradient of the prediction is `g * 2 (p - t) / n`; the target is a
/// constant.
struct Mse {
    parts: usize,
}

impl CustomOp2 for Mse {
    fn name(&self) -> &'static str {
        "mrnn-mse"
    }

    fn cpu_fwd(
        &self,
        p: &CpuStorage,
        p_layout: &Layout,
        t: &CpuStorage,
        t_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (p, t) = (cpu_values(p, p_layout)?, cpu_values(t, t_layout)?);
        let sums = split(p.len(), self.parts, |r| sum_squared_differences(&p[r.clone()], &t[r]));
        Ok(scalar(sums.into_iter().sum::<f64>() / p.len() as f64))
    }

    fn bwd(
        &self,
        p: &Tensor,
        t: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let scale = (2.0 * incoming(grad)? / p.elem_count() as f64) as f32;
        let ((p_storage, p_layout), (t_storage, t_layout)) =
            (p.storage_and_layout(), t.storage_and_layout());
        let (p_values, t_values) = (values(&p_storage, p_layout)?, values(&t_storage, t_layout)?);
        let out = gradient(p_values.len(), self.parts, |r, out| {
            for ((o, &p), &t) in out.iter_mut().zip(&p_values[r.clone()]).zip(&t_values[r]) {
                o.write(scale * (p - t));
            }
        });
        Ok((Some(Tensor::from_vec(out, p.shape(), &Device::Cpu)?), None))
    }
}

/// The op of [`masked_mse`]: the gradient of the prediction is `g * 2 (p - t) m / denominator`;
/// the target and the mask are constants.
struct MaskedMse {
    parts: usize,
    /// `max(sum(mask), MIN_WEIGHT)`, set by the forward for the backward (which would otherwise
    /// read the mask a second time).
    denominator: OnceLock<f64>,
}

impl CustomOp3 for MaskedMse {
    fn name(&self) -> &'static str {
        "mrnn-masked-mse"
    }

    fn cpu_fwd(
        &self,
        p: &CpuStorage,
        p_layout: &Layout,
        t: &CpuStorage,
        t_layout: &Layout,
        m: &CpuStorage,
        m_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (p, t, m) =
            (cpu_values(p, p_layout)?, cpu_values(t, t_layout)?, cpu_values(m, m_layout)?);
        let sums = split(p.len(), self.parts, |r| masked_sums(&p[r.clone()], &t[r.clone()], &m[r]));
        let (weighted, count) = sums.into_iter().fold((0.0, 0.0), |(w, c), (a, b)| (w + a, c + b));
        let denominator = count.max(MIN_WEIGHT);
        // A second forward of the same op (none in candle) would find the same sums.
        let _ = self.denominator.set(denominator);
        Ok(scalar(weighted / denominator))
    }

    fn bwd(
        &self,
        p: &Tensor,
        t: &Tensor,
        m: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let denominator = *self.denominator.get().ok_or_else(|| {
            candle_core::Error::Msg("the masked MSE's backward ran before its forward".to_owned())
        })?;
        let scale = (2.0 * incoming(grad)? / denominator) as f32;
        let ((p_storage, p_layout), (t_storage, t_layout), (m_storage, m_layout)) =
            (p.storage_and_layout(), t.storage_and_layout(), m.storage_and_layout());
        let (p_values, t_values, m_values) = (
            values(&p_storage, p_layout)?,
            values(&t_storage, t_layout)?,
            values(&m_storage, m_layout)?,
        );
        let out = gradient(p_values.len(), self.parts, |r, out| {
            let (p, t, m) = (&p_values[r.clone()], &t_values[r.clone()], &m_values[r]);
            for (((o, &p), &t), &m) in out.iter_mut().zip(p).zip(t).zip(m) {
                o.write(scale * (p - t) * m);
            }
        });
        Ok((Some(Tensor::from_vec(out, p.shape(), &Device::Cpu)?), None, None))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Var;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// The three losses, to run every check on each.
    #[derive(Clone, Copy, Debug)]
    enum Loss {
        MeanSquare,
        Mse,
        Masked,
    }

    const LOSSES: [Loss; 3] = [Loss::MeanSquare, Loss::Mse, Loss::Masked];

    impl Loss {
        /// This module's loss.
        fn ours(self, p: &Tensor, t: &Tensor, m: &Tensor) -> Tensor {
            match self {
                Loss::MeanSquare => mean_square(p),
                Loss::Mse => mse(p, t),
                Loss::Masked => masked_mse(p, t, m),
            }
            .unwrap()
        }

        /// This module's loss with its forward split into `parts` sums.
        fn split(self, p: &Tensor, t: &Tensor, m: &Tensor, parts: usize) -> Tensor {
            match self {
                Loss::MeanSquare => mean_square_in(p, parts),
                Loss::Mse => mse_in(p, t, parts),
                Loss::Masked => masked_mse_in(p, t, m, parts),
            }
            .unwrap()
        }

        /// The same formula as candle tensor ops (the masked MSE exactly as training computed
        /// it before this module).
        fn tensor_ops(self, p: &Tensor, t: &Tensor, m: &Tensor) -> Tensor {
            let diff = || p.sub(t).unwrap();
            match self {
                Loss::MeanSquare => p.sqr().unwrap().mean_all().unwrap(),
                Loss::Mse => diff().sqr().unwrap().mean_all().unwrap(),
                Loss::Masked => {
                    let weighted = diff().sqr().unwrap().mul(m).unwrap().sum_all().unwrap();
                    let count = m.sum_all().unwrap().clamp(1e-12, f64::INFINITY).unwrap();
                    weighted.div(&count).unwrap()
                }
            }
        }
    }

    /// Uniform draws in [-1, 1) from the stream `seed`: every run sees the same inputs.
    fn uniform(shape: &[usize], seed: u64) -> Tensor {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// Loss weights 0, 0.5 and 1 (masks are weights, not only 0 and 1), from the stream `seed`.
    fn weights(shape: &[usize], seed: u64) -> Tensor {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| f32::from(rng.random_range(0u8..3)) / 2.0).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn to_f64(t: &Tensor) -> Vec<f64> {
        t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    }

    /// The largest difference between `a` and `b`, relative to the largest magnitude in `b`.
    fn relative_diff(a: &Tensor, b: &Tensor) -> f64 {
        assert_eq!(a.dims(), b.dims());
        let (a, b) = (to_f64(a), to_f64(b));
        let scale = b.iter().fold(f64::MIN_POSITIVE, |s, v| s.max(v.abs()));
        a.iter().zip(&b).fold(0f64, |d, (x, y)| d.max((x - y).abs())) / scale
    }

    /// The ops between a loss and its prediction: 1 for a fused loss.
    fn ops_between(loss: &Tensor, prediction: &Tensor) -> usize {
        loss.sorted_nodes().len() - prediction.sorted_nodes().len()
    }

    fn f64_var(t: &Tensor) -> Var {
        Var::from_tensor(&t.to_dtype(DType::F64).unwrap()).unwrap()
    }

    /// Values and prediction gradients equal candle's (in f64, so the reference's own rounding
    /// does not count) on shapes of rank 1 to 3, sizes that are no multiple of 16 or of a block,
    /// and a size that splits the forward over the engine's threads. Each is one op.
    #[test]
    fn values_and_gradients_match_tensor_ops() {
        let shapes: [&[usize]; 7] =
            [&[1], &[15], &[16], &[3, 17], &[2, 5, 33], &[4, 8, 64], &[3, 301, 293]];
        for (seed, shape) in (0u64..).step_by(3).zip(shapes) {
            let p = Var::from_tensor(&uniform(shape, seed)).unwrap();
            let (t, m) = (uniform(shape, seed + 1), weights(shape, seed + 2));
            let p64 = f64_var(p.as_tensor());
            let (t64, m64) = (t.to_dtype(DType::F64).unwrap(), m.to_dtype(DType::F64).unwrap());
            for loss in LOSSES {
                let what = format!("{loss:?} on {shape:?}");
                let ours = loss.ours(p.as_tensor(), &t, &m);
                assert_eq!(ours.dims(), &[] as &[usize], "{what}: a scalar");
                assert_eq!(ops_between(&ours, p.as_tensor()), 1, "{what}: one op");
                let reference = loss.tensor_ops(p64.as_tensor(), &t64, &m64);
                let diff = relative_diff(&ours, &reference);
                assert!(diff < 1e-5, "{what}: value differs by {diff:e} (relative)");
                let g1 = ours.backward().unwrap();
                let g2 = reference.backward().unwrap();
                let (a, b) = (g1.get(p.as_tensor()).unwrap(), g2.get(p64.as_tensor()).unwrap());
                let diff = relative_diff(a, b);
                assert!(diff < 1e-5, "{what}: gradient differs by {diff:e} (relative)");
            }
        }
    }

    /// A prediction computed by other ops passes the fused gradient on to their inputs, and a
    /// loss that is scaled and summed with others gets its share of the incoming gradient.
    #[test]
    fn gradients_flow_through_other_ops_and_sums_of_losses() {
        let shape = [3, 7, 19];
        let (a, b) = (
            Var::from_tensor(&uniform(&shape, 1)).unwrap(),
            Var::from_tensor(&uniform(&shape, 2)).unwrap(),
        );
        let (t, m) = (uniform(&shape, 3), weights(&shape, 4));
        let total = |p: &Tensor, t: &Tensor, m: &Tensor, fused: bool| {
            let f = |loss: Loss| {
                if fused { loss.ours(p, t, m) } else { loss.tensor_ops(p, t, m) }
            };
            let sum =
                ((f(Loss::Masked) * 0.3).unwrap() + (f(Loss::MeanSquare) * 2.5).unwrap()).unwrap();
            (sum - (f(Loss::Mse) * 1.5).unwrap()).unwrap()
        };
        let p = a.as_tensor().mul(b.as_tensor()).unwrap();
        let ours = total(&p, &t, &m, true);
        let (a64, b64) = (f64_var(a.as_tensor()), f64_var(b.as_tensor()));
        let p64 = a64.as_tensor().mul(b64.as_tensor()).unwrap();
        let (t64, m64) = (t.to_dtype(DType::F64).unwrap(), m.to_dtype(DType::F64).unwrap());
        let reference = total(&p64, &t64, &m64, false);
        assert!(relative_diff(&ours, &reference) < 1e-5, "value");
        let (g1, g2) = (ours.backward().unwrap(), reference.backward().unwrap());
        for (name, v, v64) in [("a", &a, &a64), ("b", &b, &b64)] {
            let diff =
                relative_diff(g1.get(v.as_tensor()).unwrap(), g2.get(v64.as_tensor()).unwrap());
            assert!(diff < 1e-5, "gradient of {name} differs by {diff:e} (relative)");
        }
    }

    /// f64 tensors, strided ones, and a target or mask that carries a gradient take the tensor
    /// ops: the same values and gradients as candle's, for every argument that has one.
    #[test]
    fn fallbacks_match_tensor_ops() {
        let shape = [5, 7];
        let p = Var::from_tensor(&uniform(&shape, 5)).unwrap();
        let (t, m) = (uniform(&shape, 6), weights(&shape, 7));
        let p64 = f64_var(p.as_tensor());
        let (t64, m64) = (t.to_dtype(DType::F64).unwrap(), m.to_dtype(DType::F64).unwrap());
        // Transposed `[7, 5]` tensors: `[5, 7]` views with strides.
        let p_rows = Var::from_tensor(&uniform(&[7, 5], 8)).unwrap();
        let (t_strided, m_strided) =
            (uniform(&[7, 5], 9).t().unwrap(), weights(&[7, 5], 10).t().unwrap());
        let (t_var, m_var) = (Var::from_tensor(&t).unwrap(), Var::from_tensor(&m).unwrap());
        let (p, p_strided) = (p.as_tensor(), p_rows.as_tensor().t().unwrap());
        // (case, prediction, target, mask, the tensors whose gradients must agree, the first
        // of `LOSSES` that reads the tensor that takes it off the fused path)
        let cases = [
            ("f64", p64.as_tensor(), &t64, &m64, vec![p64.as_tensor()], 0),
            ("strided prediction", &p_strided, &t, &m, vec![p_rows.as_tensor()], 0),
            ("strided target", p, &t_strided, &m, vec![p], 1),
            ("strided mask", p, &t, &m_strided, vec![p], 2),
            ("target with a gradient", p, t_var.as_tensor(), &m, vec![p, t_var.as_tensor()], 1),
            ("mask with a gradient", p, &t, m_var.as_tensor(), vec![p, m_var.as_tensor()], 2),
        ];
        for (case, p, t, m, sources, first) in cases {
            for (i, loss) in LOSSES.into_iter().enumerate() {
                let what = format!("{loss:?}, {case}");
                let ours = loss.ours(p, t, m);
                let reference = loss.tensor_ops(p, t, m);
                // The tensor ops give candle's numbers exactly; the fused op to rounding.
                let (fused, tolerance) = if i < first { (true, 1e-5) } else { (false, 1e-7) };
                assert_eq!(ops_between(&ours, p) == 1, fused, "{what}: fused {fused}");
                let diff = relative_diff(&ours, &reference);
                assert!(diff < tolerance, "{what}: value differs by {diff:e}");
                let (g1, g2) = (ours.backward().unwrap(), reference.backward().unwrap());
                for &source in &sources {
                    match (g1.get(source), g2.get(source)) {
                        (Some(a), Some(b)) => {
                            let diff = relative_diff(a, b);
                            assert!(diff < tolerance, "{what}: gradient differs by {diff:e}");
                        }
                        // Only the masked MSE reads the mask, only two losses the target.
                        (None, None) => {}
                        (a, b) => panic!("{what}: gradient {a:?} vs {b:?}"),
                    }
                }
            }
        }
    }

    /// The forward's sum does not depend on how it is split over threads, beyond rounding.
    #[test]
    fn splitting_the_forward_changes_only_rounding() {
        let shape = [300_007];
        let (p, t, m) = (uniform(&shape, 11), uniform(&shape, 12), weights(&shape, 13));
        for loss in LOSSES {
            let whole = loss.split(&p, &t, &m, 1);
            for parts in [2, 3, 7] {
                let diff = relative_diff(&loss.split(&p, &t, &m, parts), &whole);
                assert!(diff < 1e-6, "{loss:?} in {parts} parts differs by {diff:e} (relative)");
            }
        }
    }

    /// A target or mask of another shape than the prediction's is an error naming both shapes,
    /// on the fused path and on the tensor-op path.
    #[test]
    fn mismatched_shapes_are_refused() {
        for dtype in [DType::F32, DType::F64] {
            let zeros = |shape: &[usize]| Tensor::zeros(shape, dtype, &Device::Cpu).unwrap();
            let (p, wrong) = (zeros(&[2, 3, 4]), zeros(&[2, 3, 1]));
            let errors = [
                ("target", mse(&p, &wrong)),
                ("target", masked_mse(&p, &wrong, &p)),
                ("mask", masked_mse(&p, &p, &wrong)),
            ];
            for (what, result) in errors {
                let message = result.unwrap_err().to_string();
                assert!(
                    message.contains(what)
                        && message.contains("[2, 3, 1]")
                        && message.contains("[2, 3, 4]"),
                    "{dtype:?}: {message}"
                );
            }
        }
    }
}
