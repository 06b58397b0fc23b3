//! See the suite's doc in `main.rs`.

#[allow(unused_imports)]
use crate::common;
