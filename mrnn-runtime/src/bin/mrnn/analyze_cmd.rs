//! `mrnn analyze fixed-points | linearize | flow | currents`: dissection of a trained network
//! (an mrnn checkpoint alone, or a JSON config and a weights file) on trajectories driven by
//! flip-flop-like pulses or by the inputs of a safetensors file; results go to `--out` as JSON,
//! safetensors and PNG figures (drawn by the library's `mrnn_runtime::plot`, which users'
//! programs call the same way).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mrnn_runtime::analysis::{
    self, FixedPointOptions, FixedPoints, FlowField, FlowOptions, Others, Pca, Phase, StateKind,
};
use mrnn_runtime::checkpoint::TrainedReadout;
use mrnn_runtime::plot::{self, FlowPlot, Marker, Spectrum};
use mrnn_runtime::task::{FlipFlop, Task};
use mrnn_runtime::{DType, Device, Forward, Network, StateDict, Tensor};
use rand::SeedableRng;
use serde_json::{Value, json};

use crate::Failure;
use crate::network_args::NetworkArgs;

/// Prints a line to stdout, ignoring a closed pipe (`mrnn analyze ... | head` must not panic).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

#[derive(Debug, Subcommand)]
pub(crate) enum AnalyzeCommand {
    /// Find fixed points (Golub & Sussillo): `fixed_points.json`, `.safetensors` and figures.
    FixedPoints {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        search: SearchArgs,
    },
    /// Jacobians of a region subset (state, input, excluded regions) and their eigenvalues.
    Linearize {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        at: LinearizeArgs,
    },
    /// Flow field of some regions in the plane of their two leading principal components, with
    /// the trajectories colored by condition (`flow.png`).
    Flow {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        flow: FlowArgs,
    },
    /// The current each region receives from each region and input over the trajectories: the
    /// mean matrices (`currents.png`), each current over time (`currents_over_time.png`) and
    /// each region's activity over time (`activity.png`).
    Currents {
        #[command(flatten)]
        common: CommonArgs,
    },
}

/// What every analysis needs: the network, where trajectories come from, where results go.
#[derive(Debug, Args)]
pub(crate) struct CommonArgs {
    #[command(flatten)]
    network: NetworkArgs,
    /// Directory for results (created if missing; checked before the analysis runs).
    #[arg(long, default_value = "analysis")]
    out: PathBuf,
    /// Regions (comma-separated names or parents; default all): the subset to linearize, the
    /// regions of the flow's plane, the targets of currents. Fixed points are always searched
    /// in the whole network.
    #[arg(long, value_delimiter = ',')]
    regions: Vec<String>,
    /// Constant input for fixed points, Jacobians and flows (comma-separated, I values; default 0).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    input: Option<Vec<f64>>,
    /// Safetensors file with `input` ([B, T, I], the network's layout) to drive trajectories,
    /// and optionally `condition` (`[B]`, a number per trial: the trials' conditions, which color
    /// the flow's trajectories); default: flip-flop pulses on every input channel.
    #[arg(long)]
    inputs: Option<PathBuf>,
    /// Trials of flip-flop pulses.
    #[arg(long, default_value_t = 16, allow_negative_numbers = true)]
    trials: usize,
    /// Steps per trial.
    #[arg(long, default_value_t = 64, allow_negative_numbers = true)]
    steps: usize,
    /// Pulse probability per step and channel.
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    pulse_prob: f64,
    /// Seed of the pulses, of candidate sampling and of noise.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    seed: u64,
}

#[derive(Debug, Args)]
pub(crate) struct SearchArgs {
    /// Candidate states drawn from the trajectories.
    #[arg(long, default_value_t = 512, allow_negative_numbers = true)]
    candidates: usize,
    /// Standard deviation of Gaussian noise added to the candidates (state units).
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
    noise: f64,
    /// Adam iterations at most.
    #[arg(long, default_value_t = 5000, allow_negative_numbers = true)]
    max_iters: usize,
    /// Initial learning rate.
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    lr: f64,
    /// A candidate stops when q = |F(s) - s|^2 / 2 is below this.
    #[arg(long, default_value_t = 1e-12, allow_negative_numbers = true)]
    tol_q: f64,
    /// A candidate stops when q changes by less than this in one iteration.
    #[arg(long, default_value_t = 1e-20, allow_negative_numbers = true)]
    tol_dq: f64,
    /// Points closer than this are one fixed point.
    #[arg(long, default_value_t = 1e-3, allow_negative_numbers = true)]
    tol_unique: f64,
    /// Report only points with q at most this (slow points are dropped).
    #[arg(long, default_value_t = 1e-6, allow_negative_numbers = true)]
    max_q: f64,
    /// Drop points farther from the candidates' centroid than this many times their spread.
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true)]
    outlier_distance: f64,
    /// Newton steps that polish each distinct point (0: none).
    #[arg(long, default_value_t = 8, allow_negative_numbers = true)]
    newton_steps: usize,
    /// Do not optimize the q outliers a second time.
    #[arg(long)]
    no_rerun: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LinearizeArgs {
    /// Linearize at every point of a `fixed_points.json` (from `mrnn analyze fixed-points`).
    #[arg(long, conflicts_with_all = ["state", "initial_state"])]
    fixed_points: Option<PathBuf>,
    /// Linearize at the states of a JSON file: one array of H numbers, or a list of them
    /// (x for leaky, h for Elman).
    #[arg(long, conflicts_with = "initial_state")]
    state: Option<PathBuf>,
    /// Linearize at the network's initial state (for relu networks often all silent: the
    /// Jacobian is then the leak alone).
    #[arg(long)]
    initial_state: bool,
    /// Without `--fixed-points`, `--state` or `--initial-state`: linearize at this many states
    /// along the trajectories, where the network runs (evenly spaced over the trials and over
    /// the steps, the step advancing with the trial).
    #[arg(long, default_value_t = 8, allow_negative_numbers = true)]
    samples: usize,
    /// Also compute eigenvectors (written to the safetensors file).
    #[arg(long)]
    eigenvectors: bool,
}

