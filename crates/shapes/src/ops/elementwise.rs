//! Elementwise math and activations, broadcasting binary and variadic ops, casts, constants,
//! quantization, random generators, softmax, normalizations and reductions.

use runnx_ir::{AttributeValue, DataType, Dim, ValueType};

use super::{same_as_input, shape_of_input_with, Rule};
use crate::bail;
use crate::context::{NodeContext, RuleError, RuleResult};
use crate::dims;
use crate::value::{
    self, sym_add, sym_div, sym_equal, sym_max, sym_min, sym_mul, sym_sub, SymInt, SymValue,
    MAX_TRACKED_ELEMENTS,
};

pub fn rule(op: &str) -> Option<Rule> {
    Some(match op {
        "Abs"
        | "Acos"
        | "Acosh"
        | "Asin"
        | "Asinh"
        | "Atan"
        | "Atanh"
        | "Ceil"
        | "Cos"
        | "Cosh"
        | "Erf"
        | "Exp"
        | "Floor"
        | "Log"
        | "Neg"
        | "Reciprocal"
        | "Round"
        | "Sign"
        | "Sin"
        | "Sinh"
        | "Sqrt"
        | "Tan"
        | "Tanh"
        | "Not"
        | "BitwiseNot"
        | "Relu"
        | "LeakyRelu"
        | "PRelu"
        | "Elu"
        | "Selu"
        | "Celu"
        | "Sigmoid"
        | "HardSigmoid"
        | "HardSwish"
        | "Mish"
        | "Softplus"
        | "Softsign"
        | "ThresholdedRelu"
        | "Gelu"
        | "Swish"
        | "Shrink"
        | "Clip"
        | "Trilu"
        | "CumSum"
        | "CumProd"
        | "InstanceNormalization"
        | "GroupNormalization"
        | "RMSNormalization"
        | "LpNormalization"
        | "MeanVarianceNormalization"
        | "LRN" => unary,
        "IsNaN" | "IsInf" => unary_to_bool,
        "Softmax" | "LogSoftmax" | "Hardmax" => softmax,
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "BitShift" | "BitwiseAnd" | "BitwiseOr"
        | "BitwiseXor" => binary,
        "And" | "Or" | "Xor" | "Equal" | "Greater" | "GreaterOrEqual" | "Less" | "LessOrEqual" => {
            comparison
        }
        "Max" | "Min" | "Sum" | "Mean" => variadic,
        "Where" => where_op,
        "Cast" => cast,
        "CastLike" => cast_like,
        "BitCast" => bit_cast,
        "Identity" => identity,
        "Constant" => constant,
        "ConstantOfShape" => constant_of_shape,
        "EyeLike" => eye_like,
        "Dropout" => dropout,
        "QuantizeLinear" => quantize_linear,
        "DequantizeLinear" => dequantize_linear,
        "DynamicQuantizeLinear" => dynamic_quantize_linear,
        "RandomNormal" | "RandomUniform" => random,
        "RandomNormalLike" | "RandomUniformLike" | "Bernoulli" => random_like,
        "Multinomial" => multinomial,
        "BatchNormalization" => batch_normalization,
        "LayerNormalization" => layer_normalization,
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
        | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => reduce,
        "ArgMax" | "ArgMin" => arg_reduce,
        _ => return None,
    })
}

fn unary(ctx: &mut NodeContext<'_>) -> RuleResult {
    ctx.input_tensor(0)?;
    same_as_input(ctx, 0, 0)
}

fn unary_to_bool(ctx: &mut NodeContext<'_>) -> RuleResult {
    shape_of_input_with(ctx, 0, 0, DataType::Bool)
}

/// Same as the input; `axis` must lie within its rank.
fn softmax(ctx: &mut NodeContext<'_>) -> RuleResult {
    ctx.input_tensor(0)?;
    same_as_input(ctx, 0, 0)?;
    let default = if ctx.opset() >= 13 { -1 } else { 1 };
    let axis = ctx.attr_int_or("axis", default)?;
    let rank = ctx.input_rank(0)?;
    // A scalar has no axis to normalise over but -1 and 0 are accepted as a no-op.
    if rank > 0 {
        dims::normalize_axis(axis, rank)?;
    }
    Ok(())
}

