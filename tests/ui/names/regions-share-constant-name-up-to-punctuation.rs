use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region alm_exc[3]: exc, base_firing = 1.0;
        region "alm-exc"[3]: exc; //~ ERROR recurrent region `alm-exc` would generate the constant `ALM_EXC`
        alm_exc -> "alm-exc";
    }
}

fn main() {}
