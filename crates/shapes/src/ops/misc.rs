//! Control flow (If, Loop, Scan), sequences, optionals, strings, losses, ai.onnx.ml and
//! ai.onnx.preview.training.

use runnx_ir::{AttributeValue, DataType, Dim, Graph, ValueType};

use super::{same_as_input, shape_of_input_with, Rule};
use crate::bail;
use crate::context::{NodeContext, RuleError, RuleResult};
use crate::dims;
use crate::merge::union;

pub fn rule(op: &str) -> Option<Rule> {
    Some(match op {
        "If" => rule_if,
        "Loop" => rule_loop,
        "Scan" => rule_scan,
        "SequenceEmpty" => rule_sequence_empty,
        "SequenceConstruct" => rule_sequence_construct,
        "SequenceInsert" => rule_sequence_insert,
        "SequenceErase" => rule_sequence_erase,
        "SequenceAt" => rule_sequence_at,
        "SequenceLength" => rule_sequence_length,
        "ConcatFromSequence" => rule_concat_from_sequence,
        "SplitToSequence" => rule_split_to_sequence,
        "SequenceMap" => rule_sequence_map,
        "Optional" => rule_optional,
        "OptionalGetElement" => rule_optional_get_element,
        "OptionalHasElement" => rule_optional_has_element,
        "StringConcat" => rule_string_concat,
        "StringNormalizer" => rule_string_normalizer,
        "StringSplit" => rule_string_split,
        "RegexFullMatch" => |ctx| shape_of_input_with(ctx, 0, 0, DataType::Bool),
        "TfIdfVectorizer" => rule_tfidf_vectorizer,
        "SoftmaxCrossEntropyLoss" | "NegativeLogLikelihoodLoss" => rule_loss,
        _ => return None,
    })
}

/// ai.onnx.ml ops.
pub fn rule_ml(op: &str) -> Option<Rule> {
    Some(match op {
        "ArrayFeatureExtractor" => rule_array_feature_extractor,
        "Binarizer" | "Imputer" => |ctx| same_as_input(ctx, 0, 0),
        "Normalizer" | "Scaler" => |ctx| shape_of_input_with(ctx, 0, 0, DataType::Float),
        "FeatureVectorizer" => rule_feature_vectorizer,
        "LabelEncoder" => rule_label_encoder,
        "OneHotEncoder" => rule_one_hot_encoder,
        "TreeEnsemble" => rule_tree_ensemble,
        _ => return None,
    })
}