/// The output shape of a broadcasting op over `inputs` (`None` when a rank is unknown): numpy
/// broadcasting, or before opset 7 (the legacy `broadcast` attribute) the first input's shape.
fn broadcast_shape(ctx: &NodeContext<'_>, inputs: &[usize]) -> RuleResult<Option<Vec<Dim>>> {
    let legacy = ctx.opset() < 7 && !matches!(ctx.op_type(), "Max" | "Min" | "Sum" | "Mean");
    let mut shapes = Vec::with_capacity(inputs.len());
    for &i in inputs {
        match ctx.input_shape(i) {
            Ok(s) => shapes.push(s),
            Err(RuleError::Unknown) => return Ok(None),
            Err(e) => return Err(e),
        }
        if legacy {
            return Ok(Some(shapes[0].to_vec()));
        }
    }
    dims::broadcast(&shapes).map(Some)
}

/// The element type all of `inputs` share; an error when two differ.
fn common_dtype(ctx: &NodeContext<'_>, inputs: &[usize]) -> RuleResult<DataType> {
    let mut found: Option<(usize, DataType)> = None;
    for &i in inputs {
        let Ok(t) = ctx.input_dtype(i) else { continue };
        match found {
            Some((j, d)) if d != t => {
                bail!("inputs {j} and {i} must have the same element type, they are {d} and {t}")
            }
            Some(_) => {}
            None => found = Some((i, t)),
        }
    }
    found.map(|(_, d)| d).ok_or(RuleError::Unknown)
}

/// Numpy broadcasting of A and B; the element type of A (Pow's exponent may differ from 12 on).
fn binary(ctx: &mut NodeContext<'_>) -> RuleResult {
    let op = ctx.op_type().to_string();
    let dtype = if op == "Pow" {
        ctx.input_dtype(0)?
    } else {
        common_dtype(ctx, &[0, 1])?
    };
    let shape = broadcast_shape(ctx, &[0, 1])?;
    ctx.set_output_tensor(0, dtype, shape);
    let f: fn(&SymInt, &SymInt) -> SymInt = match op.as_str() {
        "Add" => sym_add,
        "Sub" => sym_sub,
        "Mul" => sym_mul,
        "Div" if dtype.is_integer() => sym_div,
        _ => return Ok(()),
    };
    ctx.propagate_values(&[0, 1], f);
    Ok(())
}

/// Broadcasting comparison and logic ops: a bool tensor.
fn comparison(ctx: &mut NodeContext<'_>) -> RuleResult {
    if let Err(e @ RuleError::Invalid(_)) = common_dtype(ctx, &[0, 1]) {
        return Err(e);
    }
    let shape = broadcast_shape(ctx, &[0, 1])?;
    ctx.set_output_tensor(0, DataType::Bool, shape);
    if ctx.op_type() == "Equal" {
        ctx.propagate_values(&[0, 1], sym_equal);
    }
    Ok(())
}

/// Max, Min, Sum, Mean: broadcasting of every input (from opset 8; equal shapes before).
fn variadic(ctx: &mut NodeContext<'_>) -> RuleResult {
    let n = ctx.num_inputs();
    if n == 0 {
        bail!("{} needs at least one input", ctx.op_type());
    }
    let inputs: Vec<usize> = (0..n).collect();
    let dtype = common_dtype(ctx, &inputs)?;
    let shape = broadcast_shape(ctx, &inputs)?;
    ctx.set_output_tensor(0, dtype, shape);
    let f: fn(&SymInt, &SymInt) -> SymInt = match ctx.op_type() {
        "Max" => sym_max,
        "Min" => sym_min,
        "Sum" => sym_add,
        _ => return Ok(()),
    };
    ctx.propagate_values(&inputs, f);
    Ok(())
}

/// Broadcasting of condition, X and Y; the element type of X and Y.
fn where_op(ctx: &mut NodeContext<'_>) -> RuleResult {
    if let Ok(c) = ctx.input_dtype(0) {
        if c != DataType::Bool {
            bail!("input 0 (condition) must be bool, it is {c}");
        }
    }
    let dtype = common_dtype(ctx, &[1, 2])?;
    let shape = broadcast_shape(ctx, &[0, 1, 2])?;
    ctx.set_output_tensor(0, dtype, shape);
    let values: Option<Vec<&SymValue>> = (0..3).map(|i| ctx.input_value(i)).collect();
    if let Some(v) = values.and_then(|v| value::zip(&v)) {
        let elems = v
            .rows
            .iter()
            .map(|r| match r[0] {
                SymInt::Known(0) => r[2].clone(),
                SymInt::Known(_) => r[1].clone(),
                _ if r[1] == r[2] => r[1].clone(),
                _ => SymInt::Unknown,
            })
            .collect();
        ctx.set_output_value(
            0,
            SymValue {
                elems,
                scalar: v.scalar,
            },
        );
    }
    Ok(())
}

