use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region a[3]: exc;
        region b[3]: exc;
        a -> b;
        a -> b (sparsity = 0.5); //~ ERROR duplicate connection `a -> b`
    }
}

fn main() {}
