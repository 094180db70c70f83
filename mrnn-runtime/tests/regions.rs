//! Region queries: ranges, activity, weight blocks, projections and recombination of states.
#![allow(clippy::float_cmp, reason = "queries copy entries: the values must be exactly the same")]

mod common;

use common::values;
use mrnn_runtime::{DType, Device, Error, Network, Tensor};

/// `a` is split into `a_exc` and `a_inh` with `b` declared between them, so `a` is not
/// contiguous.
fn network() -> Network {
    let json = r#"{
        "recurrent_regions": [{"name": "a_exc", "num_units": 3, "sign": "pos", "parent_region": "a"},
                              {"name": "b", "num_units": 2, "sign": "neg"},
                              {"name": "a_inh", "num_units": 1, "sign": "neg", "parent_region": "a"},
                              {"name": "c", "num_units": 2, "sign": "pos"}],
        "input_regions": [{"name": "u", "num_units": 2, "sign": "pos"}, {"name": "v", "num_units": 1, "sign": "pos"}],
        "recurrent_connections": [{"src_region": "a_exc", "dst_region": "b"}, {"src_region": "b", "dst_region": "a_exc"},
                                  {"src_region": "a_inh", "dst_region": "a_exc"}, {"src_region": "a_exc", "dst_region": "a_inh"},
                                  {"src_region": "c", "dst_region": "b"}, {"src_region": "b", "dst_region": "c"}],
        "input_connections": [{"src_region": "u", "dst_region": "a_exc"}, {"src_region": "v", "dst_region": "c"}]
    }"#;
    let arch =
        mrnn_ir::compile_json(json, "parts.json").unwrap_or_else(|r| panic!("{r}")).architecture;
    Network::new(arch, &Device::Cpu).unwrap()
}

/// `[2, 8]` with entry (batch k, unit j) = 10 k + j.
fn state() -> Tensor {
    let v: Vec<f32> = (0..2).flat_map(|k| (0..8).map(move |j| (10 * k + j) as f32)).collect();
    Tensor::from_vec(v, (2, 8), &Device::Cpu).unwrap()
}

#[test]
fn ranges() {
    let net = network();
    assert_eq!(net.region_range("a_exc").unwrap(), 0..3);
    assert_eq!(net.region_range("b").unwrap(), 3..5);
    assert_eq!(net.region_range("c").unwrap(), 6..8);
    assert!(
        matches!(net.region_range("a"), Err(Error::Invalid(_))),
        "a's children are not contiguous"
    );
    assert_eq!(net.input_range("u").unwrap(), 0..2);
    assert_eq!(net.input_range("v").unwrap(), 2..3);
    assert_eq!(net.hidden_units(&["c", "a"]).unwrap(), [6, 7, 0, 1, 2, 5]);
}

#[test]
fn activity_in_listed_order_with_parents_expanded() {
    let net = network();
    let x = state();
    let got = net.activity(&x, &["c", "a"]).unwrap();
    assert_eq!(got.dims(), &[2, 6]);
    assert_eq!(values(&got), [6.0, 7.0, 0.0, 1.0, 2.0, 5.0, 16.0, 17.0, 10.0, 11.0, 12.0, 15.0]);
    // Any leading dimensions.
    let x3 = x.unsqueeze(1).unwrap().repeat((1, 4, 1)).unwrap();
    assert_eq!(net.activity(&x3, &["b"]).unwrap().dims(), &[2, 4, 2]);
}

#[test]
fn weight_subset_and_projection_read_the_effective_matrix() {
    let net = network();
    let w = net.w_rec_eff().unwrap().to_vec2::<f32>().unwrap();
    // Listed as ["c", "a_exc"]: rows and columns in declaration order (a_exc, then c).
    let sub = net.weight_subset(&["c", "a_exc"]).unwrap().to_vec2::<f32>().unwrap();
    let units = [0, 1, 2, 6, 7];
    for (i, &r) in units.iter().enumerate() {
        for (j, &c) in units.iter().enumerate() {
            assert_eq!(sub[i][j], w[r][c]);
        }
    }
    // b -> a (rows of a_exc and a_inh, columns of b).
    let p = net.projection("a", "b").unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(p.len(), 4);
    for (i, &r) in [0, 1, 2, 5].iter().enumerate() {
        assert_eq!(p[i], w[r][3..5]);
    }
    assert!(
        p[..3].iter().flatten().all(|&v| v <= 0.0) && p[..3].iter().flatten().any(|&v| v < 0.0)
    );
    // Input sources read W_inp_eff.
    let wi = net.w_inp_eff().unwrap().to_vec2::<f32>().unwrap();
    let p = net.projection("c", "v").unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(p, [wi[6][2..3].to_vec(), wi[7][2..3].to_vec()]);
    assert!(p.iter().flatten().all(|&v| v > 0.0));
}

#[test]
fn combine_scatters_partial_states() {
    let net = network();
    let x = state();
    let first = net.activity(&x, &["c", "a_inh"]).unwrap();
    let second = net.activity(&x, &["b", "a_exc"]).unwrap();
    let full = net.combine((&first, &["c", "a_inh"]), (&second, &["b", "a_exc"])).unwrap();
    assert_eq!(values(&full), values(&x));
    // Units in neither part are zero.
    let part = net.combine((&first, &["c", "a_inh"]), (&zeros(2, 0), &[])).unwrap();
    assert_eq!(values(&part)[..8], [0.0, 0.0, 0.0, 0.0, 0.0, 5.0, 6.0, 7.0]);
    // Overlap is an error; so is a part of the wrong width.
    let err = net
        .combine((&first, &["c", "a_inh"]), (&net.activity(&x, &["a"]).unwrap(), &["a"]))
        .unwrap_err();
    assert!(err.to_string().contains("unit 5 (region `a_inh`) is in both parts"), "{err}");
    assert!(matches!(
        net.combine((&first, &["c"]), (&second, &["b", "a_exc"])),
        Err(Error::Shape { .. })
    ));
}

#[test]
fn combine_is_differentiable() {
    let net = network();
    let a = mrnn_runtime::Var::from_tensor(&zeros(2, 2)).unwrap();
    let b = zeros(2, 6);
    let full = net.combine((a.as_tensor(), &["c"]), (&b, &["a", "b"])).unwrap();
    let weights = Tensor::arange(0f32, 8.0, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let loss = full.broadcast_mul(&weights).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    assert_eq!(values(grads.get(a.as_tensor()).unwrap()), [6.0, 7.0, 6.0, 7.0]);
}

fn zeros(b: usize, n: usize) -> Tensor {
    Tensor::zeros((b, n), DType::F32, &Device::Cpu).unwrap()
}
