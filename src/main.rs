//! The `roster` binary: parse, run, report, exit with the documented code.

/// mimalloc instead of the system allocator: rows are read on one thread and normalised and
/// freed on rayon's, a pattern under which glibc's malloc spent a third of validation's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(roster::app::main());
}
