//! Per-operator adapters for the versions whose signature or semantics changed, keyed by
//! (op, the version that introduced the change, direction).

use runnx_ir::{Attribute, AttributeValue, DataType, Dim, Node, Tensor, TensorData};

use crate::context::Ctx;
use crate::fit::trim;

#[derive(Clone, Copy)]
pub(crate) enum Direction {
    Up,
    Down,
}

pub(crate) type Adapter = fn(&mut Ctx, Node) -> Result<Vec<Node>, String>;

/// Reductions whose `axes` moved from an attribute to input 1 at opset 18.
const REDUCE_18: &[&str] = &[
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSumSquare",
];

/// Ops with the legacy `broadcast`/`axis` attributes before numpy-style broadcasting at opset 7.
const BROADCAST_7: &[&str] = &[
    "Add", "And", "Div", "Equal", "Gemm", "Greater", "Less", "Mul", "Or", "Pow", "Sub", "Xor",
];

/// The adapter for `op` across `version` in `direction`, if its signature changed there.
pub(crate) fn find(op: &str, version: i64, direction: Direction) -> Option<Adapter> {
    use Direction::{Down, Up};
    let adapter: Adapter = match (op, version, direction) {
        // Numpy-style broadcasting replaced the `broadcast`/`axis` attributes.
        (op, 7, Up) if BROADCAST_7.contains(&op) => broadcast_up,
        (op, 7, Down) if BROADCAST_7.contains(&op) => broadcast_down,
        // `shape` moved from an attribute to input 1.
        ("Reshape", 5, Up) => |c, n| one(attr_to_input(c, n, "shape", 1)),
        ("Reshape", 5, Down) => |c, n| one(input_to_attr(c, n, 1, "shape")),
        // `axes` moved from an attribute to input 1.
        ("Squeeze" | "Unsqueeze" | "ReduceSum", 13, Up) => {
            |c, n| one(attr_to_input(c, n, "axes", 1))
        }
        ("Squeeze" | "Unsqueeze", 13, Down) => |c, n| one(input_to_attr(c, n, 1, "axes")),
        ("ReduceSum", 13, Down) => reduce_down,
        (op, 18, Up) if REDUCE_18.contains(&op) => |c, n| one(attr_to_input(c, n, "axes", 1)),
        (op, 18, Down) if REDUCE_18.contains(&op) => reduce_down,
        // `split` moved from an attribute to input 1.
        ("Split", 13, Up) => |c, n| one(attr_to_input(c, n, "split", 1)),
        ("Split", 13, Down) => |c, n| one(input_to_attr(c, n, 1, "split")),
        // `num_outputs` added: without `split`, an equal split must now say how many parts.
        ("Split", 18, Up) => split_18_up,
        ("Split", 18, Down) => split_18_down,
        // Input C became optional.
        ("Gemm", 11, Down) => gemm_11_down,
        // `starts`, `ends`, `axes` moved to inputs 1-3 and input 4 `steps` was added.
        ("Slice", 10, Up) => slice_up,
        ("Slice", 10, Down) => slice_down,
        // `pads` and `value` moved to inputs 1 and 2.
        ("Pad", 11, Up) => pad_up,
        ("Pad", 11, Down) => pad_down,
        // mode `wrap` added.
        ("Pad", 19, Down) => |_, n| one(refuse_value(n, "mode", b"wrap")),
        // `min` and `max` moved to inputs 1 and 2.
        ("Clip", 11, Up) => clip_up,
        ("Clip", 11, Down) => clip_down,
        // `k` moved to input 1.
        ("TopK", 10, Up) => |c, n| one(attr_to_input(c, n, "k", 1)),
        ("TopK", 10, Down) => topk_down,
        // `ratio` moved to input 1; input 2 `training_mode` and attribute `seed` were added.
        ("Dropout", 12, Up) => dropout_up,
        ("Dropout", 12, Down) => dropout_down,
        // `scales` moved to input 1.
        ("Upsample", 9, Up) => |c, n| one(attr_to_input(c, n, "scales", 1)),
        ("Upsample", 9, Down) => |c, n| one(input_to_attr(c, n, 1, "scales")),
        // Upsample was deprecated in favour of Resize, with the same inputs.
        ("Upsample", 10, Up) => |_, n| one(Ok(renamed(n, "Resize"))),
        ("Resize", 10, Down) => |_, n| one(Ok(renamed(n, "Upsample"))),
        // Input 1 `roi` and `coordinate_transformation_mode` (default half_pixel) were added.
        ("Resize", 11, Up) => resize_11_up,
        ("Resize", 11, Down) => resize_11_down,
        // `roi` and `scales` became optional; `tf_half_pixel_for_nn` was removed.
        ("Resize", 13, Up) => |_, n| {
            one(refuse_value(
                n,
                "coordinate_transformation_mode",
                b"tf_half_pixel_for_nn",
            ))
        },
        ("Resize", 13, Down) => resize_13_down,
        // `half_pixel_symmetric` coordinate mode added.
        ("Resize", 19, Down) => |_, n| {
            one(refuse_value(
                n,
                "coordinate_transformation_mode",
                b"half_pixel_symmetric",
            ))
        },
        // `is_test` removed: older versions run in training mode unless told otherwise.
        ("BatchNormalization", 7, Down) => {
            |_, n| one(Ok(with(n, "is_test", AttributeValue::Int(1))))
        }
        // Outputs 2-3 became the running statistics, produced only in training mode.
        ("BatchNormalization", 14, Up | Down) => batchnorm_14,
        // The op now works along one axis instead of on the input coerced to 2-D at `axis`.
        ("Softmax" | "LogSoftmax" | "Hardmax", 13, Up) => softmax_up,
        ("Softmax" | "LogSoftmax" | "Hardmax", 13, Down) => softmax_down,
        // Scatter was deprecated in favour of ScatterElements, with the same signature.
        ("Scatter", 11, Up) => |_, n| one(Ok(renamed(n, "ScatterElements"))),
        ("ScatterElements", 11, Down) => |_, n| one(Ok(renamed(n, "Scatter"))),
        // Modes renamed (bilinear -> linear, bicubic -> cubic) and N-D inputs allowed.
        ("GridSample", 20, Up) => |_, n| {
            one(Ok(grid_sample_modes(
                n,
                &[("bilinear", "linear"), ("bicubic", "cubic")],
            )))
        },
        ("GridSample", 20, Down) => grid_sample_down,
        // Scan-9 dropped the leading batch axis of Scan-8.
        ("Scan", 9, Up | Down) => |_, _| Err("Scan-8 has a batch axis that Scan-9 does not".into()),
        // value_float(s)/value_int(s)/value_string(s) added.
        ("Constant", 12, Down) => constant_down,
        _ => return None,
    };
    Some(adapter)
}

