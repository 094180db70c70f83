//! Bad input gives errors that say what is wrong and what was expected; nothing panics.

mod common;

use common::{TempDir, reference};
use mrnn_runtime::{DType, Device, Error, Forward, Network, Overrides, Readout, StateDict, Tensor};

fn cbgtcl(overrides: &Overrides) -> Network {
    Network::from_json_file(reference("CBGTCL.json"), overrides, &Device::Cpu).unwrap()
}

fn zeros(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap()
}

fn shape_message(result: mrnn_runtime::Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(e @ Error::Shape { .. }) => e.to_string(),
        other => panic!("expected a shape error, got {other:?}"),
    }
}

#[test]
fn wrong_input_shapes_name_the_expected_shape() {
    let net = cbgtcl(&Overrides::default());
    let msg = shape_message(net.forward(&zeros(&[4, 50, 24]), &Forward::default()));
    assert_eq!(msg, "input has shape [4, 50, 24], expected [B, T, 25] (batch first)");
    let msg = shape_message(net.forward(&zeros(&[4, 25]), &Forward::default()));
    assert_eq!(msg, "input has shape [4, 25], expected [B, T, 25] (batch first)");
    let msg = shape_message(net.forward(&zeros(&[0, 5, 25]), &Forward::default()));
    assert!(msg.contains("at least one"), "{msg}");

    let time_first = cbgtcl(&Overrides { batch_first: Some(false), ..Overrides::default() });
    let msg = shape_message(time_first.forward(&zeros(&[4, 50, 24]), &Forward::default()));
    assert_eq!(msg, "input has shape [4, 50, 24], expected [T, B, 25] (time first)");
}

#[test]
fn wrong_option_shapes_name_the_option() {
    let net = cbgtcl(&Overrides::default());
    let input = zeros(&[4, 10, 25]);
    let msg = shape_message(net.forward(&input, &Forward::new().x0(zeros(&[3, 350]))));
    assert_eq!(msg, "x0 has shape [3, 350], expected [4, 350] ([B, H] with B = 4 from the input)");
    let msg = shape_message(net.forward(&input, &Forward::new().h0(zeros(&[4, 349]))));
    assert!(msg.starts_with("h0 has shape [4, 349], expected [4, 350]"), "{msg}");
    let msg = shape_message(net.forward(&input, &Forward::new().stim(zeros(&[4, 9, 350]))));
    assert!(msg.starts_with("stim has shape [4, 9, 350], expected [4, 10, 350]"), "{msg}");
    let msg = shape_message(net.forward(&input, &Forward::new().w_rec_eff(zeros(&[350, 25]))));
    assert!(msg.starts_with("w_rec_eff has shape [350, 25], expected [350, 350]"), "{msg}");
    let msg = shape_message(net.step(&zeros(&[2, 350]), &zeros(&[3, 25])));
    assert!(msg.starts_with("input has shape [3, 25], expected [2, 25]"), "{msg}");
    let msg = shape_message(net.set_w_rec(&zeros(&[350, 349])));
    assert!(msg.starts_with("W_rec has shape [350, 349]"), "{msg}");
    let msg = shape_message(net.set_base_firing(&zeros(&[350, 1])));
    assert!(msg.starts_with("base_firing has shape [350, 1]"), "{msg}");
}

#[test]
fn fixed_biases_cannot_be_changed() {
    let net = cbgtcl(&Overrides::default());
    let err = net.set_base_firing(&zeros(&[350])).unwrap_err().to_string();
    assert!(err.contains("base_firing of region `gpe` is fixed at 1"), "{err}");
}

#[test]
fn unknown_regions_list_the_known_ones() {
    let net = cbgtcl(&Overrides::default());
    let h = zeros(&[2, 5, 350]);
    for err in [
        net.activity(&h, &["thal", "thalamus"]).unwrap_err(),
        net.region_range("thalamus").unwrap_err(),
        net.weight_subset(&["d1", "thalamus"]).unwrap_err(),
        net.projection("thalamus", "d1").unwrap_err(),
        net.projection("d1", "thalamus").unwrap_err(),
    ] {
        match &err {
            Error::UnknownRegion { name, known } => {
                assert_eq!(name, "thalamus");
                assert!(known.contains("`thal`") && known.contains("`alm_inhib`"), "{known}");
            }
            other => panic!("expected an unknown region, got {other}"),
        }
    }
    let err = net.projection("d1", "thalamus").unwrap_err().to_string();
    assert!(err.contains("`iti` (input)"), "{err}");
    let err = net.input_range("d1").unwrap_err().to_string();
    assert!(err.contains("unknown region `d1`") && err.contains("`iti`"), "{err}");
    let msg = shape_message(net.activity(&zeros(&[2, 349]), &["d1"]));
    assert!(msg.contains("[..., 350]"), "{msg}");
}

