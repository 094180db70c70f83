//! The figures a neuroscientist looks at first, drawn from a user's own program with the library
//! functions the `mrnn` command line calls: the activity of each region over time, the time
//! course of each source -> target current, and the thalamus's flow field with the trajectories
//! colored by condition. The circuit is the cortico-basal ganglia-thalamic loop of `cbgtcl`
//! (untrained: its own seed), cued on one half of its input units or the other.
//!
//! `cargo run -p mrnn-examples --bin figures -- [OUT_DIR]` (default `runs/figures`)

use std::path::PathBuf;

use mrnn_runtime::analysis::{self, FlowOptions};
use mrnn_runtime::plot::{self, FlowPlot};
use mrnn_runtime::{Device, Forward, Tensor, mrnn};

mrnn!(pub Cbgtcl from "../../shared/reference/CBGTCL.json" { seed: 3, });

/// Trials per condition, and steps per trial.
const TRIALS: usize = 8;
const STEPS: usize = 60;

fn main() -> mrnn_runtime::Result<()> {
    mrnn_runtime::ensure_threads();
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "runs/figures".into()));
    std::fs::create_dir_all(&out)
        .map_err(|source| mrnn_runtime::Error::Io { path: out.display().to_string(), source })?;
    let net = Cbgtcl::new(&Device::Cpu)?;

    // Two conditions: a cue from step 5 to 15 on the first or the second half of the inputs.
    let half = Cbgtcl::INPUT / 2;
    let mut values = vec![0f32; 2 * TRIALS * STEPS * Cbgtcl::INPUT];
    let mut conditions = Vec::new();
    for trial in 0..2 * TRIALS {
        let second = trial % 2 == 1;
        conditions.push(if second { "cue to the second half" } else { "cue to the first half" });
        let units = if second { half..Cbgtcl::INPUT } else { 0..half };
        for step in 5..15 {
            for unit in units.clone() {
                values[(trial * STEPS + step) * Cbgtcl::INPUT + unit] = 1.0;
            }
        }
    }
    let input = Tensor::from_vec(values, (2 * TRIALS, STEPS, Cbgtcl::INPUT), &Device::Cpu)?;
    let rates = net.forward(&input)?.h;

    // The activity of each region: mean, spread and example units over time.
    let activity = plot::region_activity(net.architecture(), &rates, 3)?;
    plot::activity_figure(
        &out.join("activity.png"),
        "CBGTCL: rates of each region, 16 cued trials",
        &activity,
        &[],
        "step",
    )?;

    // Each source -> target current over time (the network is batch first: time is dimension 1).
    let currents = analysis::currents_of_run(net.network(), &input, &Forward::default(), &[])?;
    plot::current_grid_figure(
        &out.join("currents_over_time.png"),
        "CBGTCL: current into each region (row) from each source (column)",
        &plot::current_grid(&currents, 1)?,
        &[],
        "step",
    )?;

    // The thalamus's flow in the plane of its two leading components, trajectories by cue.
    let states = analysis::state_trajectory(net.network(), &input, &Forward::default())?;
    let options = FlowOptions { regions: vec!["thal".into()], ..FlowOptions::default() };
    let field = analysis::flow_field(net.network(), &states, &options)?;
    let conditions: Vec<String> = conditions.into_iter().map(String::from).collect();
    plot::flow_figure(
        &out.join("flow.png"),
        "flow of the thalamus at zero input",
        &FlowPlot {
            xs: &field.xs,
            ys: &field.ys,
            velocity: &field.velocity,
            speed: &field.speed,
            trajectories: &field.trajectories,
            conditions: &conditions,
            markers: &[],
            labels: ["PC1", "PC2"],
        },
    )?;
    println!("wrote activity.png, currents_over_time.png and flow.png to {}", out.display());
    Ok(())
}
