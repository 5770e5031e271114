//! The `adeploy` binary: parses arguments, calls the library, renders results.
//! Exit codes: 0 success, 1 a deployment or plugin call failed, 2 bad input.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
