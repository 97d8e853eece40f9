//! Conversions between the protobuf messages of `runnx-onnx` and the IR.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use half::{bf16, f16};
use num_complex::Complex;
use runnx_onnx::proto::{
    self, attribute_proto::AttributeType, tensor_proto::DataLocation, tensor_shape_proto,
    type_proto,
};
use runnx_onnx::{ExternalDataResolver, LoadedModel};

use crate::dtype::DataType;
use crate::graph::{
    Attribute, AttributeValue, Function, Graph, Model, Node, SparseTensor, ValueInfo,
};
use crate::scalar::{
    self, F4E2M1, F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, F8E8M0, I2, I4, U2, U4,
};
use crate::tensor::{shape_len, Shape, Tensor, TensorData};
use crate::types::{Dim, TensorType, ValueType};
use crate::IrError;

/// Builds the IR of a loaded model, decoding every initializer (external data included).
pub fn model_from_proto(loaded: &LoadedModel) -> Result<Model, IrError> {
    let p = &loaded.proto;
    let ctx = Ctx {
        external: &loaded.external,
    };
    let graph = match &p.graph {
        Some(g) => ctx.graph(g)?,
        None => return Err(IrError::Invalid("the model has no graph".into())),
    };
    Ok(Model {
        ir_version: p.ir_version.unwrap_or(0),
        opset_imports: opsets(&p.opset_import),
        producer_name: p.producer_name.clone().unwrap_or_default(),
        producer_version: p.producer_version.clone().unwrap_or_default(),
        domain: p.domain.clone().unwrap_or_default(),
        model_version: p.model_version.unwrap_or(0),
        doc_string: p.doc_string.clone().unwrap_or_default(),
        metadata_props: p
            .metadata_props
            .iter()
            .map(|e| {
                (
                    e.key.clone().unwrap_or_default(),
                    e.value.clone().unwrap_or_default(),
                )
            })
            .collect(),
        graph,
        functions: p
            .functions
            .iter()
            .map(|f| ctx.function(f).map(Arc::new))
            .collect::<Result<_, _>>()?,
    })
}

/// Decodes one TensorProto that holds no external data (inputs and outputs in `.pb` files).
pub fn tensor_from_proto(t: &proto::TensorProto) -> Result<Tensor, IrError> {
    let resolver = ExternalDataResolver::new(None);
    Ctx {
        external: &resolver,
    }
    .tensor(t)
}

/// Decodes a TensorProto, reading external data through `external`.
pub fn tensor_from_proto_with(
    t: &proto::TensorProto,
    external: &ExternalDataResolver,
) -> Result<Tensor, IrError> {
    Ctx { external }.tensor(t)
}

fn opsets(imports: &[proto::OperatorSetIdProto]) -> BTreeMap<String, i64> {
    imports
        .iter()
        .map(|o| (o.domain.clone().unwrap_or_default(), o.version.unwrap_or(0)))
        .collect()
}

fn string_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

struct Ctx<'a> {
    external: &'a ExternalDataResolver,
}

