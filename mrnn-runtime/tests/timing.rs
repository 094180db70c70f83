//! Forward timing of CBGTCL (B = 64, T = 100) on the CPU. Ignored by default (timings belong
//! to a quiet machine): `cargo test -p mrnn-runtime --test timing -- --ignored --nocapture`.

mod common;

use std::time::Instant;

use common::reference;
use mrnn_runtime::{Device, Forward, Network, Overrides, Tensor};

#[test]
#[ignore = "timing: run on purpose with --ignored --nocapture"]
fn cbgtcl_forward_b64_t100() {
    let device = Device::Cpu;
    let net =
        Network::from_json_file(reference("CBGTCL.json"), &Overrides::default(), &device).unwrap();
    let input = Tensor::rand(0f32, 1.0, (64, 100, 25), &device).unwrap();
    let run = || {
        let start = Instant::now();
        let out = net.forward(&input, &Forward::default()).unwrap();
        assert_eq!(out.h.dims(), &[64, 100, 350]);
        start.elapsed().as_secs_f64() * 1e3
    };
    for _ in 0..2 {
        run();
    }
    let mut ms: Vec<f64> = (0..15).map(|_| run()).collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "CBGTCL forward B=64 T=100 (RAYON_NUM_THREADS={}): median {:.2} ms, min {:.2} ms, max {:.2} ms",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_default(),
        ms[ms.len() / 2],
        ms[0],
        ms[ms.len() - 1]
    );
}
