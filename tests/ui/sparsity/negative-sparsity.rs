use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region a[3]: exc;
        a -> a (sparsity = -0.25); //~ ERROR sparsity must be between 0 and 1, got `-0.25`
    }
}

fn main() {}
