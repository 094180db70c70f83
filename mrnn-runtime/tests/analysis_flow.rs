//! Flow fields on a 2-region linear network whose velocity is known in closed form:
//! `v(x) = a ((W - I) x + b)` with `a = 1/2`, region `a` (2 units) on the PCA plane, region `b`
//! (1 unit) static; and the linearized flow at the fixed point `x* = (I - W)^-1 b`, which for a
//! linear network is the flow itself.

use mrnn_runtime::analysis::{self, FlowOptions, Others};
use mrnn_runtime::{Device, Network, Tensor};

/// `W` (rows: destination a0, a1, b0) and the tonic inputs.
const W: [[f64; 3]; 3] = [[0.5, -0.2, 0.4], [0.1, 0.3, -0.3], [0.2, 0.1, -0.5]];
const B: [f64; 3] = [0.1, 0.1, -0.2];
const ALPHA: f64 = 0.5;

fn network(activation: &str) -> Network {
    let json = format!(
        r#"{{
        "model": {{"dynamics": "leaky", "dt": 1.0, "tau": 2.0, "activation": "{activation}",
                  "rec_constrained": false}},
        "recurrent_regions": [
            {{"name": "a", "num_units": 2, "base_firing": 0.1}},
            {{"name": "b", "num_units": 1, "base_firing": -0.2}}
        ],
        "recurrent_connections": [
            {{"src_region": "a", "dst_region": "a"}}, {{"src_region": "b", "dst_region": "a"}},
            {{"src_region": "a", "dst_region": "b"}}, {{"src_region": "b", "dst_region": "b"}}
        ]
    }}"#
    );
    let arch = mrnn_ir::compile_json(&json, "two.json").unwrap().architecture;
    let net = Network::new(arch, &Device::Cpu).unwrap();
    let w: Vec<f32> = W.iter().flatten().map(|&v| v as f32).collect();
    net.set_w_rec(&Tensor::from_vec(w, (3, 3), &Device::Cpu).unwrap()).unwrap();
    net
}

/// Two short trajectories `[2, 4, 3]`, written out.
fn trajectories() -> (Tensor, Vec<[f64; 3]>) {
    let points = vec![
        [0.0, 0.0, 0.5],
        [1.0, 0.5, 0.4],
        [2.0, 0.8, 0.1],
        [2.5, 1.5, -0.2],
        [-1.0, 0.3, 0.3],
        [-0.5, -0.6, 0.0],
        [0.2, -1.0, -0.4],
        [0.8, -1.2, -0.5],
    ];
    let flat: Vec<f32> = points.iter().flatten().map(|&v| v as f32).collect();
    (Tensor::from_vec(flat, (2, 4, 3), &Device::Cpu).unwrap(), points)
}

