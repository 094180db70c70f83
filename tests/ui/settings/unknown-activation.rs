use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        activation: rellu, //~ ERROR unknown activation `rellu`
        region a[3]: exc;
    }
}

fn main() {}
