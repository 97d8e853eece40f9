//! A Conv, or a FusedConv without a residual, whose only reader is a MaxPool over
//! non-overlapping 2-D windows (kernel = strides, no padding, floor mode, no Indices output)
//! becomes one `ai.runnx.FusedConvMaxPool`. Its 2x2 form runs in the direct and Winograd conv
//! kernels' own pass: only the conv outputs the pool reads are computed (a Winograd tile is
//! exactly one pool window), and they never go through memory. MNIST's CNN has two such
//! pairs; its second conv then computes 25 of its 36 tiles.
//!
//! onnxruntime has no such op, so this pass runs after the session has saved any optimized
//! model, and `runnx optimize` never applies it.

use std::collections::HashMap;

use runnx_ir::{Attribute, AttributeValue, DataType, Graph, Node};
use runnx_ops::RUNNX_DOMAIN;

use super::{apply_rewrites, is_onnx_op, use_counts};

/// Fuses every eligible Conv/MaxPool pair; returns how many.
pub(super) fn fuse(graph: &mut Graph) -> usize {
    let counts = use_counts(graph);
    let mut reader: HashMap<&str, usize> = HashMap::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        for input in &node.inputs {
            reader.insert(input.as_str(), i);
        }
    }
    let mut replace = HashMap::new();
    let mut remove = vec![false; graph.nodes.len()];
    for (i, conv) in graph.nodes.iter().enumerate() {
        if !is_fusable_conv(graph, conv) {
            continue;
        }
        let out = conv.outputs[0].as_str();
        if counts.get(out) != Some(&1) {
            continue;
        }
        let Some(&p) = reader.get(out) else { continue };
        let pool = &graph.nodes[p];
        let Some(window) = pool_window(pool).filter(|_| pool.inputs[0] == out) else {
            continue;
        };
        let mut fused = conv.clone();
        fused.domain = RUNNX_DOMAIN.to_string();
        fused.op_type = "FusedConvMaxPool".to_string();
        fused.attributes.push(Attribute {
            name: "pool_shape".to_string(),
            value: AttributeValue::Ints(window.to_vec()),
            ref_attr_name: None,
        });
        fused.outputs = vec![pool.outputs[0].clone()];
        replace.insert(i, fused);
        remove[p] = true;
    }
    apply_rewrites(graph, replace, &remove)
}

/// A 2-D Conv or residual-free FusedConv with a constant f32 filter (the types whose kernels
/// pool in their own pass).
fn is_fusable_conv(graph: &Graph, node: &Node) -> bool {
    let is_conv = is_onnx_op(node, "Conv")
        || (node.domain == "com.microsoft"
            && node.op_type == "FusedConv"
            && node.inputs.get(3).is_none_or(String::is_empty));
    let filter = node.inputs.get(1).and_then(|w| graph.initializer(w));
    is_conv
        && node.outputs.len() == 1
        && filter.is_some_and(|w| w.dtype() == DataType::Float && w.shape().len() == 4)
}

/// The window of a MaxPool the fused op can take over: 2-D, strides equal to the kernel, no
/// padding or dilation, floor mode, and only the values output.
fn pool_window(node: &Node) -> Option<[i64; 2]> {
    if !is_onnx_op(node, "MaxPool")
        || node.inputs.len() != 1
        || node.outputs.iter().skip(1).any(|o| !o.is_empty())
    {
        return None;
    }
    let ints = |name: &str| match node.attribute(name).map(|a| &a.value) {
        None => Some(None),
        Some(AttributeValue::Ints(v)) => Some(Some(v.clone())),
        Some(_) => None,
    };
    let kernel: [i64; 2] = ints("kernel_shape")??.try_into().ok()?;
    let strides = ints("strides")?;
    let all = |v: Option<Vec<i64>>, value: i64| v.is_none_or(|v| v.iter().all(|&x| x == value));
    let auto_pad = match node.attribute("auto_pad").map(|a| &a.value) {
        None => true,
        Some(AttributeValue::String(s)) => matches!(&s[..], b"NOTSET" | b"VALID"),
        Some(_) => false,
    };
    let ceil_mode = match node.attribute("ceil_mode").map(|a| &a.value) {
        None => 0,
        Some(AttributeValue::Int(v)) => *v,
        Some(_) => return None,
    };
    let fits = kernel.iter().all(|&k| k >= 1)
        && strides.as_deref() == Some(&kernel[..])
        && all(ints("pads")?, 0)
        && all(ints("dilations")?, 1)
        && auto_pad
        && ceil_mode == 0;
    fits.then_some(kernel)
}

