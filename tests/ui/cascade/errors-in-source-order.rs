use mrnn_runtime::mrnn;

// Lowering finds the unknown setting and the unknown region, checking finds the zero size and
// the sparsity: the errors follow the source all the same.
mrnn! {
    pub Net {
        region a[0]: exc; //~ ERROR region `a` has zero units
        activation: relux, //~ ERROR unknown activation `relux`
        region b[3]: exc, base_firing = 1.0;
        b -> b (sparsity = 1.5); //~ ERROR sparsity must be between 0 and 1, got `1.5`
        b -> c; //~ ERROR unknown region `c`
    }
}

fn main() {}
