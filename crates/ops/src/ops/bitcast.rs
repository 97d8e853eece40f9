//! ONNX `BitCast`: the same bits, read as another element type of the same width.

use num_complex::Complex;
use runnx_ir::scalar::{F4E2M1, F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, F8E8M0, I2, I4, U2, U4};
use runnx_ir::{DataType, Tensor, TensorData, Value};

use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add("", "BitCast", 26, build_bitcast);
}

/// ONNX `BitCast`, opset 26: reinterprets each element's bits (little endian) as the type `to`,
/// which must have the input type's bit width; the shape is unchanged. Every type but string
/// is accepted. Bool has no spare values: a byte other than 0 or 1 reads as `true`.
struct BitCast {
    to: DataType,
}

fn build_bitcast(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let code = info
        .attr_int_opt("to")?
        .ok_or_else(|| OpError::attribute("to", "is required"))?;
    let to = i32::try_from(code)
        .ok()
        .and_then(DataType::from_onnx)
        .filter(|d| *d != DataType::String)
        .ok_or_else(|| OpError::attribute("to", format!("{code} is not a non-string data type")))?;
    Ok(Box::new(BitCast { to }))
}

impl Kernel for BitCast {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.take_tensor(0)?;
        let from = x.dtype();
        if from == DataType::String {
            return Err(OpError::input(0, "cannot bit-cast strings"));
        }
        if from.bit_width() != self.to.bit_width() {
            return Err(OpError::invalid(format!(
                "cannot bit-cast {from} ({} bits) to {} ({} bits)",
                from.bit_width(),
                self.to,
                self.to.bit_width()
            )));
        }
        if from == self.to {
            return Ok(vec![x.into()]);
        }
        // Every pair of distinct types of equal width is at most 64 bits wide (complex128 has
        // no partner), so one u64 per element carries the bits.
        let bits = element_bits(x.data())?;
        let data = from_element_bits(self.to, &bits)?;
        Ok(vec![Tensor::new(x.shape(), data)?.into()])
    }
}

/// Each element's bits, in the low bits of a u64.
fn element_bits(data: &TensorData) -> Result<Vec<u64>, OpError> {
    fn map<T: Copy>(v: &[T], f: impl Fn(T) -> u64) -> Vec<u64> {
        v.iter().map(|&x| f(x)).collect()
    }
    use TensorData as D;
    Ok(match data {
        D::Float(v) => map(v, |x| u64::from(x.to_bits())),
        D::Uint8(v) => map(v, u64::from),
        D::Int8(v) => map(v, |x| u64::from(x as u8)),
        D::Uint16(v) => map(v, u64::from),
        D::Int16(v) => map(v, |x| u64::from(x as u16)),
        D::Int32(v) => map(v, |x| u64::from(x as u32)),
        D::Int64(v) => map(v, |x| x as u64),
        D::Bool(v) => map(v, u64::from),
        D::Float16(v) => map(v, |x| u64::from(x.to_bits())),
        D::Double(v) => map(v, f64::to_bits),
        D::Uint32(v) => map(v, u64::from),
        D::Uint64(v) => map(v, |x| x),
        // Little endian: the real part's bytes come first.
        D::Complex64(v) => map(v, |c| {
            u64::from(c.re.to_bits()) | u64::from(c.im.to_bits()) << 32
        }),
        D::Bfloat16(v) => map(v, |x| u64::from(x.to_bits())),
        D::Float8E4M3FN(v) => map(v, |x| u64::from(x.to_bits())),
        D::Float8E4M3FNUZ(v) => map(v, |x| u64::from(x.to_bits())),
        D::Float8E5M2(v) => map(v, |x| u64::from(x.to_bits())),
        D::Float8E5M2FNUZ(v) => map(v, |x| u64::from(x.to_bits())),
        D::Float8E8M0(v) => map(v, |x| u64::from(x.to_bits())),
        D::Float4E2M1(v) => map(v, |x| u64::from(x.to_bits())),
        D::Uint4(v) => map(v, |x| u64::from(x.to_bits())),
        D::Int4(v) => map(v, |x| u64::from(x.to_bits())),
        D::Uint2(v) => map(v, |x| u64::from(x.to_bits())),
        D::Int2(v) => map(v, |x| u64::from(x.to_bits())),
        D::String(_) | D::Complex128(_) => {
            return Err(OpError::unsupported(format!(
                "cannot bit-cast {} to another type",
                data.dtype()
            )))
        }
    })
}

