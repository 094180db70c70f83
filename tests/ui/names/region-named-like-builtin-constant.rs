use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region hidden[3]: exc; //~ ERROR region `hidden` would generate the constant `HIDDEN`, which is already a built-in constant
    }
}

fn main() {}