fn one(node: Result<Node, String>) -> Result<Vec<Node>, String> {
    node.map(|n| vec![n])
}

fn take_attr(node: &mut Node, name: &str) -> Option<AttributeValue> {
    let i = node.attributes.iter().position(|a| a.name == name)?;
    Some(node.attributes.remove(i).value)
}

fn with(mut node: Node, name: &str, value: AttributeValue) -> Node {
    take_attr(&mut node, name);
    node.attributes.push(Attribute {
        name: name.to_string(),
        value,
        ref_attr_name: None,
    });
    node
}

fn renamed(mut node: Node, op: &str) -> Node {
    node.op_type = op.to_string();
    node
}

fn int_attr(node: &Node, name: &str) -> Option<i64> {
    match node.attribute(name)?.value {
        AttributeValue::Int(v) => Some(v),
        _ => None,
    }
}

fn str_attr<'a>(node: &'a Node, name: &str) -> Option<&'a [u8]> {
    match &node.attribute(name)?.value {
        AttributeValue::String(v) => Some(v),
        _ => None,
    }
}

fn refuse_value(node: Node, attr: &str, value: &[u8]) -> Result<Node, String> {
    if str_attr(&node, attr) == Some(value) {
        return Err(format!(
            "{attr} '{}' is not available",
            String::from_utf8_lossy(value)
        ));
    }
    Ok(node)
}

