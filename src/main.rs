//! The `ferroacs` binary: all logic lives in the library (`ferroacs::cli`).

fn main() -> std::process::ExitCode {
    ferroacs::cli::main()
}
