use mrnn_runtime::mrnn;

mrnn!(pub Net from "../../../../tests/ui/json/unknown-key.json"); //~ ERROR unknown key `base_fireing`

fn main() {}
