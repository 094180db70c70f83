//! Spectral-radius scaling of the initial recurrent weights, and the spectral radius of
//! matrices with the structure of relu Jacobians (repeated eigenvalues, zero columns).

use mrnn_runtime::{Device, Error, Network, Tensor, linalg};

/// An E/I network with three regions, sparse and dense blocks, and an optional "model" object.
fn config(model: &str) -> String {
    format!(
        r#"{{"recurrent_regions": [{{"name": "e1", "num_units": 40, "sign": "pos"}},
                                  {{"name": "e2", "num_units": 30, "sign": "pos"}},
                                  {{"name": "i", "num_units": 20, "sign": "neg"}}],
            "input_regions": [{{"name": "u", "num_units": 3, "sign": "pos"}}],
            "recurrent_connections": [{{"src_region": "e1", "dst_region": "e1", "sparsity": 0.8}},
                                      {{"src_region": "e1", "dst_region": "e2", "sparsity": 0.5}},
                                      {{"src_region": "e2", "dst_region": "e1"}},
                                      {{"src_region": "e2", "dst_region": "i"}},
                                      {{"src_region": "i", "dst_region": "e1", "sparsity": 0.25}},
                                      {{"src_region": "i", "dst_region": "e2"}}],
            "input_connections": [{{"src_region": "u", "dst_region": "e1"}}]
            {model}}}"#
    )
}

fn build(text: &str) -> Network {
    let arch =
        mrnn_ir::compile_json(text, "ei.json").unwrap_or_else(|r| panic!("{r}")).architecture;
    Network::new(arch, &Device::Cpu).unwrap()
}

#[test]
fn effective_matrix_has_the_declared_spectral_radius() {
    let unscaled = build(&config(""));
    let before = linalg::spectral_radius(&unscaled.w_rec_eff().unwrap()).unwrap();
    assert!(before > 0.0);
    let raw = unscaled.w_rec().as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for rho in [0.9, 1.5] {
        let net = build(&config(&format!(r#", "model": {{"spectral_radius": {rho}}}"#)));
        let got = linalg::spectral_radius(&net.w_rec_eff().unwrap()).unwrap();
        assert!((got - rho).abs() < 1e-4, "spectral radius {got}, expected {rho}");
        // The same seed draws the same raw weights: scaling multiplies them all by rho / before.
        let scaled = net.w_rec().as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let c = rho / before;
        for (a, b) in raw.iter().zip(&scaled) {
            assert!((f64::from(*a) * c - f64::from(*b)).abs() <= 1e-6 * (1.0 + f64::from(b.abs())));
        }
        // Masks are not touched.
        assert_eq!(
            net.mask(mrnn_runtime::Matrix::Recurrent)
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            unscaled
                .mask(mrnn_runtime::Matrix::Recurrent)
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        );
    }
}

#[test]
fn feedforward_network_cannot_be_scaled() {
    let json = r#"{"recurrent_regions": [{"name": "a", "num_units": 4, "sign": "pos"},
                                         {"name": "b", "num_units": 4, "sign": "pos"}],
        "recurrent_connections": [{"src_region": "a", "dst_region": "b"}],
        "model": {"spectral_radius": 1.0}}"#;
    let arch =
        mrnn_ir::compile_json(json, "ff.json").unwrap_or_else(|r| panic!("{r}")).architecture;
    let err = Network::new(arch, &Device::Cpu).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    assert!(err.to_string().contains("spectral radius 0"), "{err}");
}

#[test]
fn spectral_radius_of_matrices_with_repeated_eigenvalues() {
    // [[0.9 I, B], [0, C]]: 0.9 fifty times (the leak of silent units) and the eigenvalues of
    // C, a rotation scaled by 1.25 (a complex pair of modulus 1.25), coupled one way.
    let n = 52;
    let mut m = vec![0f32; n * n];
    for i in 0..50 {
        m[i * n + i] = 0.9;
        m[i * n + 50] = 0.3;
        m[i * n + 51] = -0.2;
    }
    let (c, s) = (1.25 * 0.6f32, 1.25 * 0.8f32);
    m[50 * n + 50] = c;
    m[50 * n + 51] = -s;
    m[51 * n + 50] = s;
    m[51 * n + 51] = c;
    let t = Tensor::from_vec(m, (n, n), &Device::Cpu).unwrap();
    assert!((linalg::spectral_radius(&t).unwrap() - 1.25).abs() < 1e-6);
    let values = linalg::eigenvalues(&t).unwrap();
    assert_eq!(values.iter().filter(|z| (z.re - 0.9).abs() < 1e-6 && z.im == 0.0).count(), 50);
}

#[test]
fn a_relu_loop_of_eight_regions_is_scaled() {
    // mRNNTorch's CBGTCL circuit (350 units, 8 regions, relu), scaled at construction.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/reference/CBGTCL.json"
    ))
    .unwrap();
    let mut spec: serde_json::Value = serde_json::from_str(&text).unwrap();
    spec["model"] = serde_json::json!({"activation": "relu", "spectral_radius": 0.95});
    let net = build(&spec.to_string());
    let got = linalg::spectral_radius(&net.w_rec_eff().unwrap()).unwrap();
    assert!((got - 0.95).abs() < 1e-4, "spectral radius {got}");
}