/// ai.onnx.preview.training ops.
pub fn rule_training(op: &str) -> Option<Rule> {
    Some(match op {
        "Adagrad" | "Adam" | "Momentum" => rule_optimizer,
        // The gradient with respect to each of `xs` (the first inputs) has that input's type.
        "Gradient" => |ctx| {
            for i in 0..ctx.num_outputs() {
                if let Ok(t) = ctx.input_type(i) {
                    let t = t.clone();
                    ctx.set_output(i, t);
                }
            }
            Ok(())
        },
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Type unions

fn union_all<'a>(types: impl IntoIterator<Item = &'a ValueType>) -> RuleResult<ValueType> {
    let mut types = types.into_iter();
    let first = types.next().ok_or(RuleError::Unknown)?.clone();
    types.try_fold(first, |acc, t| union(&acc, t).map_err(RuleError::Invalid))
}

fn graph_attr<'c>(ctx: &'c NodeContext<'_>, name: &str) -> RuleResult<&'c Graph> {
    match ctx.attr_graph(name)? {
        Some(g) => Ok(g),
        None => bail!("attribute '{name}' (a graph) is missing"),
    }
}

fn scalar(dtype: DataType) -> ValueType {
    ValueType::tensor(dtype, Some(Vec::new()))
}

// ---------------------------------------------------------------------------------------------
// Control flow

/// Each output is the union of the two branches' outputs.
fn rule_if(ctx: &mut NodeContext<'_>) -> RuleResult {
    let then_out = ctx.infer_graph(graph_attr(ctx, "then_branch")?, &[])?;
    let else_out = ctx.infer_graph(graph_attr(ctx, "else_branch")?, &[])?;
    if then_out.len() != else_out.len() {
        bail!(
            "then_branch has {} outputs, else_branch {}",
            then_out.len(),
            else_out.len()
        );
    }
    for (i, (t, e)) in then_out.iter().zip(&else_out).enumerate() {
        if let (Some(t), Some(e)) = (t, e) {
            match union(t, e) {
                Ok(u) => ctx.set_output(i, u),
                Err(why) => bail!("output {i}: then_branch gives {t}, else_branch {e} ({why})"),
            }
        }
    }
    Ok(())
}

/// Infers `body` with its loop-carried inputs (`carried`, positions in `inputs`, fed back from
/// the outputs from `first_out` on) widened until they cover every iteration: a carried value
/// starts as its initial type and takes in what the body makes of it. Returns the body's
/// outputs for the widened inputs.
fn infer_carried(
    ctx: &NodeContext<'_>,
    body: &Graph,
    inputs: &mut [Option<ValueType>],
    carried: std::ops::Range<usize>,
    first_out: usize,
) -> RuleResult<Vec<Option<ValueType>>> {
    // Each pass widens some dims; a value still changing after three gets its shape dropped.
    for pass in 0..4 {
        if pass == 3 {
            for slot in &mut inputs[carried.clone()] {
                if let Some(ValueType::Tensor(t)) = slot {
                    t.shape = None;
                }
            }
        }
        let outputs = ctx.infer_graph(body, inputs)?;
        let mut changed = false;
        for (slot, out) in inputs[carried.clone()]
            .iter_mut()
            .zip(outputs.iter().skip(first_out))
        {
            if let (Some(now), Some(out)) = (slot.as_ref(), out) {
                if let Ok(wider) = union(now, out) {
                    if wider != *now {
                        *slot = Some(wider);
                        changed = true;
                    }
                }
            }
        }
        if !changed || pass == 3 {
            return Ok(outputs);
        }
    }
    unreachable!("the last pass returns")
}

/// The final value of a carried input: the body's output type, widened by the initial type
/// (which it keeps when the loop runs no iteration) when both are of the same kind.
fn carried_output(initial: Option<&ValueType>, body_out: &ValueType) -> ValueType {
    match initial {
        Some(init) => union(init, body_out).unwrap_or_else(|_| body_out.clone()),
        None => body_out.clone(),
    }
}

/// Scan outputs stack the body's per-iteration outputs along a new axis `axis`.
fn stacked(out: &ValueType, axis: i64, len: Dim) -> RuleResult<ValueType> {
    let ValueType::Tensor(t) = out else {
        bail!(
            "a scan output must be a tensor, the body gives {}",
            out.type_string()
        );
    };
    let shape = match &t.shape {
        Some(s) => {
            let axis = dims::normalize_axis(axis, s.len() + 1)?;
            let mut s = s.clone();
            s.insert(axis, len);
            Some(s)
        }
        None => None,
    };
    Ok(ValueType::tensor(t.dtype, shape))
}

/// Loop: body inputs (iteration, cond, carried...), body outputs (cond, carried..., scan...);
/// the node outputs the final carried values then the scan outputs with a leading iterations
/// dim (the trip count when it is constant and the loop cannot stop early).
fn rule_loop(ctx: &mut NodeContext<'_>) -> RuleResult {
    let body = graph_attr(ctx, "body")?;
    let n_carried = ctx.num_inputs().saturating_sub(2);
    let initial: Vec<Option<ValueType>> = (0..n_carried)
        .map(|i| ctx.input_type(2 + i).ok().cloned())
        .collect();
    let mut inputs = vec![Some(scalar(DataType::Int64)), Some(scalar(DataType::Bool))];
    inputs.extend(initial.iter().cloned());
    let outputs = infer_carried(ctx, body, &mut inputs, 2..2 + n_carried, 1)?;
    if outputs.len() < 1 + n_carried {
        bail!(
            "the body has {} outputs, it needs cond and {n_carried} carried values",
            outputs.len()
        );
    }
    // The iteration count is the trip count when the condition can only stay true.
    let cond_always_true = !ctx.has_input(1) || ctx.input_ints(1).is_some_and(|v| v == [1]);
    let cond_passed_through = matches!(
        (body.outputs.first(), body.inputs.get(1)),
        (Some(o), Some(i)) if o.name == i.name
    );
    let iterations = match ctx.input_ints(0).as_deref() {
        Some([m]) if *m >= 0 && cond_always_true && cond_passed_through => Dim::Fixed(*m as usize),
        _ => Dim::Unknown,
    };
    for (i, out) in outputs.iter().enumerate().skip(1) {
        let Some(out) = out else { continue };
        let ty = if i <= n_carried {
            carried_output(initial[i - 1].as_ref(), out)
        } else {
            stacked(out, 0, iterations.clone())?
        };
        ctx.set_output(i - 1, ty);
    }
    Ok(())
}

/// The common size along the scan axis of several scan inputs.
fn scan_length(lengths: &[Dim]) -> RuleResult<Dim> {
    let mut len = Dim::Unknown;
    for l in lengths {
        len = dims::unify(&len, l).map_err(|_| {
            RuleError::invalid(format!(
                "scan inputs have different sequence lengths {}",
                dims::format_shape(lengths)
            ))
        })?;
    }
    Ok(len)
}

/// Scan: carried states then scan inputs sliced along their scan axis; final states, then scan
/// outputs stacked along their output axes. Opset 8 has a leading batch axis on everything
/// (the sequence axis is 1) and an optional `sequence_lens` first input.
fn rule_scan(ctx: &mut NodeContext<'_>) -> RuleResult {
    let body = graph_attr(ctx, "body")?;
    let Some(n_scan) = ctx.attr_int("num_scan_inputs")? else {
        bail!("attribute 'num_scan_inputs' is missing");
    };
    let batched = ctx.opset() < 9;
    let first = usize::from(batched);
    let n_inputs = ctx.num_inputs().saturating_sub(first);
    let n_scan = usize::try_from(n_scan)
        .ok()
        .filter(|&n| n <= n_inputs)
        .ok_or_else(|| {
            RuleError::invalid(format!("num_scan_inputs {n_scan} for {n_inputs} inputs"))
        })?;
    let n_state = n_inputs - n_scan;
    let input_axes = match ctx.attr_ints("scan_input_axes")? {
        Some(a) if a.len() != n_scan => {
            bail!(
                "scan_input_axes has {} entries for {n_scan} scan inputs",
                a.len()
            )
        }
        Some(a) => a,
        None => vec![0; n_scan],
    };
    // A body input from a node input: without the batch axis (opset 8) and the scan axis `at`;
    // also returns the sizes removed.
    let strip =
        |ty: Option<&ValueType>, at: Option<i64>| -> RuleResult<(Option<ValueType>, Dim, Dim)> {
            let Some(ValueType::Tensor(t)) = ty else {
                return Ok((None, Dim::Unknown, Dim::Unknown));
            };
            let Some(shape) = &t.shape else {
                return Ok((
                    Some(ValueType::tensor(t.dtype, None)),
                    Dim::Unknown,
                    Dim::Unknown,
                ));
            };
            let mut shape = shape.clone();
            let batch = if batched {
                if shape.is_empty() {
                    bail!("Scan (opset 8) inputs need a leading batch axis");
                }
                shape.remove(0)
            } else {
                Dim::Unknown
            };
            let len = match at {
                Some(axis) => {
                    let axis = dims::normalize_axis(axis, shape.len())?;
                    shape.remove(axis)
                }
                None => Dim::Unknown,
            };
            Ok((Some(ValueType::tensor(t.dtype, Some(shape))), batch, len))
        };
    let mut body_inputs = Vec::with_capacity(n_inputs);
    let mut batches = Vec::new();
    let mut lengths = Vec::new();
    for i in 0..n_inputs {
        let ty = ctx.input_type(first + i).ok();
        let at = (i >= n_state).then(|| if batched { 0 } else { input_axes[i - n_state] });
        let (t, batch, len) = strip(ty, at)?;
        body_inputs.push(t);
        batches.push(batch);
        if at.is_some() {
            lengths.push(len);
        }
    }
    let batch = scan_length(&batches)?;
    let len = scan_length(&lengths)?;
    let initial = body_inputs[..n_state].to_vec();
    let outputs = infer_carried(ctx, body, &mut body_inputs, 0..n_state, 0)?;
    let output_axes = ctx.attr_ints("scan_output_axes")?.unwrap_or_default();
    for (i, out) in outputs.iter().enumerate() {
        let Some(out) = out else { continue };
        let ty = if i < n_state {
            carried_output(initial[i].as_ref(), out)
        } else {
            let axis = if batched {
                0
            } else {
                output_axes.get(i - n_state).copied().unwrap_or(0)
            };
            stacked(out, axis, len.clone())?
        };
        let ty = if batched {
            stacked(&ty, 0, batch.clone())?
        } else {
            ty
        };
        ctx.set_output(i, ty);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Sequences

/// The element type of sequence input `i`.
fn sequence_elem(ctx: &NodeContext<'_>, i: usize) -> RuleResult<ValueType> {
    match ctx.input_type(i)? {
        ValueType::Sequence(e) => Ok((**e).clone()),
        other => bail!(
            "input {i} must be a sequence, it is {}",
            other.type_string()
        ),
    }
}

fn sequence_of(elem: ValueType) -> ValueType {
    ValueType::Sequence(Box::new(elem))
}

fn rule_sequence_empty(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.attr_dtype("dtype")?.unwrap_or(DataType::Float);
    ctx.set_output(0, sequence_of(ValueType::tensor(dtype, None)));
    Ok(())
}

/// The elements' type is the union of the inputs' types.
fn rule_sequence_construct(ctx: &mut NodeContext<'_>) -> RuleResult {
    let types = (0..ctx.num_inputs())
        .map(|i| ctx.input_tensor(i).map(|t| ValueType::Tensor(t.clone())))
        .collect::<RuleResult<Vec<_>>>()?;
    let elem = union_all(&types)?;
    ctx.set_output(0, sequence_of(elem));
    Ok(())
}

/// The elements' type widens to take in the inserted tensor's.
fn rule_sequence_insert(ctx: &mut NodeContext<'_>) -> RuleResult {
    let elem = sequence_elem(ctx, 0)?;
    let tensor = ValueType::Tensor(ctx.input_tensor(1)?.clone());
    let elem = match elem {
        ValueType::Unknown => tensor,
        e => union(&e, &tensor).map_err(|why| {
            RuleError::invalid(format!(
                "the inserted tensor does not fit the sequence: {why}"
            ))
        })?,
    };
    ctx.set_output(0, sequence_of(elem));
    Ok(())
}

fn rule_sequence_erase(ctx: &mut NodeContext<'_>) -> RuleResult {
    let elem = sequence_elem(ctx, 0)?;
    ctx.set_output(0, sequence_of(elem));
    Ok(())
}

fn rule_sequence_at(ctx: &mut NodeContext<'_>) -> RuleResult {
    let elem = sequence_elem(ctx, 0)?;
    ctx.set_output(0, elem);
    Ok(())
}

fn rule_sequence_length(ctx: &mut NodeContext<'_>) -> RuleResult {
    ctx.set_output(0, scalar(DataType::Int64));
    Ok(())
}

/// The elements' shape with the concatenation axis (a new one with `new_axis`) unknown.
fn rule_concat_from_sequence(ctx: &mut NodeContext<'_>) -> RuleResult {
    let elem = match sequence_elem(ctx, 0)? {
        ValueType::Tensor(t) => t,
        ValueType::Unknown => return Err(RuleError::Unknown),
        other => bail!(
            "input 0 must be a sequence of tensors, its elements are {}",
            other.type_string()
        ),
    };
    let Some(axis) = ctx.attr_int("axis")? else {
        bail!("attribute 'axis' is missing");
    };
    let new_axis = ctx.attr_int_or("new_axis", 0)? != 0;
    let shape = match elem.shape {
        Some(mut s) => {
            if new_axis {
                let axis = dims::normalize_axis(axis, s.len() + 1)?;
                s.insert(axis, Dim::Unknown);
            } else {
                let axis = dims::normalize_axis(axis, s.len())?;
                s[axis] = Dim::Unknown;
            }
            Some(s)
        }
        None => None,
    };
    ctx.set_output_tensor(0, elem.dtype, shape);
    Ok(())
}

/// Pieces along `axis`: of size 1 (dropped without `keepdims`) when `split` is absent, else of
/// the size `split` gives when all pieces are equal.
fn rule_split_to_sequence(ctx: &mut NodeContext<'_>) -> RuleResult {
    let input = ctx.input_tensor(0)?.clone();
    let Some(shape) = input.shape else {
        ctx.set_output(0, sequence_of(ValueType::tensor(input.dtype, None)));
        return Ok(());
    };
    let axis = dims::normalize_axis(ctx.attr_int_or("axis", 0)?, shape.len())?;
    let mut piece = shape.clone();
    if !ctx.has_input(1) {
        if ctx.attr_int_or("keepdims", 1)? != 0 {
            piece[axis] = Dim::Fixed(1);
        } else {
            piece.remove(axis);
        }
    } else {
        piece[axis] = match (ctx.input_ints(1), &shape[axis]) {
            (Some(split), _) if split.iter().any(|&s| s < 0) => {
                bail!("input 'split' has negative sizes {split:?}")
            }
            // A scalar split: pieces of that size, the last one smaller unless it divides.
            (Some(split), Dim::Fixed(n)) if ctx.input_rank(1) == Ok(0) => match split[..] {
                [s] if s > 0 && *n as i64 % s == 0 => Dim::Fixed(s as usize),
                _ => Dim::Unknown,
            },
            (Some(split), _) if ctx.input_rank(1) == Ok(1) => {
                if let Dim::Fixed(n) = shape[axis] {
                    if split.iter().sum::<i64>() != n as i64 {
                        bail!("input 'split' {split:?} does not add up to dimension {n}");
                    }
                }
                match split.split_first() {
                    Some((&s, rest)) if rest.iter().all(|&r| r == s) => Dim::Fixed(s as usize),
                    _ => Dim::Unknown,
                }
            }
            _ => Dim::Unknown,
        };
    }
    ctx.set_output(0, sequence_of(ValueType::tensor(input.dtype, Some(piece))));
    Ok(())
}

/// The body runs per element: sequence inputs give it their element type, tensors themselves;
/// each output is a sequence of the body's output.
fn rule_sequence_map(ctx: &mut NodeContext<'_>) -> RuleResult {
    let body = graph_attr(ctx, "body")?;
    let inputs: Vec<Option<ValueType>> = (0..ctx.num_inputs())
        .map(|i| match ctx.input_type(i) {
            Ok(ValueType::Sequence(e)) => Some((**e).clone()),
            Ok(t) => Some(t.clone()),
            Err(_) => None,
        })
        .collect();
    let outputs = ctx.infer_graph(body, &inputs)?;
    for (i, out) in outputs.into_iter().enumerate() {
        if let Some(out) = out {
            ctx.set_output(i, sequence_of(out));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Optionals

/// An optional of the input's type, or of the `type` attribute's.
fn rule_optional(ctx: &mut NodeContext<'_>) -> RuleResult {
    let inner = if ctx.has_input(0) {
        ctx.input_type(0)?.clone()
    } else {
        match ctx.attr("type") {
            Some(AttributeValue::Type(t)) => t.clone(),
            Some(other) => bail!("attribute 'type' must be a type, it is {}", other.kind()),
            None => bail!("Optional without input needs the attribute 'type'"),
        }
    };
    ctx.set_output(0, ValueType::Optional(Box::new(inner)));
    Ok(())
}

/// The optional's element type; a tensor or sequence input (opset 18) passes as it is.
fn rule_optional_get_element(ctx: &mut NodeContext<'_>) -> RuleResult {
    let ty = match ctx.input_type(0)? {
        ValueType::Optional(e) => (**e).clone(),
        other => other.clone(),
    };
    ctx.set_output(0, ty);
    Ok(())
}

fn rule_optional_has_element(ctx: &mut NodeContext<'_>) -> RuleResult {
    ctx.set_output(0, scalar(DataType::Bool));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Strings

fn rule_string_concat(ctx: &mut NodeContext<'_>) -> RuleResult {
    let shape = match (ctx.input_shape(0), ctx.input_shape(1)) {
        (Ok(a), Ok(b)) => Some(dims::broadcast(&[a, b])?),
        _ => None,
    };
    ctx.set_output_tensor(0, DataType::String, shape);
    Ok(())
}

/// `[C]` or `[1, C]`: the last dim is unknown when stopwords may remove strings.
fn rule_string_normalizer(ctx: &mut NodeContext<'_>) -> RuleResult {
    let mut shape = ctx.input_shape(0).ok().map(<[Dim]>::to_vec);
    if let Some(s) = &mut shape {
        match s.len() {
            1 | 2 => {}
            r => bail!("input must be [C] or [1, C], it has rank {r}"),
        }
        let has_stopwords =
            matches!(ctx.attr("stopwords"), Some(AttributeValue::Strings(w)) if !w.is_empty());
        if has_stopwords {
            *s.last_mut().expect("rank 1 or 2") = Dim::Unknown;
        }
    }
    ctx.set_output_tensor(0, DataType::String, shape);
    Ok(())
}

/// Substrings `X.shape + [max count]` (string) and counts `X.shape` (int64).
fn rule_string_split(ctx: &mut NodeContext<'_>) -> RuleResult {
    let shape = ctx.input_shape(0).ok().map(<[Dim]>::to_vec);
    ctx.set_output_tensor(1, DataType::Int64, shape.clone());
    let parts = shape.map(|mut s| {
        s.push(Dim::Unknown);
        s
    });
    ctx.set_output_tensor(0, DataType::String, parts);
    Ok(())
}

/// `[C]` -> `[max(ngram_indexes) + 1]`, `[N, C]` -> `[N, max(ngram_indexes) + 1]`, float.
fn rule_tfidf_vectorizer(ctx: &mut NodeContext<'_>) -> RuleResult {
    let width = match ctx.attr_ints("ngram_indexes")? {
        Some(ix) if ix.iter().any(|&i| i < 0) => {
            bail!("attribute 'ngram_indexes' has negative entries")
        }
        Some(ix) => Dim::Fixed(ix.iter().max().map_or(0, |&m| m as usize + 1)),
        None => bail!("attribute 'ngram_indexes' is missing"),
    };
    let shape = match ctx.input_shape(0) {
        Ok([_]) => Some(vec![width]),
        Ok([n, _]) => Some(vec![n.clone(), width]),
        Ok(s) => bail!("input must be [C] or [N, C], it has rank {}", s.len()),
        Err(_) => None,
    };
    ctx.set_output_tensor(0, DataType::Float, shape);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Losses

/// SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss: scores `[N, C, d...]`, labels
/// `[N, d...]`; the loss has the labels' shape with reduction "none", else it is a scalar.
/// SoftmaxCrossEntropyLoss's optional second output (log probabilities) has the scores' type.
fn rule_loss(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    if ctx.has_output(1) {
        shape_of_input_with(ctx, 0, 1, dtype)?;
    }
    let reduction = ctx
        .attr_string("reduction")?
        .unwrap_or_else(|| "mean".into());
    let shape = match reduction.as_str() {
        "none" => match (ctx.input_shape(0), ctx.input_shape(1)) {
            (Ok(scores), Ok(labels)) => {
                if scores.len() < 2 || labels.len() + 1 != scores.len() {
                    bail!(
                        "scores {} need rank >= 2 and labels {} one rank less",
                        dims::format_shape(scores),
                        dims::format_shape(labels)
                    );
                }
                let mut out = vec![dims::unify(&scores[0], &labels[0])?];
                for (s, l) in scores[2..].iter().zip(&labels[1..]) {
                    out.push(dims::unify(s, l)?);
                }
                Some(out)
            }
            (_, Ok(labels)) => Some(labels.to_vec()),
            _ => None,
        },
        "mean" | "sum" => Some(Vec::new()),
        other => bail!("attribute 'reduction' must be none, mean or sum, it is {other:?}"),
    };
    ctx.set_output_tensor(0, dtype, shape);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// ai.onnx.ml

/// `X [..., C]` and indices `Y` -> `[..., len(Y)]` (`[1, len(Y)]` for a 1-D `X`).
fn rule_array_feature_extractor(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    let picks = match ctx.input_shape(1) {
        Ok(s) => dims::product(s),
        Err(_) => Dim::Unknown,
    };
    let shape = match ctx.input_shape(0) {
        Ok([]) => bail!("input X must have at least one dimension"),
        Ok([_]) => Some(vec![Dim::Fixed(1), picks]),
        Ok([outer @ .., _]) => {
            let mut s = outer.to_vec();
            s.push(picks);
            Some(s)
        }
        Err(_) => None,
    };
    ctx.set_output_tensor(0, dtype, shape);
    Ok(())
}

/// float `[N, sum(inputdimensions)]`; N is the first input's leading dim (1 for a 1-D input).
fn rule_feature_vectorizer(ctx: &mut NodeContext<'_>) -> RuleResult {
    let width = match ctx.attr_ints("inputdimensions")? {
        Some(d) if d.iter().any(|&x| x < 0) => {
            bail!("attribute 'inputdimensions' has negative entries")
        }
        Some(d) => Dim::Fixed(d.iter().sum::<i64>() as usize),
        None => Dim::Fixed(0),
    };
    let rows = match ctx.input_shape(0) {
        Ok([] | [_]) => Dim::Fixed(1),
        Ok([n, ..]) => n.clone(),
        Err(_) => Dim::Unknown,
    };
    ctx.set_output_tensor(0, DataType::Float, Some(vec![rows, width]));
    Ok(())
}

/// The input's shape; the element type of the `values_*` attribute (opset 1: strings map to
/// int64 and int64 to strings).
fn rule_label_encoder(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = if ctx.opset() < 2 {
        match ctx.input_dtype(0)? {
            DataType::String => DataType::Int64,
            DataType::Int64 => DataType::String,
            other => bail!("input must be string or int64, it is {other}"),
        }
    } else if let Some(t) = ctx.attr_tensor("values_tensor")? {
        t.dtype()
    } else if ctx.attr("values_strings").is_some() {
        DataType::String
    } else if ctx.attr("values_int64s").is_some() {
        DataType::Int64
    } else if ctx.attr("values_floats").is_some() {
        DataType::Float
    } else {
        bail!("one values_* attribute must be set");
    };
    shape_of_input_with(ctx, 0, 0, dtype)
}

/// float: the input's shape with a new last axis of one entry per category.
fn rule_one_hot_encoder(ctx: &mut NodeContext<'_>) -> RuleResult {
    let count = match (ctx.attr("cats_int64s"), ctx.attr("cats_strings")) {
        (Some(AttributeValue::Ints(c)), None) => c.len(),
        (None, Some(AttributeValue::Strings(c))) => c.len(),
        _ => bail!("exactly one of cats_int64s and cats_strings must be set"),
    };
    let shape = ctx.input_shape(0).ok().map(|s| {
        let mut s = s.to_vec();
        s.push(Dim::Fixed(count));
        s
    });
    ctx.set_output_tensor(0, DataType::Float, shape);
    Ok(())
}

/// `[N, n_targets]` in the input's element type.
fn rule_tree_ensemble(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    let targets = match ctx.attr_int("n_targets")? {
        Some(n) if n > 0 => Dim::Fixed(n as usize),
        Some(n) => bail!("attribute 'n_targets' must be positive, it is {n}"),
        None => Dim::Unknown,
    };
    let rows = match ctx.input_shape(0) {
        Ok([n, _]) => n.clone(),
        _ => Dim::Unknown,
    };
    ctx.set_output_tensor(0, dtype, Some(vec![rows, targets]));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// ai.onnx.preview.training

/// Adagrad (R, T, X..., G..., H...), Momentum (R, T, X..., G..., V...) and Adam (R, T, X..., G...,
/// V..., H...): the outputs are the updated X, then the updated state groups after G, each with
/// its input's type.
fn rule_optimizer(ctx: &mut NodeContext<'_>) -> RuleResult {
    let groups = if ctx.op_type() == "Adam" { 4 } else { 3 };
    let tensors = ctx.num_inputs().saturating_sub(2);
    if !tensors.is_multiple_of(groups) {
        bail!("{tensors} tensor inputs do not form {groups} groups of equal size");
    }
    let n = tensors / groups;
    for out in 0..ctx.num_outputs() {
        let input = if out < n { 2 + out } else { 2 + n + out };
        if let Ok(t) = ctx.input_type(input) {
            let t = t.clone();
            ctx.set_output(out, t);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use runnx_ir::{AttributeValue, DataType, Dim, Tensor};

    use crate::testing::{fixed, graph, infer_graph, node, shape_of, sym, tensor_info};

    #[test]
    fn if_merges_branches_dim_by_dim() {
        // Each branch returns an outer value.
        let branch =
            |name: &str| AttributeValue::Graph(Arc::new(graph(vec![], vec![], vec![], &[name])));
        let if_node = node(
            "If",
            &["c"],
            &["y"],
            vec![("then_branch", branch("a")), ("else_branch", branch("b"))],
        );
        let inputs = vec![
            tensor_info("c", DataType::Bool, vec![]),
            tensor_info("a", DataType::Float, vec![sym("N"), fixed(3)]),
            tensor_info("b", DataType::Float, vec![sym("N"), fixed(4)]),
        ];
        let out = infer_graph(13, graph(inputs, vec![], vec![if_node], &["y"]));
        assert_eq!(shape_of(&out, "y"), Some(vec![sym("N"), Dim::Unknown]));
    }

    #[test]
    fn loop_widens_a_changing_carried_value_and_stacks_scan_outputs() {
        // The carried vector becomes its first element: [2] then [1].
        let body = graph(
            vec![
                tensor_info("i", DataType::Int64, vec![]),
                tensor_info("c_in", DataType::Bool, vec![]),
                tensor_info("v_in", DataType::Float, vec![Dim::Unknown]),
            ],
            vec![],
            vec![
                node("SplitToSequence", &["v_in"], &["pieces"], vec![]),
                node("SequenceAt", &["pieces", "zero"], &["v_out"], vec![]),
            ],
            &["c_in", "v_out", "v_in"],
        );
        let g = graph(
            vec![tensor_info("v", DataType::Float, vec![fixed(2)])],
            vec![("m", Tensor::scalar(5i64)), ("zero", Tensor::scalar(0i64))],
            vec![node(
                "Loop",
                &["m", "", "v"],
                &["v_final", "stacked"],
                vec![("body", AttributeValue::Graph(Arc::new(body)))],
            )],
            &["v_final", "stacked"],
        );
        let out = infer_graph(13, g);
        assert_eq!(shape_of(&out, "v_final"), Some(vec![Dim::Unknown]));
        assert_eq!(
            shape_of(&out, "stacked"),
            Some(vec![fixed(5), Dim::Unknown])
        );
    }

    /// A Scan body over one state and one scan input: the new state is the slice, the scan
    /// output the previous state.
    fn swapping_scan_body() -> AttributeValue {
        let body = graph(
            vec![
                tensor_info("s_in", DataType::Float, vec![Dim::Unknown]),
                tensor_info("x_in", DataType::Float, vec![Dim::Unknown]),
            ],
            vec![],
            vec![],
            &["x_in", "s_in"],
        );
        AttributeValue::Graph(Arc::new(body))
    }

    #[test]
    fn scan9_slices_and_stacks_along_the_given_axes() {
        let scan = node(
            "Scan",
            &["s", "x"],
            &["s_final", "ys"],
            vec![
                ("body", swapping_scan_body()),
                ("num_scan_inputs", AttributeValue::Int(1)),
                ("scan_input_axes", AttributeValue::Ints(vec![-1])),
                ("scan_output_axes", AttributeValue::Ints(vec![1])),
            ],
        );
        let inputs = vec![
            tensor_info("s", DataType::Float, vec![fixed(2)]),
            tensor_info("x", DataType::Float, vec![fixed(2), sym("T")]),
        ];
        let out = infer_graph(11, graph(inputs, vec![], vec![scan], &["s_final", "ys"]));
        assert_eq!(shape_of(&out, "s_final"), Some(vec![fixed(2)]));
        assert_eq!(shape_of(&out, "ys"), Some(vec![fixed(2), sym("T")]));
    }

    #[test]
    fn scan8_keeps_the_batch_axis_in_front() {
        let scan = node(
            "Scan",
            &["", "s", "x"],
            &["s_final", "ys"],
            vec![
                ("body", swapping_scan_body()),
                ("num_scan_inputs", AttributeValue::Int(1)),
            ],
        );
        let inputs = vec![
            tensor_info("s", DataType::Float, vec![sym("B"), fixed(2)]),
            tensor_info("x", DataType::Float, vec![sym("B"), fixed(3), fixed(2)]),
        ];
        let out = infer_graph(8, graph(inputs, vec![], vec![scan], &["s_final", "ys"]));
        assert_eq!(shape_of(&out, "s_final"), Some(vec![sym("B"), fixed(2)]));
        assert_eq!(
            shape_of(&out, "ys"),
            Some(vec![sym("B"), fixed(3), fixed(2)])
        );
    }

    #[test]
    fn sequences_split_and_concat() {
        let g = graph(
            vec![tensor_info("x", DataType::Float, vec![sym("N"), fixed(6)])],
            vec![
                ("two", Tensor::scalar(2i64)),
                ("zero", Tensor::scalar(0i64)),
            ],
            vec![
                node(
                    "SplitToSequence",
                    &["x", "two"],
                    &["seq"],
                    vec![("axis", AttributeValue::Int(-1))],
                ),
                node("SequenceAt", &["seq", "zero"], &["piece"], vec![]),
                node(
                    "ConcatFromSequence",
                    &["seq"],
                    &["stacked"],
                    vec![
                        ("axis", AttributeValue::Int(-1)),
                        ("new_axis", AttributeValue::Int(1)),
                    ],
                ),
            ],
            &["stacked"],
        );
        let out = infer_graph(13, g);
        assert_eq!(shape_of(&out, "piece"), Some(vec![sym("N"), fixed(2)]));
        assert_eq!(
            shape_of(&out, "stacked"),
            Some(vec![sym("N"), fixed(2), Dim::Unknown])
        );
    }

    #[test]
    fn losses_follow_the_reduction() {
        let inputs = || {
            vec![
                tensor_info(
                    "scores",
                    DataType::Float,
                    vec![sym("N"), fixed(5), fixed(7)],
                ),
                tensor_info("labels", DataType::Int64, vec![sym("N"), fixed(7)]),
            ]
        };
        let none = node(
            "SoftmaxCrossEntropyLoss",
            &["scores", "labels"],
            &["loss", "log_prob"],
            vec![("reduction", AttributeValue::String(b"none".to_vec()))],
        );
        let out = infer_graph(13, graph(inputs(), vec![], vec![none], &["loss"]));
        assert_eq!(shape_of(&out, "loss"), Some(vec![sym("N"), fixed(7)]));
        assert_eq!(
            shape_of(&out, "log_prob"),
            Some(vec![sym("N"), fixed(5), fixed(7)])
        );
        let mean = node(
            "NegativeLogLikelihoodLoss",
            &["scores", "labels"],
            &["loss"],
            vec![],
        );
        let out = infer_graph(13, graph(inputs(), vec![], vec![mean], &["loss"]));
        assert_eq!(shape_of(&out, "loss"), Some(vec![]));
    }
}