fn input(node: &Node, i: usize) -> Option<&str> {
    node.inputs
        .get(i)
        .map(String::as_str)
        .filter(|s| !s.is_empty())
}

fn set_input(node: &mut Node, i: usize, name: String) {
    if node.inputs.len() <= i {
        node.inputs.resize(i + 1, String::new());
    }
    node.inputs[i] = name;
}

/// The node's first output: what new constants and nodes are named after.
fn base(node: &Node) -> String {
    node.outputs.first().cloned().unwrap_or_default()
}

/// Moves an ints/floats attribute into a new initializer at input `i`.
fn attr_to_input(ctx: &mut Ctx, mut node: Node, attr: &str, i: usize) -> Result<Node, String> {
    let tensor = match take_attr(&mut node, attr) {
        None => return Ok(node),
        Some(AttributeValue::Ints(v)) => Tensor::from_vec([v.len()], v),
        Some(AttributeValue::Int(v)) => Tensor::from_vec([1], vec![v]),
        Some(AttributeValue::Floats(v)) => Tensor::from_vec([v.len()], v),
        Some(other) => return Err(format!("attribute '{attr}' is a {}", other.kind())),
    };
    let name = ctx.add_initializer(
        &format!("{}_{attr}", base(&node)),
        tensor.map_err(|e| e.to_string())?,
    );
    set_input(&mut node, i, name);
    Ok(node)
}

/// The constant value of input `i`, `None` when the input is absent.
fn const_input<'c>(
    ctx: &'c Ctx,
    node: &Node,
    i: usize,
    what: &str,
) -> Result<Option<&'c Tensor>, String> {
    let Some(name) = input(node, i) else {
        return Ok(None);
    };
    ctx.constant(name)
        .map(Some)
        .ok_or_else(|| format!("input '{name}' ({what}) is computed, but the older opset needs it as a constant attribute"))
}

/// Moves constant input `i` into an ints (or, for float tensors, floats) attribute.
fn input_to_attr(ctx: &mut Ctx, mut node: Node, i: usize, attr: &str) -> Result<Node, String> {
    let Some(t) = const_input(ctx, &node, i, attr)? else {
        return Ok(node);
    };
    let value = match t.data() {
        TensorData::Float(v) => AttributeValue::Floats(v.clone()),
        _ => AttributeValue::Ints(t.to_i64_vec().map_err(|e| e.to_string())?),
    };
    node.inputs[i].clear();
    trim(&mut node.inputs);
    Ok(with(node, attr, value))
}

/// The value of a one-element tensor as f32.
fn scalar_f32(t: &Tensor) -> Result<f32, String> {
    let value = match t.data() {
        TensorData::Float(v) => v.first().copied(),
        TensorData::Double(v) => v.first().map(|&x| x as f32),
        TensorData::Float16(v) => v.first().map(|x| x.to_f32()),
        _ => t
            .to_i64_vec()
            .map_err(|e| e.to_string())?
            .first()
            .map(|&x| x as f32),
    };
    value.ok_or_else(|| "empty tensor where a scalar was expected".into())
}

/// A float scalar of `dtype` (the type of the data it applies to).
fn scalar_of(dtype: DataType, value: f32) -> Result<Tensor, String> {
    match dtype {
        DataType::Float => Ok(Tensor::scalar(value)),
        DataType::Double => Ok(Tensor::scalar(value as f64)),
        other => Err(format!("cannot make a {other} constant for value {value}")),
    }
}

/// Moves a float attribute into a scalar initializer at input `i`, typed like input 0.
fn float_attr_to_input(
    ctx: &mut Ctx,
    mut node: Node,
    attr: &str,
    i: usize,
    dtype: DataType,
) -> Result<Node, String> {
    match take_attr(&mut node, attr) {
        Some(AttributeValue::Float(v)) => {
            let tensor = scalar_of(dtype, v)?;
            let name = ctx.add_initializer(&format!("{}_{attr}", base(&node)), tensor);
            set_input(&mut node, i, name);
            Ok(node)
        }
        _ => Ok(node),
    }
}

