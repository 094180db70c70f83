use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        dale: recurrent,
        region v1[3]; //~ ERROR recurrent region `v1` has no sign, but Dale's law is on for recurrent weights
    }
}

fn main() {}
