use mrnn_runtime::mrnn;

mrnn! {
    pub Net from "../../../../tests/ui/json/valid.json" {
        activation: tanh,
        region extra[3]: exc; //~ ERROR region `extra` declared in a `from` network
    }
}

fn main() {}
