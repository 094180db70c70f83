#![deny(deprecated)]

use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region v1[3]: exc;
        region v2[3]: exc; //~ ERROR region `v2` is never driven
        input u[2]: exc;
        u -> v1;
    }
}

fn main() {}
