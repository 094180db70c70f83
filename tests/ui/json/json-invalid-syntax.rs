use mrnn_runtime::mrnn;

mrnn!(pub Net from "../../../../tests/ui/json/invalid-syntax.json"); //~ ERROR invalid JSON

fn main() {}
