use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region a[3]: exc;
        region A[3]: exc; //~ ERROR region `A` would generate the constant `A`, which is already the constant of another region
    }
}

fn main() {}
