//! Models as text: the ONNX textual syntax, protobuf text format and protobuf JSON, printed and
//! parsed back to a model.
//!
//! - [`TextFormat::Text`]: the ONNX textual syntax of `onnx.printer.to_text` / `onnx.parser`,
//!   printed from the IR ([`print_text`]) and parsed to a ModelProto ([`parse_text`]).
//! - [`TextFormat::Prototxt`]: protobuf text format, what `onnx.save(..., format="textproto")`
//!   and protobuf's `text_format` write.
//! - [`TextFormat::Json`]: the protobuf JSON mapping, what `onnx.save(..., format="json")` and
//!   `json_format.MessageToJson` write.
//!
//! The protobuf forms go through `prost-reflect` with the descriptor of onnx.proto, so every
//! field is kept; the textual syntax has no place for doc strings below the model.

mod parser;
mod printer;

use std::path::Path;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use runnx_ir::Model;
use runnx_onnx::proto::ModelProto;

use crate::ToolError;

pub use parser::{parse_text, ParseError};
pub use printer::print_text;

/// The text forms a model can be printed in and parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextFormat {
    /// The ONNX textual syntax.
    Text,
    /// Protobuf text format.
    Prototxt,
    /// Protobuf JSON mapping.
    Json,
}

impl TextFormat {
    /// The format a file name says: `.prototxt`/`.textproto`/`.pbtxt`, `.json`; `.txt`, `.onnxtxt`
    /// and `.onnxtext` are the textual syntax. `None` for other names.
    pub fn from_path(path: &Path) -> Option<TextFormat> {
        match path.extension()?.to_str()? {
            "prototxt" | "textproto" | "pbtxt" | "txtpb" => Some(TextFormat::Prototxt),
            "json" => Some(TextFormat::Json),
            "txt" | "onnxtxt" | "onnxtext" => Some(TextFormat::Text),
            _ => None,
        }
    }

    /// Tells the format from the text itself: JSON starts with `{`, the textual syntax with `<`
    /// (the model header) or a graph signature, protobuf text with a field name and `:` or `{`.
    pub fn sniff(text: &str) -> TextFormat {
        let body = text
            .lines()
            .map(str::trim_start)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or("");
        if body.starts_with('{') {
            TextFormat::Json
        } else if body.starts_with('<') {
            TextFormat::Text
        } else {
            let field = body
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("");
            let rest = body[field.len()..].trim_start();
            let model_field = [
                "ir_version",
                "opset_import",
                "producer_name",
                "producer_version",
                "domain",
                "model_version",
                "doc_string",
                "graph",
                "metadata_props",
                "functions",
                "training_info",
            ]
            .contains(&field);
            if model_field && (rest.starts_with(':') || rest.starts_with('{')) {
                TextFormat::Prototxt
            } else {
                TextFormat::Text
            }
        }
    }
}

fn model_descriptor() -> MessageDescriptor {
    static POOL: std::sync::OnceLock<DescriptorPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(runnx_onnx::FILE_DESCRIPTOR_SET)
            .expect("the embedded onnx.proto descriptor decodes")
    })
    .get_message_by_name("onnx.ModelProto")
    .expect("onnx.ModelProto is in the descriptor")
}

fn dynamic(model: &ModelProto) -> DynamicMessage {
    DynamicMessage::decode(model_descriptor(), model.encode_to_vec().as_slice())
        .expect("a ModelProto re-decodes against its own descriptor")
}

fn from_dynamic(m: &DynamicMessage) -> Result<ModelProto, ToolError> {
    ModelProto::decode(m.encode_to_vec().as_slice())
        .map_err(|e| ToolError::Invalid(format!("not a valid model: {e}")))
}

/// Protobuf text format, one field per line.
pub fn print_prototxt(model: &ModelProto) -> String {
    let options = prost_reflect::text_format::FormatOptions::new().pretty(true);
    let mut text = dynamic(model).to_text_format_with_options(&options);
    text.push('\n');
    text
}

/// The protobuf JSON mapping (camelCase names, 64-bit integers and bytes as strings), indented.
pub fn print_json(model: &ModelProto) -> Result<String, ToolError> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::pretty(&mut out);
    let options = prost_reflect::SerializeOptions::new();
    dynamic(model)
        .serialize_with_options(&mut ser, &options)
        .map_err(|e| ToolError::Invalid(format!("cannot write JSON: {e}")))?;
    out.push(b'\n');
    Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
}

pub fn parse_prototxt(text: &str) -> Result<ModelProto, ToolError> {
    let m = DynamicMessage::parse_text_format(model_descriptor(), text)
        .map_err(|e| ToolError::Invalid(format!("protobuf text: {e}")))?;
    from_dynamic(&m)
}

pub fn parse_json(text: &str) -> Result<ModelProto, ToolError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let m = DynamicMessage::deserialize(model_descriptor(), &mut de)
        .map_err(|e| ToolError::Invalid(format!("JSON: {e}")))?;
    de.end()
        .map_err(|e| ToolError::Invalid(format!("JSON: {e}")))?;
    from_dynamic(&m)
}

/// Prints a model in `format`: the textual syntax from the IR, the protobuf forms from the
/// message as loaded (external data references stay references).
pub fn print_model(
    proto: &ModelProto,
    model: &Model,
    format: TextFormat,
) -> Result<String, ToolError> {
    match format {
        TextFormat::Text => print_text(model),
        TextFormat::Prototxt => Ok(print_prototxt(proto)),
        TextFormat::Json => print_json(proto),
    }
}

/// `[1,3,batch,?]`: a declared shape as the textual syntax writes it.
pub(crate) fn shape_text(s: &runnx_onnx::proto::TensorShapeProto) -> String {
    use runnx_onnx::proto::tensor_shape_proto::dimension::Value;
    let dims: Vec<String> = s
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(Value::DimValue(v)) => v.to_string(),
            Some(Value::DimParam(p)) => p.clone(),
            None => "?".to_string(),
        })
        .collect();
    format!("[{}]", dims.join(","))
}

/// Parses a model from text in `format`.
pub fn parse_model(text: &str, format: TextFormat) -> Result<ModelProto, ToolError> {
    match format {
        TextFormat::Text => parse_text(text).map_err(|e| ToolError::Invalid(e.to_string())),
        TextFormat::Prototxt => parse_prototxt(text),
        TextFormat::Json => parse_json(text),
    }
}
