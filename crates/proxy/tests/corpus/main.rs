//! The corpus sweep, in a test binary of its own: cargo runs test binaries one after the
//! other, so the sweep does not share the machine with the API tests running in parallel.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

// The scripted origin and corpus helpers of the API tests; not all of them are used here.
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod sweep;
