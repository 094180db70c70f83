//! The input side of the drive: `u W^T + b` for the inputs of all steps at once, and `x + b`.
//!
//! Both are custom ops so that their backward passes cost what they must: candle's matmul
//! backward computes the gradients of both operands (the input's is never used, and is as large
//! as the product), and its broadcast-add backward sums the bias gradient 10x slower than one
//! product. On the CPU the projection runs on the host kernel's packed GEMM.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Device, Layout, Shape, Tensor};

#[cfg(feature = "cuda")]
use super::cuda_of;
use super::fast_math::add_row_products;
use super::gemm::{Operand, Packed, matmul};
use super::pool;
use super::{HostSlice, copy_storage, cpu_of, cpu_values};
use crate::{Error, Result};

/// `u W^T + b` for inputs `u` `[.., I]`, weights `W` `[H, I]` and a bias `b` `[H]`: `[.., H]`
/// (the leading dimensions of `u`, such as `[T, B]`, are kept: no reshape node whose backward
/// would copy the gradient twice). Differentiable with respect to all three; gradients are
/// computed for those that carry one.
pub fn project(u: &Tensor, w: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let ((h, wi), bh) = (w.dims2()?, bias.dims1()?);
    let i = u.dims().last().copied().unwrap_or(0);
    if u.rank() < 2 || wi != i || bh != h {
        return Err(Error::Invalid(format!(
            "input projection of {:?} inputs by [{h}, {wi}] weights and a [{bh}] bias: \
             expected inputs [.., I], weights [H, I] and a bias [H]",
            u.dims()
        )));
    }
    let host =
        [u, w, bias].iter().all(|t| matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32);
    if !host {
        let mut out_dims = u.dims().to_vec();
        *out_dims.last_mut().unwrap_or(&mut 0) = h;
        let flat = u.reshape((u.elem_count() / i.max(1), i))?;
        return add_bias(&flat.matmul(&w.t()?)?.reshape(out_dims)?, bias);
    }
    let (u, w, bias) = (u.contiguous()?, w.contiguous()?, bias.contiguous()?);
    Ok(u.apply_op3_arc(&w, &bias, std::sync::Arc::new(Box::new(Projection)))?)
}

/// Inputs fewer than this: the weight gradient is accumulated row by row (with the bias gradient,
/// in the same pass over the gradient); more: one GEMM, which first copies the gradient into its
/// packed layout (CBGTCL, 25 inputs: fwd+bwd 44 ms with the GEMM, 38 ms by rows; medians of
/// `mrnn bench`).
const FEW_INPUTS: usize = 64;

/// `(u^T g [I, H], column sums of g [H])` for `g` `[N, H]` and `u` `[N, I]` (`I` may be 0), the
/// rows split over the engine's threads when there are many.
fn row_products(g: &[f32], u: &[f32], (n, i, h): (usize, usize, usize)) -> (Vec<f32>, Vec<f32>) {
    // Below this many multiply-adds one thread finishes before a second would wake.
    const SPLIT_MIN: usize = 1 << 20;
    let threads = if n * (i + 1) * h < SPLIT_MIN { 1 } else { pool::threads().min(n.max(1)) };
    let per = n.div_ceil(threads.max(1)).max(1);
    let parts = pool::run(n.div_ceil(per), |task| {
        let rows = task * per..n.min((task + 1) * per);
        let (mut acc, mut sums) = (vec![0f32; i * h], vec![0f32; h]);
        add_row_products(
            &g[rows.start * h..rows.end * h],
            &u[rows.start * i..rows.end * i],
            &mut acc,
            &mut sums,
        );
        (acc, sums)
    });
    let mut parts = parts.into_iter();
    let (mut acc, mut sums) = parts.next().unwrap_or_else(|| (vec![0f32; i * h], vec![0f32; h]));
    for (a, s) in parts {
        acc.iter_mut().zip(a).for_each(|(x, y)| *x += y);
        sums.iter_mut().zip(s).for_each(|(x, y)| *x += y);
    }
    (acc, sums)
}

/// The custom op of [`project`] on the CPU.
struct Projection;

