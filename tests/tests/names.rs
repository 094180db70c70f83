//! Names that are not Rust identifiers, and groups, through the macro and compiled for real: a
//! JSON config (the `from` form) whose region names hold spaces, dashes, accents, leading digits
//! and keywords, and a DSL network that uses a group as a connection endpoint. Their constants
//! exist, hold the right ranges, and the networks build and run.

use mrnn_runtime::{DType, Device, Tensor, mrnn};

mrnn!(pub FromConfig from "tests/awkward_names.json");

mrnn! {
    /// `alm` is a group: `alm -> thal` connects both of its regions.
    pub Grouped {
        input cue[2]: exc;
        region alm_exc[4]: exc in alm;
        region alm_inh[2]: inh in alm;
        region thal[3]: exc, base_firing = 0.5;
        region "str d1"[2]: inh in striatum;
        region "str-d2"[2]: inh in striatum;
        cue -> alm;
        alm -> thal;
        thal -> alm, striatum;
        striatum -> thal;
    }
}

#[test]
fn awkward_names_have_their_constants() {
    assert_eq!(FromConfig::ALM_EXC, 0..4);
    assert_eq!(FromConfig::ALM_INH, 4..6);
    assert_eq!(FromConfig::U00E9TAT, 6..9);
    assert_eq!(FromConfig::_1ST, 9..11);
    assert_eq!(FromConfig::SELF, 11..12);
    assert_eq!(FromConfig::CUE_1, 0..2);
    assert_eq!(FromConfig::TYPE, 2..3);
    assert_eq!(FromConfig::ALM_CORTEX, 0..6);
    assert_eq!((FromConfig::HIDDEN, FromConfig::INPUT), (12, 3));
    // The names themselves are kept: the string API finds them.
    let arch = FromConfig::ARCHITECTURE;
    assert_eq!(arch.region("état").expect("the region `état`").range(), 6..9);
}

#[test]
fn a_group_endpoint_connects_each_of_its_regions() {
    let arch = &Grouped::ARCHITECTURE;
    let pairs: Vec<(&str, &str)> = arch
        .connections()
        .iter()
        .map(|c| (arch.source_name(c.src), arch.regions()[c.dst].name.as_ref()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("cue", "alm_exc"),
            ("cue", "alm_inh"),
            ("alm_exc", "thal"),
            ("alm_inh", "thal"),
            ("thal", "alm_exc"),
            ("thal", "alm_inh"),
            ("thal", "str d1"),
            ("thal", "str-d2"),
            ("str d1", "thal"),
            ("str-d2", "thal"),
        ]
    );
    assert_eq!((Grouped::ALM, Grouped::STRIATUM, Grouped::STR_D1), (0..6, 9..13, 9..11));
}

#[test]
fn networks_with_awkward_names_build_and_run() -> mrnn_runtime::Result<()> {
    let net = FromConfig::new(&Device::Cpu)?;
    let input = Tensor::ones((1, 4, FromConfig::INPUT), DType::F32, &Device::Cpu)?;
    assert_eq!(net.forward(&input)?.h.dims(), &[1, 4, FromConfig::HIDDEN]);
    let net = Grouped::new(&Device::Cpu)?;
    let input = Tensor::ones((1, 4, Grouped::INPUT), DType::F32, &Device::Cpu)?;
    assert_eq!(net.forward(&input)?.h.dims(), &[1, 4, Grouped::HIDDEN]);
    Ok(())
}
