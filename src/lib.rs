//! roster: bulk-import people into SaaS products through their "create user" REST APIs.
//!
//! The library holds the whole pipeline (see [`pipeline`]); the binary only parses flags,
//! runs it and maps the outcome to an exit code.

pub mod app;
pub mod auth;
pub mod cli;
pub mod error;
pub mod exit;
pub mod files;
pub mod http;
pub mod input;
pub mod ledger;
pub mod model;
pub mod pipeline;
pub mod prepare;
pub mod report;
pub mod submit;
pub mod sync;
pub mod targets;
pub mod template;
pub mod values;
