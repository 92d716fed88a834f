//! The `lumiq` binary: everything lives in the library; see `lumiq::cli`.
#![forbid(unsafe_code)]

fn main() {
    std::process::exit(lumiq::cli::main());
}