impl CustomOp3 for Projection {
    fn name(&self) -> &'static str {
        "mrnn-input-projection"
    }

    fn cpu_fwd(
        &self,
        u: &CpuStorage,
        u_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (u, w, bias) =
            (cpu_values(u, u_layout)?, cpu_values(w, w_layout)?, cpu_values(bias, bias_layout)?);
        let h = bias.len();
        let mut out_dims = u_layout.dims().to_vec();
        let i = out_dims.last().copied().unwrap_or(0);
        let n = u.len() / i.max(1);
        *out_dims.last_mut().unwrap_or(&mut 0) = h;
        let mut out = Vec::with_capacity(n * h);
        for _ in 0..n {
            out.extend_from_slice(bias);
        }
        // W^T: element (p, j) is w[j * I + p].
        let w_t = Packed::new(Operand::new(w, 1, i), i, h);
        matmul(&mut out, h, n, true, Operand::new(u, i, 1), &w_t, 1.0, true);
        Ok((CpuStorage::F32(out), Shape::from(out_dims)))
    }

    fn bwd(
        &self,
        u: &Tensor,
        w: &Tensor,
        bias: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let msg = |e: Error| candle_core::Error::Msg(e.to_string());
        let (h, i) = w.dims2()?;
        let n = u.elem_count() / i.max(1);
        let grad = grad.contiguous()?;
        let g = HostSlice::of(&grad).map_err(msg)?;
        let g = g.values();
        let grad_u = if u.track_op() {
            // grad W: [N, H] x [H, I].
            let w = HostSlice::of(w).map_err(msg)?;
            let rhs = Packed::new(Operand::new(w.values(), i, 1), h, i);
            let mut out = vec![0f32; n * i];
            matmul(&mut out, i, n, false, Operand::new(g, h, 1), &rhs, 1.0, true);
            Some(Tensor::from_vec(out, u.shape(), &Device::Cpu)?)
        } else {
            None
        };
        let (mut grad_w, mut grad_bias) = (None, None);
        if w.track_op() && i < FEW_INPUTS {
            let u = HostSlice::of(u).map_err(msg)?;
            let (acc, sums) = row_products(g, u.values(), (n, i, h));
            // acc is [I, H]; the gradient of W is [H, I].
            let mut out = vec![0f32; h * i];
            for (c, row) in acc.chunks_exact(h).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    out[j * i + c] = v;
                }
            }
            grad_w = Some(Tensor::from_vec(out, (h, i), &Device::Cpu)?);
            if bias.track_op() {
                grad_bias = Some(Tensor::from_vec(sums, h, &Device::Cpu)?);
            }
        } else if w.track_op() {
            // grad^T u: [H, N] x [N, I].
            let u = HostSlice::of(u).map_err(msg)?;
            let rhs = Packed::new(Operand::new(u.values(), i, 1), n, i);
            let mut out = vec![0f32; h * i];
            matmul(&mut out, i, h, false, Operand::new(g, 1, h), &rhs, 1.0, true);
            grad_w = Some(Tensor::from_vec(out, (h, i), &Device::Cpu)?);
        }
        if bias.track_op() && grad_bias.is_none() {
            let (_, sums) = row_products(g, &[], (n, 0, h));
            grad_bias = Some(Tensor::from_vec(sums, h, &Device::Cpu)?);
        }
        Ok((grad_u, grad_w, grad_bias))
    }
}

/// `x + b` for `x` `[.., H]` and a bias `b` `[H]`, with the bias gradient as one product
/// `ones [1, N] x grad [N, H]`: candle's backward of a broadcast add sums over the broadcast
/// dimension instead, 10x slower at `N = T B = 3200`, `H = 256` (measured).
pub fn add_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let sum = x.detach().broadcast_add(&bias.detach())?;
    if !(x.track_op() || bias.track_op()) {
        return Ok(sum);
    }
    Ok(x.apply_op2_arc(bias, std::sync::Arc::new(Box::new(BiasAdd { sum })))?)
}

