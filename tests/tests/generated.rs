//! The API `mrnn!` generates: sizes, per-region ranges and the `ARCHITECTURE` constant of the
//! CBGTCL network written in the DSL, checked against the same network compiled at run time from
//! mRNNTorch's `CBGTCL.json` (`mrnn_ir::compile_json_file`).
//!
//! The private networks at the end are deliberately left (partly) unused: the crate is linted
//! with `clippy --all-targets -D warnings`, so a generated item that triggers `dead_code` or a
//! pedantic lint fails CI here.

use std::ops::Range;
use std::path::PathBuf;

use mrnn_runtime::{Architecture, mrnn};

mrnn! {
    /// The CBGTCL loop of `shared/reference/CBGTCL.json`, as in `tests/expand/cbgtcl.mrnn`.
    pub Cbgtcl {
        dynamics: leaky(dt = 10.0, tau = 100.0),
        activation: relu,
        dale: recurrent + input,

        region d1[50]: inh;
        region d2[50]: inh;
        region gpe[50]: inh, base_firing = 1.0, init = 1.0;
        region stn[50]: exc, base_firing = 1.0;
        region snr[50]: inh, base_firing = 1.0, init = 1.0;
        region thal[50]: exc, base_firing = 1.0;
        region alm_exc[40]: exc;
        region alm_inhib[10]: inh;
        input iti[25]: exc;

        d1 -> d1, d2 (sparsity = 0.9);
        d2 -> d1, d2 (sparsity = 0.9);
        d2 -> gpe (sparsity = 0.25);
        d1 -> snr (sparsity = 0.25);
        gpe -> stn (sparsity = 0.25);
        stn -> snr (sparsity = 0.25);
        snr -> thal (sparsity = 0.25);
        thal -> d1, d2, alm_exc, alm_inhib (sparsity = 0.25);
        alm_exc -> alm_exc, alm_inhib (sparsity = 0.25);
        alm_inhib -> alm_inhib, alm_exc (sparsity = 0.25);
        alm_exc -> d1, d2 (sparsity = 0.25);

        iti -> d1, d2 (sparsity = 0.25);
    }
}

// The constants are usable in const contexts.
const _: () = assert!(Cbgtcl::HIDDEN == 350 && Cbgtcl::INPUT == 25);
const GPE: Range<usize> = Cbgtcl::GPE;

fn reference(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference").join(name)
}

/// CBGTCL.json compiled at run time, under the generated type's name (a JSON network is named
/// after its file, so it is read under that name).
fn from_json() -> Architecture {
    let path = reference("CBGTCL.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{}: {e} (shared/reference beside the checkout)", path.display())
    });
    let compiled =
        mrnn_ir::compile_json(&text, "Cbgtcl.json").unwrap_or_else(|report| panic!("{report}"));
    assert_eq!(compiled.warnings.diagnostics.len(), 0, "{}", compiled.warnings);
    compiled.architecture
}

#[test]
fn sizes_match_the_json_config() {
    let arch = mrnn_ir::compile_json_file(&reference("CBGTCL.json"))
        .unwrap_or_else(|report| panic!("{report}"))
        .architecture;
    assert_eq!(Cbgtcl::HIDDEN, arch.hidden_size());
    assert_eq!(Cbgtcl::INPUT, arch.input_size());
    assert_eq!(Cbgtcl::SEED, arch.settings().seed);
    assert_eq!(Cbgtcl::ARCHITECTURE.hidden_size(), Cbgtcl::HIDDEN);
    assert_eq!(Cbgtcl::ARCHITECTURE.input_size(), Cbgtcl::INPUT);
}

#[test]
fn region_constants_are_the_json_ranges() {
    let arch = from_json();
    let recurrent = [
        ("d1", Cbgtcl::D1),
        ("d2", Cbgtcl::D2),
        ("gpe", Cbgtcl::GPE),
        ("stn", Cbgtcl::STN),
        ("snr", Cbgtcl::SNR),
        ("thal", Cbgtcl::THAL),
        ("alm_exc", Cbgtcl::ALM_EXC),
        ("alm_inhib", Cbgtcl::ALM_INHIB),
    ];
    assert_eq!(recurrent.len(), arch.regions().len(), "one constant per region");
    for (name, range) in recurrent {
        let region =
            arch.region(name).unwrap_or_else(|| panic!("CBGTCL.json has no region `{name}`"));
        assert_eq!(range, region.range(), "range of `{name}`");
    }
    assert_eq!(Cbgtcl::ITI, arch.input_region("iti").expect("input `iti`").range());
    assert_eq!(GPE, 100..150);
    assert_eq!(Cbgtcl::ALM_INHIB.end, Cbgtcl::HIDDEN, "the last region ends the hidden vector");
}