/// Moves constant scalar input `i` into a float attribute.
fn input_to_float_attr(ctx: &Ctx, mut node: Node, i: usize, attr: &str) -> Result<Node, String> {
    let Some(t) = const_input(ctx, &node, i, attr)? else {
        return Ok(node);
    };
    let value = scalar_f32(t)?;
    node.inputs[i].clear();
    trim(&mut node.inputs);
    Ok(with(node, attr, AttributeValue::Float(value)))
}

fn data_type(ctx: &Ctx, node: &Node) -> DataType {
    input(node, 0)
        .and_then(|x| ctx.dtype(x))
        .unwrap_or(DataType::Float)
}

fn broadcast_up(ctx: &mut Ctx, mut node: Node) -> Result<Vec<Node>, String> {
    let broadcast = matches!(
        take_attr(&mut node, "broadcast"),
        Some(AttributeValue::Int(1))
    );
    if let Some(AttributeValue::Int(axis)) = take_attr(&mut node, "axis") {
        let ranks = (
            input(&node, 0).and_then(|a| ctx.rank(a)),
            input(&node, 1).and_then(|b| ctx.rank(b)),
        );
        match ranks {
            (Some(a), Some(b)) if !broadcast || axis + b as i64 == a as i64 => {}
            _ => {
                return Err(format!(
                    "broadcast along axis {axis} does not align B with the end of A"
                ))
            }
        }
    }
    Ok(vec![node])
}

fn broadcast_down(ctx: &mut Ctx, node: Node) -> Result<Vec<Node>, String> {
    if node.op_type == "Gemm" {
        return Ok(vec![with(node, "broadcast", AttributeValue::Int(1))]);
    }
    let shape = |i| input(&node, i).and_then(|x| ctx.shape(x));
    let (Some(a), Some(b)) = (shape(0), shape(1)) else {
        return Err(
            "operand shapes are not declared, so legacy broadcasting cannot be checked".into(),
        );
    };
    if a == b {
        return Ok(vec![node]);
    }
    let scalar = b.iter().all(|d| *d == Dim::Fixed(1));
    if scalar || (b.len() <= a.len() && a.ends_with(b)) {
        return Ok(vec![with(node, "broadcast", AttributeValue::Int(1))]);
    }
    Err("legacy broadcasting only aligns B with the end of A".into())
}

fn reduce_down(ctx: &mut Ctx, mut node: Node) -> Result<Vec<Node>, String> {
    if int_attr(&node, "noop_with_empty_axes") == Some(1) {
        if input(&node, 1).is_none() {
            return Err("noop_with_empty_axes=1 without axes has no older equivalent".into());
        }
        take_attr(&mut node, "noop_with_empty_axes");
    }
    one(input_to_attr(ctx, node, 1, "axes"))
}

fn split_18_up(_: &mut Ctx, node: Node) -> Result<Vec<Node>, String> {
    if input(&node, 1).is_some() || node.attribute("num_outputs").is_some() {
        return Ok(vec![node]);
    }
    let parts = node.outputs.len() as i64;
    Ok(vec![with(node, "num_outputs", AttributeValue::Int(parts))])
}

/// An uneven `num_outputs` split becomes explicit sizes when the axis length is declared.
fn split_18_down(ctx: &mut Ctx, mut node: Node) -> Result<Vec<Node>, String> {
    let Some(AttributeValue::Int(parts)) = take_attr(&mut node, "num_outputs") else {
        return Ok(vec![node]);
    };
    let axis = int_attr(&node, "axis").unwrap_or(0);
    let shape = input(&node, 0).and_then(|x| ctx.shape(x));
    let len = shape.and_then(|s| {
        s.get(if axis < 0 {
            axis + s.len() as i64
        } else {
            axis
        } as usize)
    });
    match len {
        Some(Dim::Fixed(len)) if *len as i64 % parts != 0 => {
            let chunk = (*len as i64 + parts - 1) / parts;
            let sizes: Vec<i64> = (0..parts)
                .map(|i| chunk.min(*len as i64 - i * chunk))
                .collect();
            let tensor = Tensor::from_vec([sizes.len()], sizes).map_err(|e| e.to_string())?;
            let name = ctx.add_initializer(&format!("{}_split", base(&node)), tensor);
            set_input(&mut node, 1, name);
            Ok(vec![node])
        }
        _ => Ok(vec![node]),
    }
}

