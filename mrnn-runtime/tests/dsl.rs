//! The two front doors reach the same engine: CBGTCL written in the `mrnn!` DSL and read from
//! its JSON config build the same network (same masks and weights from the same seed) and give
//! identical outputs.

mod common;

use common::{reference, values};
use mrnn_runtime::{Device, Forward, Matrix, Network, Overrides, Tensor, mrnn};

mrnn! {
    /// CBGTCL.json, written out: cortico-basal ganglia-thalamic loop.
    pub Cbgtcl {
        dynamics: leaky(dt = 10.0, tau = 100.0),
        activation: relu,
        seed: 0,
        input iti[25]: exc;
        region d1[50]: inh;
        region d2[50]: inh;
        region gpe[50]: inh, base_firing = 1.0, init = 1.0;
        region stn[50]: exc, base_firing = 1.0;
        region snr[50]: inh, base_firing = 1.0, init = 1.0;
        region thal[50]: exc, base_firing = 1.0;
        region alm_exc[40]: exc;
        region alm_inhib[10]: inh;
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

#[test]
fn dsl_and_json_build_the_same_network() {
    let device = Device::Cpu;
    let dsl = Cbgtcl::new(&device).unwrap();
    let json =
        Network::from_json_file(reference("CBGTCL.json"), &Overrides::default(), &device).unwrap();
    json.expect_architecture(&Cbgtcl::ARCHITECTURE).unwrap();
    dsl.expect_architecture(json.architecture()).unwrap();
    assert_eq!((Cbgtcl::HIDDEN, Cbgtcl::INPUT), (json.hidden_size(), json.input_size()));
    assert_eq!(Cbgtcl::THAL, json.region_range("thal").unwrap());

    // Masks and initial weights depend only on the seed and the region names.
    for m in [Matrix::Recurrent, Matrix::Input] {
        assert_eq!(values(dsl.mask(m)), values(json.mask(m)), "{} mask", m.name());
        assert_eq!(values(dsl.sign_matrix(m)), values(json.sign_matrix(m)), "{} signs", m.name());
    }
    assert_eq!(values(dsl.w_rec().as_tensor()), values(json.w_rec().as_tensor()));
    assert_eq!(values(dsl.w_inp().as_tensor()), values(json.w_inp().as_tensor()));

    // Given the same (new) weights, identical outputs.
    let w_rec = Tensor::rand(-0.1f32, 0.1, (350, 350), &device).unwrap();
    let w_inp = Tensor::rand(-0.1f32, 0.1, (350, 25), &device).unwrap();
    for net in [dsl.network(), &json] {
        net.set_w_rec(&w_rec).unwrap();
        net.set_w_inp(&w_inp).unwrap();
    }
    let input = Tensor::rand(0f32, 1.0, (3, 20, 25), &device).unwrap();
    let a = dsl.forward(&input).unwrap();
    let b = json.forward(&input, &Forward::default()).unwrap();
    assert_eq!(values(&a.h), values(&b.h));
    assert_eq!(values(a.x.as_ref().unwrap()), values(b.x.as_ref().unwrap()));

    // A network from JSON wraps into the generated type; another architecture does not.
    let wrapped = Cbgtcl::from_network(json).unwrap();
    assert_eq!(wrapped.hidden_size(), 350);
    let other =
        Network::from_json_file(reference("flip_flop.json"), &Overrides::default(), &device)
            .unwrap();
    let err = Cbgtcl::from_network(other).unwrap_err().to_string();
    assert!(err.contains("recurrent regions [exc[21], inhib[9]], expected [d1[50]"), "{err}");
}
