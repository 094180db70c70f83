use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region v1[3]: exc;
        input u[2]: exc;
        u -> v1;
        v1 -> u; //~ ERROR connection `v1 -> u` goes into an input region
    }
}

fn main() {}
