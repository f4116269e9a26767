//! The `roster` binary: parse, run, report, exit with the documented code.

fn main() {
    std::process::exit(roster::cli::main());
}
