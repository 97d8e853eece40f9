//! `runnx print` and `runnx parse`: models as text and back.

use std::path::PathBuf;

use anyhow::{Context, Result};
use runnx_tools::text::{self, TextFormat};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// The ONNX textual syntax (onnx.printer.to_text / onnx.parser).
    Text,
    /// Protobuf text format.
    Prototxt,
    /// Protobuf JSON mapping.
    Json,
}

impl From<Format> for TextFormat {
    fn from(f: Format) -> TextFormat {
        match f {
            Format::Text => TextFormat::Text,
            Format::Prototxt => TextFormat::Prototxt,
            Format::Json => TextFormat::Json,
        }
    }
}

/// Print a model as text: the ONNX textual syntax, protobuf text format or JSON.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  runnx print model.onnx\n  runnx print model.onnx --format prototxt -o model.prototxt\n  runnx print model.onnx --format json | jq .graph.node[0]"
)]
pub struct PrintArgs {
    model: PathBuf,
    #[arg(long, short = 'f', value_enum, default_value = "text")]
    format: Format,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
}

/// Parse a model from text (any of the `runnx print` formats) and write it as binary ONNX.
///
/// The format is told by --format, else by the file's extension (.txt/.onnxtxt, .prototxt/
/// .textproto/.pbtxt, .json), else by its contents.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  runnx parse model.prototxt -o model.onnx")]
pub struct ParseArgs {
    /// The text file ('-' for standard input).
    file: PathBuf,
    #[arg(long, short = 'f', value_enum)]
    format: Option<Format>,
    /// The .onnx file to write.
    #[arg(long, short = 'o')]
    output: PathBuf,
}

pub fn print(a: PrintArgs) -> Result<()> {
    let loaded = runnx_onnx::load_model(&a.model).with_context(|| a.model.display().to_string())?;
    let model = runnx_ir::convert::model_from_proto(&loaded)
        .with_context(|| a.model.display().to_string())?;
    let text = text::print_model(&loaded.proto, &model, a.format.into())
        .with_context(|| a.model.display().to_string())?;
    match &a.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            // A closed pipe (`runnx print m.onnx | head`) is not an error.
            let _ = out.write_all(text.as_bytes());
        }
    }
    Ok(())
}

pub fn parse(a: ParseArgs) -> Result<()> {
    let text = if a.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        std::fs::read_to_string(&a.file)
            .with_context(|| format!("cannot read {}", a.file.display()))?
    };
    let format = a
        .format
        .map(TextFormat::from)
        .or_else(|| TextFormat::from_path(&a.file))
        .unwrap_or_else(|| TextFormat::sniff(&text));
    let proto = text::parse_model(&text, format).with_context(|| a.file.display().to_string())?;
    // Check that the result is a model runnx can load before writing it.
    let loaded = runnx_onnx::LoadedModel {
        proto,
        external: runnx_onnx::ExternalDataResolver::new(a.output.parent().map(|p| {
            if p.as_os_str().is_empty() {
                std::path::PathBuf::from(".")
            } else {
                p.to_path_buf()
            }
        })),
    };
    runnx_ir::convert::model_from_proto(&loaded).with_context(|| a.file.display().to_string())?;
    runnx_onnx::save_model(&loaded.proto, &a.output)
        .with_context(|| a.output.display().to_string())?;
    eprintln!("wrote {}", a.output.display());
    Ok(())
}
