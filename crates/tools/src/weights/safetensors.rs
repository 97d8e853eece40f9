//! The safetensors format: an 8-byte little-endian header length, a JSON header mapping each
//! name to `{dtype, shape, data_offsets}`, then the raw little-endian data.
//! Spec: <https://github.com/huggingface/safetensors#format>.

use runnx_ir::{DataType, Tensor};
use runnx_onnx::proto;
use serde_json::{json, Map, Value};

fn dtype_of(name: &str) -> Option<DataType> {
    Some(match name {
        "F64" => DataType::Double,
        "F32" => DataType::Float,
        "F16" => DataType::Float16,
        "BF16" => DataType::Bfloat16,
        "I64" => DataType::Int64,
        "I32" => DataType::Int32,
        "I16" => DataType::Int16,
        "I8" => DataType::Int8,
        "U64" => DataType::Uint64,
        "U32" => DataType::Uint32,
        "U16" => DataType::Uint16,
        "U8" => DataType::Uint8,
        "BOOL" => DataType::Bool,
        "F8_E4M3" => DataType::Float8E4M3FN,
        "F8_E5M2" => DataType::Float8E5M2,
        _ => return None,
    })
}

fn name_of(dtype: DataType) -> Option<&'static str> {
    Some(match dtype {
        DataType::Double => "F64",
        DataType::Float => "F32",
        DataType::Float16 => "F16",
        DataType::Bfloat16 => "BF16",
        DataType::Int64 => "I64",
        DataType::Int32 => "I32",
        DataType::Int16 => "I16",
        DataType::Int8 => "I8",
        DataType::Uint64 => "U64",
        DataType::Uint32 => "U32",
        DataType::Uint16 => "U16",
        DataType::Uint8 => "U8",
        DataType::Bool => "BOOL",
        DataType::Float8E4M3FN => "F8_E4M3",
        DataType::Float8E5M2 => "F8_E5M2",
        _ => return None,
    })
}

/// True when `bytes` start with a plausible safetensors header.
pub fn looks_like_safetensors(bytes: &[u8]) -> bool {
    bytes.len() >= 10
        && u64::from_le_bytes(bytes[..8].try_into().unwrap()) < bytes.len() as u64
        && bytes[8] == b'{'
}

/// Reads every tensor, in data order.
pub fn read_safetensors(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, String> {
    let header_len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
        .ok_or("truncated safetensors header")?;
    let header = bytes
        .get(8..8usize.saturating_add(header_len))
        .ok_or("truncated safetensors header")?;
    let data = &bytes[8 + header_len..];
    let header: Map<String, Value> =
        serde_json::from_slice(header).map_err(|e| format!("bad safetensors header: {e}"))?;
    let mut out = Vec::new();
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let bad = |what: &str| format!("tensor '{name}': {what}");
        let dtype_name = info["dtype"].as_str().ok_or_else(|| bad("no dtype"))?;
        let dtype =
            dtype_of(dtype_name).ok_or_else(|| bad(&format!("unsupported dtype {dtype_name}")))?;
        let shape: Vec<i64> = info["shape"]
            .as_array()
            .ok_or_else(|| bad("no shape"))?
            .iter()
            .map(|d| d.as_i64().ok_or_else(|| bad("bad shape")))
            .collect::<Result<_, _>>()?;
        let offsets = info["data_offsets"]
            .as_array()
            .filter(|o| o.len() == 2)
            .ok_or_else(|| bad("no data_offsets"))?;
        let (begin, end) = (
            offsets[0].as_u64().ok_or_else(|| bad("bad data_offsets"))? as usize,
            offsets[1].as_u64().ok_or_else(|| bad("bad data_offsets"))? as usize,
        );
        let raw = data
            .get(begin..end)
            .ok_or_else(|| bad("data_offsets outside the file"))?;
        let p = proto::TensorProto {
            dims: shape,
            data_type: Some(dtype.onnx_code()),
            raw_data: Some(raw.to_vec().into()),
            ..Default::default()
        };
        let tensor = runnx_ir::convert::tensor_from_proto(&p).map_err(|e| bad(&e.to_string()))?;
        out.push((begin, name, tensor));
    }
    out.sort_by_key(|(begin, _, _)| *begin);
    Ok(out.into_iter().map(|(_, n, t)| (n, t)).collect())
}

/// Writes tensors in the given order; types safetensors has no name for are refused.
pub fn write_safetensors(tensors: &[(String, Tensor)]) -> Result<Vec<u8>, String> {
    let mut header = Map::new();
    let mut data = Vec::new();
    for (name, t) in tensors {
        let dtype = name_of(t.dtype()).ok_or_else(|| {
            format!(
                "tensor '{name}': safetensors has no dtype for {}",
                t.dtype()
            )
        })?;
        let raw = runnx_ir::convert::tensor_to_proto(name, t)
            .raw_data
            .unwrap_or_default();
        let begin = data.len();
        data.extend_from_slice(&raw);
        header.insert(
            name.clone(),
            json!({"dtype": dtype, "shape": t.shape(), "data_offsets": [begin, data.len()]}),
        );
    }
    let mut header = serde_json::to_vec(&Value::Object(header)).expect("JSON of plain values");
    // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
    header.resize(header.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + header.len() + data.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&data);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let tensors = vec![
            (
                "b".to_string(),
                Tensor::from_vec([2, 1], vec![1.5f32, -2.0]).unwrap(),
            ),
            (
                "a".to_string(),
                Tensor::from_vec([3], vec![1i64, 2, 3]).unwrap(),
            ),
            ("s".to_string(), Tensor::scalar(true)),
        ];
        let bytes = write_safetensors(&tensors).unwrap();
        assert!(looks_like_safetensors(&bytes));
        assert_eq!(
            (8 + u64::from_le_bytes(bytes[..8].try_into().unwrap())) % 8,
            0
        );
        assert_eq!(read_safetensors(&bytes).unwrap(), tensors);
    }
}
