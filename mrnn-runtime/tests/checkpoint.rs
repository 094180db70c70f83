//! Checkpoints: round trips, training checkpoints read back alone (network and readout),
//! refusals of other architectures and of damaged or non-finite files, atomic writes, and
//! mRNNTorch state dicts in and out.
#![allow(clippy::float_cmp, reason = "masks and signs hold exactly 0, 1 or -1")]

mod common;

use std::collections::HashMap;

use common::{TempDir, reference, values};
use mrnn_runtime::checkpoint::{Checkpoint, FileKind, TrainingState, file_kind};
use mrnn_runtime::task::{FlipFlop, Task};
use mrnn_runtime::train::{Model, ReadoutFrom, TrainConfig, Trainer};
use mrnn_runtime::{
    DType, Device, Error, Forward, Matrix, Network, Overrides, StateDict, Tensor, builtin,
};

fn cbgtcl(seed: u64) -> Network {
    let overrides = Overrides { seed: Some(seed), ..Overrides::default() };
    Network::from_json_file(reference("CBGTCL.json"), &overrides, &Device::Cpu).unwrap()
}

fn same_network(a: &Network, b: &Network) {
    assert_eq!(values(a.w_rec().as_tensor()), values(b.w_rec().as_tensor()));
    assert_eq!(values(a.w_inp().as_tensor()), values(b.w_inp().as_tensor()));
    for m in [Matrix::Recurrent, Matrix::Input] {
        assert_eq!(values(a.mask(m)), values(b.mask(m)));
        assert_eq!(values(a.sign_matrix(m)), values(b.sign_matrix(m)));
    }
}

#[test]
fn save_and_load_round_trip() {
    let dir = TempDir::new("round-trip");
    let path = dir.join("cbgtcl.safetensors");
    let net = cbgtcl(5);
    net.save(&path).unwrap();
    let loaded = Network::load(&path, &Device::Cpu).unwrap();
    same_network(&net, &loaded);
    assert_eq!(loaded.seed(), 5);
    assert_eq!(loaded.architecture().name(), "CBGTCL");
    let input = Tensor::rand(0f32, 1.0, (3, 8, 25), &Device::Cpu).unwrap();
    let (a, b) = (
        net.forward(&input, &Forward::default()).unwrap(),
        loaded.forward(&input, &Forward::default()).unwrap(),
    );
    assert_eq!(values(&a.h), values(&b.h));

    // Loading into a network of the same architecture, drawn with another seed, adopts
    // everything, masks included.
    let mut other = cbgtcl(6);
    other.load_weights(&path).unwrap();
    same_network(&net, &other);
    assert_eq!(other.seed(), 5);
}

#[test]
fn refuses_a_checkpoint_of_another_architecture() {
    let dir = TempDir::new("refuse");
    let path = dir.join("cbgtcl.safetensors");
    cbgtcl(0).save(&path).unwrap();
    // The same regions with another activation and one sparsity changed.
    let text = std::fs::read_to_string(reference("CBGTCL.json")).unwrap();
    let mut spec = mrnn_ir::read_spec(&text, "CBGTCL.json").unwrap();
    spec.recurrent_connections[4].sparsity = Some(0.5);
    Overrides { activation: Some("tanh".into()), ..Overrides::default() }.apply(&mut spec);
    let arch = mrnn_ir::compile_spec(&spec, "CBGTCL.json", &text).unwrap().architecture;
    let mut net = Network::new(arch, &Device::Cpu).unwrap();
    let before = values(net.w_rec().as_tensor());
    let err = net.load_weights(&path).unwrap_err().to_string();
    assert!(
        err.contains("activation relu, expected tanh")
            || err.contains("activation tanh, expected relu"),
        "{err}"
    );
    assert!(
        err.contains("d2 -> gpe (sparsity 0.25)") && err.contains("d2 -> gpe (sparsity 0.5)"),
        "{err}"
    );
    assert_eq!(values(net.w_rec().as_tensor()), before, "a refused load changes nothing");

    // expect_architecture says the same.
    let saved = Network::load(&path, &Device::Cpu).unwrap();
    let err = saved.expect_architecture(net.architecture()).unwrap_err();
    assert!(matches!(err, Error::Architecture(_)));
    assert!(err.to_string().contains("activation"), "{err}");
}

