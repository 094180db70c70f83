//! `mrnn bench`: times forward, forward+backward and training steps of a network, and prints one
//! JSON line in the format of `../shared/bench/torch_baseline.py`, so that the two can be
//! compared run for run (`mrnn-runtime/bench/compare.sh`).

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use mrnn_ir::Spec;
use mrnn_ir::spec::{ConnectionSpec, InputRegionSpec, ModelSpec, RegionSpec};
use mrnn_runtime::optim::{AdamW, ParamsAdamW};
use mrnn_runtime::{DType, Forward, Network, Tensor, loss, memory};

use crate::Failure;
use crate::train_cmd::device;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Pass {
    /// Forward only.
    Fwd,
    /// Forward, loss = mean(h^2) (the library's fused `loss::mean_square`), backward.
    Fwdbwd,
    /// Forward, MSE against a fixed target (the library's fused `loss::mse`), backward, one Adam
    /// step.
    Train,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Network config (mRNNTorch JSON); default: a 2-region E/I network of `--H` units.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Hidden units of the E/I network (80 % excitatory), at least 2.
    #[arg(
        long = "H",
        default_value_t = 256,
        conflicts_with = "config",
        allow_negative_numbers = true
    )]
    hidden: usize,
    /// Input units of the E/I network (default H / 8), at least 1.
    #[arg(long = "I", conflicts_with = "config", allow_negative_numbers = true)]
    inputs: Option<usize>,
    /// Batch size (at least 1).
    #[arg(long = "B", default_value_t = 32, allow_negative_numbers = true)]
    batch: usize,
    /// Steps per sequence (at least 1).
    #[arg(long = "T", default_value_t = 100, allow_negative_numbers = true)]
    steps: usize,
    /// What to time.
    #[arg(long = "pass", value_enum, default_value_t = Pass::Fwdbwd)]
    pass: Pass,
    /// Timed runs (after 2 warm-up runs), at least 1.
    #[arg(long, default_value_t = 10, allow_negative_numbers = true)]
    runs: usize,
    /// alpha = dt / tau, in (0, 1], when the config has no "model" object.
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    alpha: f64,
    /// Activation when the config has no "model" object.
    #[arg(long, default_value = "relu")]
    act: String,
    /// `cpu` or `cuda`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// A connectome-like network instead: this many regions (1 to H) of H / regions units, each
    /// pair connected with probability `--connect` (plus every self-connection), seeded.
    #[arg(long, conflicts_with = "config", allow_negative_numbers = true)]
    connectome: Option<usize>,
    /// Connection probability of `--connectome` networks, in [0, 1].
    #[arg(long, default_value_t = 0.1, requires = "connectome", allow_negative_numbers = true)]
    connect: f64,
    /// Recurrent product: the compiler's choice (`auto`), or force `dense` or `blocks`.
    #[arg(long, value_enum, default_value_t = ProductChoice::Auto)]
    product: ProductChoice,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ProductChoice {
    /// What the compiler chose from the block structure.
    Auto,
    /// One product with the whole matrix.
    Dense,
    /// One product per connection.
    Blocks,
}

/// The E/I network of `torch_baseline.py`'s `ei_config`: 80 % excitatory, all four recurrent
/// projections dense, one excitatory input region driving both.
fn ei_spec(hidden: usize, inputs: usize) -> Spec {
    let ne = ((0.8 * hidden as f64).round() as usize).clamp(1, hidden.saturating_sub(1).max(1));
    let region = |name: &str, n: usize, sign: &str| RegionSpec {
        name: Some(name.into()),
        num_units: Some(i64::try_from(n).unwrap_or(i64::MAX)),
        sign: Some(sign.into()),
        ..RegionSpec::default()
    };
    let conn = |s: &str, d: &str| ConnectionSpec {
        src_region: Some(s.into()),
        dst_region: Some(d.into()),
        ..ConnectionSpec::default()
    };
    Spec {
        recurrent_regions: vec![region("exc", ne, "pos"), region("inh", hidden - ne, "neg")],
        input_regions: vec![InputRegionSpec {
            name: Some("inp".into()),
            num_units: Some(i64::try_from(inputs).unwrap_or(i64::MAX)),
            sign: Some("pos".into()),
        }],
        recurrent_connections: vec![
            conn("exc", "exc"),
            conn("exc", "inh"),
            conn("inh", "exc"),
            conn("inh", "inh"),
        ],
        input_connections: vec![conn("inp", "exc"), conn("inp", "inh")],
        model: None,
    }
}