#[derive(Debug, Args)]
pub(crate) struct FlowArgs {
    /// Grid points per axis.
    #[arg(long, default_value_t = 21, allow_negative_numbers = true)]
    grid: usize,
    /// Where the other regions are: `mean` (over the trajectories) or `nearest` (the trajectory
    /// sample nearest to each grid point).
    #[arg(long, default_value = "mean")]
    others: String,
    /// Fixed points to mark (a `fixed_points.json`).
    #[arg(long)]
    fixed_points: Option<PathBuf>,
    /// Also draw the linearized flow around this fixed point (its index in `--fixed-points`).
    #[arg(long, requires = "fixed_points", allow_negative_numbers = true)]
    linearize_at: Option<usize>,
}

pub(crate) fn analyze(command: AnalyzeCommand) -> Result<(), Failure> {
    match command {
        AnalyzeCommand::FixedPoints { common, search } => fixed_points(&common, &search),
        AnalyzeCommand::Linearize { common, at } => linearize(&common, &at),
        AnalyzeCommand::Flow { common, flow: args } => flow(&common, &args),
        AnalyzeCommand::Currents { common } => currents(&common),
    }
}

/// The loaded network, its readout (if any) and the trajectories' input.
struct Setup {
    net: Network,
    readout: Option<TrainedReadout>,
    input: Tensor,
    x0: Option<Tensor>,
}

fn setup(args: &CommonArgs) -> Result<Setup, Failure> {
    // Before any work: a results directory that cannot be written fails now.
    mrnn_runtime::output::prepare_dir(&args.out)?;
    let loaded = args.network.load()?;
    let (device, net, readout) = (loaded.device, loaded.network, loaded.readout);
    if let Some(u) = &args.input
        && u.len() != net.input_size()
    {
        return Err(Failure::Invalid(format!(
            "error: --input has {} values, but the network has {} inputs",
            u.len(),
            net.input_size()
        )));
    }
    let (input, x0) = trajectory_input(args, &net, &device)?;
    Ok(Setup { net, readout, input, x0 })
}