/// The `to` element type: an ONNX code, or before opset 6 a name such as "FLOAT".
fn cast_target(ctx: &NodeContext<'_>) -> RuleResult<DataType> {
    if let Some(AttributeValue::String(name)) = ctx.attr("to") {
        let name = String::from_utf8_lossy(name).to_lowercase();
        return DataType::from_name(&name).ok_or_else(|| {
            RuleError::invalid(format!("attribute 'to': unknown element type '{name}'"))
        });
    }
    ctx.attr_dtype("to")?
        .ok_or_else(|| RuleError::invalid("attribute 'to' is required"))
}

/// The input's shape with element type `to`; integer values pass between int32 and int64.
fn cast(ctx: &mut NodeContext<'_>) -> RuleResult {
    let to = cast_target(ctx)?;
    shape_of_input_with(ctx, 0, 0, to)?;
    let from_int = ctx.input_dtype(0).is_ok_and(|d| d.is_integer());
    if from_int && value::is_tracked(to) {
        if let Some(v) = ctx.input_value(0).cloned() {
            ctx.set_output_value(0, v);
        }
    }
    Ok(())
}

/// Input 0's shape with input 1's element type.
fn cast_like(ctx: &mut NodeContext<'_>) -> RuleResult {
    let to = ctx.input_dtype(1)?;
    shape_of_input_with(ctx, 0, 0, to)
}

/// Same shape, element type `to`, which must be as wide as the input's.
fn bit_cast(ctx: &mut NodeContext<'_>) -> RuleResult {
    let to = cast_target(ctx)?;
    if let Ok(from) = ctx.input_dtype(0) {
        if from.bit_width() != to.bit_width() || from == DataType::String || to == DataType::String
        {
            bail!("cannot reinterpret {from} as {to}: the element widths differ");
        }
    }
    shape_of_input_with(ctx, 0, 0, to)
}

fn identity(ctx: &mut NodeContext<'_>) -> RuleResult {
    if let Some(v) = ctx.input_value(0).cloned() {
        ctx.set_output_value(0, v);
    }
    same_as_input(ctx, 0, 0)
}

/// The type of whichever `value*` attribute is set (the engine binds `value`'s contents).
fn constant(ctx: &mut NodeContext<'_>) -> RuleResult {
    let attrs: Vec<(String, AttributeValue)> = ctx
        .node()
        .attributes
        .iter()
        .filter(|a| a.name == "sparse_value" || a.name.starts_with("value"))
        .map(|a| (a.name.clone(), a.value.clone()))
        .collect();
    let [(name, value)] = attrs.as_slice() else {
        bail!(
            "exactly one of the value attributes must be set, {} are",
            attrs.len()
        );
    };
    let (dtype, shape) = match (name.as_str(), value) {
        ("value", AttributeValue::Tensor(t)) => (t.dtype(), t.shape().to_vec()),
        ("sparse_value", AttributeValue::SparseTensor(s)) => (s.values.dtype(), s.dims.clone()),
        ("value_float", AttributeValue::Float(_)) => (DataType::Float, vec![]),
        ("value_floats", AttributeValue::Floats(v)) => (DataType::Float, vec![v.len()]),
        ("value_int", AttributeValue::Int(n)) => {
            ctx.set_output_value(0, SymValue::scalar(SymInt::Known(*n)));
            (DataType::Int64, vec![])
        }
        ("value_ints", AttributeValue::Ints(v)) => {
            if v.len() <= MAX_TRACKED_ELEMENTS {
                ctx.set_output_value(
                    0,
                    SymValue::vector(v.iter().map(|&n| SymInt::Known(n)).collect()),
                );
            }
            (DataType::Int64, vec![v.len()])
        }
        ("value_string", AttributeValue::String(_)) => (DataType::String, vec![]),
        ("value_strings", AttributeValue::Strings(v)) => (DataType::String, vec![v.len()]),
        (name, other) => bail!("attribute '{name}' cannot be {}", other.kind()),
    };
    ctx.set_output_tensor(0, dtype, Some(shape.into_iter().map(Dim::Fixed).collect()));
    Ok(())
}

