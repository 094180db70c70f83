use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region a[3]: exc;
        region b[3]: exc;
        a -> b (sparsty = 0.5); //~ ERROR unknown connection option `sparsty`
    }
}

fn main() {}
