//! The sparse mask sampler: exact zeros per source unit, determinism, independence from the
//! order of declarations; and the validator that checks masks from files.
#![allow(clippy::float_cmp, reason = "masks and signs hold exactly 0, 1 or -1")]

mod common;

use common::values;
use mrnn_runtime::masks::{self, HostMatrix, Matrix};
use mrnn_runtime::{Architecture, Device, Network, Tensor};

fn compile_text(text: &str) -> Architecture {
    mrnn_ir::compile_json(text, "net.json").unwrap_or_else(|r| panic!("{r}")).architecture
}

fn cbgtcl() -> Architecture {
    common::compile("CBGTCL.json")
}

fn host(t: &Tensor) -> HostMatrix {
    let (rows, cols) = t.dims2().unwrap();
    HostMatrix { rows, cols, data: values(t) }
}

/// The block of a `[H, *]` matrix for `src -> dst` (recurrent or input source).
fn block(net: &Network, matrix: Matrix, src: &str, dst: &str) -> Vec<f32> {
    let rows = net.region_range(dst).unwrap();
    let cols = match matrix {
        Matrix::Recurrent => net.region_range(src).unwrap(),
        Matrix::Input => net.input_range(src).unwrap(),
    };
    let t = net.mask(matrix).narrow(0, rows.start, rows.len()).unwrap();
    values(&t.narrow(1, cols.start, cols.len()).unwrap())
}

#[test]
fn every_column_has_exactly_ceil_s_n_dst_zeros() {
    let arch = cbgtcl();
    let net = Network::new(arch.clone(), &Device::Cpu).unwrap();
    for c in arch.connections() {
        let dst = &arch.regions()[c.dst];
        let src = arch.source_name(c.src);
        let matrix = if matches!(c.src, mrnn_ir::Source::Input(_)) {
            Matrix::Input
        } else {
            Matrix::Recurrent
        };
        let b = block(&net, matrix, src, &dst.name);
        let n_src = arch.source_units(c.src);
        let want = c.sparsity.map_or(0, |s| (s * dst.units as f64).ceil() as usize);
        for col in 0..n_src {
            let column: Vec<f32> = (0..dst.units).map(|r| b[r * n_src + col]).collect();
            assert!(column.iter().all(|&v| v == 0.0 || v == 1.0));
            let zeros = column.iter().filter(|&&v| v == 0.0).count();
            assert_eq!(zeros, want, "{src} -> {}: column {col}", dst.name);
        }
    }
    // The validator used on imported files accepts what the sampler draws.
    for m in [Matrix::Recurrent, Matrix::Input] {
        masks::check(&arch, m, &host(net.mask(m)), &host(net.sign_matrix(m))).unwrap();
    }
    // Nothing outside connections: the ones counted block by block are all the ones there are.
    for m in [Matrix::Recurrent, Matrix::Input] {
        let in_blocks: usize = arch
            .connections()
            .iter()
            .filter(|c| m.holds(c.src))
            .map(|c| {
                let n_dst = arch.regions()[c.dst].units;
                let zeros = c.sparsity.map_or(0, |s| (s * n_dst as f64).ceil() as usize);
                (n_dst - zeros) * arch.source_units(c.src)
            })
            .sum();
        let ones = values(net.mask(m)).iter().filter(|&&v| v != 0.0).count();
        assert_eq!(ones, in_blocks, "{}", m.name());
    }
}

#[test]
fn same_seed_same_masks_and_weights_other_seed_other_masks() {
    let a = Network::with_seed(cbgtcl(), 3, &Device::Cpu).unwrap();
    let b = Network::with_seed(cbgtcl(), 3, &Device::Cpu).unwrap();
    let c = Network::with_seed(cbgtcl(), 4, &Device::Cpu).unwrap();
    assert_eq!(values(a.mask(Matrix::Recurrent)), values(b.mask(Matrix::Recurrent)));
    assert_eq!(values(a.mask(Matrix::Input)), values(b.mask(Matrix::Input)));
    assert_eq!(values(a.w_rec().as_tensor()), values(b.w_rec().as_tensor()));
    assert_eq!(values(a.w_inp().as_tensor()), values(b.w_inp().as_tensor()));
    assert_ne!(values(a.mask(Matrix::Recurrent)), values(c.mask(Matrix::Recurrent)));
    assert_ne!(values(a.w_rec().as_tensor()), values(c.w_rec().as_tensor()));
    assert_eq!((a.seed(), c.seed()), (3, 4));
}

