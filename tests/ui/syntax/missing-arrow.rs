use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region a[3]: exc;
        region b[3]: exc;
        a b; //~ ERROR expected `->` after `a`
    }
}

fn main() {}