impl Ctx<'_> {
    fn graph(&self, g: &proto::GraphProto) -> Result<Graph, IrError> {
        let mut initializers = Vec::with_capacity(g.initializer.len() + g.sparse_initializer.len());
        for t in &g.initializer {
            let name = t.name.clone().unwrap_or_default();
            let tensor = self.tensor(t).map_err(|e| e.in_tensor(&name))?;
            initializers.push((name, tensor));
        }
        for s in &g.sparse_initializer {
            let sparse = self.sparse(s)?;
            let dense = sparse.to_dense().map_err(|e| e.in_tensor(&sparse.name))?;
            initializers.push((sparse.name.clone(), dense));
        }
        Ok(Graph {
            name: g.name.clone().unwrap_or_default(),
            doc_string: g.doc_string.clone().unwrap_or_default(),
            inputs: g.input.iter().map(value_info).collect::<Result<_, _>>()?,
            outputs: g.output.iter().map(value_info).collect::<Result<_, _>>()?,
            value_info: g
                .value_info
                .iter()
                .map(value_info)
                .collect::<Result<_, _>>()?,
            initializers,
            nodes: g
                .node
                .iter()
                .map(|n| self.node(n))
                .collect::<Result<_, _>>()?,
        })
    }

    fn node(&self, n: &proto::NodeProto) -> Result<Node, IrError> {
        let mut node = Node {
            name: n.name.clone().unwrap_or_default(),
            op_type: n.op_type.clone().unwrap_or_default(),
            domain: n.domain.clone().unwrap_or_default(),
            inputs: n.input.clone(),
            outputs: n.output.clone(),
            attributes: Vec::with_capacity(n.attribute.len()),
            doc_string: n.doc_string.clone().unwrap_or_default(),
        };
        for a in &n.attribute {
            let attr = self
                .attribute(a)
                .map_err(|e| IrError::Invalid(format!("{}: {e}", node.describe())))?;
            node.attributes.push(attr);
        }
        Ok(node)
    }

    fn function(&self, f: &proto::FunctionProto) -> Result<Function, IrError> {
        Ok(Function {
            name: f.name.clone().unwrap_or_default(),
            domain: f.domain.clone().unwrap_or_default(),
            overload: f.overload.clone().unwrap_or_default(),
            inputs: f.input.clone(),
            outputs: f.output.clone(),
            attributes: f.attribute.clone(),
            attribute_defaults: f
                .attribute_proto
                .iter()
                .map(|a| self.attribute(a))
                .collect::<Result<_, _>>()?,
            nodes: f
                .node
                .iter()
                .map(|n| self.node(n))
                .collect::<Result<_, _>>()?,
            opset_imports: opsets(&f.opset_import),
            value_info: f
                .value_info
                .iter()
                .map(value_info)
                .collect::<Result<_, _>>()?,
            doc_string: f.doc_string.clone().unwrap_or_default(),
        })
    }

    fn attribute(&self, a: &proto::AttributeProto) -> Result<Attribute, IrError> {
        let name = a.name.clone().unwrap_or_default();
        let kind = a.r#type.and_then(|t| AttributeType::try_from(t).ok());
        // IR < 2 files carry no type: infer it from the one field that is set.
        let kind = match kind {
            Some(AttributeType::Undefined) | None => infer_attribute_type(a),
            Some(k) => k,
        };
        let err = |what: &str| {
            IrError::Invalid(format!("attribute '{name}' of type {what} has no value"))
        };
        let value = match kind {
            AttributeType::Float => AttributeValue::Float(a.f.unwrap_or(0.0)),
            AttributeType::Int => AttributeValue::Int(a.i.unwrap_or(0)),
            AttributeType::String => AttributeValue::String(a.s.as_deref().unwrap_or(&[]).to_vec()),
            AttributeType::Tensor => {
                AttributeValue::Tensor(self.tensor(a.t.as_ref().ok_or_else(|| err("tensor"))?)?)
            }
            AttributeType::Graph => AttributeValue::Graph(Arc::new(
                self.graph(a.g.as_ref().ok_or_else(|| err("graph"))?)?,
            )),
            AttributeType::SparseTensor => AttributeValue::SparseTensor(
                self.sparse(
                    a.sparse_tensor
                        .as_ref()
                        .ok_or_else(|| err("sparse_tensor"))?,
                )?,
            ),
            AttributeType::TypeProto => {
                AttributeValue::Type(value_type(a.tp.as_ref().ok_or_else(|| err("type_proto"))?)?)
            }
            AttributeType::Floats => AttributeValue::Floats(a.floats.clone()),
            AttributeType::Ints => AttributeValue::Ints(a.ints.clone()),
            AttributeType::Strings => {
                AttributeValue::Strings(a.strings.iter().map(|s| s.to_vec()).collect())
            }
            AttributeType::Tensors => AttributeValue::Tensors(
                a.tensors
                    .iter()
                    .map(|t| self.tensor(t))
                    .collect::<Result<_, _>>()?,
            ),
            AttributeType::Graphs => AttributeValue::Graphs(
                a.graphs
                    .iter()
                    .map(|g| self.graph(g).map(Arc::new))
                    .collect::<Result<_, _>>()?,
            ),
            AttributeType::SparseTensors => AttributeValue::SparseTensors(
                a.sparse_tensors
                    .iter()
                    .map(|s| self.sparse(s))
                    .collect::<Result<_, _>>()?,
            ),
            AttributeType::TypeProtos => AttributeValue::Types(
                a.type_protos
                    .iter()
                    .map(value_type)
                    .collect::<Result<_, _>>()?,
            ),
            AttributeType::Undefined => unreachable!("inferred above"),
        };
        Ok(Attribute {
            name,
            value,
            ref_attr_name: a.ref_attr_name.clone().filter(|s| !s.is_empty()),
        })
    }

    fn sparse(&self, s: &proto::SparseTensorProto) -> Result<SparseTensor, IrError> {
        let values = s
            .values
            .as_ref()
            .ok_or_else(|| IrError::Invalid("sparse tensor without values".into()))?;
        let indices = s
            .indices
            .as_ref()
            .ok_or_else(|| IrError::Invalid("sparse tensor without indices".into()))?;
        Ok(SparseTensor {
            name: values.name.clone().unwrap_or_default(),
            dims: dims_of(&s.dims)?.to_vec(),
            values: self.tensor(values)?,
            indices: self.tensor(indices)?,
        })
    }

    fn tensor(&self, t: &proto::TensorProto) -> Result<Tensor, IrError> {
        let code = t.data_type.unwrap_or(0);
        let dtype = DataType::from_onnx(code).ok_or(IrError::UnknownDataType(code))?;
        let shape = dims_of(&t.dims)?;
        let len = shape_len(&shape);
        let external = t.data_location == Some(DataLocation::External as i32);
        let raw: Option<Bytes> = if external {
            Some(self.external.read(t)?)
        } else {
            t.raw_data.clone()
        };
        let data = match raw {
            Some(raw) if dtype != DataType::String => decode_raw(dtype, &raw, len)?,
            _ => decode_typed(dtype, t, len)?,
        };
        if data.len() != len {
            return Err(IrError::ShapeMismatch {
                shape: shape.to_vec(),
                len: data.len(),
            });
        }
        Tensor::new(shape, data)
    }
}

fn infer_attribute_type(a: &proto::AttributeProto) -> AttributeType {
    if a.f.is_some() {
        AttributeType::Float
    } else if a.i.is_some() {
        AttributeType::Int
    } else if a.s.is_some() {
        AttributeType::String
    } else if a.t.is_some() {
        AttributeType::Tensor
    } else if a.g.is_some() {
        AttributeType::Graph
    } else if a.sparse_tensor.is_some() {
        AttributeType::SparseTensor
    } else if a.tp.is_some() {
        AttributeType::TypeProto
    } else if !a.floats.is_empty() {
        AttributeType::Floats
    } else if !a.strings.is_empty() {
        AttributeType::Strings
    } else if !a.tensors.is_empty() {
        AttributeType::Tensors
    } else if !a.graphs.is_empty() {
        AttributeType::Graphs
    } else if !a.sparse_tensors.is_empty() {
        AttributeType::SparseTensors
    } else if !a.type_protos.is_empty() {
        AttributeType::TypeProtos
    } else {
        AttributeType::Ints
    }
}

fn dims_of(dims: &[i64]) -> Result<Shape, IrError> {
    let mut shape = Shape::with_capacity(dims.len());
    let mut total: usize = 1;
    for &d in dims {
        let d =
            usize::try_from(d).map_err(|_| IrError::Invalid(format!("negative dimension {d}")))?;
        total = total
            .checked_mul(d)
            .filter(|&t| t <= isize::MAX as usize / 16)
            .ok_or_else(|| IrError::Invalid(format!("dimensions {dims:?} are too large")))?;
        shape.push(d);
    }
    Ok(shape)
}