#[test]
fn masks_do_not_depend_on_declaration_order() {
    let forward = r#"{
        "recurrent_regions": [{"name": "a", "num_units": 20, "sign": "pos"},
                              {"name": "b", "num_units": 15, "sign": "neg"},
                              {"name": "c", "num_units": 10, "sign": "pos"}],
        "input_regions": [{"name": "u", "num_units": 4, "sign": "pos"}, {"name": "v", "num_units": 3, "sign": "pos"}],
        "recurrent_connections": [{"src_region": "a", "dst_region": "b", "sparsity": 0.5},
                                  {"src_region": "b", "dst_region": "a", "sparsity": 0.3},
                                  {"src_region": "c", "dst_region": "a", "sparsity": 0.7},
                                  {"src_region": "a", "dst_region": "c"}],
        "input_connections": [{"src_region": "u", "dst_region": "a", "sparsity": 0.5},
                              {"src_region": "v", "dst_region": "c", "sparsity": 0.2}]
    }"#;
    let backward = r#"{
        "recurrent_regions": [{"name": "c", "num_units": 10, "sign": "pos"},
                              {"name": "b", "num_units": 15, "sign": "neg"},
                              {"name": "a", "num_units": 20, "sign": "pos"}],
        "input_regions": [{"name": "v", "num_units": 3, "sign": "pos"}, {"name": "u", "num_units": 4, "sign": "pos"}],
        "recurrent_connections": [{"src_region": "a", "dst_region": "c"},
                                  {"src_region": "c", "dst_region": "a", "sparsity": 0.7},
                                  {"src_region": "b", "dst_region": "a", "sparsity": 0.3},
                                  {"src_region": "a", "dst_region": "b", "sparsity": 0.5}],
        "input_connections": [{"src_region": "v", "dst_region": "c", "sparsity": 0.2},
                              {"src_region": "u", "dst_region": "a", "sparsity": 0.5}]
    }"#;
    let x = Network::with_seed(compile_text(forward), 11, &Device::Cpu).unwrap();
    let y = Network::with_seed(compile_text(backward), 11, &Device::Cpu).unwrap();
    for (src, dst) in [("a", "b"), ("b", "a"), ("c", "a"), ("a", "c"), ("a", "a"), ("b", "c")] {
        assert_eq!(
            block(&x, Matrix::Recurrent, src, dst),
            block(&y, Matrix::Recurrent, src, dst),
            "{src} -> {dst}"
        );
    }
    for (src, dst) in [("u", "a"), ("v", "c"), ("u", "b")] {
        assert_eq!(
            block(&x, Matrix::Input, src, dst),
            block(&y, Matrix::Input, src, dst),
            "{src} -> {dst}"
        );
    }
    // Initial weights too: both depend only on (seed, source, destination, final sizes).
    let wx = x.projection("a", "b").unwrap();
    let wy = y.projection("a", "b").unwrap();
    assert_eq!(values(&wx), values(&wy));
    assert!(values(&wx).iter().all(|&v| v <= 0.0), "b is inhibitory");
}

#[test]
fn sign_matrix_is_source_sign_times_mask() {
    let net = Network::new(cbgtcl(), &Device::Cpu).unwrap();
    let arch = net.architecture();
    let (mask, sign) =
        (values(net.mask(Matrix::Recurrent)), values(net.sign_matrix(Matrix::Recurrent)));
    let h = net.hidden_size();
    for r in arch.regions() {
        for col in r.range() {
            for row in 0..h {
                assert_eq!(sign[row * h + col], r.sign.value() as f32 * mask[row * h + col]);
            }
        }
    }
}

#[test]
fn validator_names_the_first_block_that_differs() {
    let arch = cbgtcl();
    let net = Network::new(arch.clone(), &Device::Cpu).unwrap();
    let (mut mask, mut sign) =
        (host(net.mask(Matrix::Recurrent)), host(net.sign_matrix(Matrix::Recurrent)));
    // thal -> d1 has sparsity 0.25: flip one zero of its first column to one.
    let (thal, d1) = (net.region_range("thal").unwrap(), net.region_range("d1").unwrap());
    let row = d1.clone().find(|&r| mask.get(r, thal.start) == 0.0).unwrap();
    mask.data[row * mask.cols + thal.start] = 1.0;
    sign.data[row * sign.cols + thal.start] = 1.0;
    let err = masks::check(&arch, Matrix::Recurrent, &mask, &sign).unwrap_err();
    assert!(
        err.starts_with("W_rec block thal -> d1: column 0 of the mask has 12 zeros, expected"),
        "{err}"
    );

    // A weight between unconnected regions (gpe -> d1).
    let (mut mask, sign) =
        (host(net.mask(Matrix::Recurrent)), host(net.sign_matrix(Matrix::Recurrent)));
    let gpe = net.region_range("gpe").unwrap();
    mask.data[d1.start * mask.cols + gpe.start] = 1.0;
    let err = masks::check(&arch, Matrix::Recurrent, &mask, &sign).unwrap_err();
    assert!(err.starts_with("W_rec block gpe -> d1: the regions are not connected"), "{err}");

    // A sign that breaks Dale's law (iti is excitatory).
    let (mask, mut sign) = (host(net.mask(Matrix::Input)), host(net.sign_matrix(Matrix::Input)));
    let k = (0..sign.data.len()).find(|&k| sign.data[k] == 1.0).unwrap();
    sign.data[k] = -1.0;
    let err = masks::check(&arch, Matrix::Input, &mask, &sign).unwrap_err();
    assert!(err.starts_with("W_inp block iti -> d1: sign matrix"), "{err}");
}
