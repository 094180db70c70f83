use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region v1[10]: exc;
        region v1[20]: inh; //~ ERROR duplicate region `v1`
    }
}

fn main() {}
