//! The `mrnn` command-line tool.
fn main() {}
