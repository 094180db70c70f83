use mrnn_runtime::mrnn;

mrnn!(pub Net from "../../../../tests/ui/json/no-such-file.json"); //~ ERROR cannot read

fn main() {}
