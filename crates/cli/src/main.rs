//! `runnx`: inspect, run and benchmark ONNX models, and convert Keras models, from the shell.
//!
//! A thin shell over the library crates: every command parses its arguments, calls the library
//! and prints. Errors end the process with a one-line message on stderr and exit code 1.

mod bench;
mod convert;
mod inputs;
mod inspect;
mod progress;
mod run;
mod tools;

use clap::{Parser, Subcommand};

/// mimalloc reuses freed memory instead of returning it to the kernel, so the activations of
/// one run do not page-fault in again on the next (see Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "runnx",
    version,
    about = "ONNX toolkit and inference engine",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Inspect(inspect::Args),
    Run(run::Args),
    Bench(bench::Args),
    Convert(convert::Args),
    #[command(flatten)]
    Tools(tools::Command),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => inspect::main(args),
        Command::Run(args) => run::main(args),
        Command::Bench(args) => bench::main(args),
        Command::Convert(args) => convert::main(args),
        Command::Tools(command) => tools::main(command),
    };
    if let Err(e) = result {
        // `{:#}` prints the whole context chain on one line.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
