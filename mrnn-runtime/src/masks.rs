//! Connection masks and sign matrices: which weights exist (fixed 0/1 masks, never trained) and
//! the sign Dale's law gives them. Sampled on the host, one seeded RNG per connection.
//!
//! Each connection's RNG is derived from (network seed, source name, destination name) with
//! SHA-256, so a connection's mask depends on nothing else: not on declaration order, not on the
//! other connections, not on the front door (DSL or JSON) that built the architecture.

use mrnn_ir::check::zeros_per_column;
use mrnn_ir::{Architecture, Source};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// One of the two weight matrices of a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Matrix {
    /// `W_rec`, `[H, H]`.
    Recurrent,
    /// `W_inp`, `[H, I]`.
    Input,
}

impl Matrix {
    /// The matrix's name in checkpoints and messages: `W_rec` or `W_inp`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Matrix::Recurrent => "W_rec",
            Matrix::Input => "W_inp",
        }
    }

    /// The number of columns for `arch`: `H` or `I`.
    #[must_use]
    pub fn cols(self, arch: &Architecture) -> usize {
        match self {
            Matrix::Recurrent => arch.hidden_size(),
            Matrix::Input => arch.input_size(),
        }
    }

    /// Whether `src` is a source of this matrix.
    #[must_use]
    pub const fn holds(self, src: Source) -> bool {
        matches!(
            (self, src),
            (Matrix::Recurrent, Source::Recurrent(_)) | (Matrix::Input, Source::Input(_))
        )
    }
}

/// What a per-connection random stream is used for: masks and initial weights of the same
/// connection must not share draws.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stream {
    Mask,
    Weights,
}

/// The RNG of one connection's stream, derived from the seed and the two region names only.
pub(crate) fn connection_rng(seed: u64, stream: Stream, src: &str, dst: &str) -> ChaCha8Rng {
    let mut hasher = Sha256::new();
    hasher.update(b"mrnn-runtime/v1/");
    hasher.update(match stream {
        Stream::Mask => b"mask/".as_slice(),
        Stream::Weights => b"weights/".as_slice(),
    });
    hasher.update(seed.to_le_bytes());
    // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
    for name in [src, dst] {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
    }
    ChaCha8Rng::from_seed(hasher.finalize().into())
}

/// The mask of one `[n_dst, n_src]` block, row-major: all ones when `sparsity` is `None`, else
/// exactly `ceil(sparsity * n_dst)` zeros in every column (one column per source unit), at
/// positions drawn uniformly without replacement (a partial Fisher-Yates shuffle per column,
/// written out so that the draws do not depend on a library's sampling algorithm).
pub fn block_mask<R: Rng>(
    rng: &mut R,
    n_dst: usize,
    n_src: usize,
    sparsity: Option<f64>,
) -> Vec<f32> {
    let mut mask = vec![1.0f32; n_dst * n_src];
    let Some(s) = sparsity else { return mask };
    let zeros = zeros_per_column(s, n_dst).min(n_dst);
    let mut rows: Vec<usize> = (0..n_dst).collect();
    for col in 0..n_src {
        for i in 0..zeros {
            let j = rng.random_range(i..n_dst);
            rows.swap(i, j);
            mask[rows[i] * n_src + col] = 0.0;
        }
    }
    mask
}

/// A row-major host matrix of `f32`.
#[derive(Clone, Debug, PartialEq)]
pub struct HostMatrix {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// `rows * cols` values, row by row.
    pub data: Vec<f32>,
}

impl HostMatrix {
    /// A matrix of zeros.
    #[must_use]
    pub fn zeros(rows: usize, cols: usize) -> HostMatrix {
        HostMatrix { rows, cols, data: vec![0.0; rows * cols] }
    }

    /// Writes a row-major `block` with its top-left corner at (`row`, `col`).
    pub(crate) fn put_block(
        &mut self,
        row: usize,
        col: usize,
        n_rows: usize,
        n_cols: usize,
        block: &[f32],
    ) {
        for r in 0..n_rows {
            let dst = (row + r) * self.cols + col;
            self.data[dst..dst + n_cols].copy_from_slice(&block[r * n_cols..(r + 1) * n_cols]);
        }
    }

    /// The entry at (`row`, `col`).
    #[must_use]
    pub fn get(&self, row: usize, col: usize) -> f32 {
        self.data[row * self.cols + col]
    }
}

/// The masks and sign matrices of both weight matrices.
#[derive(Clone, Debug, PartialEq)]
pub struct Masks {
    /// `W_rec_mask`, `[H, H]`.
    pub rec_mask: HostMatrix,
    /// `W_rec_sign_matrix` = sign(source) * mask, `[H, H]`.
    pub rec_sign: HostMatrix,
    /// `W_inp_mask`, `[H, I]`.
    pub inp_mask: HostMatrix,
    /// `W_inp_sign_matrix`, `[H, I]`.
    pub inp_sign: HostMatrix,
}

/// Samples the masks of `arch` with `seed`: dense blocks all ones, sparse blocks with exactly
/// `ceil(s * n_dst)` zeros per column, unconnected blocks zero; signs are sign(source) * mask.
#[must_use]
pub fn sample(arch: &Architecture, seed: u64) -> Masks {
    let h = arch.hidden_size();
    let i = arch.input_size();
    let mut masks = Masks {
        rec_mask: HostMatrix::zeros(h, h),
        rec_sign: HostMatrix::zeros(h, h),
        inp_mask: HostMatrix::zeros(h, i),
        inp_sign: HostMatrix::zeros(h, i),
    };
    for c in arch.connections() {
        let dst = &arch.regions()[c.dst];
        let src_name = arch.source_name(c.src);
        let n_src = arch.source_units(c.src);
        let mut rng = connection_rng(seed, Stream::Mask, src_name, &dst.name);
        let block = block_mask(&mut rng, dst.units, n_src, c.sparsity);
        let sign = arch.source_sign(c.src).value() as f32;
        let signed: Vec<f32> = block.iter().map(|m| m * sign).collect();
        let col = arch.source_range(c.src).start;
        let (mask, signs) = match c.src {
            Source::Recurrent(_) => (&mut masks.rec_mask, &mut masks.rec_sign),
            Source::Input(_) => (&mut masks.inp_mask, &mut masks.inp_sign),
        };
        mask.put_block(dst.offset, col, dst.units, n_src, &block);
        signs.put_block(dst.offset, col, dst.units, n_src, &signed);
    }
    masks
}

