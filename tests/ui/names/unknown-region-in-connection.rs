use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region thal[3]: exc;
        region d1[3]: inh;
        thal -> d2; //~ ERROR unknown region `d2`
    }
}

fn main() {}
