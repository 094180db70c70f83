use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        dynamics: leaky(dt = 1e-50, tau = 10.0), //~ ERROR dt is `1e-50`, which is 0 in f32
        region a[3]: exc, base_firing = 1.0;
        a -> a;
    }
}

fn main() {}