/// Decodes little-endian `raw_data` (ONNX's packed layout for sub-byte types).
fn decode_raw(dtype: DataType, raw: &[u8], len: usize) -> Result<TensorData, IrError> {
    fn le<const N: usize, T>(
        raw: &[u8],
        len: usize,
        f: impl Fn([u8; N]) -> T,
    ) -> Result<Vec<T>, IrError> {
        if raw.len() != len * N {
            return Err(IrError::Invalid(format!(
                "raw_data holds {} bytes, expected {} for {len} elements",
                raw.len(),
                len * N
            )));
        }
        Ok(raw
            .chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunk of N bytes")))
            .collect())
    }
    let packed = |per_byte: usize| -> Result<&[u8], IrError> {
        let expected = len.div_ceil(per_byte);
        if raw.len() != expected {
            return Err(IrError::Invalid(format!(
                "raw_data holds {} bytes, expected {expected} for {len} packed elements",
                raw.len()
            )));
        }
        Ok(raw)
    };
    use DataType as D;
    Ok(match dtype {
        D::Float => TensorData::Float(le(raw, len, f32::from_le_bytes)?),
        D::Double => TensorData::Double(le(raw, len, f64::from_le_bytes)?),
        D::Float16 => TensorData::Float16(le(raw, len, |b| f16::from_bits(u16::from_le_bytes(b)))?),
        D::Bfloat16 => {
            TensorData::Bfloat16(le(raw, len, |b| bf16::from_bits(u16::from_le_bytes(b)))?)
        }
        D::Int8 => TensorData::Int8(le(raw, len, i8::from_le_bytes)?),
        D::Int16 => TensorData::Int16(le(raw, len, i16::from_le_bytes)?),
        D::Int32 => TensorData::Int32(le(raw, len, i32::from_le_bytes)?),
        D::Int64 => TensorData::Int64(le(raw, len, i64::from_le_bytes)?),
        D::Uint8 => TensorData::Uint8(le(raw, len, u8::from_le_bytes)?),
        D::Uint16 => TensorData::Uint16(le(raw, len, u16::from_le_bytes)?),
        D::Uint32 => TensorData::Uint32(le(raw, len, u32::from_le_bytes)?),
        D::Uint64 => TensorData::Uint64(le(raw, len, u64::from_le_bytes)?),
        D::Bool => TensorData::Bool(le(raw, len, |[b]: [u8; 1]| b != 0)?),
        D::Complex64 => TensorData::Complex64(le(raw, len, |b: [u8; 8]| {
            Complex::new(
                f32::from_le_bytes(b[..4].try_into().unwrap()),
                f32::from_le_bytes(b[4..].try_into().unwrap()),
            )
        })?),
        D::Complex128 => TensorData::Complex128(le(raw, len, |b: [u8; 16]| {
            Complex::new(
                f64::from_le_bytes(b[..8].try_into().unwrap()),
                f64::from_le_bytes(b[8..].try_into().unwrap()),
            )
        })?),
        D::Float8E4M3FN => TensorData::Float8E4M3FN(le(raw, len, |[b]: [u8; 1]| F8E4M3FN(b))?),
        D::Float8E4M3FNUZ => {
            TensorData::Float8E4M3FNUZ(le(raw, len, |[b]: [u8; 1]| F8E4M3FNUZ(b))?)
        }
        D::Float8E5M2 => TensorData::Float8E5M2(le(raw, len, |[b]: [u8; 1]| F8E5M2(b))?),
        D::Float8E5M2FNUZ => {
            TensorData::Float8E5M2FNUZ(le(raw, len, |[b]: [u8; 1]| F8E5M2FNUZ(b))?)
        }
        D::Float8E8M0 => TensorData::Float8E8M0(le(raw, len, |[b]: [u8; 1]| F8E8M0(b))?),
        D::Uint4 | D::Int4 | D::Float4E2M1 => {
            unpack_nibbles(dtype, &scalar::unpack_4bit(packed(2)?, len))
        }
        D::Uint2 | D::Int2 => unpack_crumbs(dtype, &scalar::unpack_2bit(packed(4)?, len)),
        D::String => unreachable!("strings have no raw form"),
    })
}

fn unpack_nibbles(dtype: DataType, nibbles: &[u8]) -> TensorData {
    match dtype {
        DataType::Uint4 => TensorData::Uint4(nibbles.iter().map(|&n| U4(n)).collect()),
        DataType::Int4 => TensorData::Int4(
            nibbles
                .iter()
                .map(|&n| I4(scalar::sign_extend_4(n)))
                .collect(),
        ),
        _ => TensorData::Float4E2M1(nibbles.iter().map(|&n| F4E2M1(n)).collect()),
    }
}

fn unpack_crumbs(dtype: DataType, crumbs: &[u8]) -> TensorData {
    match dtype {
        DataType::Uint2 => TensorData::Uint2(crumbs.iter().map(|&n| U2(n)).collect()),
        _ => TensorData::Int2(
            crumbs
                .iter()
                .map(|&n| I2(scalar::sign_extend_2(n)))
                .collect(),
        ),
    }
}

/// Decodes the typed repeated fields (`float_data`, `int32_data`...).
fn decode_typed(
    dtype: DataType,
    t: &proto::TensorProto,
    len: usize,
) -> Result<TensorData, IrError> {
    use DataType as D;
    let i32s = &t.int32_data;
    // Small types travel in int32_data: as values, as 16-bit patterns or as packed bytes.
    let bytes = || -> Vec<u8> { i32s.iter().map(|&v| v as u8).collect() };
    Ok(match dtype {
        D::Float => TensorData::Float(t.float_data.clone()),
        D::Double => TensorData::Double(t.double_data.clone()),
        D::Int64 => TensorData::Int64(t.int64_data.clone()),
        D::Int32 => TensorData::Int32(i32s.clone()),
        D::Int16 => TensorData::Int16(i32s.iter().map(|&v| v as i16).collect()),
        D::Int8 => TensorData::Int8(i32s.iter().map(|&v| v as i8).collect()),
        D::Uint16 => TensorData::Uint16(i32s.iter().map(|&v| v as u16).collect()),
        D::Uint8 => TensorData::Uint8(bytes()),
        D::Bool => TensorData::Bool(i32s.iter().map(|&v| v != 0).collect()),
        D::Float16 => TensorData::Float16(i32s.iter().map(|&v| f16::from_bits(v as u16)).collect()),
        D::Bfloat16 => {
            TensorData::Bfloat16(i32s.iter().map(|&v| bf16::from_bits(v as u16)).collect())
        }
        D::Uint32 => TensorData::Uint32(t.uint64_data.iter().map(|&v| v as u32).collect()),
        D::Uint64 => TensorData::Uint64(t.uint64_data.clone()),
        D::Complex64 => TensorData::Complex64(
            t.float_data
                .chunks_exact(2)
                .map(|c| Complex::new(c[0], c[1]))
                .collect(),
        ),
        D::Complex128 => TensorData::Complex128(
            t.double_data
                .chunks_exact(2)
                .map(|c| Complex::new(c[0], c[1]))
                .collect(),
        ),
        D::String => TensorData::String(t.string_data.iter().map(|s| string_of(s)).collect()),
        D::Float8E4M3FN => TensorData::Float8E4M3FN(bytes().into_iter().map(F8E4M3FN).collect()),
        D::Float8E4M3FNUZ => {
            TensorData::Float8E4M3FNUZ(bytes().into_iter().map(F8E4M3FNUZ).collect())
        }
        D::Float8E5M2 => TensorData::Float8E5M2(bytes().into_iter().map(F8E5M2).collect()),
        D::Float8E5M2FNUZ => {
            TensorData::Float8E5M2FNUZ(bytes().into_iter().map(F8E5M2FNUZ).collect())
        }
        D::Float8E8M0 => TensorData::Float8E8M0(bytes().into_iter().map(F8E8M0).collect()),
        D::Uint4 | D::Int4 | D::Float4E2M1 => {
            let packed = bytes();
            if packed.len() != len.div_ceil(2) {
                return Err(IrError::Invalid(format!(
                    "int32_data holds {} packed bytes, expected {} for {len} elements",
                    packed.len(),
                    len.div_ceil(2)
                )));
            }
            unpack_nibbles(dtype, &scalar::unpack_4bit(&packed, len))
        }
        D::Uint2 | D::Int2 => {
            let packed = bytes();
            if packed.len() != len.div_ceil(4) {
                return Err(IrError::Invalid(format!(
                    "int32_data holds {} packed bytes, expected {} for {len} elements",
                    packed.len(),
                    len.div_ceil(4)
                )));
            }
            unpack_crumbs(dtype, &scalar::unpack_2bit(&packed, len))
        }
    })
}

