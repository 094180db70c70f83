//! Initial raw weights, as the reference prescribes: uniform magnitudes for blocks under Dale's
//! law, Xavier normal for unconstrained blocks; one seeded RNG per connection (see
//! [`crate::masks`]), so a block's weights depend only on the seed, its two regions and the
//! network's final sizes.

use mrnn_ir::{Architecture, Source};
use rand::Rng;
use rand_distr::StandardNormal;

use crate::masks::{HostMatrix, Stream, connection_rng};

/// The bound `b` of `|W| ~ U(0, b)` for constrained blocks: `sqrt(1 / (2H))` for recurrent
/// blocks and `sqrt(1 / (H + I))` for input blocks, with the network's **final** `H` and `I`
/// (mRNNTorch uses the sizes at the moment a connection is added: a bug the reference fixes).
#[must_use]
pub fn uniform_bound(arch: &Architecture, src: Source) -> f64 {
    let (h, i) = (arch.hidden_size() as f64, arch.input_size() as f64);
    match src {
        Source::Recurrent(_) => (1.0 / (2.0 * h)).sqrt(),
        Source::Input(_) => (1.0 / (h + i)).sqrt(),
    }
}

/// The standard deviation of Xavier normal initialization for a `n_dst x n_src` block.
#[must_use]
pub fn xavier_std(n_src: usize, n_dst: usize) -> f64 {
    (2.0 / (n_src + n_dst) as f64).sqrt()
}

/// Raw initial weights `(W_rec [H, H], W_inp [H, I])`: zero outside connections; inside a
/// connection's block, uniform magnitudes under Dale's law for that matrix, else Xavier normal.
/// Every entry of a block is drawn (masked-out entries too, as `torch.nn.init` does): the mask
/// decides what is used.
#[must_use]
pub fn raw_weights(arch: &Architecture, seed: u64) -> (HostMatrix, HostMatrix) {
    let h = arch.hidden_size();
    let mut w_rec = HostMatrix::zeros(h, h);
    let mut w_inp = HostMatrix::zeros(h, arch.input_size());
    let dale = arch.settings().dale;
    for c in arch.connections() {
        let dst = &arch.regions()[c.dst];
        let n_src = arch.source_units(c.src);
        let mut rng = connection_rng(seed, Stream::Weights, arch.source_name(c.src), &dst.name);
        let constrained = match c.src {
            Source::Recurrent(_) => dale.recurrent,
            Source::Input(_) => dale.input,
        };
        let n = dst.units * n_src;
        let block: Vec<f32> = if constrained {
            let bound = uniform_bound(arch, c.src);
            (0..n).map(|_| (rng.random::<f64>() * bound) as f32).collect()
        } else {
            let std = xavier_std(n_src, dst.units);
            (0..n).map(|_| (rng.sample::<f64, _>(StandardNormal) * std) as f32).collect()
        };
        let target = match c.src {
            Source::Recurrent(_) => &mut w_rec,
            Source::Input(_) => &mut w_inp,
        };
        target.put_block(dst.offset, arch.source_range(c.src).start, dst.units, n_src, &block);
    }
    (w_rec, w_inp)
}
