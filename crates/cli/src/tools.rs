//! The model tooling commands (weights, print, parse, compare, check, infer-shapes, optimize,
//! convert-opset): thin shells over
//! `runnx-tools`, flattened into the top-level command list.

mod check;
mod compare;
mod opset;
mod optimize;
mod shapes;
mod text;
mod weights;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Command {
    #[command(subcommand)]
    Weights(weights::Command),
    Print(text::PrintArgs),
    Parse(text::ParseArgs),
    Compare(compare::Args),
    Check(check::Args),
    InferShapes(shapes::Args),
    Optimize(optimize::Args),
    ConvertOpset(opset::Args),
}

pub fn main(command: Command) -> Result<()> {
    match command {
        Command::Weights(c) => weights::main(c),
        Command::Print(a) => text::print(a),
        Command::Parse(a) => text::parse(a),
        Command::Compare(a) => compare::main(a),
        Command::Check(a) => check::main(a),
        Command::InferShapes(a) => shapes::main(a),
        Command::Optimize(a) => optimize::main(a),
        Command::ConvertOpset(a) => opset::main(a),
    }
}

/// A difference for a table: `0` when exact, else three significant digits (`1.67e-1`).
pub fn sci(x: f64) -> String {
    if x == 0.0 {
        "0".to_string()
    } else if x.is_infinite() {
        "inf".to_string()
    } else {
        format!("{x:.2e}")
    }
}