fn gemm_11_down(ctx: &mut Ctx, mut node: Node) -> Result<Vec<Node>, String> {
    if input(&node, 2).is_none() {
        let zero = scalar_of(data_type(ctx, &node), 0.0)?;
        let name = ctx.add_initializer(&format!("{}_c", base(&node)), zero);
        set_input(&mut node, 2, name);
    }
    Ok(vec![node])
}

fn slice_up(ctx: &mut Ctx, node: Node) -> Result<Vec<Node>, String> {
    let node = attr_to_input(ctx, node, "starts", 1)?;
    let node = attr_to_input(ctx, node, "ends", 2)?;
    one(attr_to_input(ctx, node, "axes", 3))
}

fn slice_down(ctx: &mut Ctx, mut node: Node) -> Result<Vec<Node>, String> {
    if let Some(steps) = const_input(ctx, &node, 4, "steps")? {
        if steps
            .to_i64_vec()
            .map_err(|e| e.to_string())?
            .iter()
            .any(|&s| s != 1)
        {
            return Err("steps other than 1 need opset 10".into());
        }
        node.inputs[4].clear();
    }
    for (i, attr) in [(3, "axes"), (2, "ends"), (1, "starts")] {
        node = input_to_attr(ctx, node, i, attr)?;
    }
    Ok(vec![node])
}

fn pad_up(ctx: &mut Ctx, mut node: Node) -> Result<Vec<Node>, String> {
    let dtype = data_type(ctx, &node);
    if matches!(node.attribute("value").map(|a| &a.value), Some(AttributeValue::Float(v)) if *v == 0.0)
    {
        take_attr(&mut node, "value");
    }
    let node = attr_to_input(ctx, node, "pads", 1)?;
    one(float_attr_to_input(ctx, node, "value", 2, dtype))
}

fn pad_down(ctx: &mut Ctx, node: Node) -> Result<Vec<Node>, String> {
    let node = input_to_float_attr(ctx, node, 2, "value")?;
    one(input_to_attr(ctx, node, 1, "pads"))
}

fn clip_up(ctx: &mut Ctx, node: Node) -> Result<Vec<Node>, String> {
    let dtype = data_type(ctx, &node);
    let node = float_attr_to_input(ctx, node, "min", 1, dtype)?;
    one(float_attr_to_input(ctx, node, "max", 2, dtype))
}

fn clip_down(ctx: &mut Ctx, node: Node) -> Result<Vec<Node>, String> {
    let node = input_to_float_attr(ctx, node, 2, "max")?;
    one(input_to_float_attr(ctx, node, 1, "min"))
}

fn topk_down(ctx: &mut Ctx, mut node: Node) -> Result<Vec<Node>, String> {
    let Some(k) = const_input(ctx, &node, 1, "k")? else {
        return Err("missing input k".into());
    };
    let k = k
        .to_i64_vec()
        .map_err(|e| e.to_string())?
        .first()
        .copied()
        .ok_or("empty k")?;
    node.inputs.truncate(1);
    Ok(vec![with(node, "k", AttributeValue::Int(k))])
}

fn dropout_up(ctx: &mut Ctx, node: Node) -> Result<Vec<Node>, String> {
    one(float_attr_to_input(ctx, node, "ratio", 1, DataType::Float))
}

fn dropout_down(ctx: &mut Ctx, mut node: Node) -> Result<Vec<Node>, String> {
    if let Some(training) = const_input(ctx, &node, 2, "training_mode")? {
        if !matches!(training.data(), TensorData::Bool(v) if v.iter().all(|b| !b)) {
            return Err("training mode has no older equivalent".into());
        }
        node.inputs[2].clear();
    } else if input(&node, 2).is_some() {
        return Err("training_mode is computed".into());
    }
    take_attr(&mut node, "seed");
    one(input_to_float_attr(ctx, node, 1, "ratio"))
}

