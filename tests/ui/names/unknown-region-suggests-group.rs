use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region thal_a[3]: exc in thal, base_firing = 1.0;
        region thal_b[3]: exc in thal;
        region ctx[3]: exc;
        thal -> ctx;
        ctx -> thall; //~ ERROR unknown region `thall` ... did you mean `thal`?
    }
}

fn main() {}
