use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        input u[2]: exc;
        region thal[3]: exc;
        region d1[3]: inh;
        u -> thal;
        thal -> d1 (sign = inh); //~ ERROR connection `thal -> d1` is declared inhibitory
        d1 -> thal;
    }
}

// Uses of the type add no errors of their own: only the sign error above is reported.
const THAL: std::ops::Range<usize> = Net::THAL;
const SIZES: (usize, usize) = (Net::HIDDEN, Net::INPUT);

fn main() {
    let _ = (THAL, SIZES, Net::D1, Net::U, Net::ARCHITECTURE.hidden_size());
    let _ = Net::new(&mrnn_runtime::Device::Cpu);
}