#[test]
fn a_refused_write_leaves_the_old_file_intact() {
    let dir = TempDir::new("atomic");
    let path = dir.join("net.safetensors");
    let net = cbgtcl(1);
    net.save(&path).unwrap();
    let old = std::fs::read(&path).unwrap();
    // A stray file where the old writer put its temporary file no longer matters.
    std::fs::create_dir(dir.join("net.safetensors.tmp")).unwrap();
    cbgtcl(2).save(&path).unwrap();
    assert_ne!(std::fs::read(&path).unwrap(), old);
    let entries = std::fs::read_dir(dir.join("")).unwrap().count();
    assert_eq!(entries, 2, "the checkpoint and the stray directory, no temporary file");
    // A target that is not a regular file is refused, and nothing is written.
    let err = net.save(dir.join("net.safetensors.tmp")).unwrap_err().to_string();
    assert!(err.contains("is a directory, not a regular file"), "{err}");
    assert_eq!(std::fs::read_dir(dir.join("net.safetensors.tmp")).unwrap().count(), 0);
    // Written through a symbolic link, the link stays.
    #[cfg(unix)]
    {
        let link = dir.join("latest.safetensors");
        std::os::unix::fs::symlink("net.safetensors", &link).unwrap();
        net.save(&link).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        same_network(&net, &Network::load(&path, &Device::Cpu).unwrap());
    }
}

/// A small model trained for `steps` steps with a readout of the excitatory units only, and the
/// training checkpoint it saved.
fn trained(dir: &TempDir, from: ReadoutFrom) -> (Trainer<FlipFlop>, std::path::PathBuf) {
    let spec = builtin::excitatory_inhibitory(20, 3);
    let arch = mrnn_ir::compile_spec(&spec, "ei.json", "").unwrap().architecture;
    let network = Network::with_seed(arch, 3, &Device::Cpu).unwrap();
    let model = Model::new(network, 3, from, 3).unwrap();
    let task = FlipFlop::new(3, 16, 0.1).unwrap();
    let config = TrainConfig { steps: 2, batch: 4, seed: 1, ..TrainConfig::default() };
    let mut trainer = Trainer::new(model, task, config).unwrap();
    while !trainer.finished() {
        trainer.step().unwrap();
    }
    let path = dir.join("checkpoint.safetensors");
    trainer.save(&path).unwrap();
    (trainer, path)
}

#[test]
fn a_training_checkpoint_loads_alone_with_its_readout() {
    let dir = TempDir::new("training");
    for from in
        [ReadoutFrom::Excitatory, ReadoutFrom::Regions(vec!["inh".into()]), ReadoutFrom::All]
    {
        let (trainer, path) = trained(&dir, from.clone());
        assert_eq!(file_kind(&path).unwrap(), FileKind::Training);
        let ckpt = Checkpoint::load(&path, &Device::Cpu).unwrap();
        same_network(&trainer.model.network, &ckpt.network);
        assert_eq!(ckpt.training, Some(TrainingState { step: 2, task: "flip-flop".into() }));
        let readout = ckpt.readout.as_ref().expect("a training checkpoint has a readout");
        assert_eq!(readout.from, from);
        // The readout reads the same units as the trained model: the same outputs.
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(4);
        let input = trainer.task.sample(2, &mut rng, &Device::Cpu).unwrap().input;
        let (_, want) = trainer.model.run(&input, None).unwrap();
        let h = ckpt.network.forward(&input, &Forward::default()).unwrap().h;
        assert_eq!(values(&readout.forward(&h).unwrap()), values(&want), "{from:?}");
        let model = ckpt.into_model().unwrap();
        assert_eq!(values(&model.run(&input, None).unwrap().1), values(&want));
        // The network alone, and into a network of the same architecture.
        same_network(&trainer.model.network, &Network::load(&path, &Device::Cpu).unwrap());
        let mut other =
            Network::new(trainer.model.network.architecture().clone(), &Device::Cpu).unwrap();
        other.load_weights(&path).unwrap();
        same_network(&trainer.model.network, &other);
    }
    // A network's own checkpoint has no readout, and no model.
    let path = dir.join("net.safetensors");
    cbgtcl(0).save(&path).unwrap();
    assert_eq!(file_kind(&path).unwrap(), FileKind::Network);
    let ckpt = Checkpoint::load(&path, &Device::Cpu).unwrap();
    assert!(ckpt.readout.is_none() && ckpt.training.is_none());
    let err = ckpt.into_model().unwrap_err().to_string();
    assert!(err.contains("without a readout"), "{err}");
    assert_eq!(file_kind(reference("flip_flop_rnn_leaky.pth")).unwrap(), FileKind::Pth);
    assert_eq!(file_kind(reference("ei_elman_tanh.safetensors")).unwrap(), FileKind::Safetensors);
    assert_eq!(file_kind(reference("CBGTCL.json")).unwrap(), FileKind::Other);
}