fn resize_11_up(ctx: &mut Ctx, mut node: Node) -> Result<Vec<Node>, String> {
    let roi = ctx.add_initializer(
        &format!("{}_roi", base(&node)),
        Tensor::zeros(DataType::Float, [0]),
    );
    node.inputs.insert(1, roi);
    let nearest = str_attr(&node, "mode").is_none_or(|m| m == b"nearest");
    let mut node = with(
        node,
        "coordinate_transformation_mode",
        AttributeValue::String(b"asymmetric".to_vec()),
    );
    if nearest {
        node = with(
            node,
            "nearest_mode",
            AttributeValue::String(b"floor".to_vec()),
        );
    }
    Ok(vec![node])
}

fn resize_11_down(_: &mut Ctx, mut node: Node) -> Result<Vec<Node>, String> {
    if str_attr(&node, "coordinate_transformation_mode") != Some(b"asymmetric") {
        return Err(
            "only coordinate_transformation_mode 'asymmetric' is expressible before opset 11"
                .into(),
        );
    }
    match str_attr(&node, "mode").unwrap_or(b"nearest") {
        b"nearest" if str_attr(&node, "nearest_mode") == Some(b"floor") => {}
        b"linear" => {}
        _ => {
            return Err(
                "only linear, or nearest with nearest_mode 'floor', is expressible before opset 11"
                    .into(),
            )
        }
    }
    if input(&node, 3).is_some() || input(&node, 2).is_none() {
        return Err("output sizes instead of scales need opset 11".into());
    }
    take_attr(&mut node, "coordinate_transformation_mode");
    take_attr(&mut node, "nearest_mode");
    node.inputs = vec![node.inputs[0].clone(), node.inputs[2].clone()];
    Ok(vec![node])
}

fn resize_13_down(ctx: &mut Ctx, mut node: Node) -> Result<Vec<Node>, String> {
    for (i, what) in [(1, "roi"), (2, "scales")] {
        if input(&node, i).is_none() {
            let name = ctx.add_initializer(
                &format!("{}_{what}", base(&node)),
                Tensor::zeros(DataType::Float, [0]),
            );
            set_input(&mut node, i, name);
        }
    }
    Ok(vec![node])
}

fn batchnorm_14(_: &mut Ctx, node: Node) -> Result<Vec<Node>, String> {
    if node.outputs.iter().skip(1).any(|o| !o.is_empty()) {
        return Err("training outputs changed meaning at opset 14".into());
    }
    Ok(vec![node])
}

/// The Flatten/op/Reshape or Transpose/op/Transpose sequence around a softmax-like node.
fn node(
    ctx: &mut Ctx,
    op: &str,
    base: &str,
    inputs: Vec<String>,
    output: String,
    attrs: Vec<Attribute>,
) -> Node {
    Node {
        name: ctx.names.fresh(&format!("{base}_{}", op.to_lowercase())),
        op_type: op.to_string(),
        inputs,
        outputs: vec![output],
        attributes: attrs,
        ..Node::default()
    }
}

fn int(name: &str, v: i64) -> Attribute {
    Attribute {
        name: name.to_string(),
        value: AttributeValue::Int(v),
        ref_attr_name: None,
    }
}

fn softmax_up(ctx: &mut Ctx, op: Node) -> Result<Vec<Node>, String> {
    let axis = int_attr(&op, "axis").unwrap_or(1);
    let x = op.inputs[0].clone();
    let rank = ctx.rank(&x).map(|r| r as i64);
    if axis == -1 || rank.is_some_and(|r| axis == r - 1) {
        return Ok(vec![with(op, "axis", AttributeValue::Int(axis))]);
    }
    let (y, b) = (op.outputs[0].clone(), base(&op));
    let (flat, flat_y, shape) = (
        ctx.names.fresh(&format!("{b}_2d_in")),
        ctx.names.fresh(&format!("{b}_2d")),
        ctx.names.fresh(&format!("{b}_shape")),
    );
    let flatten = node(
        ctx,
        "Flatten",
        &b,
        vec![x.clone()],
        flat.clone(),
        vec![int("axis", axis)],
    );
    let mut op = with(op, "axis", AttributeValue::Int(1));
    op.inputs[0] = flat;
    op.outputs[0] = flat_y.clone();
    let shape_of = node(ctx, "Shape", &b, vec![x], shape.clone(), vec![]);
    let reshape = node(ctx, "Reshape", &b, vec![flat_y, shape], y, vec![]);
    Ok(vec![flatten, op, shape_of, reshape])
}

