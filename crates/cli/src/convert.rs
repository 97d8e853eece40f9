//! `runnx convert`: Keras (.h5, .keras) to ONNX, without TensorFlow.

use std::path::PathBuf;

use anyhow::{Context, Result};
use runnx_keras::{Options, DEFAULT_OPSET};

/// Convert a Keras model (.h5 from Keras 2 or 3, or a Keras 3 .keras file) to ONNX.
///
/// The ONNX model keeps the Keras inputs' and outputs' names and channels-last shapes, with a
/// dynamic batch dimension. An unsupported layer or setting is an error naming the layer, its
/// class and the setting, and no file is written.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  runnx convert tests/data/keras/conv2d_nhwc.keras -o conv2d_nhwc.onnx\n  runnx convert model.h5 -o model.onnx --opset 18 --inputs-as-nchw input_1"
)]
pub struct Args {
    /// The Keras model: .h5 (legacy HDF5) or .keras.
    model: PathBuf,
    /// Where to write the ONNX model.
    #[arg(long, short = 'o')]
    output: PathBuf,
    /// ONNX opset to target (13 to 21).
    #[arg(long, default_value_t = DEFAULT_OPSET)]
    opset: i64,
    /// Declare this input channels-first (NCHW) instead of Keras's channels-last; repeatable.
    #[arg(long = "inputs-as-nchw", value_name = "NAME", value_delimiter = ',')]
    inputs_as_nchw: Vec<String>,
}

pub fn main(args: Args) -> Result<()> {
    let options = Options {
        opset: Some(args.opset),
        inputs_as_nchw: args.inputs_as_nchw,
    };
    let model = runnx_keras::convert_file(&args.model, &options)
        .with_context(|| args.model.display().to_string())?;
    runnx_onnx::save_model(&model, &args.output)?;
    let graph = model.graph.as_ref().expect("a converted model has a graph");
    eprintln!(
        "wrote {} ({} nodes, opset {})",
        args.output.display(),
        graph.node.len(),
        args.opset
    );
    Ok(())
}