/// Elements of type `dtype` from their bits (the truncating casts keep exactly the type's
/// width, which equals the source's).
fn from_element_bits(dtype: DataType, bits: &[u64]) -> Result<TensorData, OpError> {
    fn map<T>(bits: &[u64], f: impl Fn(u64) -> T) -> Vec<T> {
        bits.iter().map(|&b| f(b)).collect()
    }
    use DataType as D;
    Ok(match dtype {
        D::Float => TensorData::Float(map(bits, |b| f32::from_bits(b as u32))),
        D::Uint8 => TensorData::Uint8(map(bits, |b| b as u8)),
        D::Int8 => TensorData::Int8(map(bits, |b| b as u8 as i8)),
        D::Uint16 => TensorData::Uint16(map(bits, |b| b as u16)),
        D::Int16 => TensorData::Int16(map(bits, |b| b as u16 as i16)),
        D::Int32 => TensorData::Int32(map(bits, |b| b as u32 as i32)),
        D::Int64 => TensorData::Int64(map(bits, |b| b as i64)),
        D::Bool => TensorData::Bool(map(bits, |b| b as u8 != 0)),
        D::Float16 => TensorData::Float16(map(bits, |b| half::f16::from_bits(b as u16))),
        D::Double => TensorData::Double(map(bits, f64::from_bits)),
        D::Uint32 => TensorData::Uint32(map(bits, |b| b as u32)),
        D::Uint64 => TensorData::Uint64(bits.to_vec()),
        D::Complex64 => TensorData::Complex64(map(bits, |b| {
            Complex::new(f32::from_bits(b as u32), f32::from_bits((b >> 32) as u32))
        })),
        D::Bfloat16 => TensorData::Bfloat16(map(bits, |b| half::bf16::from_bits(b as u16))),
        D::Float8E4M3FN => TensorData::Float8E4M3FN(map(bits, |b| F8E4M3FN::from_bits(b as u8))),
        D::Float8E4M3FNUZ => {
            TensorData::Float8E4M3FNUZ(map(bits, |b| F8E4M3FNUZ::from_bits(b as u8)))
        }
        D::Float8E5M2 => TensorData::Float8E5M2(map(bits, |b| F8E5M2::from_bits(b as u8))),
        D::Float8E5M2FNUZ => {
            TensorData::Float8E5M2FNUZ(map(bits, |b| F8E5M2FNUZ::from_bits(b as u8)))
        }
        D::Float8E8M0 => TensorData::Float8E8M0(map(bits, |b| F8E8M0::from_bits(b as u8))),
        D::Float4E2M1 => TensorData::Float4E2M1(map(bits, |b| F4E2M1::from_bits(b as u8))),
        D::Uint4 => TensorData::Uint4(map(bits, |b| U4::from_bits(b as u8))),
        D::Int4 => TensorData::Int4(map(bits, |b| I4::from_bits(b as u8))),
        D::Uint2 => TensorData::Uint2(map(bits, |b| U2::from_bits(b as u8))),
        D::Int2 => TensorData::Int2(map(bits, |b| I2::from_bits(b as u8))),
        D::String | D::Complex128 => {
            return Err(OpError::unsupported(format!(
                "cannot bit-cast another type to {dtype}"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bitcast(x: Tensor, to: DataType) -> Result<Tensor, OpError> {
        let y = BitCast { to }.run(Inputs::new(vec![Some(x.into())]))?;
        Ok(y.into_iter().next().and_then(Value::into_tensor).unwrap())
    }

    #[test]
    fn reinterprets_bits() {
        let y = bitcast(
            Tensor::from_vec([2], vec![1.0f32, -2.0]).unwrap(),
            DataType::Int32,
        )
        .unwrap();
        assert_eq!(
            y.as_slice::<i32>().unwrap(),
            &[0x3F80_0000, 0xC000_0000u32 as i32]
        );
        let y = bitcast(
            Tensor::from_vec([1], vec![I4(-1)]).unwrap(),
            DataType::Uint4,
        )
        .unwrap();
        assert_eq!(y.as_slice::<U4>().unwrap(), &[U4(15)]);
        let c = bitcast(Tensor::scalar(Complex::new(1.0f32, 2.0)), DataType::Uint64).unwrap();
        let back = bitcast(c, DataType::Complex64).unwrap();
        assert_eq!(back, Tensor::scalar(Complex::new(1.0f32, 2.0)));
    }

    #[test]
    fn rejects_different_widths() {
        assert!(bitcast(Tensor::scalar(1i32), DataType::Int64).is_err());
    }
}