/// Encodes a tensor as a TensorProto with `raw_data` (strings in `string_data`).
pub fn tensor_to_proto(name: &str, tensor: &Tensor) -> proto::TensorProto {
    let mut t = proto::TensorProto {
        name: (!name.is_empty()).then(|| name.to_string()),
        dims: tensor.shape().iter().map(|&d| d as i64).collect(),
        data_type: Some(tensor.dtype().onnx_code()),
        ..Default::default()
    };
    fn raw<T, const N: usize>(v: &[T], f: impl Fn(&T) -> [u8; N]) -> Bytes {
        let mut out = Vec::with_capacity(v.len() * N);
        for x in v {
            out.extend_from_slice(&f(x));
        }
        Bytes::from(out)
    }
    let bytes = match tensor.data() {
        TensorData::String(v) => {
            t.string_data = v
                .iter()
                .map(|s| Bytes::from(s.clone().into_bytes()))
                .collect();
            return t;
        }
        TensorData::Float(v) => raw(v, |x| x.to_le_bytes()),
        TensorData::Double(v) => raw(v, |x| x.to_le_bytes()),
        TensorData::Float16(v) => raw(v, |x| x.to_bits().to_le_bytes()),
        TensorData::Bfloat16(v) => raw(v, |x| x.to_bits().to_le_bytes()),
        TensorData::Int8(v) => raw(v, |x| x.to_le_bytes()),
        TensorData::Int16(v) => raw(v, |x| x.to_le_bytes()),
        TensorData::Int32(v) => raw(v, |x| x.to_le_bytes()),
        TensorData::Int64(v) => raw(v, |x| x.to_le_bytes()),
        TensorData::Uint8(v) => raw(v, |x| x.to_le_bytes()),
        TensorData::Uint16(v) => raw(v, |x| x.to_le_bytes()),
        TensorData::Uint32(v) => raw(v, |x| x.to_le_bytes()),
        TensorData::Uint64(v) => raw(v, |x| x.to_le_bytes()),
        TensorData::Bool(v) => raw(v, |&x| [x as u8]),
        TensorData::Complex64(v) => raw(v, |c| {
            let mut b = [0u8; 8];
            b[..4].copy_from_slice(&c.re.to_le_bytes());
            b[4..].copy_from_slice(&c.im.to_le_bytes());
            b
        }),
        TensorData::Complex128(v) => raw(v, |c| {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&c.re.to_le_bytes());
            b[8..].copy_from_slice(&c.im.to_le_bytes());
            b
        }),
        TensorData::Float8E4M3FN(v) => raw(v, |x| [x.0]),
        TensorData::Float8E4M3FNUZ(v) => raw(v, |x| [x.0]),
        TensorData::Float8E5M2(v) => raw(v, |x| [x.0]),
        TensorData::Float8E5M2FNUZ(v) => raw(v, |x| [x.0]),
        TensorData::Float8E8M0(v) => raw(v, |x| [x.0]),
        TensorData::Uint4(v) => Bytes::from(scalar::pack_4bit(
            &v.iter().map(|x| x.0).collect::<Vec<_>>(),
        )),
        TensorData::Int4(v) => Bytes::from(scalar::pack_4bit(
            &v.iter().map(|x| x.0 as u8 & 0xF).collect::<Vec<_>>(),
        )),
        TensorData::Float4E2M1(v) => Bytes::from(scalar::pack_4bit(
            &v.iter().map(|x| x.0).collect::<Vec<_>>(),
        )),
        TensorData::Uint2(v) => Bytes::from(scalar::pack_2bit(
            &v.iter().map(|x| x.0).collect::<Vec<_>>(),
        )),
        TensorData::Int2(v) => Bytes::from(scalar::pack_2bit(
            &v.iter().map(|x| x.0 as u8 & 0x3).collect::<Vec<_>>(),
        )),
    };
    t.raw_data = Some(bytes);
    t
}

/// Encodes the IR as a ModelProto: the inverse of [`model_from_proto`].
///
/// Initializers are written with `raw_data` by [`tensor_to_proto`] (external data is read in and
/// written inline); sparse initializers, made dense at load time, are written dense. Everything
/// else the IR keeps (types, value_info, subgraphs, functions, metadata) is written as read.
pub fn model_to_proto(model: &Model) -> proto::ModelProto {
    proto::ModelProto {
        ir_version: Some(model.ir_version),
        opset_import: opsets_to_proto(&model.opset_imports),
        producer_name: non_empty(&model.producer_name),
        producer_version: non_empty(&model.producer_version),
        domain: non_empty(&model.domain),
        model_version: (model.model_version != 0).then_some(model.model_version),
        doc_string: non_empty(&model.doc_string),
        graph: Some(graph_to_proto(&model.graph)),
        metadata_props: model
            .metadata_props
            .iter()
            .map(|(k, v)| proto::StringStringEntryProto {
                key: Some(k.clone()),
                value: Some(v.clone()),
            })
            .collect(),
        functions: model
            .functions
            .iter()
            .map(|f| function_to_proto(f))
            .collect(),
        ..Default::default()
    }
}

