//! The fault-injection suite: the `mrnn` command line against bad, hostile and absurd input,
//! one module per class of fault. Every case must end in a clear error (exit 1 or 2, a message
//! naming what is wrong) or a correct result: never a panic (exit 101), an abort (a signal), a
//! hang, or a damaged file.

mod analysis;
mod checkpoints;
mod compile;
mod figures;
mod harness;
mod nan;
mod outputs;
mod pth;
mod training;