/// A connectome-like network: `regions` regions of `units` units (every fifth inhibitory), each
/// ordered pair connected with probability `p` (a fixed-seed draw), every region to itself, one
/// input region driving the first region.
fn connectome_spec(regions: usize, units: usize, inputs: usize, p: f64) -> Spec {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let name = |i: usize| format!("r{i}");
    let recurrent_regions = (0..regions)
        .map(|i| RegionSpec {
            name: Some(name(i)),
            num_units: Some(i64::try_from(units.max(1)).unwrap_or(i64::MAX)),
            sign: Some(if i % 5 == 4 { "neg" } else { "pos" }.into()),
            base_firing: Some(0.1),
            ..RegionSpec::default()
        })
        .collect();
    let mut recurrent_connections = Vec::new();
    for dst in 0..regions {
        for src in 0..regions {
            // `p` is checked to be in [0, 1] (`validate`): `random_bool` panics otherwise.
            if src == dst || rng.random_bool(p) {
                recurrent_connections.push(ConnectionSpec {
                    src_region: Some(name(src)),
                    dst_region: Some(name(dst)),
                    ..ConnectionSpec::default()
                });
            }
        }
    }
    Spec {
        recurrent_regions,
        input_regions: vec![InputRegionSpec {
            name: Some("inp".into()),
            num_units: Some(i64::try_from(inputs).unwrap_or(i64::MAX)),
            sign: Some("pos".into()),
        }],
        recurrent_connections,
        input_connections: vec![ConnectionSpec {
            src_region: Some("inp".into()),
            dst_region: Some(name(0)),
            ..ConnectionSpec::default()
        }],
        model: None,
    }
}

/// Every flag in range, before anything is built: NaN, zero and out-of-range values are usage
/// errors naming the flag.
fn validate(args: &BenchArgs) -> Result<(), Failure> {
    let usage = |m: String| Err(Failure::Usage(m));
    for (flag, value, least) in
        [("--B", args.batch, 1), ("--T", args.steps, 1), ("--runs", args.runs, 1)]
    {
        if value < least {
            return usage(format!("{flag} must be at least {least}, got {value}"));
        }
    }
    if args.config.is_none() {
        if args.hidden < 2 {
            return usage(format!(
                "--H must be at least 2 (excitatory and inhibitory units), got {}",
                args.hidden
            ));
        }
        if args.inputs == Some(0) {
            return usage("--I must be at least 1, got 0".into());
        }
    }
    if !(args.alpha > 0.0 && args.alpha <= 1.0) {
        return usage(format!("--alpha (dt / tau) must be in (0, 1], got {}", args.alpha));
    }
    if let Some(regions) = args.connectome
        && !(1..=args.hidden).contains(&regions)
    {
        return usage(format!(
            "--connectome must be between 1 and --H = {} (regions of at least one unit), got {regions}",
            args.hidden
        ));
    }
    if !(0.0..=1.0).contains(&args.connect) {
        return usage(format!("--connect must be a probability in [0, 1], got {}", args.connect));
    }
    Ok(())
}

/// About the memory a timed run needs besides the network: the optimizer's two moments per
/// parameter, the input `[B, T, I]`, and the trajectories. A forward pass peaked at 2.2
/// `[B, T, H]` tensors and a backward pass at 6.4 (RSS at H = 256, B = 32, T = 5000).
fn run_bytes(pass: Pass, (h, i, b, t): (usize, usize, usize, usize)) -> u64 {
    let sequences = if pass == Pass::Fwd { 3 } else { 7 };
    memory::f32_bytes(&[2, h, h.saturating_add(i)])
        .saturating_add(memory::f32_bytes(&[b, t, i]))
        .saturating_add(memory::f32_bytes(&[sequences, b, t, h]))
}

/// The network's spec, the case's name, and the file name and text the compiler reports on.
fn spec_of(args: &BenchArgs) -> Result<(Spec, String, String, String), Failure> {
    Ok(match (&args.config, args.connectome) {
        (Some(path), _) => {
            let text = mrnn_runtime::config::read_config(path).map_err(|e| match e {
                mrnn_runtime::Error::Io { source, .. } => {
                    Failure::Invalid(format!("error: cannot read `{}`: {source}", path.display()))
                }
                other => other.into(),
            })?;
            let file = path.display().to_string();
            (mrnn_ir::read_spec(&text, &file)?, file.clone(), file, text)
        }
        (None, Some(regions)) => {
            let inputs = args.inputs.unwrap_or((args.hidden / 8).max(1));
            let case = format!("connectome-{regions}x{}-p{}", args.hidden / regions, args.connect);
            (
                connectome_spec(regions, args.hidden / regions, inputs, args.connect),
                case,
                "connectome.json".to_owned(),
                String::new(),
            )
        }
        (None, None) => {
            let inputs = args.inputs.unwrap_or((args.hidden / 8).max(1));
            (ei_spec(args.hidden, inputs), "ei".to_owned(), "ei.json".to_owned(), String::new())
        }
    })
}

