//! Where tensors hold NaN or infinities: one check and one description (`3 non-finite values,
//! the first NaN at index [0, 2]`) for every place that refuses them (checkpoints, readouts,
//! inputs of a simulation).

use std::fmt;

use candle_core::{Device, Tensor};

use crate::Result;
use crate::network::DTYPE;

/// Where a tensor holds NaN or infinities: how many, and the first (in row-major order).
#[derive(Clone, Debug, PartialEq)]
pub struct NonFinite {
    /// The multi-index of the first non-finite element.
    pub index: Vec<usize>,
    /// Its value: NaN, inf or -inf.
    pub value: f32,
    /// How many elements are not finite.
    pub count: usize,
}

impl fmt::Display for NonFinite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.count == 1 { "" } else { "s" };
        write!(
            f,
            "{} non-finite value{plural}, the first {} at index {:?}",
            self.count, self.value, self.index
        )
    }
}

/// The non-finite elements of `t` (any float dtype, any device), or `None` when every element
/// is finite: for checks of inputs, since [`crate::Network::forward`] propagates NaN as it is given.
///
/// ```
/// use mrnn_runtime::{Device, Tensor, finite::non_finite};
/// let t = Tensor::new(&[[0f32, 1.0], [f32::NAN, f32::INFINITY]], &Device::Cpu)?;
/// let bad = non_finite(&t)?.expect("two are not finite");
/// assert_eq!((bad.index, bad.count), (vec![1, 0], 2));
/// # Ok::<(), mrnn_runtime::Error>(())
/// ```
pub fn non_finite(t: &Tensor) -> Result<Option<NonFinite>> {
    let values = t.to_dtype(DTYPE)?.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?;
    let mut bad = values.iter().enumerate().filter(|(_, v)| !v.is_finite());
    let Some((first, &value)) = bad.next() else { return Ok(None) };
    let mut index = vec![0; t.rank()];
    let mut rest = first;
    for (i, &d) in index.iter_mut().zip(t.dims()).rev() {
        *i = rest % d.max(1);
        rest /= d.max(1);
    }
    Ok(Some(NonFinite { index, value, count: 1 + bad.count() }))
}