/// Rewrites a safetensors file with `edit` applied to its tensors and metadata.
fn rewrite(
    path: &std::path::Path,
    edit: impl FnOnce(&mut HashMap<String, Tensor>, &mut HashMap<String, String>),
) {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut metadata = header.metadata().clone().unwrap_or_default();
    let mut tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    edit(&mut tensors, &mut metadata);
    let bytes = safetensors::serialize(tensors, Some(metadata)).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// `t` with its first entry replaced by `v`.
fn poisoned(t: &Tensor, v: f32) -> Tensor {
    let mut data = values(&t.to_dtype(DType::F32).unwrap());
    data[0] = v;
    Tensor::from_vec(data, t.dims(), &Device::Cpu).unwrap()
}

#[test]
fn non_finite_weights_biases_and_readouts_are_refused() {
    let dir = TempDir::new("non-finite");
    let (_, path) = trained(&dir, ReadoutFrom::All);
    let pristine = std::fs::read(&path).unwrap();
    for (key, v) in [
        ("network.W_rec", f32::NAN),
        ("network.W_inp", f32::INFINITY),
        ("network.base_firing", f32::NEG_INFINITY),
        ("readout.weight", f32::NAN),
        ("readout.bias", f32::INFINITY),
    ] {
        std::fs::write(&path, &pristine).unwrap();
        rewrite(&path, |t, _| {
            let bad = poisoned(&t[key], v);
            t.insert(key.to_owned(), bad);
        });
        let err = Checkpoint::load(&path, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains(&format!("`{key}` holds 1 non-finite value")), "{key}: {err}");
        if key.starts_with("network.") {
            let err = Network::load(&path, &Device::Cpu).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
            let mut net = cbgtcl(0);
            assert!(net.load_weights(&path).is_err());
        }
    }
}

#[test]
fn metadata_larger_than_the_tensors_is_refused_before_allocating() {
    let dir = TempDir::new("huge-metadata");
    let path = dir.join("net.safetensors");
    cbgtcl(0).save(&path).unwrap();
    // An architecture of 80000 units beside tensors of 350: refused on the shapes, at once.
    rewrite(&path, |_, meta| {
        let spec = r#"{"recurrent_regions": [{"name": "a", "num_units": 50000, "sign": "pos"},
                     {"name": "b", "num_units": 30000, "sign": "neg"}],
                     "recurrent_connections": [{"src_region": "a", "dst_region": "b"},
                     {"src_region": "b", "dst_region": "a"}]}"#;
        meta.insert("spec".into(), spec.into());
        let hash = <sha2::Sha256 as sha2::Digest>::digest(spec.as_bytes());
        let hex = hash.iter().fold(String::new(), |mut s, b| {
            let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{b:02x}"));
            s
        });
        meta.insert("spec_sha256".into(), hex);
    });
    let started = std::time::Instant::now();
    let err = Network::load(&path, &Device::Cpu).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    assert!(err.to_string().contains("[80000, 80000]"), "{err}");
    assert!(started.elapsed().as_secs() < 5);
}