/// A tensor of the shape input 0 holds, of `value`'s element type (float by default); a short
/// integer vector of known length also gets its contents tracked.
fn constant_of_shape(ctx: &mut NodeContext<'_>) -> RuleResult {
    let fill = ctx.attr_tensor("value")?.cloned();
    let dtype = fill.as_ref().map_or(DataType::Float, |t| t.dtype());
    if let Some(t) = &fill {
        if t.len() != 1 {
            bail!(
                "attribute 'value' must hold one element, it has {}",
                t.len()
            );
        }
    }
    let shape = if let Some(v) = ctx.input_value(0) {
        let mut out = Vec::with_capacity(v.elems.len());
        for e in &v.elems {
            if let SymInt::Known(n) = e {
                if *n < 0 {
                    bail!("input 0 (shape) holds the negative size {n}");
                }
            }
            out.push(e.to_dim());
        }
        Some(out)
    } else if let Some(ints) = ctx.input_ints(0) {
        if let Some(n) = ints.iter().find(|&&n| n < 0) {
            bail!("input 0 (shape) holds the negative size {n}");
        }
        Some(ints.iter().map(|&n| Dim::Fixed(n as usize)).collect())
    } else {
        match ctx.input_shape(0) {
            Ok([Dim::Fixed(n)]) => Some(vec![Dim::Unknown; *n]),
            Ok(s) if s.len() != 1 => bail!("input 0 (shape) must be 1-D, it has rank {}", s.len()),
            _ => None,
        }
    };
    if let (Some(fill), Some(shape)) = (&fill, &shape) {
        if let [Dim::Fixed(n)] = shape.as_slice() {
            if value::is_tracked(dtype) && *n <= MAX_TRACKED_ELEMENTS {
                if let Ok(v) = fill.to_i64_vec() {
                    ctx.set_output_value(0, SymValue::vector(vec![SymInt::Known(v[0]); *n]));
                }
            }
        }
    }
    ctx.set_output_tensor(0, dtype, shape);
    Ok(())
}

/// A 2-D input's shape, of element type `dtype` (the input's by default).
fn eye_like(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = match ctx.attr_dtype("dtype")? {
        Some(d) => d,
        None => ctx.input_dtype(0)?,
    };
    if let Ok(rank) = ctx.input_rank(0) {
        if rank != 2 {
            bail!("input 0 must be 2-D, it has rank {rank}");
        }
    }
    shape_of_input_with(ctx, 0, 0, dtype)
}

/// Output like the input; the mask is bool from opset 10 (the input's type before).
fn dropout(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    same_as_input(ctx, 0, 0)?;
    let mask = if ctx.opset() >= 10 {
        DataType::Bool
    } else {
        dtype
    };
    shape_of_input_with(ctx, 0, 1, mask)
}

/// x's shape; the type of y_zero_point, else `output_dtype` (opset 21), else uint8.
fn quantize_linear(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = if ctx.has_input(2) {
        ctx.input_dtype(2)?
    } else {
        match ctx.attr_dtype("output_dtype")? {
            Some(d) if ctx.opset() >= 21 => d,
            _ => DataType::Uint8,
        }
    };
    if ctx.has_input(2) && ctx.opset() >= 21 {
        if let Some(d) = ctx.attr_dtype("output_dtype")? {
            if d != dtype {
                bail!("attribute 'output_dtype' ({d}) differs from y_zero_point's type ({dtype})");
            }
        }
    }
    shape_of_input_with(ctx, 0, 0, dtype)
}

/// x's shape; float before opset 19, then x_scale's type, or `output_dtype` from opset 23.
fn dequantize_linear(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = if ctx.opset() < 19 {
        DataType::Float
    } else {
        match ctx.attr_dtype("output_dtype")? {
            Some(d) if ctx.opset() >= 23 => d,
            _ => ctx.input_dtype(1)?,
        }
    };
    shape_of_input_with(ctx, 0, 0, dtype)
}

/// y: uint8 of x's shape; y_scale: float scalar; y_zero_point: uint8 scalar.
fn dynamic_quantize_linear(ctx: &mut NodeContext<'_>) -> RuleResult {
    ctx.set_output_tensor(1, DataType::Float, Some(vec![]));
    ctx.set_output_tensor(2, DataType::Uint8, Some(vec![]));
    shape_of_input_with(ctx, 0, 0, DataType::Uint8)
}