#[cfg(test)]
mod tests {
    use runnx_ir::{Dim, Model, Tensor, ValueInfo, ValueType};

    use super::super::testing::{
        assert_optimized_matches, attr, float_info, model_of, node, values,
    };
    use super::*;
    use crate::OptimizationLevel;

    fn ints(v: &[i64]) -> AttributeValue {
        AttributeValue::Ints(v.to_vec())
    }

    fn filter(shape: [usize; 4], seed: usize) -> Tensor {
        Tensor::from_vec(shape, values(shape.iter().product(), seed)).unwrap()
    }

    /// Three conv/pool pairs, one per conv algorithm: a 3-channel padded conv (direct) with
    /// Relu and a 2x2 pool of an odd-sized plane; a 16-channel conv (Winograd) with Relu and a
    /// 2x2 pool; a 32-channel conv without activation and a 3x3 pool (pooled afterwards).
    /// Then a MaxPool with an Indices output, which stays.
    fn model() -> Model {
        let pool = |k: i64| {
            vec![
                attr("kernel_shape", ints(&[k, k])),
                attr("strides", ints(&[k, k])),
            ]
        };
        let with = |attributes: Vec<Attribute>, n: Node| Node { attributes, ..n };
        let pads = vec![attr("pads", ints(&[1, 1, 1, 1]))];
        let x_dims = [
            Dim::Symbol("n".into()),
            Dim::Fixed(3),
            Dim::Fixed(27),
            Dim::Fixed(29),
        ];
        model_of(Graph {
            inputs: vec![float_info("x", Some(x_dims.to_vec()))],
            outputs: vec![
                float_info("y", None),
                ValueInfo {
                    name: "indices".into(),
                    ty: ValueType::tensor(DataType::Int64, None),
                    doc_string: String::new(),
                },
            ],
            initializers: vec![
                ("w1".into(), filter([16, 3, 3, 3], 1)),
                ("b1".into(), Tensor::from_vec([16], values(16, 2)).unwrap()),
                ("w2".into(), filter([32, 16, 3, 3], 3)),
                ("w3".into(), filter([32, 32, 3, 3], 4)),
            ],
            nodes: vec![
                with(pads.clone(), node("Conv", &["x", "w1", "b1"], "c1")),
                node("Relu", &["c1"], "r1"),
                with(pool(2), node("MaxPool", &["r1"], "p1")),
                node("Conv", &["p1", "w2"], "c2"),
                node("Relu", &["c2"], "r2"),
                with(pool(2), node("MaxPool", &["r2"], "p2")),
                with(pads, node("Conv", &["p2", "w3"], "c3")),
                with(pool(3), node("MaxPool", &["c3"], "y")),
                Node {
                    outputs: vec!["unused".into(), "indices".into()],
                    ..with(pool(1), node("MaxPool", &["y"], ""))
                },
            ],
            ..Graph::default()
        })
    }

    #[test]
    fn conv_and_pool_pairs_fuse() {
        let mut fused = model();
        super::super::optimize(&mut fused, OptimizationLevel::Extended);
        assert_eq!(fuse(&mut fused.graph), 3);
        let ops: Vec<_> = fused.graph.nodes.iter().map(|n| &n.op_type[..]).collect();
        assert_eq!(
            ops,
            [
                "FusedConvMaxPool",
                "FusedConvMaxPool",
                "FusedConvMaxPool",
                "MaxPool"
            ]
        );
        assert_eq!(fused.graph.nodes[2].outputs, ["y"]);
        // Pools with padding, overlap, dilation or a ceiling do not fuse.
        for (name, value) in [
            ("pads", ints(&[0, 0, 1, 1])),
            ("strides", ints(&[1, 1])),
            ("ceil_mode", AttributeValue::Int(1)),
            ("dilations", ints(&[2, 2])),
        ] {
            let mut model = model();
            super::super::optimize(&mut model, OptimizationLevel::Extended);
            let pool = &mut model.graph.nodes[1];
            assert_eq!(pool.op_type, "MaxPool");
            pool.attributes.retain(|a| a.name != name);
            pool.attributes.push(attr(name, value));
            assert_eq!(fuse(&mut model.graph), 2, "{name}");
        }
    }

    #[test]
    fn fused_outputs_match_the_unfused_graph() {
        let x = Tensor::from_vec([2, 3, 27, 29], values(2 * 3 * 27 * 29, 5)).unwrap();
        let fused = assert_optimized_matches(model, &x, 1e-5);
        assert_eq!(fused[0].shape(), [2, 32, 1, 2]);
    }
}