#[test]
fn a_damaged_or_foreign_file_is_an_error() {
    let dir = TempDir::new("damaged");
    let path = dir.join("net.safetensors");
    cbgtcl(0).save(&path).unwrap();
    // Flip one character of the architecture in the metadata: its hash no longer matches.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(4).position(|w| w == b"thal").unwrap();
    bytes[at] = b'T';
    std::fs::write(&path, &bytes).unwrap();
    let err = Network::load(&path, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("SHA-256"), "{err}");
    // An mRNNTorch state dict is not one of our checkpoints.
    let err = Network::load(reference("ei_elman_tanh.safetensors"), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not an mrnn checkpoint"), "{err}");
    let err = Network::load(dir.join("missing.safetensors"), &Device::Cpu).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

#[test]
fn export_for_mrnntorch_and_import_back() {
    let dir = TempDir::new("export");
    let path = dir.join("torch.safetensors");
    let net = cbgtcl(3);
    net.export_mrnntorch(&path, "rnn.").unwrap();
    let sd = StateDict::read(&path).unwrap();
    let keys: Vec<&str> = sd.keys().collect();
    assert_eq!(
        keys,
        [
            "rnn.W_inp",
            "rnn.W_inp_mask",
            "rnn.W_inp_sign_matrix",
            "rnn.W_rec",
            "rnn.W_rec_mask",
            "rnn.W_rec_sign_matrix"
        ]
    );
    let mut back = cbgtcl(4);
    back.import_mrnntorch(&path, "rnn.").unwrap();
    same_network(&net, &back);
    // The wrong prefix names the keys the file has.
    let err = back.import_mrnntorch(&path, "").unwrap_err().to_string();
    assert!(err.contains("no tensor `W_rec`") && err.contains("rnn.W_rec_mask"), "{err}");
}

#[test]
fn import_checks_masks_block_by_block() {
    let net = cbgtcl(0);
    let tensors = |rec_mask: Tensor| {
        let sign = net.sign_matrix(Matrix::Recurrent).clone();
        StateDict::from_tensors(
            "edited.pth",
            [
                ("W_rec".to_owned(), net.w_rec().as_tensor().clone()),
                ("W_rec_mask".to_owned(), rec_mask),
                ("W_rec_sign_matrix".to_owned(), sign),
                ("W_inp".to_owned(), net.w_inp().as_tensor().clone()),
                ("W_inp_mask".to_owned(), net.mask(Matrix::Input).clone()),
                ("W_inp_sign_matrix".to_owned(), net.sign_matrix(Matrix::Input).clone()),
            ],
        )
    };
    // One more zero in a column of the sparse block snr -> thal.
    let (snr, thal) = (net.region_range("snr").unwrap(), net.region_range("thal").unwrap());
    let mut mask = values(net.mask(Matrix::Recurrent));
    let h = net.hidden_size();
    let row = thal.clone().find(|&r| mask[r * h + snr.start + 3] == 1.0).unwrap();
    mask[row * h + snr.start + 3] = 0.0;
    let mask = Tensor::from_vec(mask, (h, h), &Device::Cpu).unwrap();
    let mut other = cbgtcl(9);
    let before = values(other.mask(Matrix::Recurrent));
    let err = other.import_state_dict(&tensors(mask), "").unwrap_err().to_string();
    assert!(err.starts_with("checkpoint `edited.pth`: W_rec block snr -> thal: "), "{err}");
    assert_eq!(values(other.mask(Matrix::Recurrent)), before, "a refused import changes nothing");
    // The network's own masks pass.
    other.import_state_dict(&tensors(net.mask(Matrix::Recurrent).clone()), "").unwrap();
    same_network(&net, &other);
}

#[test]
fn mrnntorch_checkpoint_of_another_shape_is_refused() {
    let mut net = cbgtcl(0);
    let err = net.import_mrnntorch(reference("flip_flop_rnn_leaky.pth"), "rnn.").unwrap_err();
    match err {
        Error::Shape { what, got, .. } => {
            assert!(
                what.contains("rnn.W_rec") && what.contains("flip_flop_rnn_leaky.pth"),
                "{what}"
            );
            assert_eq!(got, [30, 30]);
        }
        other => panic!("expected a shape error, got {other}"),
    }
}

#[test]
fn a_network_with_non_finite_parameters_is_not_saved() {
    let dir = TempDir::new("save-non-finite");
    let path = dir.join("net.safetensors");
    let net = cbgtcl(0);
    net.save(&path).unwrap();
    let old = std::fs::read(&path).unwrap();
    net.set_w_rec(&poisoned(net.w_rec().as_tensor(), f32::NAN)).unwrap();
    for err in [net.save(&path).unwrap_err(), net.export_mrnntorch(&path, "rnn.").unwrap_err()] {
        let err = err.to_string();
        assert!(err.contains("not written: `W_rec` holds 1 non-finite value"), "{err}");
    }
    assert_eq!(std::fs::read(&path).unwrap(), old, "the previous file is kept");
}
