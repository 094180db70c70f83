use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region a[3]: exc;
        region b[5]: exc;
        a -> b (sparsity = 0.9); //~ ERROR sparsity `0.9` leaves no weight in `a -> b`
    }
}

fn main() {}
