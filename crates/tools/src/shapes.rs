//! Shape inference written back into a loaded model (`runnx infer-shapes`): the protobuf is
//! edited in place, so initializers and everything else stay byte for byte.

use runnx_ir::convert::{model_from_proto, value_info_to_proto, value_type_to_proto};
use runnx_ir::ValueType;
use runnx_onnx::LoadedModel;
use runnx_shapes::{infer_shapes, InferOptions, Inference};

use crate::ToolError;

/// Infers every value's type and shape and stores them in `loaded`'s graph: `value_info` for
/// intermediates, the output declarations for graph outputs.
pub fn infer_into(
    loaded: &mut LoadedModel,
    options: &InferOptions,
) -> Result<Inference, ToolError> {
    let mut model = model_from_proto(loaded)?;
    let inference =
        infer_shapes(&mut model, options).map_err(|e| ToolError::Invalid(e.to_string()))?;
    let graph = loaded
        .proto
        .graph
        .as_mut()
        .ok_or_else(|| ToolError::Invalid("the model has no graph".into()))?;
    graph.value_info = model
        .graph
        .value_info
        .iter()
        .map(value_info_to_proto)
        .collect();
    for (proto, ir) in graph.output.iter_mut().zip(&model.graph.outputs) {
        if ir.ty != ValueType::Unknown {
            proto.r#type = Some(value_type_to_proto(&ir.ty));
        }
    }
    Ok(inference)
}
