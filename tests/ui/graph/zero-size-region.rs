use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region v1[0]: exc; //~ ERROR region `v1` has zero units
    }
}

fn main() {}