/// The input that drives the trajectories, and an initial state when the network has no
/// inputs (random, so that trajectories explore the state space).
fn trajectory_input(
    args: &CommonArgs,
    net: &Network,
    device: &Device,
) -> Result<(Tensor, Option<Tensor>), Failure> {
    if let Some(path) = &args.inputs {
        let file = StateDict::read(path)?;
        let input = file.get("input").ok_or_else(|| {
            Failure::Invalid(format!(
                "error: `{}` has no tensor `input` ([B, T, I])",
                path.display()
            ))
        })?;
        return Ok((input.to_device(device).map_err(mrnn_runtime::Error::from)?, None));
    }
    if args.trials == 0 || args.steps == 0 {
        return Err(Failure::Usage("--trials and --steps must be at least 1".into()));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    if net.input_size() == 0 {
        let input = Tensor::zeros((args.trials, args.steps, 0), DType::F32, device)
            .map_err(mrnn_runtime::Error::from)?;
        // Networks without inputs are explored from random initial states, drawn from the seed.
        let normal = rand_distr::StandardNormal;
        let values: Vec<f32> = (0..args.trials * net.hidden_size())
            .map(|_| rand::Rng::sample::<f32, _>(&mut rng, normal))
            .collect();
        let x0 = Tensor::from_vec(values, (args.trials, net.hidden_size()), device)
            .map_err(mrnn_runtime::Error::from)?;
        return Ok((layout(net, input)?, Some(x0)));
    }
    let task = FlipFlop::new(net.input_size(), args.steps, args.pulse_prob)?;
    let input = task.sample(args.trials, &mut rng, device)?.input;
    Ok((layout(net, input)?, None))
}

/// A batch-first tensor in the network's layout.
fn layout(net: &Network, t: Tensor) -> Result<Tensor, Failure> {
    if net.architecture().settings().batch_first {
        Ok(t)
    } else {
        Ok(t.transpose(0, 1).and_then(|t| t.contiguous()).map_err(mrnn_runtime::Error::from)?)
    }
}

impl Setup {
    fn forward_options(&self) -> Forward {
        self.x0.clone().map_or_else(Forward::default, |x0| Forward::default().x0(x0))
    }

    /// The trajectories `[B, T, H]` in the state the dynamics carry.
    fn states(&self) -> Result<Tensor, Failure> {
        Ok(analysis::state_trajectory(&self.net, &self.input, &self.forward_options())?)
    }
}

fn out_dir(args: &CommonArgs) -> Result<&Path, Failure> {
    std::fs::create_dir_all(&args.out).map_err(|e| {
        Failure::Invalid(format!("error: cannot create `{}`: {e}", args.out.display()))
    })?;
    Ok(&args.out)
}

fn write_json(path: &Path, value: &Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::Invalid(format!("error: cannot serialize: {e}")))?;
    mrnn_runtime::checkpoint::write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// Checks the numeric options every analysis shares, before anything is loaded or run.
fn check_common(args: &CommonArgs) -> Result<(), Failure> {
    if let Some(input) = &args.input
        && let Some(k) = input.iter().position(|v| !v.is_finite())
    {
        return Err(Failure::Usage(format!(
            "--input must be finite numbers, but value {k} is {} (--input {})",
            input[k],
            input.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
        )));
    }
    if args.inputs.is_none() {
        if args.trials == 0 || args.steps == 0 {
            return Err(Failure::Usage("--trials and --steps must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&args.pulse_prob) {
            return Err(Failure::Usage(format!(
                "--pulse-prob must be a probability between 0 and 1, got {}",
                args.pulse_prob
            )));
        }
        // The pulses and their targets, at least one channel each: absurd counts are refused
        // here, before the network is even loaded.
        mrnn_runtime::memory::ensure_fits(
            format!("{} trials of {} steps (--trials, --steps)", args.trials, args.steps),
            mrnn_runtime::memory::f32_bytes(&[args.trials, args.steps, 2]),
        )?;
    }
    Ok(())
}

/// `--name` must be finite and positive (or zero, with `zero_ok`).
fn check_number(name: &str, value: f64, zero_ok: bool) -> Result<(), Failure> {
    let ok = value.is_finite() && (value > 0.0 || (zero_ok && value == 0.0));
    if ok {
        return Ok(());
    }
    let expected = if zero_ok { "zero or a positive number" } else { "a positive number" };
    Err(Failure::Usage(format!("--{name} must be {expected}, got {value}")))
}

/// Checks the search's options before the network is loaded or the search started.
fn check_search(search: &SearchArgs) -> Result<(), Failure> {
    if search.candidates == 0 {
        return Err(Failure::Usage("--candidates must be at least 1".into()));
    }
    check_number("noise", search.noise, true)?;
    check_number("lr", search.lr, false)?;
    check_number("tol-q", search.tol_q, false)?;
    check_number("tol-dq", search.tol_dq, true)?;
    check_number("tol-unique", search.tol_unique, true)?;
    check_number("max-q", search.max_q, false)?;
    check_number("outlier-distance", search.outlier_distance, false)
}

fn fixed_points(args: &CommonArgs, search: &SearchArgs) -> Result<(), Failure> {
    check_common(args)?;
    check_search(search)?;
    if !args.regions.is_empty() {
        eprintln!(
            "warning: --regions is ignored by fixed-points (the search runs on the whole network); \
             use `mrnn analyze linearize --fixed-points` for the regions' Jacobians"
        );
    }
    let setup = setup(args)?;
    let net = &setup.net;
    // The search's memory is known once the network is: refused before the candidates are
    // drawn (10^8 of them would fill the memory before the search could refuse).
    let h = net.hidden_size();
    mrnn_runtime::memory::ensure_fits(
        format!("a fixed-point search from {} candidate states of {h} units", search.candidates),
        analysis::fixed_points::search_bytes(search.candidates, h),
    )?;
    let out = out_dir(args)?;
    let states = setup.states()?;
    let candidates = analysis::sample_states(&states, search.candidates, args.seed)?;
    let options = FixedPointOptions {
        input: args.input.clone(),
        noise: search.noise,
        seed: args.seed,
        max_iters: search.max_iters,
        lr: search.lr,
        tol_q: search.tol_q,
        tol_dq: search.tol_dq,
        tol_unique: search.tol_unique,
        max_q: Some(search.max_q),
        outlier_distance: Some(search.outlier_distance),
        newton_steps: search.newton_steps,
        rerun_q_outliers: !search.no_rerun,
        ..FixedPointOptions::default()
    };
    let bar = ProgressBar::new(search.max_iters as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} {pos}/{len} [{bar:30}] {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut phase = None;
    let found = analysis::find_fixed_points(net, &candidates, &options, &mut |p| {
        if phase != Some(p.phase) {
            phase = Some(p.phase);
            bar.reset();
            bar.set_prefix(match p.phase {
                Phase::Optimize => "optimizing",
                Phase::Rerun => "rerunning q outliers",
            });
        }
        bar.set_position(p.iteration as u64);
        bar.set_message(format!("{}/{} active, median q {:.1e}", p.active, p.total, p.median_q));
    });
    bar.finish_and_clear();
    let found = found?;

    let mut list = found.to_json();
    if let (Some(readout), Value::Array(items)) = (&setup.readout, &mut list) {
        for (item, p) in items.iter_mut().zip(&found.points) {
            item["readout"] = json!(readout_of(readout, &p.h, net.device())?);
        }
    }
    write_json(&out.join("fixed_points.json"), &list)?;
    found.save_safetensors(&out.join("fixed_points.safetensors"))?;
    let pca = Pca::fit(&states, net.hidden_size().min(3))?;
    let mut summary = found.summary_json();
    summary["pca"] = pca.to_json();
    write_json(&out.join("fixed_points_summary.json"), &summary)?;
    draw_fixed_points(out, net, &states, &pca, &found)?;

    let stable = found.stable_count();
    say!(
        "{} fixed points ({} stable, {} unstable) from {} candidates in {:.2} s \
         (worst eigenpair residual {:.1e})",
        found.points.len(),
        stable,
        found.points.len() - stable,
        found.candidates,
        found.elapsed.as_secs_f64(),
        found.max_eigen_residual()
    );
    warn_inaccurate(&found);
    for (k, p) in found.points.iter().enumerate().take(40) {
        let readout = match &setup.readout {
            Some(r) => format!("  readout {}", fmt_vec(&readout_of(r, &p.h, net.device())?)),
            None => String::new(),
        };
        say!(
            "  #{k:<3} {:<8} unstable dims {:<2} q {:.1e}  max|lambda| {:.4}{readout}",
            p.stability.name(),
            p.unstable_dimensions,
            p.q,
            p.max_abs_eigenvalue()
        );
    }
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// A warning for each point whose eigenpairs failed the residual check.
fn warn_inaccurate(found: &FixedPoints) {
    for (k, p) in found.points.iter().enumerate().filter(|(_, p)| !p.eigen.is_accurate()) {
        eprintln!(
            "warning: fixed point #{k}: {} eigenpairs fail the residual check (worst {:.1e} > \
             {:e}); its eigenvalues and stability are not reliable",
            p.eigen.inaccurate(),
            p.eigen.max_residual(),
            analysis::eigen::RESIDUAL_TOL
        );
    }
}

fn readout_of(readout: &TrainedReadout, h: &[f64], device: &Device) -> Result<Vec<f64>, Failure> {
    let row: Vec<f32> = h.iter().map(|&v| v as f32).collect();
    let n = row.len();
    let t = Tensor::from_vec(row, (1, n), device).map_err(mrnn_runtime::Error::from)?;
    let y = readout.forward(&t)?.flatten_all().and_then(|y| y.to_vec1::<f32>());
    Ok(y.map_err(mrnn_runtime::Error::from)?.into_iter().map(f64::from).collect())
}

fn fmt_vec(v: &[f64]) -> String {
    let items: Vec<String> = v.iter().map(|x| format!("{x:+.3}")).collect();
    format!("({})", items.join(", "))
}

fn draw_fixed_points(
    out: &Path,
    net: &Network,
    states: &Tensor,
    pca: &Pca,
    found: &FixedPoints,
) -> Result<(), Failure> {
    let symbol = found.kind.symbol();
    let trajectories: Vec<Vec<Vec<f64>>> = (0..states.dim(0).map_err(mrnn_runtime::Error::from)?)
        .map(|b| {
            let t = states.get(b).map_err(mrnn_runtime::Error::from)?;
            Ok(pca.project_rows(&t)?)
        })
        .collect::<Result<_, Failure>>()?;
    let markers: Vec<Marker> = found
        .points
        .iter()
        .map(|p| Marker {
            coords: pca.project(p.state(found.kind)),
            group: p.stability.name().to_owned(),
        })
        .collect();
    let ratio = pca.explained_ratio();
    let labels: Vec<String> =
        ratio.iter().enumerate().map(|(k, r)| format!("PC{} ({})", k + 1, percent(*r))).collect();
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    let stable = found.stable_count();
    plot::state_space_figure(
        &out.join("fixed_points.png"),
        &format!(
            "{}: {} fixed points ({} stable, {} unstable) in {symbol} space",
            net.architecture().name(),
            found.points.len(),
            stable,
            found.points.len() - stable
        ),
        &trajectories,
        &markers,
        &labels,
    )?;
    let spectra: Vec<Spectrum> = found
        .points
        .iter()
        .enumerate()
        .map(|(k, p)| Spectrum {
            title: format!("#{k} {}, max |ev| {:.3}", p.stability.name(), p.max_abs_eigenvalue()),
            values: p.eigen.values.iter().map(|z| (z.re, z.im)).collect(),
            group: p.stability.name().to_owned(),
        })
        .collect();
    plot::spectra_figure(
        &out.join("eigenvalues.png"),
        "Jacobian eigenvalues at the fixed points (unit circle)",
        &spectra,
    )?;
    Ok(())
}

/// An explained variance ratio as a percentage for an axis label: whole percents, one decimal
/// below 1% (a component that explains 0.3% is not "0%").
fn percent(ratio: f64) -> String {
    let p = 100.0 * ratio;
    if p >= 1.0 || p == 0.0 || !p.is_finite() {
        format!("{p:.0}%")
    } else if p >= 0.1 {
        format!("{p:.1}%")
    } else {
        "<0.1%".to_owned()
    }
}

/// The states of a JSON file: one array of numbers or a list of arrays; from a
/// `fixed_points.json`, the `x` (leaky) or `h` (Elman) of every object.
fn read_states(path: &Path, kind: StateKind, h: usize) -> Result<Vec<Vec<f64>>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Invalid(format!("error: cannot read `{}`: {e}", path.display())))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| Failure::Invalid(format!("error: `{}` is not JSON: {e}", path.display())))?;
    let bad = |what: String| Failure::Invalid(format!("error: `{}`: {what}", path.display()));
    let numbers = |v: &Value| -> Option<Vec<f64>> {
        v.as_array()?.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>()
    };
    let rows: Vec<Vec<f64>> = match &value {
        Value::Array(items) if items.iter().all(Value::is_number) => {
            vec![numbers(&value).ok_or_else(|| bad("expected numbers".into()))?]
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(k, item)| {
                let v = match item {
                    Value::Object(o) => o.get(kind.symbol()).ok_or_else(|| {
                        bad(format!(
                            "entry {k} has no `{}` (the state of these dynamics)",
                            kind.symbol()
                        ))
                    })?,
                    other => other,
                };
                numbers(v).ok_or_else(|| bad(format!("entry {k} is not an array of numbers")))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(bad("expected an array of numbers or a list of them".into())),
    };
    if let Some((k, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != h) {
        return Err(bad(format!(
            "state {k} has {} numbers, but the network has H = {h} units",
            r.len()
        )));
    }
    if rows.is_empty() {
        return Err(bad("no states in the file".into()));
    }
    Ok(rows)
}

/// The states to linearize at, each with a JSON object saying where it came from.
fn linearization_states(
    at: &LinearizeArgs,
    setup: &Setup,
) -> Result<(Vec<Vec<f64>>, Vec<Value>), Failure> {
    let net = &setup.net;
    let kind = StateKind::of(net);
    let h = net.hidden_size();
    let from_file = |path: &Path, source: &str| -> Result<(Vec<Vec<f64>>, Vec<Value>), Failure> {
        let states = read_states(path, kind, h)?;
        eprintln!("linearizing at the {} states of `{}`", states.len(), path.display());
        let at = (0..states.len())
            .map(|k| json!({"source": source, "file": path.display().to_string(), "index": k}))
            .collect();
        Ok((states, at))
    };
    if let Some(path) = &at.fixed_points {
        return from_file(path, "fixed_points");
    }
    if let Some(path) = &at.state {
        return from_file(path, "state_file");
    }
    if at.initial_state {
        let init = net.initial_state(1)?;
        // Elman's state is a rate: the initial rates phi(x0).
        let s = match kind {
            StateKind::Preactivation => init,
            StateKind::Rate => {
                mrnn_runtime::activation::apply(net.architecture().settings().activation, &init)?
            }
        };
        let states = s
            .to_dtype(DType::F64)
            .and_then(|s| s.to_vec2::<f64>())
            .map_err(mrnn_runtime::Error::from)?;
        eprintln!("linearizing at the network's initial state");
        return Ok((states, vec![json!({"source": "initial_state"})]));
    }
    // The default: states the network actually visits, evenly spaced over the trials and
    // steps of the trajectories (the initial state of a relu network is often all silent, and
    // its Jacobian then only shows the leak).
    let trajectories = setup.states()?;
    let (b, t, _) = trajectories.dims3().map_err(mrnn_runtime::Error::from)?;
    let k = at.samples.min(b * t);
    let mut states = Vec::with_capacity(k);
    let mut sources = Vec::with_capacity(k);
    for i in 0..k {
        // The step advances with i (midpoints of k equal parts of the trial), and so does the
        // trial while there are more trials than samples (else they take turns): early and
        // late states, under different input histories, no state twice.
        let trial = if k <= b { (2 * i + 1) * b / (2 * k) } else { i % b };
        let step = (2 * i + 1) * t / (2 * k);
        let row = trajectories
            .get(trial)
            .and_then(|x| x.get(step))
            .and_then(|x| x.to_dtype(DType::F64))
            .and_then(|x| x.to_vec1::<f64>())
            .map_err(mrnn_runtime::Error::from)?;
        states.push(row);
        sources.push(json!({"source": "trajectory", "trial": trial, "step": step}));
    }
    eprintln!(
        "linearizing at {k} states along the trajectories ({b} trials of {t} steps; {}); \
         --fixed-points, --state or --initial-state choose others",
        sources
            .iter()
            .map(|v| format!("trial {} step {}", v["trial"], v["step"]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok((states, sources))
}

fn linearize(args: &CommonArgs, at: &LinearizeArgs) -> Result<(), Failure> {
    check_common(args)?;
    if at.samples == 0 {
        return Err(Failure::Usage("--samples must be at least 1".into()));
    }
    let setup = setup(args)?;
    let out = out_dir(args)?;
    let net = &setup.net;
    let h = net.hidden_size();
    let (states, sources) = linearization_states(at, &setup)?;
    let input = args.input.clone().unwrap_or_else(|| vec![0.0; net.input_size()]);
    let regions: Vec<&str> = args.regions.iter().map(String::as_str).collect();
    let mut records = Vec::new();
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut spectra = Vec::new();
    for (k, s) in states.iter().enumerate() {
        let state = Tensor::from_slice(s, h, net.device()).map_err(mrnn_runtime::Error::from)?;
        let lin = analysis::linearize(net, &state, &input, &regions, at.eigenvectors)?;
        let cpu = |t: &Tensor| {
            t.to_device(&Device::Cpu).map_err(|e| Failure::from(mrnn_runtime::Error::from(e)))
        };
        tensors.push((format!("jacobian_{k}"), cpu(&lin.jacobian)?));
        tensors.push((format!("coupling_{k}"), cpu(&lin.coupling)?));
        tensors.push((format!("from_excluded_{k}"), cpu(&lin.from_excluded)?));
        tensors.push((format!("input_jacobian_{k}"), cpu(&lin.input_jacobian)?));
        if let Some(v) = &lin.eigen.vectors {
            let (n, m) = v.shape();
            // nalgebra is column-major: row i, column j is v[(i, j)].
            let re: Vec<f64> =
                (0..n).flat_map(|i| (0..m).map(move |j| (i, j))).map(|ij| v[ij].re).collect();
            let im: Vec<f64> =
                (0..n).flat_map(|i| (0..m).map(move |j| (i, j))).map(|ij| v[ij].im).collect();
            let t = |d: Vec<f64>| {
                Tensor::from_vec(d, (n, m), &Device::Cpu).map_err(mrnn_runtime::Error::from)
            };
            tensors.push((format!("eigenvectors_re_{k}"), t(re)?));
            tensors.push((format!("eigenvectors_im_{k}"), t(im)?));
        }
        records.push(json!({
            "at": sources[k],
            "state": s,
            "active_units": lin.active_units,
            "regions": lin.regions,
            "units": lin.units,
            "excluded": lin.excluded,
            "stability": lin.stability,
            "stable": lin.stability == analysis::Stability::Stable,
            "max_abs_eigenvalue": lin.eigen.max_abs(),
            "eigenvalues": lin.eigen.values.iter().map(|z| [z.re, z.im]).collect::<Vec<_>>(),
            "eigen_residual": lin.eigen.max_residual(),
            "eigen_accurate": lin.eigen.is_accurate(),
        }));
        if lin.active_units == 0 {
            eprintln!(
                "warning: state #{k}: no unit of {} has a nonzero slope (all silent): the \
                 Jacobian is the leak alone",
                lin.regions.join(",")
            );
        }
        if !lin.eigen.is_accurate() {
            eprintln!(
                "warning: state #{k}: {} eigenpairs fail the residual check (worst {:.1e} > {:e})",
                lin.eigen.inaccurate(),
                lin.eigen.max_residual(),
                analysis::eigen::RESIDUAL_TOL
            );
        }
        spectra.push(Spectrum {
            title: format!("#{k} {}, max |ev| {:.3}", lin.stability.name(), lin.eigen.max_abs()),
            values: lin.eigen.values.iter().map(|z| (z.re, z.im)).collect(),
            group: lin.stability.name().to_owned(),
        });
        say!(
            "#{k}: {} ({} units, {} active) {} max|lambda| {:.4} (residual {:.1e})",
            lin.regions.join(","),
            lin.units.len(),
            lin.active_units,
            lin.stability.name(),
            lin.eigen.max_abs(),
            lin.eigen.max_residual()
        );
    }
    write_json(&out.join("linearization.json"), &Value::Array(records))?;
    let bytes = safetensors::serialize(tensors, None)
        .map_err(|e| Failure::Invalid(format!("error: cannot serialize: {e}")))?;
    mrnn_runtime::checkpoint::write_atomic(&out.join("linearization.safetensors"), &bytes)?;
    let what = if regions.is_empty() { "all regions".to_owned() } else { regions.join(", ") };
    plot::spectra_figure(
        &out.join("linearization_eigenvalues.png"),
        &format!("Jacobian eigenvalues of {what} (others held fixed)"),
        &spectra,
    )?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

fn flow(args: &CommonArgs, flow: &FlowArgs) -> Result<(), Failure> {
    check_common(args)?;
    let others = match flow.others.as_str() {
        "mean" => Others::Mean,
        "nearest" => Others::Nearest,
        other => {
            return Err(Failure::Usage(format!(
                "--others must be `mean` or `nearest`, got `{other}`"
            )));
        }
    };
    if flow.grid < 2 {
        return Err(Failure::Usage(format!(
            "--grid must be at least 2 (points per axis), got {}",
            flow.grid
        )));
    }
    let options = FlowOptions {
        regions: args.regions.clone(),
        grid: flow.grid,
        others,
        input: args.input.clone(),
        ..FlowOptions::default()
    };
    let setup = setup(args)?;
    let net = &setup.net;
    // The grid's memory is known once the network is: refused before any trajectory is run.
    options.validate(net.hidden_size())?;
    // So is a fixed-point file that cannot be read, or an index past its end.
    if let Some(path) = &flow.fixed_points {
        let count = read_states(path, StateKind::of(net), net.hidden_size())?.len();
        if let Some(k) = flow.linearize_at.filter(|&k| k >= count) {
            return Err(Failure::Usage(format!(
                "--linearize-at {k}: `{}` has {count} fixed points (indices 0 to {})",
                path.display(),
                count - 1
            )));
        }
    }
    let out = out_dir(args)?;
    let states = setup.states()?;
    let field = analysis::flow_field(net, &states, &options)?;
    let kind = field.kind;
    let fixed: Vec<Vec<f64>> = match &flow.fixed_points {
        Some(path) => read_states(path, kind, net.hidden_size())?,
        None => Vec::new(),
    };
    let groups: Vec<String> = match &flow.fixed_points {
        Some(path) => stability_groups(path, fixed.len()),
        None => Vec::new(),
    };
    let markers: Vec<Marker> = fixed
        .iter()
        .zip(&groups)
        .map(|(s, g)| {
            let sub: Vec<f64> = field.units.iter().map(|&u| s[u]).collect();
            Marker { coords: field.pca.project(&sub), group: g.clone() }
        })
        .collect();
    let conditions = trial_conditions(args, net, &setup.input)?;
    let title = format!("flow of {} ({} space)", field.regions.join(", "), kind.symbol());
    write_flow(out, "flow", &field, &markers, &conditions, &title)?;
    if let Some(k) = flow.linearize_at {
        let s = fixed.get(k).ok_or_else(|| {
            Failure::Usage(format!("--linearize-at {k}: the file has {} fixed points", fixed.len()))
        })?;
        let s = Tensor::from_slice(s, net.hidden_size(), net.device())
            .map_err(mrnn_runtime::Error::from)?;
        let linear = field.linearized(net, &s, args.input.as_deref())?;
        write_flow(
            out,
            &format!("flow_linear_{k}"),
            &linear,
            &markers[k..=k],
            &conditions,
            &format!("linearized flow around fixed point #{k}"),
        )?;
    }
    say!(
        "flow of {} on a {}x{} grid: speed from {:.2e} to {:.2e}",
        field.regions.join(", "),
        field.xs.len(),
        field.ys.len(),
        field.speed.iter().copied().fold(f64::INFINITY, f64::min),
        field.speed.iter().copied().fold(0.0, f64::max)
    );
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// The `stability` of each object of a `fixed_points.json` (`fixed point` when absent).
fn stability_groups(path: &Path, n: usize) -> Vec<String> {
    let value: Value = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    (0..n)
        .map(|k| {
            value
                .get(k)
                .and_then(|o| o.get("stability"))
                .and_then(Value::as_str)
                .unwrap_or("fixed point")
                .to_owned()
        })
        .collect()
}

fn write_flow(
    out: &Path,
    name: &str,
    field: &FlowField,
    markers: &[Marker],
    conditions: &[String],
    title: &str,
) -> Result<(), Failure> {
    write_json(&out.join(format!("{name}.json")), &field.to_json())?;
    field.save_safetensors(&out.join(format!("{name}.safetensors")))?;
    let ratio = field.pca.explained_ratio();
    let labels = [format!("PC1 ({})", percent(ratio[0])), format!("PC2 ({})", percent(ratio[1]))];
    plot::flow_figure(
        &out.join(format!("{name}.png")),
        title,
        &FlowPlot {
            xs: &field.xs,
            ys: &field.ys,
            velocity: &field.velocity,
            speed: &field.speed,
            trajectories: &field.trajectories,
            conditions,
            markers,
            labels: [&labels[0], &labels[1]],
        },
    )?;
    Ok(())
}

/// The condition of each trial, which colors its trajectory: the `condition` tensor of the
/// `--inputs` file when it has one (a number per trial); otherwise the distinct input sequences
/// when there are at most 10 (trials with the same input are one condition); otherwise the
/// first input each trial receives (the channels and signs of its first step with any input),
/// which groups the default flip-flop trials by the pulses that start them (their first
/// memory), when that makes at most 10 groups; otherwise each trial is its own condition. No
/// labels when all trials are one condition.
fn trial_conditions(
    args: &CommonArgs,
    net: &Network,
    input: &Tensor,
) -> Result<Vec<String>, Failure> {
    let input = layout(net, input.clone())?;
    let trials = input.dim(0).map_err(mrnn_runtime::Error::from)?;
    if let Some(path) = &args.inputs {
        let file = StateDict::read(path)?;
        if let Some(labels) = file.get("condition") {
            let bad = |what: String| {
                Failure::Invalid(format!("error: `{}`: `condition` {what}", path.display()))
            };
            if labels.dims() != [trials] {
                return Err(bad(format!(
                    "has shape {:?}, expected [{trials}] (one number per trial of `input`)",
                    labels.dims()
                )));
            }
            let values: Vec<f64> = labels
                .to_dtype(DType::F64)
                .and_then(|l| l.to_vec1())
                .map_err(mrnn_runtime::Error::from)?;
            if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                return Err(bad(format!("holds {v}, expected finite numbers")));
            }
            return Ok(values
                .iter()
                .map(|&v| {
                    if v.fract() == 0.0 && v.abs() < 1e15 {
                        format!("condition {}", v as i64)
                    } else {
                        format!("condition {v}")
                    }
                })
                .collect());
        }
    }
    let values: Vec<Vec<Vec<f32>>> = input
        .to_dtype(DType::F32)
        .and_then(|u| u.to_device(&Device::Cpu))
        .and_then(|u| u.to_vec3())
        .map_err(mrnn_runtime::Error::from)?;
    let bits = |trial: &Vec<Vec<f32>>| -> Vec<u32> {
        trial.iter().flatten().map(|v| v.to_bits()).collect()
    };
    let mut patterns: Vec<Vec<u32>> = Vec::new();
    let mut ids = Vec::with_capacity(trials);
    for trial in &values {
        let b = bits(trial);
        let id = patterns.iter().position(|p| *p == b).unwrap_or_else(|| {
            patterns.push(b);
            patterns.len() - 1
        });
        ids.push(id);
    }
    if patterns.len() <= 1 {
        return Ok(Vec::new());
    }
    if patterns.len() <= 10 {
        return Ok(ids.iter().map(|k| format!("input pattern {}", k + 1)).collect());
    }
    let firsts: Vec<String> = values.iter().map(|trial| first_input(net, trial)).collect();
    let mut distinct: Vec<&String> = Vec::new();
    for f in &firsts {
        if !distinct.contains(&f) {
            distinct.push(f);
        }
    }
    if distinct.len() <= 10 {
        return Ok(firsts);
    }
    // Every trial its own condition: at least each trajectory can be followed by its color.
    Ok((1..=trials).map(|k| format!("trial {k}")).collect())
}

/// The first input of a trial (`[T, I]`): the sign of each channel at its first step with any
/// input, by input region (`first input: inp[0]+ inp[2]-`, or for regions of many channels a
/// sign per channel, `first input: iti +0-+...`); `no input` when it has none.
fn first_input(net: &Network, trial: &[Vec<f32>]) -> String {
    let Some(step) = trial.iter().find(|step| step.iter().any(|&v| v != 0.0)) else {
        return "no input".to_owned();
    };
    let sign = |v: f32| {
        if v.is_nan() {
            "NaN"
        } else if v > 0.0 {
            "+"
        } else if v < 0.0 {
            "-"
        } else {
            "0"
        }
    };
    let mut parts = Vec::new();
    for region in net.architecture().inputs() {
        let Some(channels) = step.get(region.range()) else {
            continue;
        };
        let active: Vec<usize> = (0..channels.len()).filter(|&c| channels[c] != 0.0).collect();
        if active.is_empty() {
            continue;
        }
        if region.units == 1 {
            parts.push(format!("{}{}", region.name, sign(channels[0])));
        } else if active.len() <= 4 {
            parts.extend(
                active.iter().map(|&c| format!("{}[{c}]{}", region.name, sign(channels[c]))),
            );
        } else {
            let signs: String = channels.iter().map(|&v| sign(v)).collect();
            parts.push(format!("{} {signs}", region.name));
        }
    }
    format!("first input: {}", parts.join(" "))
}

fn currents(args: &CommonArgs) -> Result<(), Failure> {
    check_common(args)?;
    let setup = setup(args)?;
    let out = out_dir(args)?;
    let net = &setup.net;
    let targets: Vec<&str> = args.regions.iter().map(String::as_str).collect();
    let currents =
        analysis::currents_of_run(net, &setup.input, &setup.forward_options(), &targets)?;
    write_json(&out.join("currents.json"), &currents.to_json())?;
    currents.save_safetensors(&out.join("currents.safetensors"))?;
    let sources: Vec<String> = currents
        .sources
        .iter()
        .map(|s| if s.input { format!("{} (input)", s.name) } else { s.name.clone() })
        .collect();
    let cells = |m: &Vec<Vec<f64>>| -> Vec<Vec<Option<f64>>> {
        m.iter()
            .zip(&currents.connected)
            .map(|(row, linked)| row.iter().zip(linked).map(|(v, &l)| l.then_some(*v)).collect())
            .collect()
    };
    plot::matrix_figure(
        &out.join("currents.png"),
        "mean current into each region (target) from each source",
        &currents.targets,
        &sources,
        &cells(&currents.mean),
        "mean current",
    )?;
    plot::matrix_figure(
        &out.join("currents_abs.png"),
        "mean absolute current into each region from each source",
        &currents.targets,
        &sources,
        &cells(&currents.mean_abs),
        "mean |current|",
    )?;
    // Time courses: the currents' layout is the network's, time in dimension 1 when batch first.
    let settings = net.architecture().settings();
    let time_dim = usize::from(settings.batch_first);
    let name = net.architecture().name();
    let trials = setup.input.dim(1 - time_dim).map_err(mrnn_runtime::Error::from)?;
    let trials = if trials == 1 { "1 trial".to_owned() } else { format!("{trials} trials") };
    plot::current_grid_figure(
        &out.join("currents_over_time.png"),
        &format!("{name}: current into each region (row) from each source (column), {trials}"),
        &plot::current_grid(&currents, time_dim)?,
        &[],
        "step",
    )?;
    let rates = net.forward(&setup.input, &setup.forward_options())?.h;
    let mut activity = plot::region_activity(net.architecture(), &rates, 3)?;
    activity.retain(|r| currents.targets.contains(&r.name));
    plot::activity_figure(
        &out.join("activity.png"),
        &format!("{name}: rates of each region over time, {trials}"),
        &activity,
        &[],
        "step",
    )?;
    for ((t, row), linked) in currents.targets.iter().zip(&currents.mean).zip(&currents.connected) {
        let parts: Vec<String> = currents
            .sources
            .iter()
            .zip(row)
            .zip(linked)
            .filter(|(_, l)| **l)
            .map(|((s, v), _)| format!("{} {v:+.4}", s.name))
            .collect();
        say!("mean current {t} <- {}", parts.join(", "));
    }
    eprintln!("wrote {}", out.display());
    Ok(())
}
