//! media-proxy: a fast, safe media proxy (Misskey-compatible) and on-demand image resizer.
//!
//! The flow goes one way (see `docs/pipeline.md`):
//! `routes` → [`request::parse`] → [`pipeline::Pipeline::run`] → [`response::build`],
//! with every failure turned into an [`error::AppError`] and mapped to a status in one place.
//! [`app`] is the only wiring; [`config`] the only reader of the environment. Pure image work
//! lives in the separate `media` crate.
//!
//! Input: the settings; output: the router both runtimes serve. The rooms and their arrows:
//! `docs/architecture.md`.

pub mod app;
pub mod breaker;
pub mod cache;
pub mod config;
pub mod convert;
pub mod error;
pub mod inspect;
pub mod lambda;
pub mod listener;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod relay;
pub mod request;
pub mod response;
pub mod routes;
pub mod sandbox;
pub mod source;
pub mod telemetry;
pub mod workers;

pub use app::Application;
pub use config::Settings;
