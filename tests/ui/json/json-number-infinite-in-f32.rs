use mrnn_runtime::mrnn;

mrnn!(pub Net from "../../../../tests/ui/json/number-infinite-in-f32.json"); //~ ERROR infinite in f32 (twice, at their JSON paths)

fn main() {}
