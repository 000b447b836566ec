//! The `strongroom` binary: hands the command line to the `cli` library.

fn main() -> std::process::ExitCode {
    cli::main()
}
