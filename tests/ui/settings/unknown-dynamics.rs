use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        dynamics: lstm, //~ ERROR unknown dynamics `lstm`
        region a[3]: exc;
    }
}

fn main() {}
