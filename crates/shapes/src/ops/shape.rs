//! Shape and indexing ops (Reshape, Concat, Gather, Slice, Expand ...), MatMul and Gemm, and the
//! data propagation of computed shapes: `Shape`, `Size`, `Gather`, `Concat`, `Slice`,
//! `Squeeze`/`Unsqueeze` and `Reshape` carry the contents of small integer tensors as
//! [`SymValue`]s, and the ops that read a shape from a tensor (Reshape, Expand, Tile, Slice, Pad,
//! Range, OneHot, TopK) turn named entries back into named dimensions.

use runnx_ir::{DataType, Dim};

use super::{same_as_input, Rule};
use crate::bail;
use crate::context::{NodeContext, RuleError, RuleResult};
use crate::dims::{self, broadcast, format_shape, normalize_axes, normalize_axis, product, unify};
use crate::value::{self, SymInt, SymValue, MAX_TRACKED_ELEMENTS};

pub fn rule(op: &str) -> Option<Rule> {
    Some(match op {
        "Shape" => shape,
        "Size" => size,
        "Reshape" => reshape,
        "Flatten" => flatten,
        "Squeeze" => squeeze,
        "Unsqueeze" => unsqueeze,
        "Transpose" => transpose,
        "Concat" => concat,
        "Split" => split,
        "Slice" => slice,
        "Gather" => gather,
        "GatherElements" => gather_elements,
        "GatherND" => gather_nd,
        "Scatter" | "ScatterElements" | "ScatterND" | "TensorScatter" | "ReverseSequence" => {
            like_data
        }
        "Expand" => expand,
        "Tile" => tile,
        "Pad" => pad,
        "CenterCropPad" => center_crop_pad,
        "DepthToSpace" => depth_to_space,
        "SpaceToDepth" => space_to_depth,
        "OneHot" => one_hot,
        "TopK" => top_k,
        "NonZero" => non_zero,
        "Unique" => unique,
        "Compress" => compress,
        "Range" => range,
        "Einsum" => einsum,
        "MatMul" => matmul,
        "MatMulInteger" => matmul_integer,
        "QLinearMatMul" => qlinear_matmul,
        "Gemm" => gemm,
        "Det" => det,
        _ => return None,
    })
}

// ---- helpers ----

/// Input `i`'s element type and shape (`None`: rank unknown); `Unknown` when its type is.
fn data(ctx: &NodeContext<'_>, i: usize) -> RuleResult<(DataType, Option<Vec<Dim>>)> {
    let t = ctx.input_tensor(i)?;
    Ok((t.dtype, t.shape.clone()))
}

/// Sets output 0 to input 0's element type with unknown shape (what is known before the shape
/// rule runs), and returns input 0's element type and shape.
fn start(ctx: &mut NodeContext<'_>) -> RuleResult<(DataType, Vec<Dim>)> {
    let (dtype, shape) = data(ctx, 0)?;
    ctx.set_output_tensor(0, dtype, None);
    Ok((dtype, shape.ok_or(RuleError::Unknown)?))
}

// ---- shapes as values ----

/// Shape: int64 `[end - start]` of the input's dims; its value is those dims.
fn shape(ctx: &mut NodeContext<'_>) -> RuleResult {
    ctx.set_output_tensor(0, DataType::Int64, Some(vec![Dim::Unknown]));
    let dims = ctx.input_shape(0)?.to_vec();
    let r = dims.len() as i64;
    let clamp = |x: i64| (if x < 0 { x + r } else { x }).clamp(0, r) as usize;
    let (mut begin, mut end) = (0, dims.len());
    if ctx.opset() >= 15 {
        begin = clamp(ctx.attr_int_or("start", 0)?);
        end = clamp(ctx.attr_int_or("end", r)?);
    }
    let part = &dims[begin..end.max(begin)];
    ctx.set_output_tensor(0, DataType::Int64, Some(vec![Dim::Fixed(part.len())]));
    ctx.set_output_value(0, SymValue::from_dims(part));
    Ok(())
}

/// Size: an int64 scalar, the element count.
fn size(ctx: &mut NodeContext<'_>) -> RuleResult {
    ctx.set_output_tensor(0, DataType::Int64, Some(vec![]));
    let count = product(ctx.input_shape(0)?);
    ctx.set_output_value(0, SymValue::scalar(SymInt::from_dim(&count)));
    Ok(())
}

/// Reshape: the target shape with 0 copying the input's size (unless allowzero) and -1 taking
/// what is left; named target entries stay named.
fn reshape(ctx: &mut NodeContext<'_>) -> RuleResult {
    let (dtype, input) = data(ctx, 0)?;
    ctx.set_output_tensor(0, dtype, None);
    let target: Vec<SymInt> = if ctx.opset() < 5 {
        let Some(s) = ctx.attr_ints("shape")? else {
            bail!("attribute 'shape' is required");
        };
        s.into_iter().map(SymInt::Known).collect()
    } else {
        match ctx.input_syms(1) {
            Some(t) => t,
            None => {
                let n = ctx.input_fixed_len(1).ok_or(RuleError::Unknown)?;
                ctx.set_output_tensor(0, dtype, Some(vec![Dim::Unknown; n]));
                return Ok(());
            }
        }
    };
    let allowzero = ctx.opset() >= 14 && ctx.attr_int_or("allowzero", 0)? != 0;
    let dims = reshape_dims(input.as_deref(), &target, allowzero)?;
    if let Some(v) = ctx.input_value(0) {
        let n = v.elems.len();
        if (dims.is_empty() && n == 1) || dims == [Dim::Fixed(n)] {
            let value = SymValue {
                elems: v.elems.clone(),
                scalar: dims.is_empty(),
            };
            ctx.set_output_value(0, value);
        }
    }
    ctx.set_output_tensor(0, dtype, Some(dims));
    Ok(())
}

fn reshape_dims(input: Option<&[Dim]>, target: &[SymInt], allowzero: bool) -> RuleResult<Vec<Dim>> {
    let mut dims = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, t) in target.iter().enumerate() {
        dims.push(match t {
            SymInt::Known(0) if !allowzero => match input {
                Some(s) if i < s.len() => s[i].clone(),
                Some(s) => bail!(
                    "shape entry {i} is 0 (copy) but the input {} has rank {}",
                    format_shape(s),
                    s.len()
                ),
                None => Dim::Unknown,
            },
            SymInt::Known(-1) => {
                if infer_at.replace(i).is_some() {
                    bail!("the shape has more than one -1");
                }
                Dim::Unknown
            }
            SymInt::Known(n) if *n < 0 => bail!("shape entry {i} is {n}"),
            other => other.to_dim(),
        });
    }
    let Some(input) = input else {
        return Ok(dims);
    };
    match infer_at {
        Some(at) => {
            let others: Vec<Dim> = dims
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != at)
                .map(|(_, d)| d.clone())
                .collect();
            dims[at] = dims::quotient(input, &others)?;
        }
        None => {
            if let (Dim::Fixed(a), Dim::Fixed(b)) = (product(input), product(&dims)) {
                if a != b {
                    bail!(
                        "cannot reshape {} ({a} elements) to {}",
                        format_shape(input),
                        format_shape(&dims)
                    );
                }
            }
        }
    }
    Ok(dims)
}

