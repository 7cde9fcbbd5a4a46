//! Support code shared by the workspace's examples, cross-crate tests and benches (data sets, metrics,
//! training harnesses). Not published; the libraries are the `hopfield` and `cloob` crates.

pub mod demos;

