use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region alm[10]: exc;
        region alm_inh[5]: inh in alm; //~ ERROR parent `alm` of region `alm_inh` is also the name of a region
    }
}

fn main() {}
