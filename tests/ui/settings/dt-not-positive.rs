use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        dynamics: leaky(dt = 0.0, tau = 100.0), //~ ERROR dt must be positive, got `0.0`
        region a[3]: exc;
    }
}

fn main() {}
