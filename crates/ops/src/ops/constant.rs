//! Ops that create tensors from attributes and scalars: Constant, ConstantOfShape, Range.

use runnx_ir::{AttributeValue, DataType, Tensor, TensorData, Value};

use super::shape::copy::filled;
use super::shape::dispatch::{with_num_type, Num, NumFn};
use super::shape::{dims_from_i64, ints_input};
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "Constant", &[1, 9, 11, 12, 13], build_constant);
    reg.add_versions("", "ConstantOfShape", &[9, 20], build_constant_of_shape);
    reg.add_versions("", "Range", &[11, 27], |_| Ok(Box::new(Range)));
}

/// A tensor known when the session is built.
struct Fixed(Tensor);

impl Kernel for Fixed {
    fn run(&self, _inputs: Inputs) -> Result<Vec<Value>, OpError> {
        Ok(vec![self.0.clone().into()])
    }
}

/// ONNX `Constant`, opsets 1-25: exactly one of `value` (a tensor), `sparse_value` (opset
/// 11, made dense), `value_float`, `value_floats`, `value_int`, `value_ints`, `value_string`,
/// `value_strings` (opset 12; scalars for the singular forms, 1-D for the plural ones).
fn build_constant(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let names = [
        "value",
        "sparse_value",
        "value_float",
        "value_floats",
        "value_int",
        "value_ints",
        "value_string",
        "value_strings",
    ];
    let set: Vec<&str> = names.iter().copied().filter(|n| info.has_attr(n)).collect();
    let [name] = set.as_slice() else {
        return Err(OpError::invalid(format!(
            "Constant needs exactly one value attribute, got {set:?}"
        )));
    };
    let value = info
        .attr_value(name)
        .ok_or_else(|| OpError::attribute(name, "is missing"))?;
    let tensor = constant_tensor(name, value)?;
    Ok(Box::new(Fixed(tensor)))
}

fn constant_tensor(name: &str, value: &AttributeValue) -> Result<Tensor, OpError> {
    let wrong = || OpError::attribute(name, format!("has the wrong kind {}", value.kind()));
    let strings = |v: &[Vec<u8>]| -> Vec<String> {
        v.iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    };
    Ok(match (name, value) {
        ("value", AttributeValue::Tensor(t)) => t.clone(),
        ("sparse_value", AttributeValue::SparseTensor(s)) => s.to_dense()?,
        ("value_float", AttributeValue::Float(v)) => Tensor::scalar(*v),
        ("value_floats", AttributeValue::Floats(v)) => Tensor::from_vec([v.len()], v.clone())?,
        ("value_int", AttributeValue::Int(v)) => Tensor::scalar(*v),
        ("value_ints", AttributeValue::Ints(v)) => Tensor::from_vec([v.len()], v.clone())?,
        ("value_string", AttributeValue::String(v)) => {
            Tensor::scalar(String::from_utf8_lossy(v).into_owned())
        }
        ("value_strings", AttributeValue::Strings(v)) => Tensor::from_vec([v.len()], strings(v))?,
        _ => return Err(wrong()),
    })
}

/// ONNX `ConstantOfShape`, opsets 9-25: a tensor of the shape given by the int64 input, every
/// element the one-element `value` attribute (default float 0).
struct ConstantOfShape {
    value: Tensor,
}

fn build_constant_of_shape(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let value = match info.attr_tensor_opt("value")? {
        Some(t) if t.len() == 1 => t.reshape([])?,
        Some(t) => {
            return Err(OpError::attribute(
                "value",
                format!("must hold one element, got {}", t.len()),
            ))
        }
        None => Tensor::scalar(0f32),
    };
    Ok(Box::new(ConstantOfShape { value }))
}

impl Kernel for ConstantOfShape {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let t = inputs.tensor(0)?;
        if t.rank() > 1 {
            return Err(OpError::input(
                0,
                format!("the shape must be 1-D, got shape {:?}", t.shape()),
            ));
        }
        let shape = dims_from_i64(&ints_input(t, 0)?, "shape")?;
        Ok(vec![filled(&self.value, &shape)?.into()])
    }
}

