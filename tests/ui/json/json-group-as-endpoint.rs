use mrnn_runtime::mrnn;

mrnn!(pub Net from "../../../../tests/ui/json/group-as-endpoint.json"); //~ ERROR `thal` is a group of regions (`thal_a`, `thal_b`), not a region

fn main() {}
