//! The walship binary: everything happens in the library; main only turns the outcome into the
//! process exit code.

fn main() {
    std::process::exit(walship::cli::main_with_args(std::env::args_os()));
}
