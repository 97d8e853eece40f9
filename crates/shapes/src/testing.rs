//! Builders for the rule modules' unit tests: dimensions, value infos, nodes, graphs and models,
//! and strict inference over them.

use runnx_ir::{
    Attribute, AttributeValue, DataType, Dim, Graph, Model, Node, Tensor, ValueInfo, ValueType,
};

use crate::{infer, InferError, InferOptions, Inference};

/// A named dimension.
pub(crate) fn sym(name: &str) -> Dim {
    Dim::Symbol(name.into())
}

/// A dimension of fixed size.
pub(crate) fn fixed(n: usize) -> Dim {
    Dim::Fixed(n)
}

/// A graph input or output of type `ty`.
pub(crate) fn value_info(name: &str, ty: ValueType) -> ValueInfo {
    ValueInfo {
        name: name.into(),
        ty,
        doc_string: String::new(),
    }
}

/// A tensor value of known rank.
pub(crate) fn tensor_info(name: &str, dtype: DataType, shape: Vec<Dim>) -> ValueInfo {
    value_info(name, ValueType::tensor(dtype, Some(shape)))
}

/// A 1-D int64 constant.
pub(crate) fn int64s(values: &[i64]) -> Tensor {
    Tensor::from_vec([values.len()], values.to_vec()).unwrap()
}

/// A node of the default domain (`""` in `inputs` is a missing optional input).
pub(crate) fn node(
    op: &str,
    inputs: &[&str],
    outputs: &[&str],
    attributes: Vec<(&str, AttributeValue)>,
) -> Node {
    Node {
        op_type: op.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
        attributes: attributes
            .into_iter()
            .map(|(name, value)| Attribute {
                name: name.into(),
                value,
                ref_attr_name: None,
            })
            .collect(),
        ..Node::default()
    }
}

/// A graph of `nodes` over `inputs` and `initializers`, with `outputs` declared of unknown type.
pub(crate) fn graph(
    inputs: Vec<ValueInfo>,
    initializers: Vec<(&str, Tensor)>,
    nodes: Vec<Node>,
    outputs: &[&str],
) -> Graph {
    Graph {
        inputs,
        initializers: initializers
            .into_iter()
            .map(|(name, t)| (name.to_string(), t))
            .collect(),
        nodes,
        outputs: outputs
            .iter()
            .map(|o| value_info(o, ValueType::Unknown))
            .collect(),
        ..Graph::default()
    }
}

/// A model whose main graph is `graph`, importing `domain` at `opset`.
pub(crate) fn model_in(domain: &str, opset: i64, graph: Graph) -> Model {
    let mut model = Model {
        graph,
        ..Model::default()
    };
    model.opset_imports.insert(domain.into(), opset);
    model
}

/// A model whose main graph is `graph`, importing the default domain at `opset`.
pub(crate) fn model(opset: i64, graph: Graph) -> Model {
    model_in("", opset, graph)
}

/// Strict inference ([`InferOptions::strict`]): the first problem is an error.
pub(crate) fn try_infer_strict(model: &Model) -> Result<Inference, InferError> {
    infer(model, &InferOptions { strict: true })
}

/// Strict inference that must succeed.
pub(crate) fn infer_strict(model: &Model) -> Inference {
    let inference = try_infer_strict(model).unwrap();
    assert!(inference.problems.is_empty(), "{:?}", inference.problems);
    inference
}

/// Strict inference of `graph` at `opset` of the default domain.
pub(crate) fn infer_graph(opset: i64, graph: Graph) -> Inference {
    infer_strict(&model(opset, graph))
}

/// Infers one node (`domain`, `opset`) over float inputs of the given shapes (those named "" are
/// left out of the graph: missing optional inputs) then the constants; returns the types of its
/// `outputs` outputs, named `y0`, `y1`...
pub(crate) fn infer_node(
    domain: &str,
    opset: i64,
    op: &str,
    inputs: &[(&str, Vec<Dim>)],
    consts: &[(&str, Tensor)],
    attributes: Vec<(&str, AttributeValue)>,
    outputs: usize,
) -> Vec<ValueType> {
    let infos = inputs
        .iter()
        .filter(|(name, _)| !name.is_empty())
        .map(|(name, shape)| tensor_info(name, DataType::Float, shape.clone()))
        .collect();
    let names: Vec<&str> = inputs
        .iter()
        .map(|i| i.0)
        .chain(consts.iter().map(|c| c.0))
        .collect();
    let outs: Vec<String> = (0..outputs).map(|i| format!("y{i}")).collect();
    let out_names: Vec<&str> = outs.iter().map(String::as_str).collect();
    let mut the_node = node(op, &names, &out_names, attributes);
    the_node.domain = domain.into();
    let consts = consts.iter().map(|(n, t)| (*n, t.clone())).collect();
    let inference = infer_strict(&model_in(
        domain,
        opset,
        graph(infos, consts, vec![the_node], &[]),
    ));
    outs.iter()
        .map(|o| inference.get(o).unwrap().clone())
        .collect()
}

/// Value `name`'s element type and shape; it must be a tensor.
pub(crate) fn tensor_of(inference: &Inference, name: &str) -> (DataType, Option<Vec<Dim>>) {
    match inference.get(name) {
        Some(ValueType::Tensor(t)) => (t.dtype, t.shape.clone()),
        other => panic!("{name}: {other:?}"),
    }
}

/// Value `name`'s shape (`None`: rank unknown); it must be a tensor.
pub(crate) fn shape_of(inference: &Inference, name: &str) -> Option<Vec<Dim>> {
    tensor_of(inference, name).1
}

/// The shape of a tensor type of known rank.
pub(crate) fn known_shape(ty: &ValueType) -> Vec<Dim> {
    ty.as_tensor().unwrap().shape.clone().unwrap()
}