pub(crate) fn bench(args: &BenchArgs) -> Result<(), Failure> {
    validate(args)?;
    let device = device(&args.device)?;
    let (mut spec, case, file, text) = spec_of(args)?;
    // As torch_baseline.py: the config's "model" object if it has dt and tau, else --alpha/--act.
    let model = spec.model.get_or_insert_with(ModelSpec::default);
    if model.dt.is_none() || model.tau.is_none() {
        model.dt = Some(args.alpha);
        model.tau = Some(1.0);
    }
    if model.activation.is_none() {
        model.activation = Some(args.act.clone());
    }
    let arch = mrnn_ir::compile_spec(&spec, &file, &text)?.architecture;
    let arch = match args.product {
        ProductChoice::Auto => arch,
        ProductChoice::Dense => arch.with_product(mrnn_ir::Product::Dense),
        ProductChoice::Blocks => arch.with_product(mrnn_ir::Product::Blocks),
    };
    let product = format!("{:?}", arch.product()).to_lowercase();
    let (h, i) = (arch.hidden_size(), arch.input_size());
    let (b, t) = (args.batch, args.steps);
    memory::ensure_fits(
        format!(
            "`mrnn bench` of {h} units with B = {b}, T = {t} (the network, its optimizer and [B, T, H] trajectories)"
        ),
        Network::estimated_bytes(&arch).saturating_add(run_bytes(args.pass, (h, i, b, t))),
    )?;
    let network = Network::new(arch, &device)?;
    let u = Tensor::rand(0f32, 1.0, (b, t, i), &device).map_err(mrnn_runtime::Error::from)?;
    let x0 = Tensor::zeros((b, h), DType::F32, &device).map_err(mrnn_runtime::Error::from)?;
    let target = Tensor::rand(0f32, 1.0, (b, t, h), &device).map_err(mrnn_runtime::Error::from)?;
    // Every pass reads the rates only (as training does).
    let options = Forward::new().x0(x0).rates_only();
    let mut optimizer = AdamW::new(
        network.trainable_vars(),
        ParamsAdamW { lr: 1e-3, weight_decay: 0.0, ..ParamsAdamW::default() },
    )?;
    let mut once = || -> mrnn_runtime::Result<()> {
        match args.pass {
            Pass::Fwd => {
                let h = network.forward(&u, &options)?.h;
                device.synchronize()?;
                drop(h);
            }
            Pass::Fwdbwd => {
                let h = network.forward(&u, &options)?.h;
                let grads = loss::mean_square(&h)?.backward()?;
                device.synchronize()?;
                drop(grads);
            }
            Pass::Train => {
                let h = network.forward(&u, &options)?.h;
                let grads = loss::mse(&h, &target)?.backward()?;
                optimizer.step(&grads)?;
                device.synchronize()?;
            }
        }
        Ok(())
    };
    for _ in 0..2 {
        once()?;
    }
    let mut ms = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        let start = Instant::now();
        once()?;
        ms.push((start.elapsed().as_secs_f64() * 1e6).round() / 1e3);
    }
    let setting = |var: &str| std::env::var(var).ok().and_then(|v| v.parse::<u64>().ok());
    let threads = setting("RAYON_NUM_THREADS").unwrap_or(0);
    // How long candle's workers spin between operations (see `ensure_threads`): it moves small
    // runs' times by a third, so a record says what it ran with.
    let spin_limit = setting(mrnn_runtime::threads::SPIN_LIMIT_VAR);
    let pass = match args.pass {
        Pass::Fwd => "fwd",
        Pass::Fwdbwd => "fwdbwd",
        Pass::Train => "train",
    };
    let line = serde_json::json!({
        "impl": "mrnn", "case": case, "H": h, "I": i, "B": b, "T": t, "pass": pass,
        "threads": threads, "spin_limit": spin_limit, "device": args.device, "product": product, "ms": ms,
    });
    println!("{line}");
    Ok(())
}
