//! Black-box HTTP tests: the real application on 127.0.0.1:0 against a scripted origin on
//! other 127.0.0.x addresses. One test binary, so everything links once.

// Test code: a failed unwrap or index is a failed test, which is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod faults;
mod helpers;

mod admission;
mod basics;
mod browser;
mod caching;
mod cdn;
mod cli;
mod contract;
mod dependencies;
mod deploy;
mod engine;
mod formats;
mod hostile;
mod lambda;
mod layout;
mod limits;
mod operations;
mod operator;
mod passthrough;
mod sandbox;
mod ssrf;
mod store;
mod store_s3;
mod video;
