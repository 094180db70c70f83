use mrnn_runtime::mrnn;

mrnn!(pub Net from "../../../../tests/ui/json/unknown-region.json"); //~ ERROR unknown region `d3`

fn main() {}
