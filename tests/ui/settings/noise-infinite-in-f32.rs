use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        noise: (act = 1e300, inp = 0.0), //~ ERROR noise level `act` is `1e300`, which is infinite in f32
        region a[3]: exc, base_firing = 1.0;
        a -> a;
    }
}

fn main() {}