/// ONNX `Range`, opsets 11-27: `start, start + delta, ..` up to `limit` (exclusive), from three
/// scalars of one numeric type; `max(ceil((limit - start) / delta), 0)` elements. Integer
/// ranges are exact; float ranges compute `start + i * delta` in f64 and round once (float16
/// and bfloat16 therefore never accumulate error, whatever `stash_type` says).
struct Range;

impl Kernel for Range {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let args = [inputs.tensor(0)?, inputs.tensor(1)?, inputs.tensor(2)?];
        for (i, t) in args.iter().enumerate() {
            if t.len() != 1 {
                return Err(OpError::input(
                    i,
                    format!("expected a scalar, got shape {:?}", t.shape()),
                ));
            }
            if t.dtype() != args[0].dtype() {
                return Err(OpError::input(
                    i,
                    format!("expected {} like start, got {}", args[0].dtype(), t.dtype()),
                ));
            }
        }
        let dtype = args[0].dtype();
        if dtype == DataType::Bool {
            return Err(OpError::unsupported("Range of bool"));
        }
        let data = with_num_type(dtype, Arange { args })??;
        let len = data.len();
        Ok(vec![Tensor::new([len], data)?.into()])
    }
}

struct Arange<'a> {
    args: [&'a Tensor; 3],
}

impl NumFn for Arange<'_> {
    type Out = Result<TensorData, OpError>;
    fn call<T: Num>(self) -> Self::Out {
        if T::DTYPE.is_float() {
            let [s, l, d] = self.args.map(|t| t.as_slice::<T>().map(|v| v[0].to_f64()));
            let (s, l, d) = (s?, l?, d?);
            let n = ((l - s) / d).ceil();
            if d == 0.0 || !n.is_finite() {
                return Err(OpError::invalid(format!(
                    "Range({s}, {l}, {d}) is not a finite range"
                )));
            }
            let n = n.max(0.0) as usize;
            let mut out = reserve::<T>(n)?;
            out.extend((0..n).map(|i| T::from_f64(s + i as f64 * d)));
            return Ok(T::wrap(out));
        }
        // Integers: exact in i128 (no integer type here is wider than 64 bits).
        let [s, l, d] = self
            .args
            .map(|t| ints_input(t, 0).map(|v| i128::from(v[0])));
        let (s, l, d) = (s?, l?, d?);
        if d == 0 {
            return Err(OpError::invalid("Range delta cannot be 0"));
        }
        let span = l - s;
        let n = if (span > 0) == (d > 0) && span != 0 {
            (span.abs() + d.abs() - 1) / d.abs()
        } else {
            0
        };
        let n = usize::try_from(n).map_err(|_| OpError::invalid("Range is too long"))?;
        let mut out = reserve::<T>(n)?;
        out.extend((0..n).map(|i| T::from_i64((s + i as i128 * d) as i64)));
        Ok(T::wrap(out))
    }
}

/// An empty vector with room for `n` elements, or an error when that much memory is unavailable.
fn reserve<T>(n: usize) -> Result<Vec<T>, OpError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| OpError::invalid(format!("cannot allocate {n} elements")))?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range<T: Num>(start: T, limit: T, delta: T) -> Result<Vec<T>, OpError> {
        let inputs = [start, limit, delta].map(|v| Some(Value::from(Tensor::scalar(v))));
        let y = Range
            .run(Inputs::new(inputs.into()))?
            .remove(0)
            .into_tensor()
            .unwrap();
        Ok(y.as_slice::<T>().unwrap().to_vec())
    }

    #[test]
    fn ranges() {
        assert_eq!(range(3i32, 9, 3).unwrap(), [3, 6]);
        assert_eq!(range(10i64, 4, -2).unwrap(), [10, 8, 6]);
        assert_eq!(range(1i16, 1, 1).unwrap(), [] as [i16; 0]);
        assert_eq!(
            range(i64::MAX - 3, i64::MAX, 2).unwrap(),
            [i64::MAX - 3, i64::MAX - 1]
        );
        assert_eq!(range(1f32, 2., 0.25).unwrap(), [1., 1.25, 1.5, 1.75]);
        assert_eq!(range(0f64, -1., 0.5).unwrap(), [] as [f64; 0]);
        assert!(range(1f32, 2., 0.).is_err());
        assert!(range(1i32, 2, 0).is_err());
    }
}
