//! The analysis figures (fixed points in PC space, eigenvalue spectra, flow field, current
//! matrix) are drawn as PNG files, and inconsistent data is an error, not a panic.

use std::path::Path;

use mrnn_runtime::plot::{self, FlowPlot, Marker, Spectrum};

fn assert_png(path: &Path, min_bytes: u64) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[1..4], b"PNG", "{}", path.display());
    assert!(bytes.len() as u64 > min_bytes, "{}: {} bytes", path.display(), bytes.len());
}

fn markers() -> Vec<Marker> {
    vec![
        Marker { coords: vec![1.0, 1.0, 1.0], group: "stable".into() },
        Marker { coords: vec![-1.0, -1.0, -1.0], group: "stable".into() },
        Marker { coords: vec![0.0, 0.0, 0.0], group: "saddle".into() },
    ]
}

#[test]
fn draws_state_space_and_spectra() {
    let dir = tempfile::tempdir().unwrap();
    let trajectory: Vec<Vec<f64>> = (0..50)
        .map(|t| {
            let s = f64::from(t) / 10.0;
            vec![s.cos(), s.sin(), 0.1 * s]
        })
        .collect();
    let three = dir.path().join("fp3.png");
    plot::state_space_figure(
        &three,
        "fixed points",
        std::slice::from_ref(&trajectory),
        &markers(),
        &["PC1", "PC2", "PC3"],
    )
    .unwrap();
    assert_png(&three, 20_000);
    // Two coordinates: the plane alone.
    let flat: Vec<Vec<f64>> = trajectory.iter().map(|p| p[..2].to_vec()).collect();
    let two = dir.path().join("fp2.png");
    let m2: Vec<Marker> =
        markers().into_iter().map(|m| Marker { coords: m.coords[..2].to_vec(), ..m }).collect();
    plot::state_space_figure(&two, "fixed points", &[flat], &m2, &[]).unwrap();
    assert_png(&two, 10_000);
    let one = vec![Marker { coords: vec![1.0], group: "stable".into() }];
    assert!(plot::state_space_figure(&dir.path().join("x.png"), "t", &[], &one, &[]).is_err());

    let spectra: Vec<Spectrum> = (0..5)
        .map(|k| Spectrum {
            title: format!("#{k}"),
            values: vec![(0.5, 0.2), (0.5, -0.2), (1.2 * f64::from(k) / 4.0, 0.0)],
            group: if k < 4 { "stable".into() } else { "saddle".into() },
        })
        .collect();
    let path = dir.path().join("spectra.png");
    plot::spectra_figure(&path, "eigenvalues", &spectra).unwrap();
    assert_png(&path, 10_000);
}

#[test]
fn draws_flow_fields_and_current_matrices() {
    let dir = tempfile::tempdir().unwrap();
    let xs: Vec<f64> = (0..9).map(|i| f64::from(i) - 4.0).collect();
    let ys = xs.clone();
    let points: Vec<(f64, f64)> =
        ys.iter().flat_map(|&y| xs.iter().map(move |&x| (x, y))).collect();
    // A rotation that decays towards the origin.
    let velocity: Vec<[f64; 2]> =
        points.iter().map(|&(x, y)| [-y - 0.1 * x, x - 0.1 * y]).collect();
    let speed: Vec<f64> = velocity.iter().map(|v| v[0].hypot(v[1])).collect();
    let spiral: Vec<[f64; 2]> = (0..100)
        .map(|t| {
            let s = f64::from(t) / 10.0;
            let r = 3.0 * (-0.1 * s).exp();
            [r * s.cos(), r * s.sin()]
        })
        .collect();
    let flow = FlowPlot {
        xs: &xs,
        ys: &ys,
        velocity: &velocity,
        speed: &speed,
        trajectories: &[spiral],
        markers: &[Marker { coords: vec![0.0, 0.0], group: "stable".into() }],
        labels: ["PC1", "PC2"],
    };
    let path = dir.path().join("flow.png");
    plot::flow_figure(&path, "flow", &flow).unwrap();
    assert_png(&path, 20_000);
    let short = FlowPlot { speed: &speed[1..], ..flow };
    assert!(plot::flow_figure(&dir.path().join("bad.png"), "flow", &short).is_err());

    let rows = vec!["exc".to_owned(), "inhib".to_owned()];
    let cols = vec!["exc".to_owned(), "inhib".to_owned(), "inp (input)".to_owned()];
    let values = vec![vec![Some(0.3), Some(-0.8), Some(0.05)], vec![Some(0.6), None, Some(1e-4)]];
    let path = dir.path().join("currents.png");
    plot::matrix_figure(&path, "currents", &rows, &cols, &values, "mean current").unwrap();
    assert_png(&path, 5_000);
    let magnitudes = vec![vec![Some(0.3), Some(0.8), Some(0.0)], vec![Some(0.6), None, Some(2.0)]];
    plot::matrix_figure(&path, "|currents|", &rows, &cols, &magnitudes, "|current|").unwrap();
    assert!(plot::matrix_figure(&path, "t", &rows, &cols, &values[..1], "x").is_err());
    assert!(plot::matrix_figure(&path, "t", &[], &cols, &[], "x").is_err());
}

#[test]
fn colormaps_span_their_ends() {
    assert_eq!(plot::viridis(0.0), plotters::style::RGBColor(68, 1, 84));
    assert_eq!(plot::viridis(1.0), plotters::style::RGBColor(253, 231, 37));
    assert_eq!(plot::viridis(f64::NAN), plot::viridis(0.0));
    assert_eq!(plot::diverging(0.0), plotters::style::RGBColor(247, 247, 247));
    assert_eq!(plot::diverging(-2.0), plot::diverging(-1.0));
    assert_eq!(plot::sequential(0.0), plotters::style::RGBColor(255, 255, 255));
    assert_eq!(plot::group_color("stable"), plot::PALETTE[0]);
}
