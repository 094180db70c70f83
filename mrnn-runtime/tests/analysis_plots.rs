//! Every figure function of `mrnn_runtime::plot` writes a PNG of the documented size for normal
//! data and for edge cases (one region, one unit, one step, constant data, NaN, 40 regions, long
//! region names); nothing touches a figure's edges (no title, label or legend is cut off); data
//! that are not finite are left out and a red note says so; inconsistent data is an error, not
//! a panic.
//!
//! Set `MRNN_KEEP_FIGURES=DIR` to keep the figures in `DIR` and look at them.

use std::path::{Path, PathBuf};

use image::RgbImage;
use mrnn_runtime::analysis;
use mrnn_runtime::plot::{
    self, CurrentGrid, FlowPlot, Marker, RegionActivity, Series, Spectrum, TimeCourse, TrialPanel,
};
use mrnn_runtime::{Device, Forward, Network, Tensor};
use plotters::style::RGBColor;

/// The color of the notes that say what was not drawn.
const NOTE: RGBColor = RGBColor(178, 24, 43);

/// Where figures go: `MRNN_KEEP_FIGURES` or a temporary directory.
struct Out {
    _tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
}

fn out(test: &str) -> Out {
    if let Some(dir) = std::env::var_os("MRNN_KEEP_FIGURES") {
        let dir = PathBuf::from(dir).join(test);
        std::fs::create_dir_all(&dir).unwrap();
        return Out { _tmp: None, dir };
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    Out { _tmp: Some(tmp), dir }
}

impl Out {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Reads a figure: a PNG whose outermost pixels are all white (nothing drawn runs off the
/// figure).
fn figure(path: &Path) -> RgbImage {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[1..4], b"PNG", "{}", path.display());
    let image =
        image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap().to_rgb8();
    let (w, h) = image.dimensions();
    for (x, y) in (0..w)
        .flat_map(|x| [(x, 0), (x, 1), (x, h - 2), (x, h - 1)])
        .chain((0..h).flat_map(|y| [(0, y), (1, y), (w - 2, y), (w - 1, y)]))
    {
        let p = image.get_pixel(x, y).0;
        assert_eq!(p, [255, 255, 255], "{}: ink at the edge, pixel ({x}, {y})", path.display());
    }
    let inked = image.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    assert!(inked > (w * h / 50) as usize, "{}: almost empty", path.display());
    image
}

fn has_color(image: &RgbImage, c: RGBColor) -> bool {
    image.pixels().any(|p| p.0 == [c.0, c.1, c.2])
}

/// A note says that values were left out.
fn has_note(image: &RgbImage) -> bool {
    has_color(image, NOTE)
}

fn long_name(k: usize) -> String {
    format!("region_{k}_with_a_name_much_longer_than_any_panel_is_wide_{}", "x".repeat(30))
}

/// An E/I network of `n` regions of `units` units each (named by `name`), in a chain with
/// feedback to the first, and one 2-unit input into the first.
fn network(n: usize, units: usize, name: impl Fn(usize) -> String) -> Network {
    let regions: Vec<String> = (0..n)
        .map(|k| {
            let sign = if k % 3 == 2 { "neg" } else { "pos" };
            format!(
                r#"{{"name": "{}", "num_units": {units}, "sign": "{sign}", "base_firing": 0.1}}"#,
                name(k)
            )
        })
        .collect();
    let mut links: Vec<String> = (1..n)
        .map(|k| format!(r#"{{"src_region": "{}", "dst_region": "{}"}}"#, name(k - 1), name(k)))
        .collect();
    links.push(format!(r#"{{"src_region": "{}", "dst_region": "{}"}}"#, name(n - 1), name(0)));
    let json = format!(
        r#"{{"model": {{"dynamics": "leaky", "dt": 1, "tau": 4, "activation": "tanh"}},
            "recurrent_regions": [{}],
            "input_regions": [{{"name": "stim", "num_units": 2, "sign": "pos"}}],
            "recurrent_connections": [{}],
            "input_connections": [{{"src_region": "stim", "dst_region": "{}"}}]}}"#,
        regions.join(","),
        links.join(","),
        name(0)
    );
    let arch =
        mrnn_ir::compile_json(&json, "net.json").unwrap_or_else(|r| panic!("{r}")).architecture;
    Network::new(arch, &Device::Cpu).unwrap()
}

/// Pulses on the input: `[B, T, 2]`.
fn pulses(trials: usize, steps: usize) -> Tensor {
    let values: Vec<f32> = (0..trials * steps * 2)
        .map(|i| {
            let (b, t, c) = (i / (steps * 2), (i / 2) % steps, i % 2);
            if t % 10 == b % 10 && c == b % 2 { 1.0 } else { 0.0 }
        })
        .collect();
    Tensor::from_vec(values, (trials, steps, 2), &Device::Cpu).unwrap()
}

#[test]
fn activity_of_each_region_over_time() {
    let out = out("activity");
    let net = network(8, 5, |k| {
        ["d1", "d2", "gpe", "stn", "snr", "thal", "alm_exc", "alm_inh"][k].to_owned()
    });
    let input = pulses(6, 40);
    let rates = net.forward(&input, &Forward::default()).unwrap().h;
    let activity = plot::region_activity(net.architecture(), &rates, 3).unwrap();
    assert_eq!(activity.len(), 8);
    assert_eq!((activity[0].name.as_str(), activity[0].units), ("d1", 5));
    assert_eq!(activity[0].course.len(), 40);
    assert_eq!(activity[0].examples.len(), 3);
    let path = out.path("activity.png");
    plot::activity_figure(&path, "activity", &activity, &[], "step").unwrap();
    let image = figure(&path);
    // 8 panels: 4 columns of 330 pixels, 2 rows of 230 under the title and legend.
    assert_eq!(image.width(), 4 * 330);
    assert!((2 * 230 + 40..2 * 230 + 160).contains(&image.height()), "{}", image.height());
    assert!(!has_note(&image));
    for k in 0..8 {
        assert!(has_color(&image, plot::category_color(k, 8)), "region {k} has its color");
    }

    // Time courses of [T, H] rates (one trial) and a time axis.
    let one = rates.get(0).unwrap();
    let activity = plot::region_activity(net.architecture(), &one, 1).unwrap();
    let time: Vec<f64> = (0..40).map(|t| 0.5 * f64::from(t)).collect();
    let path = out.path("one_trial.png");
    plot::activity_figure(&path, "one trial", &activity, &time, "time (ms)").unwrap();
    figure(&path);

    // Wrong shapes are errors.
    let wrong = Tensor::zeros((2, 40, 3), mrnn_runtime::DType::F32, &Device::Cpu).unwrap();
    let e = plot::region_activity(net.architecture(), &wrong, 3).unwrap_err();
    assert!(e.to_string().contains("rates"), "{e}");
    let e = plot::activity_figure(&path, "t", &activity, &time[..5], "ms").unwrap_err();
    assert!(e.to_string().contains("5 times"), "{e}");
}

#[test]
fn activity_edge_cases() {
    let out = out("activity_edges");
    // One region of one unit, one trial, one step.
    let net = network(1, 1, |_| "solo".to_owned());
    let rates = net.forward(&pulses(1, 1), &Forward::default()).unwrap().h;
    let activity = plot::region_activity(net.architecture(), &rates, 3).unwrap();
    assert_eq!(activity[0].examples.len(), 1, "a region has as many examples as units at most");
    let path = out.path("one_unit.png");
    plot::activity_figure(&path, "one unit, one step", &activity, &[], "step").unwrap();
    let image = figure(&path);
    assert_eq!(image.width(), 480, "at least 480 pixels wide");
    assert!(has_color(&image, plot::category_color(0, 1)), "one step is drawn as a dot");

    // Constant data, NaN in the data, and no examples.
    let constant = RegionActivity {
        name: "flat".into(),
        units: 4,
        course: TimeCourse { mean: vec![0.25; 30], sd: vec![0.0; 30] },
        examples: vec![("flat[0]".into(), vec![0.25; 30])],
    };
    let mut holes = constant.clone();
    holes.name = "holes".into();
    holes.course.mean[3] = f64::NAN;
    holes.course.sd[10] = f64::INFINITY;
    holes.examples[0].1[20] = f64::NAN;
    holes.course.mean[25] = 1.0;
    let all_nan = RegionActivity {
        name: "nan".into(),
        units: 2,
        course: TimeCourse { mean: vec![f64::NAN; 30], sd: vec![f64::NAN; 30] },
        examples: Vec::new(),
    };
    let path = out.path("edges.png");
    plot::activity_figure(&path, "edges", &[constant.clone(), holes, all_nan], &[], "step")
        .unwrap();
    assert!(has_note(&figure(&path)), "the figure says that values were left out");
    let path = out.path("constant.png");
    plot::activity_figure(&path, "constant", &[constant], &[], "step").unwrap();
    assert!(!has_note(&figure(&path)));

    // 40 regions with names far longer than a panel: nothing runs off the figure.
    let many: Vec<RegionActivity> = (0..40)
        .map(|k| RegionActivity {
            name: long_name(k),
            units: 3,
            course: TimeCourse {
                mean: (0..20).map(|t| (f64::from(t) * (k as f64 + 1.0)).sin()).collect(),
                sd: vec![0.2; 20],
            },
            examples: Vec::new(),
        })
        .collect();
    let path = out.path("forty.png");
    plot::activity_figure(&path, &long_name(99), &many, &[], "step").unwrap();
    let image = figure(&path);
    assert_eq!(image.width(), 8 * 330);
    let path = out.path("none.png");
    plot::activity_figure(&path, "no regions", &[], &[], "step").unwrap();
    assert_eq!(figure(&path).width(), 480);
}

#[test]
fn current_time_courses_in_a_grid() {
    let out = out("currents");
    let net = network(4, 6, |k| format!("r{k}"));
    let input = pulses(5, 30);
    let currents = analysis::currents_of_run(&net, &input, &Forward::default(), &[]).unwrap();
    let grid = plot::current_grid(&currents, 1).unwrap();
    assert_eq!(grid.targets, ["r0", "r1", "r2", "r3"]);
    assert_eq!(grid.sources, ["r0", "r1", "r2", "r3", "stim (input)"]);
    // r1 receives from r0 only; r0 from r3 and the input.
    assert!(grid.cells[1][0].is_some() && grid.cells[1][1].is_none());
    assert!(grid.cells[0][3].is_some() && grid.cells[0][4].is_some());
    let c = grid.cells[1][0].as_ref().unwrap();
    assert_eq!(c.len(), 30);
    // The mean current over units and trials: what the time courses' tensor averages to.
    let course = currents.time_courses[1][0].as_ref().unwrap();
    let t5 = course.narrow(1, 5, 1).unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap();
    assert!((c.mean[5] - f64::from(t5)).abs() < 1e-6, "{} vs {t5}", c.mean[5]);
    let path = out.path("grid.png");
    plot::current_grid_figure(&path, "currents", &grid, &[], "step").unwrap();
    let image = figure(&path);
    // 5 columns of 180 pixels beside the names; 4 rows of 120.
    assert!(image.width() > 5 * 180 && image.width() < 5 * 180 + 300, "{}", image.width());
    assert!(image.height() > 4 * 120 && image.height() < 4 * 120 + 250, "{}", image.height());
    assert!(!has_note(&image));

    // Inconsistent grids are errors.
    let mut bad = grid.clone();
    bad.cells.pop();
    assert!(plot::current_grid_figure(&path, "t", &bad, &[], "step").is_err());
    let mut bad = grid.clone();
    bad.cells[0][4] = Some(TimeCourse { mean: vec![0.0; 3], sd: vec![0.0; 3] });
    assert!(plot::current_grid_figure(&path, "t", &bad, &[], "step").is_err());
    let empty = CurrentGrid { targets: vec![], sources: vec![], cells: vec![] };
    assert!(plot::current_grid_figure(&path, "t", &empty, &[], "step").is_err());
}

#[test]
fn current_grid_edge_cases() {
    let out = out("currents_edges");
    let course = |mean: Vec<f64>| {
        let n = mean.len();
        Some(TimeCourse { mean, sd: vec![0.1; n] })
    };
    // One target, one source, one step.
    let one = CurrentGrid {
        targets: vec!["a".into()],
        sources: vec!["a".into()],
        cells: vec![vec![course(vec![0.3])]],
    };
    let path = out.path("one.png");
    plot::current_grid_figure(&path, "one step", &one, &[], "step").unwrap();
    assert!(has_color(&figure(&path), plot::category_color(0, 1)), "one step is drawn as a dot");
    // Constant zero currents, nothing connected, NaN.
    let flat = CurrentGrid {
        targets: vec!["a".into(), "b".into()],
        sources: vec!["a".into(), "b".into()],
        cells: vec![vec![course(vec![0.0; 10]), None], vec![None, course(vec![0.0; 10])]],
    };
    let path = out.path("flat.png");
    plot::current_grid_figure(&path, "flat", &flat, &[], "step").unwrap();
    assert!(!has_note(&figure(&path)));
    let none = CurrentGrid { cells: vec![vec![None, None], vec![None, None]], ..flat.clone() };
    plot::current_grid_figure(&out.path("none.png"), "unconnected", &none, &[], "step").unwrap();
    let mut nan = flat.clone();
    if let Some(c) = nan.cells[0][0].as_mut() {
        c.mean[2] = f64::NAN;
        c.mean[3] = f64::NEG_INFINITY;
    }
    let path = out.path("nan.png");
    plot::current_grid_figure(&path, "NaN", &nan, &[], "step").unwrap();
    assert!(has_note(&figure(&path)));

    // 40 regions with long names and an input, in a ring with a few long-range links.
    let n = 40;
    let targets: Vec<String> = (0..n).map(long_name).collect();
    let mut sources = targets.clone();
    sources.push("a_stimulus_with_a_long_name (input)".into());
    let cells: Vec<Vec<Option<TimeCourse>>> = (0..n)
        .map(|t| {
            (0..=n)
                .map(|s| {
                    let linked = s == (t + n - 1) % n || s == (t * 7) % n || (s == n && t < 3);
                    linked.then(|| TimeCourse {
                        mean: (0..25).map(|k| (f64::from(k) - s as f64).sin()).collect(),
                        sd: vec![0.3; 25],
                    })
                })
                .collect()
        })
        .collect();
    let many = CurrentGrid { targets, sources, cells };
    let path = out.path("forty.png");
    plot::current_grid_figure(&path, &long_name(1), &many, &[], "step").unwrap();
    let image = figure(&path);
    assert!(image.width() > 41 * 90 && image.height() > 40 * 64);
}

fn flow_grid() -> (Vec<f64>, Vec<[f64; 2]>, Vec<f64>) {
    let xs: Vec<f64> = (0..9).map(|i| f64::from(i) - 4.0).collect();
    let points: Vec<(f64, f64)> =
        xs.iter().flat_map(|&y| xs.iter().map(move |&x| (x, y))).collect();
    // A rotation that decays towards the origin.
    let velocity: Vec<[f64; 2]> =
        points.iter().map(|&(x, y)| [-y - 0.1 * x, x - 0.1 * y]).collect();
    let speed: Vec<f64> = velocity.iter().map(|v| v[0].hypot(v[1])).collect();
    (xs, velocity, speed)
}

fn spiral(angle: f64, radius: f64) -> Vec<[f64; 2]> {
    (0..100)
        .map(|t| {
            let s = f64::from(t) / 10.0 + angle;
            let r = radius * (-0.1 * f64::from(t) / 10.0).exp();
            [r * s.cos(), r * s.sin()]
        })
        .collect()
}

#[test]
fn flow_fields_color_trajectories_by_condition() {
    let out = out("flow");
    let (xs, velocity, speed) = flow_grid();
    let trajectories: Vec<Vec<[f64; 2]>> =
        (0..6).map(|k| spiral(f64::from(k), 3.0 + 0.1 * f64::from(k))).collect();
    let conditions: Vec<String> = (0..6).map(|k| format!("condition {}", k % 3)).collect();
    let markers = [
        Marker { coords: vec![0.0, 0.0], group: "stable".into() },
        Marker { coords: vec![2.0, -1.0], group: "saddle".into() },
    ];
    let flow = FlowPlot {
        xs: &xs,
        ys: &xs,
        velocity: &velocity,
        speed: &speed,
        trajectories: &trajectories,
        conditions: &conditions,
        markers: &markers,
        labels: ["PC1", "PC2"],
    };
    let path = out.path("flow.png");
    plot::flow_figure(&path, "flow", &flow).unwrap();
    let image = figure(&path);
    assert_eq!(image.dimensions(), (1120, 800));
    // One color per condition (start markers and legend), none for a fourth.
    for k in 0..3 {
        assert!(has_color(&image, plot::category_color(k, 3)), "condition {k}");
    }
    assert!(!has_color(&image, plot::category_color(3, 4)));
    assert!(!has_note(&image));

    // Without conditions; with trajectories leaving the grid; with 25 conditions of long names.
    let none = FlowPlot { conditions: &[], ..flow };
    plot::flow_figure(&out.path("plain.png"), "no conditions", &none).unwrap();
    let far: Vec<Vec<[f64; 2]>> =
        vec![vec![[0.0, 0.0], [50.0, 3.0], [-2.0, -2.0]], spiral(0.0, 30.0)];
    let leaving = FlowPlot { trajectories: &far, conditions: &[], ..flow };
    let path = out.path("leaving.png");
    plot::flow_figure(&path, "trajectories that leave the plot", &leaving).unwrap();
    figure(&path);
    let many: Vec<Vec<[f64; 2]>> = (0..25).map(|k| spiral(0.25 * f64::from(k), 3.5)).collect();
    let names: Vec<String> = (0..25).map(long_name).collect();
    let crowded = FlowPlot { trajectories: &many, conditions: &names, ..flow };
    let path = out.path("crowded.png");
    plot::flow_figure(&path, &long_name(0), &crowded).unwrap();
    figure(&path);

    // NaN: in the speed, a trajectory, a marker.
    let mut bad_speed = speed.clone();
    bad_speed[10] = f64::NAN;
    let mut holes = trajectories.clone();
    holes[0][5] = [f64::NAN, 0.0];
    let lost = [Marker { coords: vec![f64::NAN, 1.0], group: "stable".into() }];
    let nan = FlowPlot { speed: &bad_speed, trajectories: &holes, markers: &lost, ..flow };
    let path = out.path("nan.png");
    plot::flow_figure(&path, "NaN", &nan).unwrap();
    assert!(has_note(&figure(&path)));

    // Inconsistent data are errors.
    let short = FlowPlot { speed: &speed[1..], ..flow };
    assert!(plot::flow_figure(&out.path("bad.png"), "flow", &short).is_err());
    let labels = FlowPlot { conditions: &conditions[..2], ..flow };
    let e = plot::flow_figure(&out.path("bad.png"), "flow", &labels).unwrap_err();
    assert!(e.to_string().contains("2 condition labels for 6 trajectories"), "{e}");
}

#[test]
fn a_long_title_over_one_spectrum_is_wrapped_not_cut() {
    let out = out("spectra");
    let spectrum = |k: usize| Spectrum {
        title: format!("#{k} stable, max |ev| 0.830"),
        values: vec![(0.5, 0.2), (0.5, -0.2), (0.83, 0.0)],
        group: "stable".into(),
    };
    // The title the CLI gives a linearization of one region, whose name is long.
    for (name, title) in [
        ("str", "Jacobian eigenvalues of str (others held fixed)".to_owned()),
        ("long", format!("Jacobian eigenvalues of {} (others held fixed)", long_name(0))),
    ] {
        let path = out.path(&format!("{name}.png"));
        plot::spectra_figure(&path, &title, &[spectrum(0)]).unwrap();
        let image = figure(&path);
        assert_eq!(image.width(), 420);
        assert!(image.height() >= 300 + 30);
    }
    let many: Vec<Spectrum> = (0..40).map(spectrum).collect();
    let path = out.path("many.png");
    plot::spectra_figure(&path, "eigenvalues", &many).unwrap();
    assert_eq!(figure(&path).width(), 6 * 300);
    let mut nan = spectrum(0);
    nan.values.push((f64::NAN, 0.0));
    nan.values.push((f64::INFINITY, 1.0));
    let path = out.path("nan.png");
    plot::spectra_figure(&path, "NaN", &[nan, spectrum(1)]).unwrap();
    assert!(has_note(&figure(&path)));
}

#[test]
fn draws_state_space() {
    let out = out("state_space");
    let trajectory: Vec<Vec<f64>> = (0..50)
        .map(|t| {
            let s = f64::from(t) / 10.0;
            vec![s.cos(), s.sin(), 0.1 * s]
        })
        .collect();
    let markers = vec![
        Marker { coords: vec![1.0, 1.0, 1.0], group: "stable".into() },
        Marker { coords: vec![-1.0, -1.0, -1.0], group: "stable".into() },
        Marker { coords: vec![0.0, 0.0, 0.0], group: "saddle".into() },
    ];
    let three = out.path("fp3.png");
    plot::state_space_figure(
        &three,
        "fixed points",
        std::slice::from_ref(&trajectory),
        &markers,
        &["PC1", "PC2", "PC3"],
    )
    .unwrap();
    assert_eq!(figure(&three).dimensions(), (1400, 720));
    // Two coordinates: the plane alone.
    let flat: Vec<Vec<f64>> = trajectory.iter().map(|p| p[..2].to_vec()).collect();
    let two = out.path("fp2.png");
    let m2: Vec<Marker> = markers
        .iter()
        .map(|m| Marker { coords: m.coords[..2].to_vec(), group: m.group.clone() })
        .collect();
    plot::state_space_figure(&two, &long_name(0), std::slice::from_ref(&flat), &m2, &[]).unwrap();
    assert_eq!(figure(&two).dimensions(), (760, 720));
    let one = vec![Marker { coords: vec![1.0], group: "stable".into() }];
    assert!(plot::state_space_figure(&out.path("x.png"), "t", &[], &one, &[]).is_err());
    // NaN in a trajectory and a marker.
    let mut holes = flat;
    holes[7][1] = f64::NAN;
    let lost = vec![Marker { coords: vec![f64::NAN, 0.0], group: "saddle".into() }];
    let path = out.path("nan.png");
    plot::state_space_figure(&path, "NaN", &[holes], &lost, &[]).unwrap();
    assert!(has_note(&figure(&path)));
}

#[test]
fn draws_current_matrices() {
    let out = out("matrix");
    let rows = vec!["exc".to_owned(), "inhib".to_owned()];
    let cols = vec!["exc".to_owned(), "inhib".to_owned(), "inp (input)".to_owned()];
    let values = vec![vec![Some(0.3), Some(-0.8), Some(0.05)], vec![Some(0.6), None, Some(1e-4)]];
    let path = out.path("currents.png");
    plot::matrix_figure(&path, "currents", &rows, &cols, &values, "mean current").unwrap();
    assert!(!has_note(&figure(&path)));
    let magnitudes = vec![vec![Some(0.3), Some(0.8), Some(0.0)], vec![Some(0.6), None, Some(2.0)]];
    plot::matrix_figure(&path, "|currents|", &rows, &cols, &magnitudes, "|current|").unwrap();
    figure(&path);
    assert!(plot::matrix_figure(&path, "t", &rows, &cols, &values[..1], "x").is_err());
    assert!(plot::matrix_figure(&path, "t", &[], &cols, &[], "x").is_err());
    let nan =
        vec![vec![Some(f64::NAN), Some(-0.8), None], vec![Some(f64::INFINITY), None, Some(1.0)]];
    let path = out.path("nan.png");
    plot::matrix_figure(&path, "NaN", &rows, &cols, &nan, "mean current").unwrap();
    assert!(has_note(&figure(&path)));
    // 40 regions with long names.
    let names: Vec<String> = (0..40).map(long_name).collect();
    let values: Vec<Vec<Option<f64>>> = (0..40)
        .map(|i| {
            (0..40)
                .map(|j| (i % 3 == j % 2).then(|| (f64::from(i) - f64::from(j)) / 40.0))
                .collect()
        })
        .collect();
    let path = out.path("forty.png");
    plot::matrix_figure(&path, &long_name(0), &names, &names, &values, "mean current").unwrap();
    figure(&path);
}

#[test]
fn draws_training_figures() {
    let out = out("training");
    let series = |label: &str, f: fn(f64) -> f64| Series {
        label: label.into(),
        points: (1..200).map(|i| (f64::from(i), f(f64::from(i)))).collect(),
    };
    let path = out.path("loss.png");
    let raw = series("loss", |i| 1.0 / i + 0.01 * (i * 0.7).sin().abs());
    let smooth = series("smoothed over a long window of many steps", |i| 1.0 / i);
    plot::line_chart(&path, &long_name(0), "step", "loss", &[raw.clone(), smooth], true).unwrap();
    let image = figure(&path);
    assert_eq!(image.dimensions(), (900, 560));
    assert!(!has_note(&image));
    let mut diverged = raw;
    diverged.points[150].1 = f64::NAN;
    diverged.points[151].1 = f64::INFINITY;
    let path = out.path("diverged.png");
    plot::line_chart(&path, "diverged", "step", "loss", &[diverged], true).unwrap();
    assert!(has_note(&figure(&path)), "NaN is not drawn at the floor of the log scale");

    let panel = TrialPanel {
        input: (0..30).map(|t| vec![f32::from(u8::from(t % 10 == 0)), 0.0]).collect(),
        target: vec![vec![1.0]; 30],
        output: (0..30).map(|t| vec![(t as f32 / 10.0).tanh()]).collect(),
    };
    let path = out.path("trials.png");
    plot::trials_figure(&path, "flip-flop", &[panel.clone(), panel.clone()]).unwrap();
    assert_eq!(figure(&path).dimensions(), (720, 620));
    let mut broken = panel.clone();
    broken.output[4][0] = f32::NAN;
    broken.input[2] = vec![1.0]; // a ragged row: fewer channels
    let path = out.path("trials_nan.png");
    plot::trials_figure(&path, "NaN", &[broken]).unwrap();
    assert!(has_note(&figure(&path)));
    let many = vec![panel; 20];
    let path = out.path("many.png");
    plot::trials_figure(&path, "many trials", &many).unwrap();
    assert_eq!(figure(&path).width(), 12 * 360);
}

#[test]
fn absurd_titles_and_names_are_drawn_or_refused_never_a_panic() {
    let out = out("absurd");
    let huge = "an absurdly long title ".repeat(1000);
    let name = "x".repeat(5000);
    let course = TimeCourse { mean: vec![0.5; 10], sd: vec![0.1; 10] };
    let region =
        RegionActivity { name: name.clone(), units: 1, course: course.clone(), examples: vec![] };
    let results = [
        plot::activity_figure(&out.path("activity.png"), &huge, &[region], &[], &name),
        plot::current_grid_figure(
            &out.path("grid.png"),
            &huge,
            &CurrentGrid {
                targets: vec![name.clone()],
                sources: vec![name.clone()],
                cells: vec![vec![Some(course)]],
            },
            &[],
            &name,
        ),
        plot::line_chart(&out.path("line.png"), &huge, &name, &name, &[], false),
        plot::spectra_figure(&out.path("spectra.png"), &huge, &[]),
        plot::matrix_figure(
            &out.path("matrix.png"),
            &huge,
            std::slice::from_ref(&name),
            std::slice::from_ref(&name),
            &[vec![Some(1.0)]],
            &name,
        ),
        plot::state_space_figure(&out.path("fp.png"), &huge, &[], &[], &[&name, &name]),
    ];
    for r in results {
        if let Err(e) = r {
            assert!(
                e.to_string().contains("cannot draw") || e.to_string().contains("pixels"),
                "{e}"
            );
        }
    }
    let png = std::fs::read(out.path("line.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
}

#[test]
fn colormaps_span_their_ends() {
    assert_eq!(plot::viridis(0.0), RGBColor(68, 1, 84));
    assert_eq!(plot::viridis(1.0), RGBColor(253, 231, 37));
    assert_eq!(plot::viridis(f64::NAN), plot::viridis(0.0));
    assert_eq!(plot::diverging(0.0), RGBColor(247, 247, 247));
    assert_eq!(plot::diverging(-2.0), plot::diverging(-1.0));
    assert_eq!(plot::sequential(0.0), RGBColor(255, 255, 255));
    assert_eq!(plot::group_color("stable"), plot::PALETTE[0]);
}
