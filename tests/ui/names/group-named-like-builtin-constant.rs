use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region a[3]: exc in seed, base_firing = 1.0; //~ ERROR group `seed` would generate the constant `SEED`
        region b[3]: inh in seed;
        a -> b;
        b -> a;
    }
}

fn main() {}
