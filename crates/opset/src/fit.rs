//! Fits a node to the schema it lands on after a step: attributes, inputs and outputs that the
//! new version lacks, element types an older version does not accept, and negative axes
//! (which most operators accept only from opset 11).

use runnx_ir::{AttributeValue, Node};

use crate::context::Ctx;
use crate::schema::Schema;

/// Attributes that only ever mattered for training or memory reuse: always safe to drop.
const DROPPABLE: &[&str] = &["consumed_inputs", "is_test"];

/// Makes `node` (on version `old` before the step) valid for version `new`.
pub(crate) fn fit_to_schema(
    ctx: &Ctx,
    node: &mut Node,
    old: &Schema,
    new: &Schema,
    newer_opset: i64,
) -> Result<(), String> {
    let mut kept = Vec::with_capacity(node.attributes.len());
    for a in std::mem::take(&mut node.attributes) {
        if new.attr(&a.name).is_some() || a.ref_attr_name.is_some() {
            kept.push(a);
        } else if !DROPPABLE.contains(&a.name.as_str())
            && !old.attr(&a.name).is_some_and(|d| d.matches(&a.value))
        {
            return Err(format!(
                "attribute '{}' is not in {}-{}",
                a.name, new.op, new.since
            ));
        }
    }
    node.attributes = kept;
    trim(&mut node.inputs);
    trim(&mut node.outputs);
    if node.inputs.len() > new.max_inputs as usize {
        return Err(format!(
            "input '{}' is not in {}-{}",
            node.inputs[new.max_inputs as usize], new.op, new.since
        ));
    }
    if node.outputs.len() > new.max_outputs as usize {
        return Err(format!(
            "output '{}' is not in {}-{}",
            node.outputs[new.max_outputs as usize], new.op, new.since
        ));
    }
    if new.since >= old.since {
        return Ok(());
    }
    for (i, name) in node.inputs.iter().enumerate() {
        match ctx.dtype(name) {
            Some(t) if !name.is_empty() && !new.input_accepts(i, t) => {
                return Err(format!(
                    "input '{name}' is {t}, which {}-{} does not accept",
                    new.op, new.since
                ))
            }
            _ => {}
        }
    }
    for (i, name) in node.outputs.iter().enumerate() {
        match ctx.dtype(name) {
            Some(t) if !name.is_empty() && !new.output_accepts(i, t) => {
                return Err(format!(
                    "output '{name}' is {t}, which {}-{} does not produce",
                    new.op, new.since
                ))
            }
            _ => {}
        }
    }
    if newer_opset == 11 {
        normalize_axes(ctx, node)?;
    }
    Ok(())
}

/// Drops unused optional inputs or outputs at the end.
pub(crate) fn trim(names: &mut Vec<String>) {
    while names.last().is_some_and(String::is_empty) {
        names.pop();
    }
}

/// Rewrites negative `axis`/`axes` as positive ones (before opset 11 most ops reject them).
fn normalize_axes(ctx: &Ctx, node: &mut Node) -> Result<(), String> {
    let input = node.inputs.first().map(String::as_str).unwrap_or("");
    let added = match node.attribute("axes").map(|a| &a.value) {
        Some(AttributeValue::Ints(axes)) if node.op_type == "Unsqueeze" => axes.len(),
        _ => 0,
    };
    let rank = ctx.rank(input).map(|r| (r + added) as i64);
    for a in &mut node.attributes {
        let values: Vec<&mut i64> = match (&a.name[..], &mut a.value) {
            ("axis", AttributeValue::Int(v)) => vec![v],
            ("axes", AttributeValue::Ints(v)) => v.iter_mut().collect(),
            _ => continue,
        };
        for v in values.into_iter().filter(|v| **v < 0) {
            let rank = rank.ok_or_else(|| {
                format!(
                    "negative {} needs the rank of '{input}', which is not declared",
                    a.name
                )
            })?;
            *v += rank;
        }
    }
    Ok(())
}