/// Flatten: `[prod(dims[..axis]), prod(dims[axis..])]`.
fn flatten(ctx: &mut NodeContext<'_>) -> RuleResult {
    let (dtype, dims) = start(ctx)?;
    let r = dims.len() as i64;
    let mut axis = ctx.attr_int_or("axis", 1)?;
    if axis < 0 {
        axis += r;
    }
    if !(0..=r).contains(&axis) {
        bail!(
            "axis {} is out of range for rank {r}",
            ctx.attr_int_or("axis", 1)?
        );
    }
    let (a, b) = dims.split_at(axis as usize);
    ctx.set_output_tensor(0, dtype, Some(vec![product(a), product(b)]));
    Ok(())
}

/// Squeeze: drops the given axes (which must be 1), or every dim of size 1.
fn squeeze(ctx: &mut NodeContext<'_>) -> RuleResult {
    let (dtype, dims) = start(ctx)?;
    let axes = ctx.attr_or_input_ints("axes", 1, 13)?;
    let keep: Vec<Dim> = match axes {
        Some(axes) => {
            let axes = normalize_axes(&axes, dims.len())?;
            for &a in &axes {
                if let Dim::Fixed(n) = dims[a] {
                    if n != 1 {
                        bail!("cannot squeeze axis {a} of size {n}");
                    }
                }
            }
            dims.iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, d)| d.clone())
                .collect()
        }
        None => {
            if dims.iter().any(|d| !matches!(d, Dim::Fixed(_))) {
                return Ok(());
            }
            dims.iter()
                .filter(|d| **d != Dim::Fixed(1))
                .cloned()
                .collect()
        }
    };
    if keep.is_empty() {
        if let Some(v) = ctx.input_value(0) {
            if v.elems.len() == 1 {
                ctx.set_output_value(0, SymValue::scalar(v.elems[0].clone()));
            }
        }
    }
    ctx.set_output_tensor(0, dtype, Some(keep));
    Ok(())
}

