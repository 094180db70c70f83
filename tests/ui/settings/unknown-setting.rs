use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        activaton: relu, //~ ERROR unknown setting `activaton`
        region a[3]: exc;
    }
}

fn main() {}
