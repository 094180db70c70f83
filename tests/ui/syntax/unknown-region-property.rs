use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region a[3]: exc, base_fireing = 1.0; //~ ERROR unknown region property `base_fireing` on `a`
    }
}

fn main() {}
