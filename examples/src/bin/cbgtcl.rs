//! The cortico-basal ganglia-thalamic loop of mRNNTorch's example config, read by `mrnn!` at
//! compile time from the JSON file: region constants, Dale's law and the circuit's projections
//! are all checked before this program runs. Prints each region's mean rate and the strength of
//! each projection.
//!
//! `cargo run -p mrnn-examples --bin cbgtcl`

use mrnn_runtime::{DType, Device, Tensor, mrnn};

mrnn!(pub Cbgtcl from "../../shared/reference/CBGTCL.json" { seed: 3, });

fn main() -> mrnn_runtime::Result<()> {
    mrnn_runtime::ensure_threads();
    let device = Device::Cpu;
    let net = Cbgtcl::new(&device)?;
    // The architecture is a `const`; bind it to borrow names from it.
    let arch = Cbgtcl::ARCHITECTURE;
    println!("{arch}");
    // A cue in the first 20 of 100 steps, to 16 trials.
    let cue = Tensor::ones((16, 20, Cbgtcl::INPUT), DType::F32, &device)?;
    let rest = Tensor::zeros((16, 80, Cbgtcl::INPUT), DType::F32, &device)?;
    let input = Tensor::cat(&[&cue, &rest], 1)?;
    let h = net.forward(&input)?.h;
    println!("\nmean rate per region over the trial:");
    for region in arch.regions() {
        let rate = net.activity(&h, &[region.name.as_ref()])?.mean_all()?.to_scalar::<f32>()?;
        println!(
            "  {:10} {:>4} units {:>11}  {rate:.4}",
            region.name,
            region.units,
            region.sign.describe()
        );
    }
    println!("\nprojection strengths (Frobenius norm of the effective weight block):");
    for c in arch.connections() {
        let (src, dst) = (arch.source_name(c.src), arch.regions()[c.dst].name.as_ref());
        let block = net.projection(dst, src)?;
        let norm = block.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
        println!("  {src:>9} -> {dst:<9} {norm:.3}");
    }
    // The thalamus, sliced with its generated range constant.
    let thal = h.narrow(2, Cbgtcl::THAL.start, Cbgtcl::THAL.len())?;
    println!(
        "\nthalamic rate at the last step: {:.4}",
        thal.get_on_dim(1, 99)?.mean_all()?.to_scalar::<f32>()?
    );
    Ok(())
}