#[test]
fn bad_files_and_configs_are_errors() {
    let dir = TempDir::new("bad-files");
    let garbage = dir.join("garbage.pth");
    std::fs::write(&garbage, b"not a checkpoint at all").unwrap();
    assert!(matches!(StateDict::read(&garbage), Err(Error::Checkpoint { .. })));
    // A zip signature followed by junk: candle's pickle reader must not take the program down.
    let fake_zip = dir.join("fake.pth");
    std::fs::write(&fake_zip, b"PK\x03\x04 definitely not a zip archive").unwrap();
    assert!(matches!(StateDict::read(&fake_zip), Err(Error::Checkpoint { .. })));
    // A truncated real checkpoint.
    let real = std::fs::read(reference("flip_flop_rnn_leaky.pth")).unwrap();
    let truncated = dir.join("truncated.pth");
    std::fs::write(&truncated, &real[..real.len() / 2]).unwrap();
    assert!(StateDict::read(&truncated).is_err());
    assert!(matches!(StateDict::read(dir.join("missing.pth")), Err(Error::Io { .. })));
    let empty = dir.join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    assert!(StateDict::read(&empty).is_err());

    let bad = Overrides { activation: Some("relux".into()), ..Overrides::default() };
    match Network::from_json_file(reference("CBGTCL.json"), &bad, &Device::Cpu) {
        Err(Error::Config(report)) => assert!(report.to_string().contains("relux"), "{report}"),
        other => panic!("expected a config error, got {other:?}"),
    }
    assert!(matches!(
        Network::from_json_file(dir.join("missing.json"), &Overrides::default(), &Device::Cpu),
        Err(Error::Io { .. })
    ));
}

#[test]
fn readout_shapes_are_checked() {
    assert!(matches!(
        Readout::from_tensors(&zeros(&[3, 30]), &zeros(&[2])),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        Readout::from_tensors(&zeros(&[3, 30, 1]), &zeros(&[3])),
        Err(Error::Shape { .. })
    ));
    let readout = Readout::new(30, 3, 0, &Device::Cpu).unwrap();
    let msg = shape_message(readout.forward(&zeros(&[2, 5, 29])));
    assert!(msg.contains("[..., 30]"), "{msg}");
    assert_eq!(readout.forward(&zeros(&[2, 5, 30])).unwrap().dims(), &[2, 5, 3]);
    let sd = StateDict::read(reference("flip_flop_rnn_leaky.pth")).unwrap();
    let err = Readout::from_state_dict(&sd, "readout.", &Device::Cpu).unwrap_err().to_string();
    assert!(
        err.contains("no tensor `readout.weight`") && err.contains("out_layer.weight"),
        "{err}"
    );
}

#[test]
fn zero_steps_give_empty_trajectories() {
    let net = cbgtcl(&Overrides::default());
    let out = net.forward(&zeros(&[2, 0, 25]), &Forward::default()).unwrap();
    assert_eq!(out.h.dims(), &[2, 0, 350]);
    assert_eq!(out.x.unwrap().dims(), &[2, 0, 350]);
}

#[test]
fn a_network_too_large_for_memory_is_refused_before_building() {
    // 800000 units pass the compiler (sizes are just numbers), but their [H, H] matrices are
    // terabytes: refused with the estimate, at once, instead of aborting in the allocator.
    let json = r#"{
        "recurrent_regions": [{"name": "ctx", "num_units": 500000, "sign": "pos"},
                              {"name": "inh", "num_units": 300000, "sign": "neg"}],
        "input_regions": [{"name": "u", "num_units": 3, "sign": "pos"}],
        "recurrent_connections": [{"src_region": "ctx", "dst_region": "inh"},
                                  {"src_region": "inh", "dst_region": "ctx"}],
        "input_connections": [{"src_region": "u", "dst_region": "ctx"}]
    }"#;
    let arch = mrnn_ir::compile_json(json, "huge.json").unwrap().architecture;
    let started = std::time::Instant::now();
    for result in [
        Network::new(arch.clone(), &Device::Cpu),
        Network::with_seed(arch.clone(), 3, &Device::Cpu),
    ] {
        match result {
            Err(e @ Error::TooLarge { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("800000 units") && msg.contains("TiB"), "{msg}");
                assert!(msg.contains("MRNN_MEMORY_LIMIT"), "{msg}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    assert!(started.elapsed().as_secs() < 5, "refused before allocating");
    // 8 matrices of [H, H + I] f32: the estimate is in the message's order of magnitude.
    assert!(Network::estimated_bytes(&arch) >= 8 * 4 * 800_000 * 800_000);
}
