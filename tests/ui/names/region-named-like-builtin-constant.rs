use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region hidden[3]: exc; //~ ERROR recurrent region `hidden` would generate the constant `HIDDEN`: `HIDDEN` is a built-in constant
    }
}

fn main() {}