/// Encodes a graph (the main graph or a control-flow body).
pub fn graph_to_proto(g: &Graph) -> proto::GraphProto {
    proto::GraphProto {
        node: g.nodes.iter().map(node_to_proto).collect(),
        name: non_empty(&g.name),
        initializer: g
            .initializers
            .iter()
            .map(|(name, t)| tensor_to_proto(name, t))
            .collect(),
        doc_string: non_empty(&g.doc_string),
        input: g.inputs.iter().map(value_info_to_proto).collect(),
        output: g.outputs.iter().map(value_info_to_proto).collect(),
        value_info: g.value_info.iter().map(value_info_to_proto).collect(),
        ..Default::default()
    }
}

/// Encodes one node with its attributes.
pub fn node_to_proto(n: &Node) -> proto::NodeProto {
    proto::NodeProto {
        input: n.inputs.clone(),
        output: n.outputs.clone(),
        name: non_empty(&n.name),
        op_type: Some(n.op_type.clone()),
        domain: non_empty(&n.domain),
        attribute: n.attributes.iter().map(attribute_to_proto).collect(),
        doc_string: non_empty(&n.doc_string),
        ..Default::default()
    }
}

/// Encodes a model-local function.
pub fn function_to_proto(f: &Function) -> proto::FunctionProto {
    proto::FunctionProto {
        name: Some(f.name.clone()),
        input: f.inputs.clone(),
        output: f.outputs.clone(),
        attribute: f.attributes.clone(),
        attribute_proto: f
            .attribute_defaults
            .iter()
            .map(attribute_to_proto)
            .collect(),
        node: f.nodes.iter().map(node_to_proto).collect(),
        doc_string: non_empty(&f.doc_string),
        opset_import: opsets_to_proto(&f.opset_imports),
        domain: Some(f.domain.clone()),
        overload: non_empty(&f.overload),
        value_info: f.value_info.iter().map(value_info_to_proto).collect(),
        ..Default::default()
    }
}

/// Encodes an attribute; a reference to a calling node's attribute (`ref_attr_name`, inside
/// function bodies) is written with its type and no value.
pub fn attribute_to_proto(a: &Attribute) -> proto::AttributeProto {
    let mut p = proto::AttributeProto {
        name: Some(a.name.clone()),
        ..Default::default()
    };
    let kind = match &a.value {
        AttributeValue::Float(_) => AttributeType::Float,
        AttributeValue::Int(_) => AttributeType::Int,
        AttributeValue::String(_) => AttributeType::String,
        AttributeValue::Tensor(_) => AttributeType::Tensor,
        AttributeValue::Graph(_) => AttributeType::Graph,
        AttributeValue::SparseTensor(_) => AttributeType::SparseTensor,
        AttributeValue::Type(_) => AttributeType::TypeProto,
        AttributeValue::Floats(_) => AttributeType::Floats,
        AttributeValue::Ints(_) => AttributeType::Ints,
        AttributeValue::Strings(_) => AttributeType::Strings,
        AttributeValue::Tensors(_) => AttributeType::Tensors,
        AttributeValue::Graphs(_) => AttributeType::Graphs,
        AttributeValue::SparseTensors(_) => AttributeType::SparseTensors,
        AttributeValue::Types(_) => AttributeType::TypeProtos,
    };
    p.r#type = Some(kind as i32);
    if let Some(r) = &a.ref_attr_name {
        p.ref_attr_name = Some(r.clone());
        return p;
    }
    match &a.value {
        AttributeValue::Float(v) => p.f = Some(*v),
        AttributeValue::Int(v) => p.i = Some(*v),
        AttributeValue::String(v) => p.s = Some(Bytes::from(v.clone())),
        AttributeValue::Tensor(t) => p.t = Some(tensor_to_proto("", t)),
        AttributeValue::Graph(g) => p.g = Some(graph_to_proto(g)),
        AttributeValue::SparseTensor(s) => p.sparse_tensor = Some(sparse_to_proto(s)),
        AttributeValue::Type(t) => p.tp = Some(value_type_to_proto(t)),
        AttributeValue::Floats(v) => p.floats = v.clone(),
        AttributeValue::Ints(v) => p.ints = v.clone(),
        AttributeValue::Strings(v) => {
            p.strings = v.iter().map(|s| Bytes::from(s.clone())).collect()
        }
        AttributeValue::Tensors(v) => {
            p.tensors = v.iter().map(|t| tensor_to_proto("", t)).collect()
        }
        AttributeValue::Graphs(v) => p.graphs = v.iter().map(|g| graph_to_proto(g)).collect(),
        AttributeValue::SparseTensors(v) => {
            p.sparse_tensors = v.iter().map(sparse_to_proto).collect()
        }
        AttributeValue::Types(v) => p.type_protos = v.iter().map(value_type_to_proto).collect(),
    }
    p
}

/// Encodes a sparse tensor (COO values and indices).
pub fn sparse_to_proto(s: &SparseTensor) -> proto::SparseTensorProto {
    proto::SparseTensorProto {
        values: Some(tensor_to_proto(&s.name, &s.values)),
        indices: Some(tensor_to_proto("", &s.indices)),
        dims: s.dims.iter().map(|&d| d as i64).collect(),
    }
}

/// Encodes a graph input, output or value_info entry; an unknown type is written as no type.
pub fn value_info_to_proto(v: &ValueInfo) -> proto::ValueInfoProto {
    proto::ValueInfoProto {
        name: Some(v.name.clone()),
        r#type: (v.ty != ValueType::Unknown).then(|| value_type_to_proto(&v.ty)),
        doc_string: non_empty(&v.doc_string),
        ..Default::default()
    }
}