fn softmax_down(ctx: &mut Ctx, op: Node) -> Result<Vec<Node>, String> {
    let axis = int_attr(&op, "axis").unwrap_or(-1);
    let x = op.inputs[0].clone();
    let Some(rank) = ctx.rank(&x).map(|r| r as i64) else {
        return match axis {
            -1 => Ok(vec![with(op, "axis", AttributeValue::Int(-1))]),
            _ => Err(format!("axis {axis} of an input of undeclared rank")),
        };
    };
    let axis = if axis < 0 { axis + rank } else { axis };
    if axis == rank - 1 {
        return Ok(vec![with(op, "axis", AttributeValue::Int(axis))]);
    }
    let mut perm: Vec<i64> = (0..rank).collect();
    perm.swap(axis as usize, rank as usize - 1);
    let perm = Attribute {
        name: "perm".into(),
        value: AttributeValue::Ints(perm),
        ref_attr_name: None,
    };
    let (y, b) = (op.outputs[0].clone(), base(&op));
    let (t_in, t_out) = (
        ctx.names.fresh(&format!("{b}_last_in")),
        ctx.names.fresh(&format!("{b}_last")),
    );
    let before = node(
        ctx,
        "Transpose",
        &b,
        vec![x],
        t_in.clone(),
        vec![perm.clone()],
    );
    let mut op = with(op, "axis", AttributeValue::Int(rank - 1));
    op.inputs[0] = t_in;
    op.outputs[0] = t_out.clone();
    let after = node(ctx, "Transpose", &b, vec![t_out], y, vec![perm]);
    Ok(vec![before, op, after])
}

fn grid_sample_modes(mut node: Node, renames: &[(&str, &str)]) -> Node {
    if let Some(AttributeValue::String(mode)) = node
        .attributes
        .iter_mut()
        .find(|a| a.name == "mode")
        .map(|a| &mut a.value)
    {
        if let Some((_, new)) = renames
            .iter()
            .find(|(old, _)| old.as_bytes() == mode.as_slice())
        {
            *mode = new.as_bytes().to_vec();
        }
    }
    node
}

fn grid_sample_down(ctx: &mut Ctx, node: Node) -> Result<Vec<Node>, String> {
    if input(&node, 0)
        .and_then(|x| ctx.rank(x))
        .is_some_and(|r| r != 4)
    {
        return Err("inputs other than 4-D need opset 20".into());
    }
    Ok(vec![grid_sample_modes(
        node,
        &[("linear", "bilinear"), ("cubic", "bicubic")],
    )])
}

fn constant_down(_: &mut Ctx, mut node: Node) -> Result<Vec<Node>, String> {
    let tensor = match node.attributes.first().map(|a| (&a.name[..], &a.value)) {
        Some(("value_float", AttributeValue::Float(v))) => Tensor::scalar(*v),
        Some(("value_int", AttributeValue::Int(v))) => Tensor::scalar(*v),
        Some(("value_floats", AttributeValue::Floats(v))) => {
            Tensor::from_vec([v.len()], v.clone()).map_err(|e| e.to_string())?
        }
        Some(("value_ints", AttributeValue::Ints(v))) => {
            Tensor::from_vec([v.len()], v.clone()).map_err(|e| e.to_string())?
        }
        _ => return Ok(vec![node]),
    };
    node.attributes.clear();
    Ok(vec![with(node, "value", AttributeValue::Tensor(tensor))])
}
