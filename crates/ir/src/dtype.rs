//! ONNX element types.

use std::fmt;

/// An ONNX tensor element type (`TensorProto.DataType`). The discriminants are the ONNX codes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i32)]
pub enum DataType {
    Float = 1,
    Uint8 = 2,
    Int8 = 3,
    Uint16 = 4,
    Int16 = 5,
    Int32 = 6,
    Int64 = 7,
    String = 8,
    Bool = 9,
    Float16 = 10,
    Double = 11,
    Uint32 = 12,
    Uint64 = 13,
    Complex64 = 14,
    Complex128 = 15,
    Bfloat16 = 16,
    Float8E4M3FN = 17,
    Float8E4M3FNUZ = 18,
    Float8E5M2 = 19,
    Float8E5M2FNUZ = 20,
    Uint4 = 21,
    Int4 = 22,
    Float4E2M1 = 23,
    Float8E8M0 = 24,
    Uint2 = 25,
    Int2 = 26,
}

impl DataType {
    pub const ALL: [DataType; 26] = [
        DataType::Float,
        DataType::Uint8,
        DataType::Int8,
        DataType::Uint16,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::String,
        DataType::Bool,
        DataType::Float16,
        DataType::Double,
        DataType::Uint32,
        DataType::Uint64,
        DataType::Complex64,
        DataType::Complex128,
        DataType::Bfloat16,
        DataType::Float8E4M3FN,
        DataType::Float8E4M3FNUZ,
        DataType::Float8E5M2,
        DataType::Float8E5M2FNUZ,
        DataType::Uint4,
        DataType::Int4,
        DataType::Float4E2M1,
        DataType::Float8E8M0,
        DataType::Uint2,
        DataType::Int2,
    ];

    /// The type for an ONNX `TensorProto.DataType` code; `None` for UNDEFINED and unknown codes.
    pub fn from_onnx(code: i32) -> Option<DataType> {
        DataType::ALL.iter().copied().find(|d| *d as i32 == code)
    }

    pub fn onnx_code(self) -> i32 {
        self as i32
    }

    /// The name used in ONNX type strings and by onnxruntime: `float`, `int64`, `float8e4m3fn`...
    pub fn name(self) -> &'static str {
        use DataType::*;
        match self {
            Float => "float",
            Uint8 => "uint8",
            Int8 => "int8",
            Uint16 => "uint16",
            Int16 => "int16",
            Int32 => "int32",
            Int64 => "int64",
            String => "string",
            Bool => "bool",
            Float16 => "float16",
            Double => "double",
            Uint32 => "uint32",
            Uint64 => "uint64",
            Complex64 => "complex64",
            Complex128 => "complex128",
            Bfloat16 => "bfloat16",
            Float8E4M3FN => "float8e4m3fn",
            Float8E4M3FNUZ => "float8e4m3fnuz",
            Float8E5M2 => "float8e5m2",
            Float8E5M2FNUZ => "float8e5m2fnuz",
            Uint4 => "uint4",
            Int4 => "int4",
            Float4E2M1 => "float4e2m1",
            Float8E8M0 => "float8e8m0",
            Uint2 => "uint2",
            Int2 => "int2",
        }
    }

    pub fn from_name(name: &str) -> Option<DataType> {
        DataType::ALL.iter().copied().find(|d| d.name() == name)
    }

    /// Bits one element takes in ONNX's packed serialisation (4 for int4, 2 for int2...).
    pub fn bit_width(self) -> usize {
        use DataType::*;
        match self {
            Uint2 | Int2 => 2,
            Uint4 | Int4 | Float4E2M1 => 4,
            Bool | Uint8 | Int8 | Float8E4M3FN | Float8E4M3FNUZ | Float8E5M2 | Float8E5M2FNUZ
            | Float8E8M0 => 8,
            Uint16 | Int16 | Float16 | Bfloat16 => 16,
            Float | Int32 | Uint32 => 32,
            Double | Int64 | Uint64 | Complex64 => 64,
            Complex128 => 128,
            String => 0,
        }
    }

    pub fn is_float(self) -> bool {
        use DataType::*;
        matches!(
            self,
            Float
                | Double
                | Float16
                | Bfloat16
                | Float8E4M3FN
                | Float8E4M3FNUZ
                | Float8E5M2
                | Float8E5M2FNUZ
                | Float8E8M0
                | Float4E2M1
        )
    }

    pub fn is_integer(self) -> bool {
        use DataType::*;
        matches!(
            self,
            Uint8
                | Int8
                | Uint16
                | Int16
                | Int32
                | Int64
                | Uint32
                | Uint64
                | Uint4
                | Int4
                | Uint2
                | Int2
        )
    }

    pub fn is_signed_integer(self) -> bool {
        use DataType::*;
        matches!(self, Int8 | Int16 | Int32 | Int64 | Int4 | Int2)
    }

    pub fn is_complex(self) -> bool {
        matches!(self, DataType::Complex64 | DataType::Complex128)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