#[test]
fn architecture_constant_equals_the_json_architecture() {
    let arch = from_json();
    assert_eq!(Cbgtcl::ARCHITECTURE.regions(), arch.regions());
    assert_eq!(Cbgtcl::ARCHITECTURE.inputs(), arch.inputs());
    assert_eq!(Cbgtcl::ARCHITECTURE.connections(), arch.connections());
    assert_eq!(Cbgtcl::ARCHITECTURE.settings(), arch.settings());
    assert_eq!(Cbgtcl::ARCHITECTURE, arch);
    assert_eq!(Cbgtcl::ARCHITECTURE.to_string(), arch.to_string());
}

/// A typed network keeps its type through training and checkpoints: it converts to the
/// untyped network a trainer takes and back (refused for another architecture), loads a
/// checkpoint as itself, and takes weights in place, but only of its own architecture.
#[test]
fn the_typed_network_survives_training_and_checkpoints() {
    use mrnn_runtime::task::{PerceptualDecision, Task};
    use mrnn_runtime::train::{Model, ReadoutFrom, TrainConfig, Trainer};
    use mrnn_runtime::{Device, Network};

    let device = Device::Cpu;
    let dir = std::env::temp_dir().join(format!("mrnn-typed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The decision task's two channels go to two of the 25 `iti` units, by padding the input.
    let task = PerceptualDecision::default();
    assert!(task.input_size() <= Cbgtcl::INPUT);
    let net = Cbgtcl::with_seed(7, &device).unwrap();
    let before = net.w_rec().as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let model = Model::new(net.into(), 1, ReadoutFrom::All, 7).unwrap();
    let config = TrainConfig { steps: 2, batch: 4, ..TrainConfig::default() };
    let mut trainer = Trainer::new(model, Padded(task), config).unwrap();
    while !trainer.finished() {
        trainer.step().unwrap();
    }
    let trained = Cbgtcl::try_from(trainer.into_model().network).unwrap();
    let after = trained.w_rec().as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_ne!(before, after, "training changed the weights");

    let path = dir.join("cbgtcl.safetensors");
    trained.save(&path).unwrap();
    let loaded = Cbgtcl::load(&path, &device).unwrap();
    let mut fresh = Cbgtcl::with_seed(8, &device).unwrap();
    fresh.load_weights(&path).unwrap();
    for net in [&loaded, &fresh] {
        let w = net.w_rec().as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(w, after);
    }

    // Another architecture is refused, whichever way it comes.
    let other = Network::new(Other::ARCHITECTURE, &device).unwrap();
    let other_path = dir.join("other.safetensors");
    other.save(&other_path).unwrap();
    assert!(Cbgtcl::try_from(other).is_err());
    assert!(Cbgtcl::load(&other_path, &device).is_err());
    assert!(fresh.load_weights(&other_path).is_err());
    let w = fresh.w_rec().as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(w, after, "a refused load changes nothing");
    let _ = std::fs::remove_dir_all(&dir);
}

mrnn! {
    /// Another architecture, to be refused.
    Other {
        region e[3]: exc;
        region i[2]: inh;
        input u[1]: exc;
        e -> e, i;
        i -> e;
        u -> e;
    }
}

/// The decision task with its inputs widened to CBGTCL's 25 `iti` units (the rest zero).
#[derive(Debug)]
struct Padded(mrnn_runtime::task::PerceptualDecision);

impl mrnn_runtime::task::Task for Padded {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn input_size(&self) -> usize {
        Cbgtcl::INPUT
    }
    fn output_size(&self) -> usize {
        self.0.output_size()
    }
    fn steps(&self) -> usize {
        self.0.steps()
    }
    fn sample(
        &self,
        batch: usize,
        rng: &mut mrnn_runtime::task::ChaCha8Rng,
        device: &mrnn_runtime::Device,
    ) -> mrnn_runtime::Result<mrnn_runtime::task::Trials> {
        let mut trials = self.0.sample(batch, rng, device)?;
        let pad = Cbgtcl::INPUT - self.0.input_size();
        trials.input = trials.input.pad_with_zeros(2, 0, pad)?;
        Ok(trials)
    }
    fn accuracy(
        &self,
        output: &mrnn_runtime::Tensor,
        trials: &mrnn_runtime::task::Trials,
    ) -> mrnn_runtime::Result<f64> {
        self.0.accuracy(output, trials)
    }
    fn accuracy_name(&self) -> &'static str {
        self.0.accuracy_name()
    }
}

mrnn! {
    /// Private: only `HIDDEN` and one range are used, so every other generated item is dead
    /// code as far as this crate can tell.
    PartlyUsed {
        dynamics: elman,
        activation: tanh,
        dale: none,
        region h[4];
        region g[2]: learnable_bias;
        input u[3];
        u -> h;
        h -> h, g (sparsity = 0.5);
    }
}

mrnn! {
    /// Private and never used at all.
    NeverUsed {
        region v1[3]: exc, base_firing = 0.1;
    }
}

#[test]
fn private_networks_have_the_same_constants() {
    assert_eq!(PartlyUsed::HIDDEN, 6);
    assert_eq!(PartlyUsed::G, 4..6);
}