/// The `shape` attribute, of element type `dtype` (float by default).
fn random(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.attr_dtype("dtype")?.unwrap_or(DataType::Float);
    let Some(shape) = ctx.attr_ints("shape")? else {
        bail!("attribute 'shape' is required");
    };
    let mut out = Vec::with_capacity(shape.len());
    for n in shape {
        if n < 0 {
            bail!("attribute 'shape' holds the negative size {n}");
        }
        out.push(Dim::Fixed(n as usize));
    }
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// The input's shape, of element type `dtype` (the input's by default).
fn random_like(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = match ctx.attr_dtype("dtype")? {
        Some(d) => d,
        None => ctx.input_dtype(0)?,
    };
    shape_of_input_with(ctx, 0, 0, dtype)
}

/// [batch, sample_size] from a [batch, classes] input; int32 by default.
fn multinomial(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.attr_dtype("dtype")?.unwrap_or(DataType::Int32);
    let samples = ctx.attr_int_or("sample_size", 1)?;
    if samples < 0 {
        bail!("attribute 'sample_size' is negative ({samples})");
    }
    let shape = match ctx.input_shape(0) {
        Ok([batch, _]) => Some(vec![batch.clone(), Dim::Fixed(samples as usize)]),
        Ok(s) => bail!(
            "input 0 must be 2-D [batch, classes], it has rank {}",
            s.len()
        ),
        Err(_) => Some(vec![Dim::Unknown, Dim::Fixed(samples as usize)]),
    };
    ctx.set_output_tensor(0, dtype, shape);
    Ok(())
}

/// Y like X; the statistics outputs (running mean and variance, and before opset 14 the saved
/// mean and variance) have the `mean` input's type, [C] by default.
fn batch_normalization(ctx: &mut NodeContext<'_>) -> RuleResult {
    let x = ctx.input_tensor(0)?.clone();
    ctx.set_output(0, ValueType::Tensor(x.clone()));
    if let Some(shape) = &x.shape {
        if shape.is_empty() {
            bail!("input 0 (X) must have a channel dimension, it is a scalar");
        }
    }
    let channels = x
        .shape
        .as_ref()
        .and_then(|s| s.get(1).cloned())
        .unwrap_or(Dim::Unknown);
    let stats = match ctx.input_tensor(3) {
        Ok(t) => t.clone(),
        Err(RuleError::Unknown) => runnx_ir::TensorType {
            dtype: x.dtype,
            shape: Some(vec![channels]),
        },
        Err(e) => return Err(e),
    };
    for i in 1..ctx.num_outputs() {
        ctx.set_output(i, ValueType::Tensor(stats.clone()));
    }
    Ok(())
}

/// Y like X; Mean and InvStdDev keep X's dimensions before `axis` and are 1 from it on, of
/// element type `stash_type` (float by default).
fn layer_normalization(ctx: &mut NodeContext<'_>) -> RuleResult {
    ctx.input_tensor(0)?;
    same_as_input(ctx, 0, 0)?;
    let stash = ctx.attr_dtype("stash_type")?.unwrap_or(DataType::Float);
    let shape = match ctx.input_shape(0) {
        Ok(s) => {
            let axis = dims::normalize_axis(ctx.attr_int_or("axis", -1)?, s.len())?;
            let mut out = s[..axis].to_vec();
            out.resize(s.len(), Dim::Fixed(1));
            Some(out)
        }
        Err(_) => None,
    };
    ctx.set_output_tensor(1, stash, shape.clone());
    ctx.set_output_tensor(2, stash, shape);
    Ok(())
}

/// Input 0's shape with the reduced axes dropped, or kept as 1 with `keepdims`; the axes are an
/// attribute, or from opset 13 (ReduceSum) or 18 (the others) an optional input.
fn reduce(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    let keepdims = ctx.attr_int_or("keepdims", 1)? != 0;
    let axes_since = if ctx.op_type() == "ReduceSum" { 13 } else { 18 };
    let axes_as_input = ctx.opset() >= axes_since;
    let noop_when_empty = axes_as_input && ctx.attr_int_or("noop_with_empty_axes", 0)? != 0;
    let axes = match ctx.attr_or_input_ints("axes", 1, axes_since) {
        Ok(axes) => axes,
        Err(RuleError::Unknown) => {
            // The axes are computed: only the rank may be known.
            let shape = ctx
                .input_shape(0)
                .ok()
                .map(|s| (s.len(), ctx.input_fixed_len(1)));
            let out = match shape {
                Some((r, _)) if keepdims => Some(vec![Dim::Unknown; r]),
                Some((r, Some(0))) if noop_when_empty => Some(vec![Dim::Unknown; r]),
                Some((_, Some(0))) => Some(vec![]),
                Some((r, Some(k))) if k <= r => Some(vec![Dim::Unknown; r - k]),
                _ => None,
            };
            ctx.set_output_tensor(0, dtype, out);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let axes = axes.unwrap_or_default();
    if axes.is_empty() && noop_when_empty {
        return same_as_input(ctx, 0, 0);
    }
    let shape = match ctx.input_shape(0) {
        Ok(s) => Some(dims::reduce(s, &axes, keepdims)?),
        Err(_) => None,
    };
    ctx.set_output_tensor(0, dtype, shape);
    Ok(())
}

/// int64 indices: input 0's shape with `axis` dropped or, with `keepdims`, 1.
fn arg_reduce(ctx: &mut NodeContext<'_>) -> RuleResult {
    let keepdims = ctx.attr_int_or("keepdims", 1)? != 0;
    let axis = ctx.attr_int_or("axis", 0)?;
    let shape = match ctx.input_shape(0) {
        Ok(s) => {
            if s.is_empty() {
                bail!("input 0 must have at least one dimension");
            }
            dims::normalize_axis(axis, s.len())?;
            Some(dims::reduce(s, &[axis], keepdims)?)
        }
        Err(_) => None,
    };
    ctx.set_output_tensor(0, DataType::Int64, shape);
    Ok(())
}

#[cfg(test)]
mod tests {
    use runnx_ir::{AttributeValue, DataType, Dim, Tensor};

    use crate::testing::{
        graph, infer_strict, int64s, model, node, sym, tensor_info, tensor_of, try_infer_strict,
    };

    #[test]
    fn broadcasting_keeps_symbols_and_comparisons_are_bool() {
        let m = model(
            17,
            graph(
                vec![
                    tensor_info(
                        "a",
                        DataType::Float,
                        vec![sym("batch"), Dim::Fixed(1), Dim::Fixed(4)],
                    ),
                    tensor_info("b", DataType::Float, vec![Dim::Fixed(3), Dim::Fixed(1)]),
                ],
                vec![],
                vec![
                    node("Add", &["a", "b"], &["sum"], vec![]),
                    node("Less", &["a", "b"], &["less"], vec![]),
                ],
                &[],
            ),
        );
        let expected = Some(vec![sym("batch"), Dim::Fixed(3), Dim::Fixed(4)]);
        assert_eq!(
            tensor_of(&infer_strict(&m), "sum"),
            (DataType::Float, expected.clone())
        );
        assert_eq!(
            tensor_of(&infer_strict(&m), "less"),
            (DataType::Bool, expected)
        );
    }

    #[test]
    fn reduce_axes_move_from_attribute_to_input_at_opset_18() {
        let x = tensor_info(
            "x",
            DataType::Float,
            vec![sym("n"), Dim::Fixed(3), Dim::Fixed(5)],
        );
        let axes = int64s(&[-1]);
        let old = model(
            13,
            graph(
                vec![x.clone()],
                vec![],
                vec![node(
                    "ReduceMean",
                    &["x"],
                    &["y"],
                    vec![
                        ("axes", AttributeValue::Ints(vec![-1])),
                        ("keepdims", AttributeValue::Int(0)),
                    ],
                )],
                &[],
            ),
        );
        assert_eq!(
            tensor_of(&infer_strict(&old), "y").1,
            Some(vec![sym("n"), Dim::Fixed(3)])
        );
        let new = model(
            18,
            graph(
                vec![x.clone()],
                vec![("axes", axes)],
                vec![node("ReduceMean", &["x", "axes"], &["y"], vec![])],
                &[],
            ),
        );
        assert_eq!(
            tensor_of(&infer_strict(&new), "y").1,
            Some(vec![sym("n"), Dim::Fixed(3), Dim::Fixed(1)])
        );
        let noop = model(
            18,
            graph(
                vec![x],
                vec![],
                vec![node(
                    "ReduceMax",
                    &["x"],
                    &["y"],
                    vec![("noop_with_empty_axes", AttributeValue::Int(1))],
                )],
                &[],
            ),
        );
        assert_eq!(
            tensor_of(&infer_strict(&noop), "y").1,
            Some(vec![sym("n"), Dim::Fixed(3), Dim::Fixed(5)])
        );
    }

    #[test]
    fn computed_shape_values_flow_through_arithmetic_and_where() {
        // shape = Where(Equal(Shape-like values, -1), ones, values) * 1 + 0 -> [batch, 2, 3]
        let m = model(
            17,
            graph(
                vec![],
                vec![
                    ("one", Tensor::scalar(1i64)),
                    ("zero", Tensor::scalar(0i64)),
                    ("three", int64s(&[3])),
                ],
                vec![
                    node(
                        "Constant",
                        &[],
                        &["dims"],
                        vec![("value_ints", AttributeValue::Ints(vec![-1, 2, 3]))],
                    ),
                    node(
                        "Constant",
                        &[],
                        &["neg"],
                        vec![("value_int", AttributeValue::Int(-1))],
                    ),
                    node("Equal", &["dims", "neg"], &["is_neg"], vec![]),
                    node(
                        "ConstantOfShape",
                        &["three"],
                        &["ones"],
                        vec![("value", AttributeValue::Tensor(int64s(&[7])))],
                    ),
                    node("Where", &["is_neg", "ones", "dims"], &["fixed"], vec![]),
                    node("Mul", &["fixed", "one"], &["m"], vec![]),
                    node("Add", &["m", "zero"], &["a"], vec![]),
                    node("ConstantOfShape", &["a"], &["out"], vec![]),
                ],
                &[],
            ),
        );
        assert_eq!(
            tensor_of(&infer_strict(&m), "out"),
            (
                DataType::Float,
                Some(vec![Dim::Fixed(7), Dim::Fixed(2), Dim::Fixed(3)])
            )
        );
    }

    #[test]
    fn layer_norm_statistics_and_legacy_cast() {
        let m = model(
            17,
            graph(
                vec![tensor_info(
                    "x",
                    DataType::Float16,
                    vec![sym("b"), Dim::Fixed(3), Dim::Fixed(5)],
                )],
                vec![],
                vec![
                    node(
                        "LayerNormalization",
                        &["x", "x"],
                        &["y", "mean", "inv"],
                        vec![("axis", AttributeValue::Int(1))],
                    ),
                    node(
                        "ArgMax",
                        &["x"],
                        &["idx"],
                        vec![
                            ("axis", AttributeValue::Int(-1)),
                            ("keepdims", AttributeValue::Int(0)),
                        ],
                    ),
                ],
                &[],
            ),
        );
        assert_eq!(
            tensor_of(&infer_strict(&m), "mean"),
            (
                DataType::Float,
                Some(vec![sym("b"), Dim::Fixed(1), Dim::Fixed(1)])
            )
        );
        assert_eq!(
            tensor_of(&infer_strict(&m), "idx"),
            (DataType::Int64, Some(vec![sym("b"), Dim::Fixed(3)]))
        );
        let cast = model(
            1,
            graph(
                vec![tensor_info("x", DataType::Float, vec![Dim::Fixed(2)])],
                vec![],
                vec![node(
                    "Cast",
                    &["x"],
                    &["y"],
                    vec![("to", AttributeValue::String(b"INT64".to_vec()))],
                )],
                &[],
            ),
        );
        assert_eq!(
            tensor_of(&infer_strict(&cast), "y"),
            (DataType::Int64, Some(vec![Dim::Fixed(2)]))
        );
    }

    #[test]
    fn bad_axes_and_shapes_are_errors_not_panics() {
        let m = model(
            13,
            graph(
                vec![tensor_info(
                    "x",
                    DataType::Float,
                    vec![Dim::Fixed(2), Dim::Fixed(3)],
                )],
                vec![],
                vec![node(
                    "Softmax",
                    &["x"],
                    &["y"],
                    vec![("axis", AttributeValue::Int(5))],
                )],
                &[],
            ),
        );
        assert!(try_infer_strict(&m).is_err());
        let m = model(
            13,
            graph(
                vec![
                    tensor_info("a", DataType::Float, vec![Dim::Fixed(2)]),
                    tensor_info("b", DataType::Float, vec![Dim::Fixed(3)]),
                ],
                vec![],
                vec![node("Mul", &["a", "b"], &["y"], vec![])],
                &[],
            ),
        );
        assert!(try_infer_strict(&m).is_err());
    }
}
