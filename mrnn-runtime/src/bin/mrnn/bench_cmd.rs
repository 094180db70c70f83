//! `mrnn bench`: times forward, forward+backward and training steps of a network, and prints one
//! JSON line in the format of `../shared/bench/torch_baseline.py`, so that the two can be
//! compared run for run (`mrnn-runtime/bench/compare.sh`).

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use mrnn_ir::Spec;
use mrnn_ir::spec::{ConnectionSpec, InputRegionSpec, ModelSpec, RegionSpec};
use mrnn_runtime::optim::{AdamW, ParamsAdamW};
use mrnn_runtime::{DType, Forward, Network, Tensor, loss};

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
    /// Hidden units of the E/I network (80 % excitatory).
    #[arg(long = "H", default_value_t = 256)]
    hidden: usize,
    /// Input units of the E/I network (default H / 8).
    #[arg(long = "I")]
    inputs: Option<usize>,
    /// Batch size.
    #[arg(long = "B", default_value_t = 32)]
    batch: usize,
    /// Steps per sequence.
    #[arg(long = "T", default_value_t = 100)]
    steps: usize,
    /// What to time.
    #[arg(long = "pass", value_enum, default_value_t = Pass::Fwdbwd)]
    pass: Pass,
    /// Timed runs (after 2 warm-up runs).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// alpha = dt / tau when the config has no "model" object.
    #[arg(long, default_value_t = 0.1)]
    alpha: f64,
    /// Activation when the config has no "model" object.
    #[arg(long, default_value = "relu")]
    act: String,
    /// `cpu` or `cuda`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// A connectome-like network instead: this many regions of H / regions units, each pair
    /// connected with probability `--connect` (plus every self-connection), seeded.
    #[arg(long)]
    connectome: Option<usize>,
    /// Connection probability of `--connectome` networks.
    #[arg(long, default_value_t = 0.1)]
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
            if src == dst || rng.random_bool(p.clamp(0.0, 1.0)) {
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

pub(crate) fn bench(args: &BenchArgs) -> Result<(), Failure> {
    let device = device(&args.device)?;
    let (mut spec, case, file, text) = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::Invalid(format!("error: cannot read `{}`: {e}", path.display()))
            })?;
            let file = path.display().to_string();
            (mrnn_ir::read_spec(&text, &file)?, file.clone(), file, text)
        }
        None if args.connectome.is_some() => {
            let regions = args.connectome.unwrap_or(1).max(1);
            let inputs = args.inputs.unwrap_or((args.hidden / 8).max(1));
            let case = format!("connectome-{regions}x{}-p{}", args.hidden / regions, args.connect);
            (
                connectome_spec(regions, args.hidden / regions, inputs, args.connect),
                case,
                "connectome.json".to_owned(),
                String::new(),
            )
        }
        None => {
            if args.hidden < 2 {
                return Err(Failure::Usage("--H must be at least 2".into()));
            }
            let inputs = args.inputs.unwrap_or((args.hidden / 8).max(1));
            (ei_spec(args.hidden, inputs), "ei".to_owned(), "ei.json".to_owned(), String::new())
        }
    };
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
    let network = Network::new(arch, &device)?;
    let (h, i) = (network.hidden_size(), network.input_size());
    let (b, t) = (args.batch, args.steps);
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
