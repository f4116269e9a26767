//! The command line: [`args`] (what clap reads), [`config`] (`roster.toml`) and [`plan`]
//! (both, and the environment, merged into one validated plan per command). Running a plan
//! is [`crate::app`]'s.

pub mod args;
pub mod config;
pub mod plan;

pub use args::Cli;

/// Parses the command line, runs it and returns the exit code.
pub fn main() -> i32 {
    use clap::Parser;
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                crate::error::EXIT_USAGE
            } else {
                crate::error::EXIT_OK
            };
        }
    };
    crate::app::run(cli)
}
