use mrnn_runtime::mrnn;

mrnn! {
    pub Empty { //~ ERROR network `Empty` has no recurrent region
        activation: tanh,
    }
}

fn main() {}
