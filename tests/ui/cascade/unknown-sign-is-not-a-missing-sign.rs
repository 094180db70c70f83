use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region a[3]: exd, base_firing = 1.0; //~ ERROR unknown region property `exd` on `a` ... did you mean `exc`?
        a -> a;
    }
}

fn main() {}