fn opsets_to_proto(opsets: &BTreeMap<String, i64>) -> Vec<proto::OperatorSetIdProto> {
    opsets
        .iter()
        .map(|(domain, &version)| proto::OperatorSetIdProto {
            domain: Some(domain.clone()),
            version: Some(version),
        })
        .collect()
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn value_info(v: &proto::ValueInfoProto) -> Result<ValueInfo, IrError> {
    Ok(ValueInfo {
        name: v.name.clone().unwrap_or_default(),
        ty: v
            .r#type
            .as_ref()
            .map(value_type)
            .transpose()?
            .unwrap_or(ValueType::Unknown),
        doc_string: v.doc_string.clone().unwrap_or_default(),
    })
}

/// Decodes a TypeProto; element types unknown to this IR are an error, a missing one is Unknown.
pub fn value_type(t: &proto::TypeProto) -> Result<ValueType, IrError> {
    let elem = |code: Option<i32>| -> Result<Option<DataType>, IrError> {
        match code.unwrap_or(0) {
            0 => Ok(None),
            c => DataType::from_onnx(c)
                .map(Some)
                .ok_or(IrError::UnknownDataType(c)),
        }
    };
    let boxed = |t: &Option<Box<proto::TypeProto>>| -> Result<Box<ValueType>, IrError> {
        Ok(Box::new(match t {
            Some(t) => value_type(t)?,
            None => ValueType::Unknown,
        }))
    };
    Ok(match &t.value {
        None => ValueType::Unknown,
        Some(type_proto::Value::TensorType(tt)) => match elem(tt.elem_type)? {
            Some(dtype) => ValueType::Tensor(TensorType {
                dtype,
                shape: tt.shape.as_ref().map(shape_of),
            }),
            None => ValueType::Unknown,
        },
        Some(type_proto::Value::SparseTensorType(tt)) => match elem(tt.elem_type)? {
            Some(dtype) => ValueType::SparseTensor(TensorType {
                dtype,
                shape: tt.shape.as_ref().map(shape_of),
            }),
            None => ValueType::Unknown,
        },
        Some(type_proto::Value::SequenceType(s)) => ValueType::Sequence(boxed(&s.elem_type)?),
        Some(type_proto::Value::OptionalType(o)) => ValueType::Optional(boxed(&o.elem_type)?),
        Some(type_proto::Value::MapType(m)) => match elem(m.key_type)? {
            Some(k) => ValueType::Map(k, boxed(&m.value_type)?),
            None => ValueType::Unknown,
        },
        Some(type_proto::Value::OpaqueType(_)) => ValueType::Unknown,
    })
}

fn shape_of(s: &proto::TensorShapeProto) -> Vec<Dim> {
    s.dim
        .iter()
        .map(|d| match &d.value {
            Some(tensor_shape_proto::dimension::Value::DimValue(v)) if *v >= 0 => {
                Dim::Fixed(*v as usize)
            }
            Some(tensor_shape_proto::dimension::Value::DimParam(p)) if !p.is_empty() => {
                Dim::Symbol(p.clone())
            }
            _ => Dim::Unknown,
        })
        .collect()
}

/// Encodes a ValueType as a TypeProto.
pub fn value_type_to_proto(t: &ValueType) -> proto::TypeProto {
    let shape = |s: &Option<Vec<Dim>>| {
        s.as_ref().map(|dims| proto::TensorShapeProto {
            dim: dims
                .iter()
                .map(|d| proto::tensor_shape_proto::Dimension {
                    value: match d {
                        Dim::Fixed(n) => {
                            Some(tensor_shape_proto::dimension::Value::DimValue(*n as i64))
                        }
                        Dim::Symbol(s) => {
                            Some(tensor_shape_proto::dimension::Value::DimParam(s.clone()))
                        }
                        Dim::Unknown => None,
                    },
                    denotation: None,
                })
                .collect(),
        })
    };
    let value = match t {
        ValueType::Tensor(tt) => Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: Some(tt.dtype.onnx_code()),
            shape: shape(&tt.shape),
        })),
        ValueType::SparseTensor(tt) => Some(type_proto::Value::SparseTensorType(
            type_proto::SparseTensor {
                elem_type: Some(tt.dtype.onnx_code()),
                shape: shape(&tt.shape),
            },
        )),
        ValueType::Sequence(e) => Some(type_proto::Value::SequenceType(Box::new(
            type_proto::Sequence {
                elem_type: Some(Box::new(value_type_to_proto(e))),
            },
        ))),
        ValueType::Optional(e) => Some(type_proto::Value::OptionalType(Box::new(
            type_proto::Optional {
                elem_type: Some(Box::new(value_type_to_proto(e))),
            },
        ))),
        ValueType::Map(k, v) => Some(type_proto::Value::MapType(Box::new(type_proto::Map {
            key_type: Some(k.onnx_code()),
            value_type: Some(Box::new(value_type_to_proto(v))),
        }))),
        ValueType::Unknown => None,
    };
    proto::TypeProto {
        value,
        denotation: None,
    }
}

impl SparseTensor {
    /// Scatters the values into a dense tensor of zeros.
    pub fn to_dense(&self) -> Result<Tensor, IrError> {
        let len = shape_len(&self.dims);
        let nnz = self.values.len();
        let idx = self.indices.to_i64_vec()?;
        let rank = self.dims.len();
        let strides = crate::tensor::strides_of(&self.dims);
        let linear: Vec<usize> = if idx.len() == nnz {
            idx.iter().map(|&i| i as usize).collect()
        } else if idx.len() == nnz * rank {
            idx.chunks_exact(rank.max(1))
                .map(|c| {
                    c.iter()
                        .zip(strides.iter())
                        .map(|(&i, &s)| i as usize * s)
                        .sum()
                })
                .collect()
        } else {
            return Err(IrError::Invalid(format!(
                "sparse tensor has {nnz} values but {} indices",
                idx.len()
            )));
        };
        if let Some(&bad) = linear.iter().find(|&&i| i >= len) {
            return Err(IrError::Invalid(format!(
                "sparse index {bad} outside {:?}",
                self.dims
            )));
        }
        // Build a source map: dense position -> value index, with "zero" at index nnz.
        let zero = TensorData::zeros(self.values.dtype(), 1);
        let padded = TensorData::concat(&[self.values.data(), &zero]).expect("same dtype");
        let mut map = vec![nnz; len];
        for (k, &pos) in linear.iter().enumerate() {
            map[pos] = k;
        }
        Tensor::new(Shape::from_slice(&self.dims), padded.gather(&map))
    }
}

/// Decodes a serialised value (`input_0.pb` in ONNX test data): a TensorProto, or for
/// sequence, optional and map types a SequenceProto, OptionalProto or MapProto.
pub fn value_from_pb(bytes: &[u8], ty: &ValueType) -> Result<crate::Value, IrError> {
    use prost::Message;
    let decode_err =
        |what: &str, e: prost::DecodeError| IrError::Invalid(format!("not a valid {what}: {e}"));
    match ty {
        ValueType::Sequence(elem) => {
            let s =
                proto::SequenceProto::decode(bytes).map_err(|e| decode_err("SequenceProto", e))?;
            sequence_value(&s, elem)
        }
        ValueType::Optional(elem) => {
            let o =
                proto::OptionalProto::decode(bytes).map_err(|e| decode_err("OptionalProto", e))?;
            optional_value(&o, elem)
        }
        ValueType::Map(..) => {
            let m = proto::MapProto::decode(bytes).map_err(|e| decode_err("MapProto", e))?;
            map_value(&m)
        }
        _ => {
            let t = proto::TensorProto::decode(bytes).map_err(|e| decode_err("TensorProto", e))?;
            Ok(crate::Value::Tensor(tensor_from_proto(&t)?))
        }
    }
}

