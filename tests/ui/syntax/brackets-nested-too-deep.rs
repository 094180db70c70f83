use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        spectral_radius: ((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((1)))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))), //~ ERROR brackets nested more than 32 levels deep
        region a[3]: exc, base_firing = 1.0;
        a -> a;
    }
}

fn main() {
    let _ = Net::HIDDEN;
}