/// Checks a mask and sign matrix (from a file) against `arch`, block by block: outside
/// connections the mask is 0, dense blocks are all 1, sparse blocks have exactly
/// `ceil(s * n_dst)` zeros per column, every entry is 0 or 1, and the sign matrix is
/// sign(source) * mask. The error names the first block that differs
/// (`W_rec block thal -> d1: ...`).
pub fn check(
    arch: &Architecture,
    matrix: Matrix,
    mask: &HostMatrix,
    sign: &HostMatrix,
) -> Result<(), String> {
    let name = matrix.name();
    let (h, cols) = (arch.hidden_size(), matrix.cols(arch));
    for (what, m) in [("mask", mask), ("sign matrix", sign)] {
        if (m.rows, m.cols) != (h, cols) {
            return Err(format!("{name} {what} is {}x{}, expected {h}x{cols}", m.rows, m.cols));
        }
    }
    let sources: Vec<(Source, &str, std::ops::Range<usize>, f32)> = match matrix {
        Matrix::Recurrent => arch
            .regions()
            .iter()
            .enumerate()
            .map(|(k, r)| (Source::Recurrent(k), r.name.as_ref(), r.range(), r.sign.value() as f32))
            .collect(),
        Matrix::Input => arch
            .inputs()
            .iter()
            .enumerate()
            .map(|(k, r)| (Source::Input(k), r.name.as_ref(), r.range(), r.sign.value() as f32))
            .collect(),
    };
    for (d, dst) in arch.regions().iter().enumerate() {
        for (src, src_name, cols, sign_value) in &sources {
            let expected = match arch.connections().iter().find(|c| c.dst == d && c.src == *src) {
                None => Expected::Unconnected,
                Some(c) => c.sparsity.map_or(Expected::Dense, Expected::Sparse),
            };
            check_block((mask, sign), dst.range(), cols.clone(), expected, *sign_value)
                .map_err(|e| format!("{name} block {src_name} -> {}: {e}", dst.name))?;
        }
    }
    Ok(())
}

/// What a block of a mask must look like.
#[derive(Clone, Copy, Debug)]
enum Expected {
    /// No connection: all zeros.
    Unconnected,
    /// A dense connection: all ones.
    Dense,
    /// A sparse connection: this many zeros in every column.
    Sparse(f64),
}

// Masks and signs hold exact small integers (0, 1, -1), so exact comparison is the check.
#[allow(clippy::float_cmp, reason = "mask and sign entries are exactly 0, 1 or -1")]
fn check_block(
    (mask, sign): (&HostMatrix, &HostMatrix),
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    expected: Expected,
    sign_value: f32,
) -> Result<(), String> {
    let n_dst = rows.len();
    for (j, col) in cols.enumerate() {
        let mut zeros = 0;
        for (i, row) in rows.clone().enumerate() {
            let m = mask.get(row, col);
            let at = || format!("entry ({i}, {j}) of the block");
            if m != 0.0 && m != 1.0 {
                return Err(format!("mask {} is {m}, expected 0 or 1", at()));
            }
            if matches!(expected, Expected::Unconnected) && m != 0.0 {
                return Err(format!("the regions are not connected, but mask {} is {m}", at()));
            }
            let s = sign.get(row, col);
            if s != m * sign_value {
                return Err(format!(
                    "sign matrix {} is {s}, expected {} (sign {sign_value} times mask {m})",
                    at(),
                    m * sign_value
                ));
            }
            if m == 0.0 {
                zeros += 1;
            }
        }
        match expected {
            Expected::Dense if zeros > 0 => {
                return Err(format!(
                    "the connection is dense, but column {j} of its mask has {zeros} zeros"
                ));
            }
            Expected::Sparse(s) => {
                let want = zeros_per_column(s, n_dst);
                if zeros != want {
                    return Err(format!(
                        "column {j} of the mask has {zeros} zeros, expected ceil({s} * {n_dst}) = {want} (sparsity {s})"
                    ));
                }
            }
            Expected::Unconnected | Expected::Dense => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_mask_has_exact_zeros_per_column() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (n_dst, n_src) = (50, 30);
        let m = block_mask(&mut rng, n_dst, n_src, Some(0.25));
        for col in 0..n_src {
            let zeros = (0..n_dst).filter(|r| m[r * n_src + col] == 0.0).count();
            assert_eq!(zeros, 13);
        }
        assert_eq!(block_mask(&mut rng, 4, 3, None), vec![1.0; 12]);
        // s = 0 keeps everything.
        assert_eq!(block_mask(&mut rng, 4, 3, Some(0.0)), vec![1.0; 12]);
    }

    #[test]
    fn streams_differ_by_purpose_and_names() {
        let mut a = connection_rng(0, Stream::Mask, "ab", "c");
        let mut b = connection_rng(0, Stream::Mask, "a", "bc");
        let mut c = connection_rng(0, Stream::Weights, "ab", "c");
        let (x, y, z): (u64, u64, u64) = (a.random(), b.random(), c.random());
        assert!(x != y && x != z);
    }
}
