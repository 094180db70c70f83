use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        dynamics: leaky(dt = 10.0, tau = 5.0), //~ ERROR alpha = dt / tau = 10.0 / 5.0 = 2.0 must be in (0, 1]
        region a[3]: exc;
    }
}

fn main() {}
