use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region a[3]: exc;
        a -> a (sparsity = 1.0); //~ ERROR sparsity `1.0` removes every weight of `a -> a`
    }
}

fn main() {}
