use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region a[3]: exc;
        region A[3]: exc; //~ ERROR recurrent region `A` would generate the constant `A`, which the recurrent region declared earlier already generates
    }
}

fn main() {}
