use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region a[3]: exc;
        a -> ; //~ ERROR connection has no destination region
    }
}

fn main() {}
