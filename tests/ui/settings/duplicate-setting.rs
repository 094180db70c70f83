use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        activation: relu,
        activation: tanh, //~ ERROR duplicate setting `activation`
        region a[3]: exc;
    }
}

fn main() {}