/// Unsqueeze: inserts size-1 dims at the given axes of the output.
fn unsqueeze(ctx: &mut NodeContext<'_>) -> RuleResult {
    let (dtype, dims) = start(ctx)?;
    let axes = match ctx.attr_or_input_ints("axes", 1, 13) {
        Ok(Some(a)) => a,
        Ok(None) => bail!("axes are required"),
        Err(RuleError::Unknown) => {
            let n = ctx.input_fixed_len(1).ok_or(RuleError::Unknown)?;
            ctx.set_output_tensor(0, dtype, Some(vec![Dim::Unknown; dims.len() + n]));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let rank = dims.len() + axes.len();
    let axes = normalize_axes(&axes, rank)?;
    let mut rest = dims.iter();
    let out: Vec<Dim> = (0..rank)
        .map(|i| match axes.contains(&i) {
            true => Dim::Fixed(1),
            false => rest.next().cloned().unwrap_or(Dim::Unknown),
        })
        .collect();
    if let Some(v) = ctx.input_value(0) {
        if v.scalar && rank == 1 {
            ctx.set_output_value(0, SymValue::vector(v.elems.clone()));
        }
    }
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// Transpose: dims permuted by `perm` (reversed by default).
fn transpose(ctx: &mut NodeContext<'_>) -> RuleResult {
    let (dtype, dims) = start(ctx)?;
    let r = dims.len();
    let perm = match ctx.attr_ints("perm")? {
        Some(p) => p,
        None => (0..r as i64).rev().collect(),
    };
    if perm.len() != r {
        bail!(
            "perm {perm:?} has {} entries for an input of rank {r}",
            perm.len()
        );
    }
    let perm = normalize_axes(&perm, r)?;
    let out = perm.iter().map(|&p| dims[p].clone()).collect();
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// Concat: inputs agree off `axis`, whose sizes add up.
fn concat(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    ctx.set_output_tensor(0, dtype, None);
    let n = ctx.num_inputs();
    let mut shapes = Vec::with_capacity(n);
    for i in 0..n {
        let (d, s) = data(ctx, i)?;
        if d != dtype {
            bail!("input {i} is {d}, input 0 is {dtype}");
        }
        shapes.push(s);
    }
    let Some(rank) = shapes.iter().flatten().map(Vec::len).next() else {
        return Ok(());
    };
    if rank == 0 {
        bail!("cannot concatenate scalars");
    }
    let axis = match ctx.attr_int("axis")? {
        Some(a) => a,
        None if ctx.opset() < 4 => 1,
        None => bail!("attribute 'axis' is required"),
    };
    let axis = normalize_axis(axis, rank)?;
    let mut out = vec![Dim::Unknown; rank];
    let mut total = Some(0usize);
    for s in &shapes {
        let Some(s) = s else {
            total = None;
            continue;
        };
        if s.len() != rank {
            bail!("inputs have ranks {} and {rank}", s.len());
        }
        for (i, d) in s.iter().enumerate() {
            if i == axis {
                total = match (total, d) {
                    (Some(t), Dim::Fixed(k)) => Some(t + k),
                    _ => None,
                };
            } else {
                out[i] = unify(&out[i], d)?;
            }
        }
    }
    out[axis] = match total {
        Some(t) => Dim::Fixed(t),
        // A single input (or all others empty) keeps its own, possibly named, size.
        None if n == 1 => shapes[0].as_ref().map_or(Dim::Unknown, |s| s[axis].clone()),
        None => Dim::Unknown,
    };
    if rank == 1 && value::is_tracked(dtype) {
        let mut elems = Vec::new();
        for (i, s) in shapes.iter().enumerate() {
            match (ctx.input_value(i), s.as_deref()) {
                (Some(v), _) => elems.extend(v.elems.iter().cloned()),
                (None, Some([Dim::Fixed(k)])) => elems.extend(vec![SymInt::Unknown; *k]),
                _ => {
                    elems.clear();
                    break;
                }
            }
        }
        if !elems.is_empty()
            && elems.len() <= MAX_TRACKED_ELEMENTS
            && elems.iter().any(|e| *e != SymInt::Unknown)
        {
            ctx.set_output_value(0, SymValue::vector(elems));
        }
    }
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// Split: `axis` cut into the given sizes, or into equal parts (the last one smaller with
/// `num_outputs` from opset 18).
fn split(ctx: &mut NodeContext<'_>) -> RuleResult {
    let (dtype, shape) = data(ctx, 0)?;
    let outputs = ctx.num_outputs();
    for i in 0..outputs {
        ctx.set_output_tensor(i, dtype, None);
    }
    let dims = shape.ok_or(RuleError::Unknown)?;
    let axis = normalize_axis(ctx.attr_int_or("axis", 0)?, dims.len())?;
    let sizes = if ctx.opset() >= 13 || (ctx.opset() < 2 && ctx.has_input(1)) {
        if ctx.has_input(1) {
            match ctx.input_ints(1) {
                Some(s) => Some(s),
                None => {
                    for i in 0..outputs {
                        let mut out = dims.clone();
                        out[axis] = Dim::Unknown;
                        ctx.set_output_tensor(i, dtype, Some(out));
                    }
                    return Ok(());
                }
            }
        } else {
            None
        }
    } else {
        ctx.attr_ints("split")?
    };
    let whole = &dims[axis];
    let parts: Vec<Dim> = match sizes {
        Some(s) => {
            if s.len() != outputs {
                bail!("split has {} sizes for {outputs} outputs", s.len());
            }
            if s.iter().any(|&k| k < 0) {
                bail!("split sizes {s:?} must not be negative");
            }
            if let Dim::Fixed(n) = whole {
                if s.iter().map(|&k| k as i128).sum::<i128>() != *n as i128 {
                    bail!("split sizes {s:?} do not add up to the size {n} of axis {axis}");
                }
            }
            s.iter().map(|&k| Dim::Fixed(k as usize)).collect()
        }
        None => {
            let num = match ctx.attr_int("num_outputs")? {
                Some(k) if ctx.opset() >= 18 => {
                    if k as usize != outputs {
                        bail!("num_outputs is {k} but the node has {outputs} outputs");
                    }
                    Some(k as usize)
                }
                _ => None,
            };
            match (whole, num) {
                (Dim::Fixed(n), Some(k)) if k > 0 => {
                    let chunk = n.div_ceil(k);
                    if chunk * (k - 1) > *n {
                        bail!("axis {axis} of size {n} cannot be split into {k} parts");
                    }
                    (0..k)
                        .map(|i| {
                            Dim::Fixed(if i + 1 < k {
                                chunk
                            } else {
                                n - chunk * (k - 1)
                            })
                        })
                        .collect()
                }
                _ if outputs == 0 => bail!("Split has no outputs"),
                _ => vec![dims::divide(whole, outputs, "the split axis's size")?; outputs],
            }
        }
    };
    for (i, p) in parts.into_iter().enumerate() {
        let mut out = dims.clone();
        out[axis] = p;
        ctx.set_output_tensor(i, dtype, Some(out));
    }
    Ok(())
}

/// The length of `start:end:step` over a size `n` (numpy clamping).
fn slice_len(n: i64, start: i64, end: i64, step: i64) -> usize {
    let resolve = |x: i64| if x < 0 { x + n } else { x };
    let (s, e) = (resolve(start), resolve(end));
    // In i128: a step of i64::MIN or MAX must not overflow.
    let (from, to, stride) = if step > 0 {
        (s.clamp(0, n), e.clamp(0, n), step as i128)
    } else {
        (e.clamp(-1, n - 1), s.clamp(-1, n - 1), -(step as i128))
    };
    if to <= from {
        return 0;
    }
    ((to - from) as i128 - 1).div_euclid(stride) as usize + 1
}

/// Slice: each sliced axis gets the length of `start:end:step`; `0:n:1` with a named `n` (a
/// computed length, assumed in range) gives the size `n`.
fn slice(ctx: &mut NodeContext<'_>) -> RuleResult {
    let (dtype, dims) = start(ctx)?;
    let r = dims.len();
    // For the optional inputs: `None` when given but not known, `Some(None)` when not given.
    let optional = |i: usize| match ctx.has_input(i) {
        true => ctx.input_ints(i).map(Some),
        false => Some(None),
    };
    let known = |v: Vec<i64>| v.into_iter().map(SymInt::Known).collect::<Vec<_>>();
    let (starts, ends, axes, steps) = if ctx.opset() < 10 {
        let (Some(s), Some(e)) = (ctx.attr_ints("starts")?, ctx.attr_ints("ends")?) else {
            bail!("attributes 'starts' and 'ends' are required");
        };
        (
            Some(known(s)),
            Some(known(e)),
            Some(ctx.attr_ints("axes")?),
            Some(None),
        )
    } else {
        (
            ctx.input_syms(1),
            ctx.input_syms(2),
            optional(3),
            optional(4),
        )
    };
    let Some(axes) = axes else {
        ctx.set_output_tensor(0, dtype, Some(vec![Dim::Unknown; r]));
        return Ok(());
    };
    let (Some(starts), Some(ends), Some(steps)) = (starts.clone(), ends, steps) else {
        // Sizes unknown: the rank stays, the sliced axes lose their sizes.
        let mut out = dims.clone();
        let sliced = match &axes {
            Some(a) => normalize_axes(a, r)?,
            None => {
                let n = starts
                    .map(|s| s.len())
                    .or_else(|| ctx.input_fixed_len(1))
                    .unwrap_or(r);
                (0..n.min(r)).collect()
            }
        };
        sliced.into_iter().for_each(|a| out[a] = Dim::Unknown);
        ctx.set_output_tensor(0, dtype, Some(out));
        return Ok(());
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        bail!(
            "starts, ends, axes and steps have {}, {}, {} and {} entries",
            starts.len(),
            ends.len(),
            axes.len(),
            steps.len()
        );
    }
    let axes = normalize_axes(&axes, r)?;
    let mut out = dims.clone();
    for (k, &a) in axes.iter().enumerate() {
        let step = steps[k];
        if step == 0 {
            bail!("slice step on axis {a} is 0");
        }
        out[a] = match (&dims[a], &starts[k], &ends[k]) {
            (Dim::Fixed(n), SymInt::Known(s), SymInt::Known(e)) => {
                Dim::Fixed(slice_len(*n as i64, *s, *e, step))
            }
            (d, SymInt::Known(0), SymInt::Known(e)) if step == 1 && *e >= i32::MAX as i64 => {
                d.clone()
            }
            (_, SymInt::Known(0), e @ SymInt::Symbol(_)) if step == 1 => e.to_dim(),
            _ => Dim::Unknown,
        };
    }
    if let (Some(v), [0], [step]) = (ctx.input_value(0), axes.as_slice(), steps.as_slice()) {
        if let (false, SymInt::Known(s), SymInt::Known(e)) = (v.scalar, &starts[0], &ends[0]) {
            let n = v.elems.len() as i64;
            let len = slice_len(n, *s, *e, *step);
            let first = if *s < 0 { s + n } else { *s };
            let i = if *step > 0 {
                first.clamp(0, n)
            } else {
                first.clamp(-1, n - 1)
            };
            let elems = (0..len as i128)
                .map(|k| v.elems[(i as i128 + k * *step as i128) as usize].clone())
                .collect();
            ctx.set_output_value(0, SymValue::vector(elems));
        }
    }
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// Gather: `data[..axis] ++ indices ++ data[axis+1..]`; picks from a tracked 1-D value.
fn gather(ctx: &mut NodeContext<'_>) -> RuleResult {
    let (dtype, dims) = start(ctx)?;
    let axis = normalize_axis(ctx.attr_int_or("axis", 0)?, dims.len())?;
    let indices = ctx.input_shape(1)?.to_vec();
    let mut out = dims[..axis].to_vec();
    out.extend(indices.iter().cloned());
    out.extend(dims[axis + 1..].iter().cloned());
    if let (Some(v), Some(idx)) = (ctx.input_value(0), ctx.input_ints(1)) {
        if !v.scalar && indices.len() <= 1 {
            let n = v.elems.len() as i64;
            let mut elems = Vec::with_capacity(idx.len());
            for i in idx {
                if i < -n || i >= n {
                    bail!("index {i} is out of range for {n} elements");
                }
                elems.push(v.elems[(if i < 0 { i + n } else { i }) as usize].clone());
            }
            let value = match indices.is_empty() {
                true => SymValue::scalar(elems.remove(0)),
                false => SymValue::vector(elems),
            };
            ctx.set_output_value(0, value);
        }
    }
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// GatherElements: the indices' shape, the data's element type.
fn gather_elements(ctx: &mut NodeContext<'_>) -> RuleResult {
    let (dtype, dims) = start(ctx)?;
    let indices = ctx.input_shape(1)?.to_vec();
    if indices.len() != dims.len() {
        bail!(
            "indices have rank {}, data rank {}",
            indices.len(),
            dims.len()
        );
    }
    normalize_axis(ctx.attr_int_or("axis", 0)?, dims.len())?;
    ctx.set_output_tensor(0, dtype, Some(indices));
    Ok(())
}

/// GatherND: `indices[..-1] ++ data[batch_dims + indices[-1]..]`.
fn gather_nd(ctx: &mut NodeContext<'_>) -> RuleResult {
    let (dtype, dims) = start(ctx)?;
    let indices = ctx.input_shape(1)?.to_vec();
    let b = ctx.attr_int_or("batch_dims", 0)?;
    let Some((last, lead)) = indices.split_last() else {
        bail!("indices must have rank at least 1");
    };
    if b < 0 || b as usize >= dims.len().min(indices.len()) {
        bail!("batch_dims {b} must be below the ranks of data and indices");
    }
    let Dim::Fixed(k) = last else {
        return Ok(());
    };
    let from = b as usize + k;
    if from > dims.len() {
        bail!(
            "indices address {k} dims after {b} batch dims of data with rank {}",
            dims.len()
        );
    }
    let mut out = lead.to_vec();
    out.extend(dims[from..].iter().cloned());
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// Scatter*, TensorScatter, ReverseSequence: the output is like input 0.
fn like_data(ctx: &mut NodeContext<'_>) -> RuleResult {
    same_as_input(ctx, 0, 0)
}

// ---- shapes read from tensors ----

/// Expand: the input broadcast with the target shape.
fn expand(ctx: &mut NodeContext<'_>) -> RuleResult {
    let (dtype, dims) = start(ctx)?;
    let target: Vec<Dim> = match ctx.input_syms(1) {
        Some(t) => t.iter().map(SymInt::to_dim).collect(),
        None => vec![Dim::Unknown; ctx.input_fixed_len(1).ok_or(RuleError::Unknown)?],
    };
    ctx.set_output_tensor(0, dtype, Some(broadcast(&[&dims, &target])?));
    Ok(())
}

/// Tile: each dim times its repeat count.
fn tile(ctx: &mut NodeContext<'_>) -> RuleResult {
    let (dtype, dims) = start(ctx)?;
    let Some(repeats) = ctx.input_syms(1) else {
        ctx.set_output_tensor(0, dtype, Some(vec![Dim::Unknown; dims.len()]));
        return Ok(());
    };
    if repeats.len() != dims.len() {
        bail!(
            "{} repeats for an input of rank {}",
            repeats.len(),
            dims.len()
        );
    }
    let out = dims
        .iter()
        .zip(&repeats)
        .map(|(d, r)| match r {
            SymInt::Known(k) if *k < 0 => bail!("repeat {k} is negative"),
            SymInt::Known(k) => Ok(dims::times(d, *k as usize)),
            SymInt::Symbol(_) if *d == Dim::Fixed(1) => Ok(r.to_dim()),
            _ => Ok(Dim::Unknown),
        })
        .collect::<RuleResult<Vec<_>>>()?;
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// Pad: each padded dim grows by its begin and end pads.
fn pad(ctx: &mut NodeContext<'_>) -> RuleResult {
    let (dtype, dims) = start(ctx)?;
    let r = dims.len();
    let axes = if ctx.opset() >= 18 && ctx.has_input(3) {
        match ctx.input_ints(3) {
            Some(a) => Some(normalize_axes(&a, r)?),
            None => {
                ctx.set_output_tensor(0, dtype, Some(vec![Dim::Unknown; r]));
                return Ok(());
            }
        }
    } else {
        None
    };
    let axes = axes.unwrap_or_else(|| (0..r).collect());
    let pads = match ctx.opset() {
        1 => ctx.attr_ints("paddings")?,
        2..=10 => ctx.attr_ints("pads")?,
        _ => ctx.input_ints(1),
    };
    let Some(pads) = pads else {
        let mut out = dims.clone();
        axes.iter().for_each(|&a| out[a] = Dim::Unknown);
        ctx.set_output_tensor(0, dtype, Some(out));
        return Ok(());
    };
    if pads.len() != 2 * axes.len() {
        bail!("{} pads for {} axes", pads.len(), axes.len());
    }
    let mut out = dims.clone();
    for (k, &a) in axes.iter().enumerate() {
        let grow = pads[k] as i128 + pads[k + axes.len()] as i128;
        out[a] = match &dims[a] {
            Dim::Fixed(n) if *n as i128 + grow < 0 => {
                bail!("pads {pads:?} shrink axis {a} of size {n} below 0")
            }
            Dim::Fixed(n) => match usize::try_from(*n as i128 + grow) {
                Ok(size) => Dim::Fixed(size),
                Err(_) => bail!("pads {pads:?} make axis {a} too large"),
            },
            d if grow == 0 => d.clone(),
            _ => Dim::Unknown,
        };
    }
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// CenterCropPad: the given axes (all by default) take the sizes of the `shape` input.
fn center_crop_pad(ctx: &mut NodeContext<'_>) -> RuleResult {
    let (dtype, dims) = start(ctx)?;
    let axes = match ctx.attr_ints("axes")? {
        Some(a) => normalize_axes(&a, dims.len())?,
        None => (0..dims.len()).collect(),
    };
    let mut out = dims.clone();
    match ctx.input_syms(1) {
        Some(sizes) => {
            if sizes.len() != axes.len() {
                bail!("shape has {} entries for {} axes", sizes.len(), axes.len());
            }
            for (&a, s) in axes.iter().zip(&sizes) {
                out[a] = s.to_dim();
            }
        }
        None => axes.iter().for_each(|&a| out[a] = Dim::Unknown),
    }
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

fn blocksize(ctx: &NodeContext<'_>) -> RuleResult<usize> {
    match ctx.attr_int("blocksize")? {
        Some(b) if b > 0 && b < 1 << 16 => Ok(b as usize),
        Some(b) => bail!("blocksize {b} is out of range"),
        None => bail!("attribute 'blocksize' is required"),
    }
}

/// DepthToSpace: `[N, C/b², H·b, W·b]`.
fn depth_to_space(ctx: &mut NodeContext<'_>) -> RuleResult {
    let (dtype, dims) = start(ctx)?;
    let b = blocksize(ctx)?;
    let [n, c, h, w] = dims.as_slice() else {
        bail!("input must have rank 4, it is {}", format_shape(&dims));
    };
    let out = vec![
        n.clone(),
        dims::divide(c, b * b, "channels")?,
        dims::times(h, b),
        dims::times(w, b),
    ];
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// SpaceToDepth: `[N, C·b², H/b, W/b]`.
fn space_to_depth(ctx: &mut NodeContext<'_>) -> RuleResult {
    let (dtype, dims) = start(ctx)?;
    let b = blocksize(ctx)?;
    let [n, c, h, w] = dims.as_slice() else {
        bail!("input must have rank 4, it is {}", format_shape(&dims));
    };
    let out = vec![
        n.clone(),
        dims::times(c, b * b),
        dims::divide(h, b, "height")?,
        dims::divide(w, b, "width")?,
    ];
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// OneHot: the indices' shape with `depth` inserted at `axis`; the values' element type.
fn one_hot(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(2)?;
    ctx.set_output_tensor(0, dtype, None);
    let indices = ctx.input_shape(0)?.to_vec();
    let axis = normalize_axis(ctx.attr_int_or("axis", -1)?, indices.len() + 1)?;
    let depth = match (ctx.input_value(1), ctx.input_floats(1)) {
        (Some(v), _) if v.elems.len() == 1 => v.elems[0].to_dim(),
        (_, Some(f)) if f.len() == 1 && f[0] >= 1.0 => Dim::Fixed(f[0] as usize),
        (_, Some(f)) if f.len() == 1 => bail!("depth {} must be at least 1", f[0]),
        _ => Dim::Unknown,
    };
    let mut out = indices;
    out.insert(axis, depth);
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// TopK: values and int64 indices, `axis` cut to k.
fn top_k(ctx: &mut NodeContext<'_>) -> RuleResult {
    let (dtype, shape) = data(ctx, 0)?;
    ctx.set_output_tensor(0, dtype, None);
    ctx.set_output_tensor(1, DataType::Int64, None);
    let dims = shape.ok_or(RuleError::Unknown)?;
    let axis = normalize_axis(ctx.attr_int_or("axis", -1)?, dims.len())?;
    let k = if ctx.opset() < 10 {
        match ctx.attr_int("k")? {
            Some(k) => SymInt::Known(k),
            None => bail!("attribute 'k' is required"),
        }
    } else {
        match ctx.input_syms(1).as_deref() {
            Some([k]) => k.clone(),
            Some(k) => bail!("K must have one element, it has {}", k.len()),
            None => SymInt::Unknown,
        }
    };
    if let (SymInt::Known(k), Dim::Fixed(n)) = (&k, &dims[axis]) {
        if *k < 0 || *k as usize > *n {
            bail!("k {k} is out of range for axis {axis} of size {n}");
        }
    }
    let mut out = dims;
    out[axis] = k.to_dim();
    ctx.set_output_tensor(0, dtype, Some(out.clone()));
    ctx.set_output_tensor(1, DataType::Int64, Some(out));
    Ok(())
}

/// NonZero: int64 `[rank, count]`.
fn non_zero(ctx: &mut NodeContext<'_>) -> RuleResult {
    let rank = ctx.input_rank(0).map_or(Dim::Unknown, Dim::Fixed);
    ctx.set_output_tensor(0, DataType::Int64, Some(vec![rank, Dim::Unknown]));
    Ok(())
}

/// Unique: `Y` (1-D, or the input with `axis` of unknown size) and three int64 vectors.
fn unique(ctx: &mut NodeContext<'_>) -> RuleResult {
    let (dtype, shape) = data(ctx, 0)?;
    ctx.set_output_tensor(0, dtype, None);
    for i in 1..4 {
        ctx.set_output_tensor(i, DataType::Int64, Some(vec![Dim::Unknown]));
    }
    let dims = shape.ok_or(RuleError::Unknown)?;
    let (y, inverse) = match ctx.attr_int("axis")? {
        None => (vec![Dim::Unknown], product(&dims)),
        Some(a) => {
            let a = normalize_axis(a, dims.len())?;
            let mut y = dims.clone();
            y[a] = Dim::Unknown;
            (y, dims[a].clone())
        }
    };
    ctx.set_output_tensor(0, dtype, Some(y));
    ctx.set_output_tensor(2, DataType::Int64, Some(vec![inverse]));
    Ok(())
}

/// Compress: 1-D of unknown length, or the input with `axis` of unknown size.
fn compress(ctx: &mut NodeContext<'_>) -> RuleResult {
    let (dtype, shape) = data(ctx, 0)?;
    ctx.set_output_tensor(0, dtype, None);
    let out = match ctx.attr_int("axis")? {
        None => vec![Dim::Unknown],
        Some(a) => {
            let mut dims = shape.ok_or(RuleError::Unknown)?;
            let a = normalize_axis(a, dims.len())?;
            dims[a] = Dim::Unknown;
            dims
        }
    };
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// Range: 1-D of `max(ceil((limit - start) / delta), 0)` elements.
fn range(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    ctx.set_output_tensor(0, dtype, Some(vec![Dim::Unknown]));
    let ints = (
        ctx.input_scalar(0),
        ctx.input_scalar(1),
        ctx.input_scalar(2),
    );
    if let (Some(SymInt::Known(s)), Some(SymInt::Known(l)), Some(SymInt::Known(d))) = &ints {
        if *d == 0 {
            bail!("Range delta is 0");
        }
        let n = ((*l as f64 - *s as f64) / *d as f64).ceil().max(0.0) as usize;
        if value::is_tracked(dtype) && n <= MAX_TRACKED_ELEMENTS {
            let elems = (0..n as i64).map(|i| SymInt::Known(s + i * d)).collect();
            ctx.set_output_value(0, SymValue::vector(elems));
        }
        ctx.set_output_tensor(0, dtype, Some(vec![Dim::Fixed(n)]));
        return Ok(());
    }
    if let (Some(SymInt::Known(0)), Some(limit @ SymInt::Symbol(_)), Some(SymInt::Known(1))) = &ints
    {
        ctx.set_output_tensor(0, dtype, Some(vec![limit.to_dim()]));
        return Ok(());
    }
    let floats: Option<Vec<f64>> = (0..3)
        .map(|i| ctx.input_floats(i).filter(|v| v.len() == 1).map(|v| v[0]))
        .collect();
    if let Some([s, l, d]) = floats.as_deref() {
        if *d == 0.0 {
            bail!("Range delta is 0");
        }
        let n = ((l - s) / d).ceil().max(0.0) as usize;
        ctx.set_output_tensor(0, dtype, Some(vec![Dim::Fixed(n)]));
    }
    Ok(())
}

// ---- products ----

/// Merges two sizes of one einsum label: equal, or one of them 1 (broadcast).
fn merge_label(a: &Dim, b: &Dim) -> RuleResult<Dim> {
    match (a, b) {
        (Dim::Fixed(1), _) => Ok(b.clone()),
        (_, Dim::Fixed(1)) => Ok(a.clone()),
        _ => unify(a, b),
    }
}

/// One einsum term: its labels, with `None` standing for the ellipsis.
fn einsum_term(term: &str) -> RuleResult<Vec<Option<char>>> {
    let mut labels = Vec::new();
    let mut rest = term;
    while let Some(c) = rest.chars().next() {
        if let Some(r) = rest.strip_prefix("...") {
            if labels.contains(&None) {
                bail!("term '{term}' has more than one ellipsis");
            }
            labels.push(None);
            rest = r;
        } else if c.is_ascii_alphabetic() {
            labels.push(Some(c));
            rest = &rest[1..];
        } else {
            bail!("term '{term}' has an invalid character '{c}'");
        }
    }
    Ok(labels)
}

/// Einsum: the output term's labels (explicit, or the labels used once in alphabetical order
/// after the ellipsis) sized from the inputs.
fn einsum(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    ctx.set_output_tensor(0, dtype, None);
    let Some(equation) = ctx.attr_string("equation")? else {
        bail!("attribute 'equation' is required");
    };
    let equation: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match equation.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (equation.as_str(), None),
    };
    let terms: Vec<Vec<Option<char>>> =
        lhs.split(',').map(einsum_term).collect::<RuleResult<_>>()?;
    if terms.len() != ctx.num_inputs() {
        bail!(
            "equation '{equation}' has {} inputs, the node {}",
            terms.len(),
            ctx.num_inputs()
        );
    }
    let mut sizes: Vec<(char, Dim)> = Vec::new();
    let mut ellipsis: Option<Vec<Dim>> = Some(vec![]);
    let mut counts: Vec<(char, usize)> = Vec::new();
    for (i, term) in terms.iter().enumerate() {
        for &c in term.iter().flatten() {
            match counts.iter_mut().find(|(l, _)| *l == c) {
                Some(e) => e.1 += 1,
                None => counts.push((c, 1)),
            }
        }
        let Ok(dims) = ctx.input_shape(i) else {
            if term.contains(&None) {
                ellipsis = None;
            }
            continue;
        };
        let named = term.iter().filter(|l| l.is_some()).count();
        let has_ellipsis = term.contains(&None);
        if dims.len() < named || (!has_ellipsis && dims.len() != named) {
            bail!(
                "input {i} has rank {} for term with {named} labels",
                dims.len()
            );
        }
        let ell_rank = dims.len() - named;
        let mut pos = 0;
        for l in term {
            match l {
                None => {
                    let part = &dims[pos..pos + ell_rank];
                    if let Some(e) = &mut ellipsis {
                        *e = broadcast(&[e, part])?;
                    }
                    pos += ell_rank;
                }
                Some(c) => {
                    let d = &dims[pos];
                    match sizes.iter_mut().find(|(l, _)| l == c) {
                        Some(e) => e.1 = merge_label(&e.1, d)?,
                        None => sizes.push((*c, d.clone())),
                    }
                    pos += 1;
                }
            }
        }
    }
    let output: Vec<Option<char>> = match rhs {
        Some(r) => einsum_term(r)?,
        None => {
            let mut once: Vec<char> = counts
                .iter()
                .filter(|(_, n)| *n == 1)
                .map(|(c, _)| *c)
                .collect();
            once.sort_unstable();
            let any_ellipsis = terms.iter().any(|t| t.contains(&None));
            any_ellipsis
                .then_some(None)
                .into_iter()
                .chain(once.into_iter().map(Some))
                .collect()
        }
    };
    let mut out = Vec::new();
    for l in &output {
        match l {
            None => out.extend(ellipsis.clone().ok_or(RuleError::Unknown)?),
            Some(c) => {
                if !counts.iter().any(|(l, _)| l == c) {
                    bail!("output label '{c}' is not in any input of '{equation}'");
                }
                out.push(
                    sizes
                        .iter()
                        .find(|(l, _)| l == c)
                        .map_or(Dim::Unknown, |e| e.1.clone()),
                );
            }
        }
    }
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// The shape of `a @ b` (numpy matmul: 1-D operands promoted, batch dims broadcast).
fn matmul_shape(a: &[Dim], b: &[Dim]) -> RuleResult<Vec<Dim>> {
    if a.is_empty() || b.is_empty() {
        bail!("MatMul operands must have rank at least 1");
    }
    let one = [Dim::Fixed(1)];
    let a2: Vec<Dim> = if a.len() == 1 {
        [&one[..], a].concat()
    } else {
        a.to_vec()
    };
    let b2: Vec<Dim> = if b.len() == 1 {
        [b, &one[..]].concat()
    } else {
        b.to_vec()
    };
    let (ka, kb) = (&a2[a2.len() - 1], &b2[b2.len() - 2]);
    if let (Dim::Fixed(x), Dim::Fixed(y)) = (ka, kb) {
        if x != y {
            bail!(
                "inner sizes differ: {} @ {} ({x} against {y})",
                format_shape(a),
                format_shape(b)
            );
        }
    }
    let mut out = broadcast(&[&a2[..a2.len() - 2], &b2[..b2.len() - 2]])?;
    if a.len() > 1 {
        out.push(a2[a2.len() - 2].clone());
    }
    if b.len() > 1 {
        out.push(b2[b2.len() - 1].clone());
    }
    Ok(out)
}

fn matmul_into(ctx: &mut NodeContext<'_>, a: usize, b: usize, dtype: DataType) -> RuleResult {
    ctx.set_output_tensor(0, dtype, None);
    let out = matmul_shape(ctx.input_shape(a)?, ctx.input_shape(b)?)?;
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

fn matmul(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    matmul_into(ctx, 0, 1, dtype)
}

/// MatMulInteger: int32 result.
fn matmul_integer(ctx: &mut NodeContext<'_>) -> RuleResult {
    matmul_into(ctx, 0, 1, DataType::Int32)
}

/// QLinearMatMul: `a` is input 0, `b` input 3; the element type of `y_zero_point`.
fn qlinear_matmul(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(7).or_else(|_| ctx.input_dtype(0))?;
    matmul_into(ctx, 0, 3, dtype)
}

/// Gemm: `[M, N]` from `A` `[M, K]` and `B` `[K, N]`, either transposed.
fn gemm(ctx: &mut NodeContext<'_>) -> RuleResult {
    let (dtype, _) = start(ctx)?;
    let (a, b) = (ctx.input_shape(0)?, ctx.input_shape(1)?);
    let ([a0, a1], [b0, b1]) = (a, b) else {
        bail!(
            "A and B must be matrices, they are {} and {}",
            format_shape(a),
            format_shape(b)
        );
    };
    let (m, ka) = if ctx.attr_int_or("transA", 0)? != 0 {
        (a1, a0)
    } else {
        (a0, a1)
    };
    let (kb, n) = if ctx.attr_int_or("transB", 0)? != 0 {
        (b1, b0)
    } else {
        (b0, b1)
    };
    if let (Dim::Fixed(x), Dim::Fixed(y)) = (ka, kb) {
        if x != y {
            bail!("inner sizes differ: {x} against {y}");
        }
    }
    let out = vec![m.clone(), n.clone()];
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// Det: `[*, M, M]` to `[*]`.
fn det(ctx: &mut NodeContext<'_>) -> RuleResult {
    let (dtype, dims) = start(ctx)?;
    if dims.len() < 2 {
        bail!(
            "input must have rank at least 2, it is {}",
            format_shape(&dims)
        );
    }
    let r = dims.len();
    unify(&dims[r - 2], &dims[r - 1])?;
    ctx.set_output_tensor(0, dtype, Some(dims[..r - 2].to_vec()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use runnx_ir::{AttributeValue, Tensor};

    use super::*;
    use crate::testing::{graph, infer_graph, int64s, model, node, shape_of, sym, tensor_info};
    use crate::{infer, InferOptions};

    #[test]
    fn computed_shape_reaches_reshape_with_named_batch() {
        // x: [batch, seq, 64] -> Shape -> Gather(0) -> Unsqueeze -> Concat([-1, 8, 8]... )
        let x = tensor_info(
            "x",
            DataType::Float,
            vec![sym("batch"), sym("seq"), Dim::Fixed(64)],
        );
        let inf = infer_graph(
            13,
            graph(
                vec![x],
                vec![
                    ("zero", Tensor::scalar(0i64)),
                    ("axes", int64s(&[0])),
                    ("rest", int64s(&[-1, 8, 8])),
                ],
                vec![
                    node("Shape", &["x"], &["s"], vec![]),
                    node("Gather", &["s", "zero"], &["b"], vec![]),
                    node("Unsqueeze", &["b", "axes"], &["b1"], vec![]),
                    node(
                        "Concat",
                        &["b1", "rest"],
                        &["target"],
                        vec![("axis", AttributeValue::Int(0))],
                    ),
                    node("Reshape", &["x", "target"], &["y"], vec![]),
                ],
                &[],
            ),
        );
        assert_eq!(shape_of(&inf, "b"), Some(vec![]));
        assert_eq!(shape_of(&inf, "target"), Some(vec![Dim::Fixed(4)]));
        assert_eq!(
            shape_of(&inf, "y"),
            Some(vec![sym("batch"), sym("seq"), Dim::Fixed(8), Dim::Fixed(8)])
        );
    }

    #[test]
    fn reshape_infers_minus_one_cancelling_named_dims() {
        let x = tensor_info(
            "x",
            DataType::Float,
            vec![sym("batch"), Dim::Fixed(12), Dim::Fixed(64)],
        );
        let s = tensor_info(
            "s",
            DataType::Int64,
            vec![sym("batch"), Dim::Fixed(12), Dim::Fixed(64)],
        );
        let inf = infer_graph(
            14,
            graph(
                vec![x, s],
                vec![
                    ("t", int64s(&[0, -1])),
                    ("z", int64s(&[0, 768])),
                    ("bad", int64s(&[5, -1])),
                ],
                vec![
                    node("Reshape", &["x", "t"], &["y"], vec![]),
                    node(
                        "Reshape",
                        &["s", "z"],
                        &["w"],
                        vec![("allowzero", AttributeValue::Int(1))],
                    ),
                    node("Reshape", &["x", "bad"], &["v"], vec![]),
                ],
                &[],
            ),
        );
        assert_eq!(
            shape_of(&inf, "y"),
            Some(vec![sym("batch"), Dim::Fixed(768)])
        );
        // allowzero: 0 is a size (batch may be 0); 768 / 5 is left to the named batch.
        assert_eq!(
            shape_of(&inf, "w"),
            Some(vec![Dim::Fixed(0), Dim::Fixed(768)])
        );
        assert_eq!(shape_of(&inf, "v"), Some(vec![Dim::Fixed(5), Dim::Unknown]));
    }

    #[test]
    fn squeeze_and_unsqueeze_follow_the_opset() {
        let x = tensor_info(
            "x",
            DataType::Float,
            vec![Dim::Fixed(1), sym("n"), Dim::Fixed(1)],
        );
        let attr = |v: &[i64]| vec![("axes", AttributeValue::Ints(v.to_vec()))];
        let old = infer_graph(
            11,
            graph(
                vec![x.clone()],
                vec![],
                vec![
                    node("Squeeze", &["x"], &["a"], attr(&[-1])),
                    node("Unsqueeze", &["x"], &["b"], attr(&[0, -1])),
                ],
                &[],
            ),
        );
        assert_eq!(shape_of(&old, "a"), Some(vec![Dim::Fixed(1), sym("n")]));
        assert_eq!(
            shape_of(&old, "b"),
            Some(vec![
                Dim::Fixed(1),
                Dim::Fixed(1),
                sym("n"),
                Dim::Fixed(1),
                Dim::Fixed(1)
            ])
        );
        let new = infer_graph(
            13,
            graph(
                vec![x],
                vec![("ax", int64s(&[0]))],
                vec![
                    node("Squeeze", &["x", "ax"], &["a"], vec![]),
                    node("Squeeze", &["x"], &["c"], vec![]),
                ],
                &[],
            ),
        );
        assert_eq!(shape_of(&new, "a"), Some(vec![sym("n"), Dim::Fixed(1)]));
        assert_eq!(shape_of(&new, "c"), None, "n might be 1");
    }

    #[test]
    fn slice_clamps_and_steps_backwards() {
        let x = tensor_info(
            "x",
            DataType::Float,
            vec![Dim::Fixed(10), sym("n"), Dim::Fixed(5)],
        );
        let inf = infer_graph(
            13,
            graph(
                vec![x],
                vec![
                    ("starts", int64s(&[-1, 0, 1])),
                    ("ends", int64s(&[i64::MIN, i64::MAX, 100])),
                    ("axes", int64s(&[0, -2, 2])),
                    ("steps", int64s(&[-3, 1, 2])),
                ],
                vec![node(
                    "Slice",
                    &["x", "starts", "ends", "axes", "steps"],
                    &["y"],
                    vec![],
                )],
                &[],
            ),
        );
        assert_eq!(
            shape_of(&inf, "y"),
            Some(vec![Dim::Fixed(4), sym("n"), Dim::Fixed(2)])
        );
    }

    #[test]
    fn einsum_with_ellipsis_and_implicit_output() {
        let a = tensor_info(
            "a",
            DataType::Float,
            vec![sym("b"), Dim::Fixed(1), Dim::Fixed(3), Dim::Fixed(4)],
        );
        let c = tensor_info(
            "c",
            DataType::Float,
            vec![Dim::Fixed(7), Dim::Fixed(4), Dim::Fixed(5)],
        );
        let eq = |s: &str| vec![("equation", AttributeValue::String(s.as_bytes().to_vec()))];
        let inf = infer_graph(
            12,
            graph(
                vec![a, c],
                vec![],
                vec![
                    node("Einsum", &["a", "c"], &["y"], eq("...ij, ...jk")),
                    node("Einsum", &["a"], &["t"], eq("...ij->...ji")),
                ],
                &[],
            ),
        );
        assert_eq!(
            shape_of(&inf, "y"),
            Some(vec![sym("b"), Dim::Fixed(7), Dim::Fixed(3), Dim::Fixed(5)])
        );
        assert_eq!(
            shape_of(&inf, "t"),
            Some(vec![sym("b"), Dim::Fixed(1), Dim::Fixed(4), Dim::Fixed(3)])
        );
    }

    #[test]
    fn matmul_promotes_vectors_and_broadcasts_batches() {
        let a = tensor_info(
            "a",
            DataType::Float,
            vec![sym("b"), Dim::Fixed(1), Dim::Fixed(3), Dim::Fixed(4)],
        );
        let v = tensor_info("v", DataType::Float, vec![Dim::Fixed(4)]);
        let m = tensor_info(
            "m",
            DataType::Float,
            vec![Dim::Fixed(6), Dim::Fixed(4), Dim::Fixed(2)],
        );
        let inf = infer_graph(
            13,
            graph(
                vec![a, v, m],
                vec![],
                vec![
                    node("MatMul", &["a", "v"], &["av"], vec![]),
                    node("MatMul", &["v", "m"], &["vm"], vec![]),
                    node("MatMul", &["a", "m"], &["am"], vec![]),
                ],
                &[],
            ),
        );
        assert_eq!(
            shape_of(&inf, "av"),
            Some(vec![sym("b"), Dim::Fixed(1), Dim::Fixed(3)])
        );
        assert_eq!(
            shape_of(&inf, "vm"),
            Some(vec![Dim::Fixed(6), Dim::Fixed(2)])
        );
        assert_eq!(
            shape_of(&inf, "am"),
            Some(vec![sym("b"), Dim::Fixed(6), Dim::Fixed(3), Dim::Fixed(2)])
        );
    }

    #[test]
    fn split_into_uneven_parts_at_opset_18() {
        let x = tensor_info("x", DataType::Float, vec![Dim::Fixed(7), sym("n")]);
        let inf = infer_graph(
            18,
            graph(
                vec![x],
                vec![],
                vec![node(
                    "Split",
                    &["x"],
                    &["a", "b", "c"],
                    vec![("num_outputs", AttributeValue::Int(3))],
                )],
                &[],
            ),
        );
        assert_eq!(shape_of(&inf, "a"), Some(vec![Dim::Fixed(3), sym("n")]));
        assert_eq!(shape_of(&inf, "c"), Some(vec![Dim::Fixed(1), sym("n")]));
    }

    #[test]
    fn slice_to_a_computed_length_and_range_keep_the_name() {
        // position_ids[:, :seq] with seq = Shape(input_ids)[1], then Range(0, seq, 1).
        let ids = tensor_info("ids", DataType::Int64, vec![sym("batch"), sym("seq")]);
        let inf = infer_graph(
            15,
            graph(
                vec![ids],
                vec![
                    (
                        "pos",
                        Tensor::from_vec([1, 512], (0..512i64).collect()).unwrap(),
                    ),
                    ("one", Tensor::scalar(1i64)),
                    ("zero", Tensor::scalar(0i64)),
                    ("z1", int64s(&[0])),
                    ("a1", int64s(&[1])),
                ],
                vec![
                    node(
                        "Shape",
                        &["ids"],
                        &["s"],
                        vec![("start", AttributeValue::Int(-1))],
                    ),
                    node("Squeeze", &["s", "z1"], &["n"], vec![]),
                    node("Slice", &["pos", "z1", "s", "a1"], &["p"], vec![]),
                    node("Range", &["zero", "n", "one"], &["r"], vec![]),
                ],
                &[],
            ),
        );
        assert_eq!(shape_of(&inf, "s"), Some(vec![Dim::Fixed(1)]));
        assert_eq!(shape_of(&inf, "n"), Some(vec![]));
        assert_eq!(shape_of(&inf, "p"), Some(vec![Dim::Fixed(1), sym("seq")]));
        assert_eq!(shape_of(&inf, "r"), Some(vec![sym("seq")]));
    }

    #[test]
    fn extreme_attribute_values_do_not_panic() {
        let x = tensor_info("x", DataType::Float, vec![Dim::Fixed(4), Dim::Fixed(6)]);
        let m = model(
            13,
            graph(
                vec![x],
                vec![
                    ("lo", int64s(&[i64::MIN, i64::MAX])),
                    ("hi", int64s(&[i64::MAX, i64::MIN])),
                    ("ax", int64s(&[0, 1])),
                    ("st", int64s(&[i64::MAX, i64::MIN])),
                    ("pads", int64s(&[i64::MAX, 0, i64::MAX, 0])),
                    ("reps", int64s(&[i64::MAX, 2])),
                ],
                vec![
                    node("Slice", &["x", "lo", "hi", "ax", "st"], &["s"], vec![]),
                    node("Pad", &["x", "pads"], &["p"], vec![]),
                    node("Tile", &["x", "reps"], &["t"], vec![]),
                    node(
                        "DepthToSpace",
                        &["x"],
                        &["d"],
                        vec![("blocksize", AttributeValue::Int(i64::MAX))],
                    ),
                ],
                &[],
            ),
        );
        let inf = infer(&m, &InferOptions::default()).unwrap();
        assert_eq!(
            shape_of(&inf, "s"),
            Some(vec![Dim::Fixed(1), Dim::Fixed(1)])
        );
        assert_eq!(
            inf.problems.len(),
            2,
            "pads and blocksize: {:?}",
            inf.problems
        );
    }
}
