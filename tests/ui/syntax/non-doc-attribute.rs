use mrnn_runtime::mrnn;

mrnn! {
    /// A network.
    #[derive(Clone)] //~ ERROR only doc comments (`///`) are allowed on an `mrnn!` network
    pub Net {
        region a[3]: exc;
    }
}

fn main() {}