fn sequence_value(s: &proto::SequenceProto, elem: &ValueType) -> Result<crate::Value, IrError> {
    let mut items = Vec::new();
    for t in &s.tensor_values {
        items.push(crate::Value::Tensor(tensor_from_proto(t)?));
    }
    let inner = match elem {
        ValueType::Sequence(e) | ValueType::Optional(e) => e.as_ref().clone(),
        other => other.clone(),
    };
    for sub in &s.sequence_values {
        items.push(sequence_value(sub, &inner)?);
    }
    for m in &s.map_values {
        items.push(map_value(m)?);
    }
    for o in &s.optional_values {
        items.push(optional_value(o, &inner)?);
    }
    Ok(crate::Value::Sequence {
        elem_type: elem.clone(),
        items,
    })
}

fn optional_value(o: &proto::OptionalProto, elem: &ValueType) -> Result<crate::Value, IrError> {
    let inner = match elem {
        ValueType::Sequence(e) | ValueType::Optional(e) => e.as_ref().clone(),
        other => other.clone(),
    };
    let value = if let Some(t) = &o.tensor_value {
        Some(crate::Value::Tensor(tensor_from_proto(t)?))
    } else if let Some(s) = &o.sequence_value {
        Some(sequence_value(s, &inner)?)
    } else if let Some(m) = &o.map_value {
        Some(map_value(m)?)
    } else if let Some(inner_opt) = &o.optional_value {
        Some(optional_value(inner_opt, &inner)?)
    } else {
        None
    };
    Ok(crate::Value::Optional {
        elem_type: elem.clone(),
        value: value.map(Box::new),
    })
}

