#![deny(warnings)]
use mrnn_runtime::mrnn;
mrnn! {
    /// Cortico loop.
    pub Cbgtcl {
        dynamics: leaky(dt = 10.0, tau = 100.0),
        activation: relu,
        seed: 7,
        input iti[25]: exc;
        region d1[50]: inh;
        region d2[50]: inh;
        region gpe[50]: inh, base_firing = 1.0, init = 1.0;
        region alm_exc[40]: exc in alm;
        d1 -> d1, d2 (sparsity = 0.9);
        alm_exc -> d1 (sign = exc);
        iti -> d1, d2, alm_exc (sparsity = 0.25);
        d2 -> gpe;
    }
}
mrnn! { Small { region a[3]: exc; input u[1]: exc; u -> a; } }
#[test]
fn consts() {
    assert_eq!(Cbgtcl::HIDDEN, 190);
    assert_eq!(Cbgtcl::GPE, 100..150);
    assert_eq!(Cbgtcl::ARCHITECTURE.regions().len(), 4);
    assert_eq!(Small::HIDDEN, 3);
}