/// The custom op of [`add_bias`]: its forward hands back the sum already computed.
struct BiasAdd {
    sum: Tensor,
}

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "mrnn-bias-add"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        copy_storage(&self.sum, cpu_of)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        copy_storage(&self.sum, cuda_of)
    }

    fn bwd(
        &self,
        x: &Tensor,
        _bias: &Tensor,
        _sum: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let h = x.dims().last().copied().unwrap_or(1).max(1);
        let rows = x.elem_count() / h;
        let ones = Tensor::ones((1, rows), grad.dtype(), grad.device())?;
        let grad_bias = ones.matmul(&grad.contiguous()?.reshape((rows, h))?)?.squeeze(0)?;
        Ok((Some(grad.clone()), Some(grad_bias)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Var;

    use super::*;
    use crate::engine::tests::{max_diff, randn};

    /// The projection and its three gradients equal candle's matmul and broadcast add, from few
    /// inputs (row-by-row gradients) and from many (GEMM); an argument that carries no gradient
    /// gets none. (Row splits over threads: `split_rows_equal_one_pass`.)
    #[test]
    fn projection_matches_candle_ops() {
        for (n, i, h) in [(37, 5, 40), (37, 20, 40), (37, 70, 40)] {
            projection_matches_candle_ops_at(n, i, h);
        }
    }

    fn projection_matches_candle_ops_at(n: usize, i: usize, h: usize) {
        let u = Var::from_tensor(&randn((n, i), 1.0)).unwrap();
        let w = Var::from_tensor(&randn((h, i), 1.0)).unwrap();
        let b = Var::from_tensor(&randn(h, 1.0)).unwrap();
        let weights = randn((n, h), 1.0);
        let ours = project(u.as_tensor(), w.as_tensor(), b.as_tensor()).unwrap();
        let reference = u
            .as_tensor()
            .matmul(&w.as_tensor().t().unwrap())
            .unwrap()
            .broadcast_add(b.as_tensor())
            .unwrap();
        assert!(max_diff(&ours, &reference) < 1e-5);
        let g1 = ours.mul(&weights).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = reference.mul(&weights).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("u", &u), ("w", &w), ("b", &b)] {
            let (a, r) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
            assert!(max_diff(a, r) < 1e-4, "[{n}, {i}] x [{h}, {i}]: gradient of {name}");
        }
        let fixed = u.as_tensor().detach();
        let out = project(&fixed, w.as_tensor(), b.as_tensor()).unwrap();
        let grads = out.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&fixed).is_none());
        assert!(grads.get(w.as_tensor()).is_some());
        // The bias alone (fixed weights): its gradient is the column sums, n per unit here.
        let out = project(&fixed, &w.as_tensor().detach(), b.as_tensor()).unwrap();
        let grads = out.sum_all().unwrap().backward().unwrap();
        let ones = Tensor::full(n as f32, h, &Device::Cpu).unwrap();
        assert!(max_diff(grads.get(b.as_tensor()).unwrap(), &ones) < 1e-4);
    }

    /// The row-by-row gradients summed over row ranges equal one pass (the rows split over
    /// threads when there are many: 3000 rows here).
    #[test]
    fn split_rows_equal_one_pass() {
        let (n, i, h) = (3000, 7, 60);
        let g: Vec<f32> = (0..n * h).map(|k| ((k * 37 % 101) as f32 - 50.0) / 50.0).collect();
        let u: Vec<f32> = (0..n * i).map(|k| ((k * 53 % 97) as f32 - 48.0) / 48.0).collect();
        let (acc, sums) = row_products(&g, &u, (n, i, h));
        let (mut one_acc, mut one_sums) = (vec![0f32; i * h], vec![0f32; h]);
        add_row_products(&g, &u, &mut one_acc, &mut one_sums);
        for (a, b) in acc.iter().zip(&one_acc).chain(sums.iter().zip(&one_sums)) {
            assert!((a - b).abs() <= 1e-3 * b.abs().max(1.0), "{a} != {b}");
        }
    }

    /// Leading dimensions pass through, forward and backward.
    #[test]
    fn sequences_keep_their_shape() {
        let u = Var::from_tensor(&randn((4, 3, 5), 1.0)).unwrap();
        let (w, b) = (randn((6, 5), 1.0), randn(6, 1.0));
        let out = project(u.as_tensor(), &w, &b).unwrap();
        assert_eq!(out.dims(), &[4, 3, 6]);
        let flat = project(&u.as_tensor().reshape((12, 5)).unwrap(), &w, &b).unwrap();
        assert!(max_diff(&out.reshape((12, 6)).unwrap(), &flat) < 1e-6);
        let grads = out.sum_all().unwrap().backward().unwrap();
        assert_eq!(grads.get(u.as_tensor()).unwrap().dims(), &[4, 3, 5]);
    }

    #[test]
    fn mismatched_shapes_are_refused() {
        let err = project(&randn((3, 4), 1.0), &randn((5, 3), 1.0), &randn(5, 1.0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("[3, 4] inputs by [5, 3] weights and a [5] bias"), "{err}");
    }
}
