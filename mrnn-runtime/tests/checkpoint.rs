//! Checkpoints: round trips, refusals of other architectures, atomic writes, and mRNNTorch
//! state dicts in and out.
#![allow(clippy::float_cmp, reason = "masks and signs hold exactly 0, 1 or -1")]

mod common;

use common::{TempDir, reference, values};
use mrnn_runtime::{Device, Error, Forward, Matrix, Network, Overrides, StateDict, Tensor};

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
fn a_failed_write_leaves_the_old_file_intact() {
    let dir = TempDir::new("atomic");
    let path = dir.join("net.safetensors");
    let net = cbgtcl(1);
    net.save(&path).unwrap();
    let old = std::fs::read(&path).unwrap();
    // The temporary file cannot be created: a directory is in its way.
    std::fs::create_dir(dir.join("net.safetensors.tmp")).unwrap();
    let err = cbgtcl(2).save(&path).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), old);
    same_network(&net, &Network::load(&path, &Device::Cpu).unwrap());
    // No stray temporary files either once the obstacle is gone.
    std::fs::remove_dir(dir.join("net.safetensors.tmp")).unwrap();
    cbgtcl(2).save(&path).unwrap();
    assert!(!dir.join("net.safetensors.tmp").exists());
    assert_ne!(std::fs::read(&path).unwrap(), old);
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
