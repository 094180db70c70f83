use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region thal[3]: exc;
        region d1[3]: inh;
        thal -> d1 (sign = inh); //~ ERROR connection `thal -> d1` is declared inhibitory, but its source `thal` is excitatory
    }
}

fn main() {}
