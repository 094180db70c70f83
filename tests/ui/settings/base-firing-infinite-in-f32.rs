use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region a[3]: exc, base_firing = 1e300; //~ ERROR `base_firing` of region `a` is `1e300`, which is infinite in f32
        a -> a;
    }
}

fn main() {}