fn map_value(m: &proto::MapProto) -> Result<crate::Value, IrError> {
    let key_code = m.key_type.unwrap_or(0);
    let key_type = DataType::from_onnx(key_code).ok_or(IrError::UnknownDataType(key_code))?;
    let keys = if key_type == DataType::String {
        let v: Vec<String> = m.string_keys.iter().map(|s| string_of(s)).collect();
        Tensor::from_vec([v.len()], v)?
    } else {
        Tensor::from_vec([m.keys.len()], m.keys.clone())?
    };
    let values = match &m.values {
        Some(s) => sequence_value(s, &ValueType::Unknown)?,
        None => crate::Value::Sequence {
            elem_type: ValueType::Unknown,
            items: Vec::new(),
        },
    };
    Ok(crate::Value::Map {
        keys,
        values: Box::new(values),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three distinct elements of every type (ones that survive packing).
    fn sample(dtype: DataType) -> TensorData {
        let codes = [1u8, 6, 9];
        match dtype {
            DataType::String => TensorData::String(vec!["a".into(), "".into(), "ünï".into()]),
            DataType::Bool => TensorData::Bool(vec![true, false, true]),
            DataType::Float => TensorData::Float(vec![1.5, -0.0, f32::MAX]),
            DataType::Double => TensorData::Double(vec![1.5, -2.25, 1e300]),
            DataType::Float16 => {
                TensorData::Float16(vec![f16::from_f32(1.5), f16::MAX, f16::MIN_POSITIVE])
            }
            DataType::Bfloat16 => {
                TensorData::Bfloat16(vec![bf16::from_f32(1.5), bf16::MAX, bf16::MIN])
            }
            DataType::Int8 => TensorData::Int8(vec![-128, 0, 127]),
            DataType::Int16 => TensorData::Int16(vec![i16::MIN, 0, i16::MAX]),
            DataType::Int32 => TensorData::Int32(vec![i32::MIN, 0, i32::MAX]),
            DataType::Int64 => TensorData::Int64(vec![i64::MIN, 0, i64::MAX]),
            DataType::Uint8 => TensorData::Uint8(vec![0, 1, 255]),
            DataType::Uint16 => TensorData::Uint16(vec![0, 1, u16::MAX]),
            DataType::Uint32 => TensorData::Uint32(vec![0, 1, u32::MAX]),
            DataType::Uint64 => TensorData::Uint64(vec![0, 1, u64::MAX]),
            DataType::Complex64 => TensorData::Complex64(vec![Complex::new(1.0, -2.0); 3]),
            DataType::Complex128 => TensorData::Complex128(vec![Complex::new(1.0, -2.0); 3]),
            DataType::Float8E4M3FN => TensorData::Float8E4M3FN(codes.map(F8E4M3FN).to_vec()),
            DataType::Float8E4M3FNUZ => TensorData::Float8E4M3FNUZ(codes.map(F8E4M3FNUZ).to_vec()),
            DataType::Float8E5M2 => TensorData::Float8E5M2(codes.map(F8E5M2).to_vec()),
            DataType::Float8E5M2FNUZ => TensorData::Float8E5M2FNUZ(codes.map(F8E5M2FNUZ).to_vec()),
            DataType::Float8E8M0 => TensorData::Float8E8M0(codes.map(F8E8M0).to_vec()),
            DataType::Float4E2M1 => TensorData::Float4E2M1(codes.map(F4E2M1).to_vec()),
            DataType::Uint4 => TensorData::Uint4(vec![U4(0), U4(7), U4(15)]),
            DataType::Int4 => TensorData::Int4(vec![I4(-8), I4(0), I4(7)]),
            DataType::Uint2 => TensorData::Uint2(vec![U2(0), U2(1), U2(3)]),
            DataType::Int2 => TensorData::Int2(vec![I2(-2), I2(0), I2(1)]),
        }
    }

    #[test]
    fn every_type_round_trips_through_tensor_proto() {
        for dtype in DataType::ALL {
            let t = Tensor::new([3], sample(dtype)).unwrap();
            assert_eq!(t.dtype(), dtype);
            let back = tensor_from_proto(&tensor_to_proto("t", &t)).unwrap();
            assert_eq!(back, t, "{dtype}");
        }
    }

    /// A model using every attribute kind, a function with a referenced attribute, value_info,
    /// metadata and a subgraph: it survives IR -> proto -> IR unchanged.
    #[test]
    fn every_model_part_round_trips_through_model_proto() {
        let t = |v: Vec<f32>| Tensor::from_vec([v.len()], v).unwrap();
        let sparse = SparseTensor {
            name: "sp".into(),
            dims: vec![2, 3],
            values: t(vec![1.0, 2.0]),
            indices: Tensor::from_vec([2], vec![1i64, 5]).unwrap(),
        };
        let ty = ValueType::tensor(
            DataType::Float,
            Some(vec![Dim::Fixed(1), Dim::Symbol("n".into()), Dim::Unknown]),
        );
        let seq = ValueType::Sequence(Box::new(ValueType::Map(
            DataType::Int64,
            Box::new(ValueType::Optional(Box::new(ty.clone()))),
        )));
        let body = Graph {
            name: "body".into(),
            inputs: vec![ValueInfo {
                name: "b_in".into(),
                ty: ty.clone(),
                doc_string: String::new(),
            }],
            outputs: vec![ValueInfo {
                name: "b_out".into(),
                ty: ValueType::Unknown,
                doc_string: "out".into(),
            }],
            nodes: vec![Node {
                op_type: "Identity".into(),
                inputs: vec!["b_in".into()],
                outputs: vec!["b_out".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let attr = |name: &str, value| Attribute {
            name: name.into(),
            value,
            ref_attr_name: None,
        };
        let attributes = vec![
            attr("f", AttributeValue::Float(0.5)),
            attr("i", AttributeValue::Int(-3)),
            attr("s", AttributeValue::String(b"abc".to_vec())),
            attr("t", AttributeValue::Tensor(t(vec![1.0, 2.0]))),
            attr("g", AttributeValue::Graph(Arc::new(body.clone()))),
            attr("sp", AttributeValue::SparseTensor(sparse.clone())),
            attr("tp", AttributeValue::Type(seq.clone())),
            attr("fs", AttributeValue::Floats(vec![1.0, -1.0])),
            attr("is", AttributeValue::Ints(vec![])),
            attr("ss", AttributeValue::Strings(vec![b"x".to_vec(), vec![]])),
            attr("ts", AttributeValue::Tensors(vec![t(vec![3.0])])),
            attr("gs", AttributeValue::Graphs(vec![Arc::new(body)])),
            attr("sps", AttributeValue::SparseTensors(vec![sparse])),
            attr("tps", AttributeValue::Types(vec![ty.clone(), seq])),
        ];
        let function = Function {
            name: "F".into(),
            domain: "local".into(),
            inputs: vec!["x".into()],
            outputs: vec!["y".into()],
            attributes: vec!["alpha".into()],
            attribute_defaults: vec![attr("beta", AttributeValue::Float(2.0))],
            nodes: vec![Node {
                op_type: "LeakyRelu".into(),
                inputs: vec!["x".into()],
                outputs: vec!["y".into()],
                attributes: vec![Attribute {
                    name: "alpha".into(),
                    value: AttributeValue::Float(0.0),
                    ref_attr_name: Some("alpha".into()),
                }],
                ..Default::default()
            }],
            opset_imports: [("".to_string(), 18)].into(),
            ..Default::default()
        };
        let model = Model {
            ir_version: 10,
            opset_imports: [("".to_string(), 21), ("local".to_string(), 1)].into(),
            producer_name: "test".into(),
            producer_version: "1".into(),
            domain: "d".into(),
            model_version: 7,
            doc_string: "doc".into(),
            metadata_props: vec![("k".into(), "v".into())],
            graph: Graph {
                name: "main".into(),
                doc_string: "main graph".into(),
                inputs: vec![ValueInfo {
                    name: "x".into(),
                    ty: ty.clone(),
                    doc_string: String::new(),
                }],
                outputs: vec![ValueInfo {
                    name: "y".into(),
                    ty: ty.clone(),
                    doc_string: String::new(),
                }],
                value_info: vec![ValueInfo {
                    name: "z".into(),
                    ty,
                    doc_string: String::new(),
                }],
                initializers: vec![("w".into(), t(vec![4.0, 5.0]))],
                nodes: vec![
                    Node {
                        name: "n0".into(),
                        op_type: "Custom".into(),
                        domain: "local".into(),
                        inputs: vec!["x".into(), "".into(), "w".into()],
                        outputs: vec!["z".into()],
                        attributes,
                        doc_string: "a node".into(),
                    },
                    Node {
                        op_type: "F".into(),
                        domain: "local".into(),
                        inputs: vec!["z".into()],
                        outputs: vec!["y".into()],
                        ..Default::default()
                    },
                ],
            },
            functions: vec![Arc::new(function)],
        };
        let proto = model_to_proto(&model);
        let loaded = LoadedModel {
            proto,
            external: ExternalDataResolver::new(None),
        };
        assert_eq!(model_from_proto(&loaded).unwrap(), model);
    }

    #[test]
    fn typed_fields_decode() {
        let t = proto::TensorProto {
            dims: vec![2],
            data_type: Some(DataType::Float16 as i32),
            int32_data: vec![0x3c00, 0xc000],
            ..Default::default()
        };
        let t = tensor_from_proto(&t).unwrap();
        assert_eq!(
            t.as_slice::<f16>().unwrap(),
            &[f16::from_f32(1.0), f16::from_f32(-2.0)]
        );
        // int4 in int32_data: one packed byte per int32, low nibble first.
        let t = proto::TensorProto {
            dims: vec![3],
            data_type: Some(DataType::Int4 as i32),
            int32_data: vec![0x8F, 0x07],
            ..Default::default()
        };
        let t = tensor_from_proto(&t).unwrap();
        assert_eq!(t.as_slice::<I4>().unwrap(), &[I4(-1), I4(-8), I4(7)]);
    }

    #[test]
    fn inconsistent_data_is_an_error() {
        let t = proto::TensorProto {
            dims: vec![4],
            data_type: Some(DataType::Float as i32),
            raw_data: Some(Bytes::from_static(&[0; 12])),
            ..Default::default()
        };
        assert!(tensor_from_proto(&t).is_err());
        let t = proto::TensorProto {
            dims: vec![-1],
            data_type: Some(DataType::Float as i32),
            ..Default::default()
        };
        assert!(tensor_from_proto(&t).is_err());
        let t = proto::TensorProto {
            dims: vec![1 << 40, 1 << 40],
            data_type: Some(DataType::Float as i32),
            ..Default::default()
        };
        assert!(tensor_from_proto(&t).is_err());
        let t = proto::TensorProto {
            dims: vec![1],
            data_type: Some(99),
            ..Default::default()
        };
        assert!(tensor_from_proto(&t).is_err());
    }
}
