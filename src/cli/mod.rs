//! The command line: [`args`] (what clap reads), [`config`] (`roster.toml`) and [`plan`]
//! (both, and the environment, merged into one validated plan per command). It runs
//! nothing: running a plan is the app's.

pub mod args;
pub mod config;
pub mod plan;

pub use args::Cli;
