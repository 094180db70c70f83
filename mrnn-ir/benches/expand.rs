//! Expansion benchmark (not a test): how long `mrnn_ir::expand` takes on a DSL network of 200
//! regions and 2000 connections. Prints one JSON line with every run's time in milliseconds:
//!
//! ```text
//! cargo bench -p mrnn-ir --features codegen --bench expand [--profile dev] [-- RUNS]
//! {"bench": "expand", "regions": 200, "connections": 2000, "ms": [...], "median_ms": ...}
//! ```
//!
//! `--profile dev` measures the build proc macros actually run in (and reuses the debug build);
//! without it cargo builds the optimized `bench` profile.

use std::fmt::Write as _;
use std::time::Instant;

const REGIONS: usize = 200;
const FAN_OUT: usize = 10;

/// Region `i` projects to the next `FAN_OUT` regions (mod `REGIONS`): no duplicate pairs. Every
/// region has a tonic drive, so the network has no warnings.
fn network() -> String {
    let mut out = String::from("pub Large {\n");
    for i in 0..REGIONS {
        let sign = if i % 5 == 4 { "inh" } else { "exc" };
        writeln!(out, "    region r{i}[4]: {sign}, base_firing = 0.1;")
            .expect("writing to a String");
    }
    for i in 0..REGIONS {
        for k in 1..=FAN_OUT {
            writeln!(out, "    r{i} -> r{} (sparsity = 0.25);", (i + k) % REGIONS)
                .expect("writing to a String");
        }
    }
    out.push('}');
    out
}

fn main() {
    // `cargo bench` passes `--bench`; the first other argument, if any, is the number of runs.
    let runs: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let tokens: proc_macro2::TokenStream = network().parse().expect("the generated DSL lexes");
    // One warm-up run, which also checks that the network is valid.
    let output = mrnn_ir::expand(tokens.clone()).to_string();
    assert!(!output.contains("compile_error"), "the benchmark network has errors");
    let mut ms: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let output = mrnn_ir::expand(tokens.clone());
            let elapsed = start.elapsed().as_secs_f64() * 1e3;
            drop(std::hint::black_box(output));
            elapsed
        })
        .collect();
    let list = ms.iter().map(|t| format!("{t:.3}")).collect::<Vec<_>>().join(", ");
    ms.sort_by(f64::total_cmp);
    let median = if ms.is_empty() {
        f64::NAN
    } else if ms.len() % 2 == 1 {
        ms[ms.len() / 2]
    } else {
        f64::midpoint(ms[ms.len() / 2 - 1], ms[ms.len() / 2])
    };
    println!(
        "{{\"bench\": \"expand\", \"regions\": {REGIONS}, \"connections\": {}, \"ms\": [{list}], \"median_ms\": {median:.3}}}",
        REGIONS * FAN_OUT
    );
}
