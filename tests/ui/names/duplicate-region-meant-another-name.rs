use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        input u[2]: exc;
        region d1[3]: inh;
        region d1[3]: inh; //~ ERROR duplicate region `d1` ... did you mean to name this region `d2`?
        u -> d1, d2;
        d1 -> d2;
        d2 -> d1;
    }
}

fn main() {}
