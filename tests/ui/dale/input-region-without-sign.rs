use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        dale: input,
        region v1[3];
        input u[2]; //~ ERROR input region `u` has no sign, but Dale's law is on for input weights
        u -> v1;
    }
}

fn main() {}