/// `a (W x + b - x)` restricted to rows `rows`.
fn velocity(x: &[f64; 3], rows: &[usize]) -> Vec<f64> {
    rows.iter()
        .map(|&i| ALPHA * ((0..3).map(|j| W[i][j] * x[j]).sum::<f64>() + B[i] - x[i]))
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[test]
fn region_flow_with_the_other_region_at_its_mean() {
    let net = network("linear");
    let (states, points) = trajectories();
    let options = FlowOptions { regions: vec!["a".into()], grid: 7, ..FlowOptions::default() };
    let field = analysis::flow_field(&net, &states, &options).unwrap();
    assert_eq!(field.units, [0, 1]);
    assert_eq!((field.xs.len(), field.ys.len(), field.velocity.len()), (7, 7, 49));
    // The plane: through the mean of region a's samples, spanned by orthonormal axes.
    let mean_a = [
        points.iter().map(|p| p[0]).sum::<f64>() / 8.0,
        points.iter().map(|p| p[1]).sum::<f64>() / 8.0,
    ];
    assert!(close(field.pca.mean[0], mean_a[0], 1e-6) && close(field.pca.mean[1], mean_a[1], 1e-6));
    let c = &field.pca.components;
    assert!(close(dot(&c[0], &c[0]), 1.0, 1e-12) && dot(&c[0], &c[1]).abs() < 1e-12);
    // The grid covers the projected samples, 15% wider on each side.
    let proj: Vec<f64> =
        points.iter().map(|p| dot(&c[0], &[p[0] - mean_a[0], p[1] - mean_a[1]])).collect();
    let (lo, hi) =
        proj.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    assert!(close(field.xs[0], lo - 0.15 * (hi - lo), 1e-6));
    assert!(close(field.xs[6], hi + 0.15 * (hi - lo), 1e-6));
    // Region b sits at its mean; the velocity of region a is a ((W - I) x + b)_a.
    let mean_b = points.iter().map(|p| p[2]).sum::<f64>() / 8.0;
    for (k, p) in field.points().iter().enumerate() {
        let s = [
            mean_a[0] + p[0] * c[0][0] + p[1] * c[1][0],
            mean_a[1] + p[0] * c[0][1] + p[1] * c[1][1],
        ];
        let v = velocity(&[s[0], s[1], mean_b], &[0, 1]);
        let full = v[0].hypot(v[1]);
        assert!(close(field.full_speed[k], full, 1e-5), "{} vs {full}", field.full_speed[k]);
        // Two units, two axes: the plane holds the whole velocity.
        assert!(close(field.speed[k], full, 1e-5));
        assert!(close(field.velocity[k][0], dot(&c[0], &v), 1e-5));
        assert!(close(field.velocity[k][1], dot(&c[1], &v), 1e-5));
    }
    // The projected trajectories are the samples' coordinates.
    assert_eq!(field.trajectories.len(), 2);
    assert!(close(field.trajectories[1][2][0], proj[6], 1e-6));
}

#[test]
fn other_regions_from_a_given_state_or_the_nearest_sample() {
    let net = network("linear");
    let (states, points) = trajectories();
    let given = FlowOptions {
        regions: vec!["a".into()],
        grid: 5,
        others: Others::State(vec![9.0, 9.0, 0.7]),
        ..FlowOptions::default()
    };
    let field = analysis::flow_field(&net, &states, &given).unwrap();
    let c = &field.pca.components;
    let m = &field.pca.mean;
    let plane = |p: &[f64; 2]| {
        [m[0] + p[0] * c[0][0] + p[1] * c[1][0], m[1] + p[0] * c[0][1] + p[1] * c[1][1]]
    };
    for (k, p) in field.points().iter().enumerate() {
        let s = plane(p);
        let v = velocity(&[s[0], s[1], 0.7], &[0, 1]);
        assert!(close(field.full_speed[k], v[0].hypot(v[1]), 1e-5));
    }
    let nearest = FlowOptions { others: Others::Nearest, ..given };
    let field = analysis::flow_field(&net, &states, &nearest).unwrap();
    for (k, p) in field.points().iter().enumerate() {
        let s = plane(p);
        let distance = |q: &[f64; 3]| {
            let d = [q[0] - s[0], q[1] - s[1]];
            dot(&c[0], &d).powi(2) + dot(&c[1], &d).powi(2)
        };
        let near = points.iter().min_by(|a, b| distance(a).total_cmp(&distance(b))).unwrap();
        let v = velocity(&[s[0], s[1], near[2]], &[0, 1]);
        assert!(close(field.full_speed[k], v[0].hypot(v[1]), 1e-5));
    }
}

#[test]
fn linearized_flow_at_the_fixed_point_of_a_linear_network_is_the_flow() {
    let net = network("linear");
    let (states, _) = trajectories();
    // x* = (I - W)^-1 b.
    let m = nalgebra::Matrix3::from_fn(|i, j| f64::from(u8::from(i == j)) - W[i][j]);
    let star = m.try_inverse().unwrap() * nalgebra::Vector3::from_row_slice(&B);
    let v_star = velocity(&[star[0], star[1], star[2]], &[0, 1, 2]);
    assert!(v_star.iter().all(|v| v.abs() < 1e-12));
    let field =
        analysis::flow_field(&net, &states, &FlowOptions { grid: 6, ..FlowOptions::default() })
            .unwrap();
    assert_eq!(field.units, [0, 1, 2]);
    let fp = Tensor::from_slice(star.as_slice(), 3, &Device::Cpu).unwrap();
    let linear = field.linearized(&net, &fp, None).unwrap();
    assert_eq!(linear.xs, field.xs);
    let c = &field.pca.components;
    for k in 0..field.velocity.len() {
        for d in 0..2 {
            assert!(close(linear.velocity[k][d], field.velocity[k][d], 1e-5));
        }
        // By hand: a (W - I)(s - x*), s on the plane.
        let p = field.points()[k];
        let s: Vec<f64> =
            (0..3).map(|j| field.pca.mean[j] + p[0] * c[0][j] + p[1] * c[1][j]).collect();
        let v = velocity(&[s[0], s[1], s[2]], &[0, 1, 2]);
        assert!(close(linear.velocity[k][0], dot(&c[0], &v), 1e-6));
        let full = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!(close(linear.full_speed[k], full, 1e-6));
    }
}

#[test]
fn nonlinear_flow_is_one_step_of_the_network() {
    let net = network("tanh");
    let (states, points) = trajectories();
    let options = FlowOptions { regions: vec!["a".into()], grid: 4, ..FlowOptions::default() };
    let field = analysis::flow_field(&net, &states, &options).unwrap();
    let mean_b = points.iter().map(|p| p[2]).sum::<f64>() / 8.0;
    let c = &field.pca.components;
    for (k, p) in field.points().iter().enumerate() {
        let s: Vec<f64> =
            (0..2).map(|j| field.pca.mean[j] + p[0] * c[0][j] + p[1] * c[1][j]).collect();
        let x = [s[0] as f32, s[1] as f32, mean_b as f32];
        let x = Tensor::from_slice(&x, (1, 3), &Device::Cpu).unwrap();
        let u = Tensor::zeros((1, 0), mrnn_runtime::DType::F32, &Device::Cpu).unwrap();
        let next: Vec<f32> = net.step(&x, &u).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let v = [f64::from(next[0]) - s[0], f64::from(next[1]) - s[1]];
        assert!((field.full_speed[k] - v[0].hypot(v[1])).abs() < 1e-5);
    }
}

#[test]
fn rejects_bad_regions_shapes_and_grids() {
    let net = network("linear");
    let (states, _) = trajectories();
    let run =
        |o: FlowOptions, s: &Tensor| analysis::flow_field(&net, s, &o).unwrap_err().to_string();
    let one = FlowOptions { regions: vec!["b".into()], ..FlowOptions::default() };
    assert!(run(one, &states).contains("at least 2 units"));
    let unknown = FlowOptions { regions: vec!["c".into()], ..FlowOptions::default() };
    assert!(run(unknown, &states).contains("unknown region `c`"));
    let flat = states.reshape((8, 3)).unwrap();
    assert!(run(FlowOptions::default(), &flat).contains("[B, T, 3]"));
    assert!(run(FlowOptions { grid: 1, ..FlowOptions::default() }, &states).contains("at least 2"));
    let short = FlowOptions { others: Others::State(vec![0.0]), ..FlowOptions::default() };
    assert!(run(short, &states).contains("a full state"));
    let field = analysis::flow_field(&net, &states, &FlowOptions::default()).unwrap();
    let wrong = Tensor::zeros(2, mrnn_runtime::DType::F32, &Device::Cpu).unwrap();
    assert!(field.linearized(&net, &wrong, None).is_err());
    // Results round-trip through their files.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flow.safetensors");
    field.save_safetensors(&path).unwrap();
    let back = mrnn_runtime::StateDict::read(&path).unwrap();
    back.require("velocity", &[21, 21, 2]).unwrap();
    back.require("components", &[2, 3]).unwrap();
    assert_eq!(field.to_json()["speed"].as_array().unwrap().len(), 441);
}

#[test]
fn absurd_grids_and_non_finite_settings_are_refused_before_computing() {
    let net = network("linear");
    let (states, _) = trajectories();
    let refused = |options: FlowOptions| analysis::flow_field(&net, &states, &options).unwrap_err();
    // 10^12 grid points: refused with the estimate, nothing allocated.
    let e = refused(FlowOptions { grid: 1_000_000, ..FlowOptions::default() });
    assert!(matches!(e, mrnn_runtime::Error::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("1000000x1000000 grid"), "{e}");
    let e = refused(FlowOptions {
        input: Some(vec![]),
        others: Others::State(vec![0.0, f64::NAN, 0.0]),
        ..FlowOptions::default()
    });
    assert!(e.to_string().contains("the state of the other regions must be finite"), "{e}");
    // Trajectories of a diverged network.
    let bad = Tensor::from_vec(vec![f32::NAN; 6], (1, 2, 3), &Device::Cpu).unwrap();
    let e = analysis::flow_field(&net, &bad, &FlowOptions::default()).unwrap_err();
    assert!(e.to_string().contains("NaN or infinite states"), "{e}");
    // And the linearized flow around a point that is not finite.
    let field = analysis::flow_field(&net, &states, &FlowOptions::default()).unwrap();
    let point = Tensor::from_vec(vec![0.0, f64::INFINITY, 0.0], 3, &Device::Cpu).unwrap();
    let e = field.linearized(&net, &point, None).unwrap_err();
    assert!(e.to_string().contains("the fixed point must be finite"), "{e}");
}
