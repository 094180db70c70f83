use mrnn_runtime::mrnn;

mrnn! {
    pub Net {
        region v1[3]: exc;
        input cue[2]: exc; //~ ERROR input region `cue` drives nothing
    }
}

fn main() {}
