//! The `lumiq` binary: everything lives in the library; see `lumiq::cli`.
#![forbid(unsafe_code)]

// Design: processing allocates and drops many frame-sized arrays; the system allocator maps
// each afresh (page faults cost as much as the arithmetic on a 2048² frame), mimalloc
// reuses them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(lumiq::cli::main());
}
