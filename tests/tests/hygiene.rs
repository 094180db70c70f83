//! Hygiene: generated code names everything by absolute path (`::core::…`, `::mrnn_runtime::…`),
//! so user items named like the types, variants, traits and macros it uses cannot capture it
//! (after serde's `test_gen.rs`). Each module below shadows those names and then invokes `mrnn!`;
//! the test is that this file compiles, and that the constants are the network's.
//! Primitive type names too: generated code spells them `::core::primitive::usize`.

// The shadowing items exist only to be in scope; most are never used.
#![allow(dead_code, unused_macros, reason = "the shadowing items are never used, only declared")]

/// Every name the generated code uses, declared as a unit struct beside the invocation.
mod shadowed_types {
    use mrnn_runtime::mrnn;

    struct Result;
    struct Ok;
    struct Err;
    struct Option;
    struct Some;
    struct None;
    struct Tensor;
    struct Device;
    struct Network;
    struct Forward;
    struct Trajectory;
    struct Architecture;
    struct Region;
    struct InputRegion;
    struct Connection;
    struct Settings;
    struct Dynamics;
    struct Activation;
    struct Dale;
    struct Noise;
    struct Sign;
    struct Source;
    struct Cow;
    struct Range;
    struct Debug;
    struct Deref;
    struct Default;
    struct Vec;
    struct String;
    struct Box;
    struct From;
    struct Into;
    struct Error;
    #[allow(non_camel_case_types, reason = "shadows the primitive on purpose")]
    struct usize;
    #[allow(non_camel_case_types, reason = "shadows the primitive on purpose")]
    struct u64;
    #[allow(non_camel_case_types, reason = "shadows the primitive on purpose")]
    struct f64;
    #[allow(non_camel_case_types, reason = "shadows the primitive on purpose")]
    struct bool;
    struct Product;

    // Modules named like the crates generated code paths start from: `::core` and
    // `::mrnn_runtime` must still mean the crates.
    mod core {}
    mod std {}
    mod alloc {}
    mod __private {}

    mrnn! {
        /// A network whose scope shadows every name of the generated code.
        pub Shadowed {
            dynamics: leaky(dt = 10.0, tau = 100.0),
            noise: (act = 0.01, inp = 0.0),
            spectral_radius: 1.0,
            region exc[6]: exc in cortex, base_firing = 1.0;
            region inh[2]: inh in cortex, learnable_bias;
            input cue[3]: exc;
            exc -> exc, inh (sparsity = 0.5);
            inh -> exc (sign = inh);
            cue -> exc;
        }
    }

    #[test]
    fn constants_survive_shadowed_names() {
        assert_eq!(Shadowed::HIDDEN, 8);
        assert_eq!(Shadowed::INPUT, 3);
        assert_eq!(Shadowed::EXC, 0..6);
        assert_eq!(Shadowed::INH, 6..8);
        assert_eq!(Shadowed::CUE, 0..3);
        assert_eq!(Shadowed::ARCHITECTURE.connections().len(), 4);
        assert_eq!(Shadowed::ARCHITECTURE.name(), "Shadowed");
    }
}

/// Macros generated code calls, redefined to fail if they were ever picked up instead of
/// `::core`'s. The `from` form is used because it expands to `::core::include_bytes!`.
mod shadowed_macros {
    use mrnn_runtime::mrnn;

    macro_rules! include_bytes {
        ($($t:tt)*) => {
            compile_error!("generated code used a local `include_bytes!`")
        };
    }
    macro_rules! unreachable {
        ($($t:tt)*) => {
            compile_error!("generated code used a local `unreachable!`")
        };
    }
    macro_rules! compile_error {
        ($($t:tt)*) => {
            ::core::compile_error!("generated code used a local `compile_error!`")
        };
    }

    mrnn!(pub FromJson from "ui/json/valid.json" { activation: tanh, });

    #[test]
    fn from_form_survives_shadowed_macros() {
        assert_eq!(FromJson::HIDDEN, 5);
        assert_eq!(FromJson::D1, 0..5);
        assert_eq!(FromJson::ARCHITECTURE.settings().activation, mrnn_runtime::Activation::Tanh);
    }
}

/// The generated type may itself be called like the runtime's types.
mod network_named_network {
    use mrnn_runtime::mrnn;

    mrnn! {
        pub Network {
            region v1[4]: exc, init = 0.5;
            v1 -> v1;
        }
    }

    mod tensor {
        use mrnn_runtime::mrnn;

        mrnn! {
            pub Tensor {
                dale: none,
                region v1[3]: base_firing = 1.0;
            }
        }

        #[test]
        fn a_network_called_tensor_compiles() {
            assert_eq!(Tensor::HIDDEN, 3);
        }
    }

    #[test]
    fn a_network_called_network_compiles() {
        assert_eq!(Network::HIDDEN, 4);
        assert_eq!(Network::V1, 0..4);
        // Exact: 0.5 is written and stored as the same binary fraction.
        assert_eq!(Network::ARCHITECTURE.regions()[0].init.to_bits(), 0.5f64.to_bits());
    }
}
