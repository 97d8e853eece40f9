//! Hand-built models through single rewrites.

use std::collections::BTreeMap;
use std::sync::Arc;

use runnx_ir::{
    Attribute, AttributeValue, DataType, Dim, Graph, Model, Node, Tensor, ValueInfo, ValueType,
};
use runnx_opset::{convert_opset, OpsetError};

fn value(name: &str, shape: &[usize]) -> ValueInfo {
    let dims = shape.iter().map(|&d| Dim::Fixed(d)).collect();
    ValueInfo {
        name: name.into(),
        ty: ValueType::tensor(DataType::Float, Some(dims)),
        doc_string: String::new(),
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<(&str, AttributeValue)>) -> Node {
    Node {
        op_type: op.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
        attributes: attrs
            .into_iter()
            .map(|(n, v)| Attribute {
                name: n.into(),
                value: v,
                ref_attr_name: None,
            })
            .collect(),
        ..Node::default()
    }
}

fn model(
    opset: i64,
    nodes: Vec<Node>,
    inputs: Vec<ValueInfo>,
    inits: Vec<(&str, Tensor)>,
) -> Model {
    Model {
        ir_version: 3,
        opset_imports: BTreeMap::from([(String::new(), opset)]),
        graph: Graph {
            inputs,
            outputs: vec![value("y", &[])],
            initializers: inits.into_iter().map(|(n, t)| (n.to_string(), t)).collect(),
            nodes,
            ..Graph::default()
        },
        ..Model::default()
    }
}

fn attr<'a>(n: &'a Node, name: &str) -> Option<&'a AttributeValue> {
    n.attribute(name).map(|a| &a.value)
}

#[test]
fn reshape_shape_moves_between_attribute_and_input() {
    let m = model(
        4,
        vec![node(
            "Reshape",
            &["x"],
            &["y"],
            vec![("shape", AttributeValue::Ints(vec![2, 3]))],
        )],
        vec![value("x", &[6])],
        vec![],
    );
    let up = convert_opset(&m, 13).unwrap();
    let n = &up.graph.nodes[0];
    assert_eq!(n.inputs, ["x", "y_shape"]);
    assert!(n.attribute("shape").is_none());
    assert_eq!(
        up.graph
            .initializer("y_shape")
            .unwrap()
            .to_i64_vec()
            .unwrap(),
        [2, 3]
    );
    // IR rises to what opset 13 needs, where initializers are no longer listed as inputs.
    assert_eq!(up.ir_version, 7);
    assert_eq!(up.graph.inputs.len(), 1);
    let legacy = convert_opset(&m, 4).unwrap();
    assert_eq!(legacy.ir_version, 3);
    assert_eq!(up.opset_imports[""], 13);
    let down = convert_opset(&up, 4).unwrap();
    assert_eq!(
        attr(&down.graph.nodes[0], "shape"),
        Some(&AttributeValue::Ints(vec![2, 3]))
    );
    assert_eq!(down.graph.nodes[0].inputs, ["x"]);
}

#[test]
fn fresh_names_do_not_collide() {
    let m = model(
        12,
        vec![node(
            "Unsqueeze",
            &["y_axes"],
            &["y"],
            vec![("axes", AttributeValue::Ints(vec![0]))],
        )],
        vec![value("y_axes", &[2])],
        vec![],
    );
    let up = convert_opset(&m, 13).unwrap();
    assert_eq!(up.graph.nodes[0].inputs, ["y_axes", "y_axes_1"]);
}

#[test]
fn computed_axes_cannot_go_down_to_an_attribute() {
    let m = model(
        13,
        vec![node("Squeeze", &["x", "axes"], &["y"], vec![])],
        vec![value("x", &[1, 2]), value("axes", &[1])],
        vec![],
    );
    let err = convert_opset(&m, 12).unwrap_err();
    assert!(matches!(err, OpsetError::Unsupported { .. }), "{err}");
    assert!(
        err.to_string().contains("Squeeze") && err.to_string().contains("'axes'"),
        "{err}"
    );
}

#[test]
fn softmax_on_an_inner_axis_is_flattened_going_up_and_transposed_going_down() {
    let m = model(
        12,
        vec![node("Softmax", &["x"], &["y"], vec![])],
        vec![value("x", &[2, 3, 4])],
        vec![],
    );
    let up = convert_opset(&m, 13).unwrap();
    let ops: Vec<&str> = up.graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["Flatten", "Softmax", "Shape", "Reshape"]);
    assert_eq!(
        attr(&up.graph.nodes[1], "axis"),
        Some(&AttributeValue::Int(1))
    );
    assert_eq!(up.graph.nodes[3].outputs, ["y"]);

    let m = model(
        13,
        vec![node(
            "LogSoftmax",
            &["x"],
            &["y"],
            vec![("axis", AttributeValue::Int(1))],
        )],
        vec![value("x", &[2, 3, 4])],
        vec![],
    );
    let down = convert_opset(&m, 12).unwrap();
    let ops: Vec<&str> = down
        .graph
        .nodes
        .iter()
        .map(|n| n.op_type.as_str())
        .collect();
    assert_eq!(ops, ["Transpose", "LogSoftmax", "Transpose"]);
    assert_eq!(
        attr(&down.graph.nodes[0], "perm"),
        Some(&AttributeValue::Ints(vec![0, 2, 1]))
    );

    let last = model(
        12,
        vec![node(
            "Hardmax",
            &["x"],
            &["y"],
            vec![("axis", AttributeValue::Int(2))],
        )],
        vec![value("x", &[2, 3, 4])],
        vec![],
    );
    assert_eq!(convert_opset(&last, 13).unwrap().graph.nodes.len(), 1);
}

#[test]
fn upsample_becomes_resize_with_asymmetric_coordinates() {
    let scales = AttributeValue::Floats(vec![1.0, 1.0, 2.0, 2.0]);
    let m = model(
        8,
        vec![node("Upsample", &["x"], &["y"], vec![("scales", scales)])],
        vec![value("x", &[1, 1, 2, 2])],
        vec![],
    );
    let up = convert_opset(&m, 13).unwrap();
    let n = &up.graph.nodes[0];
    assert_eq!(n.op_type, "Resize");
    assert_eq!(n.inputs.len(), 3);
    assert_eq!(
        attr(n, "coordinate_transformation_mode"),
        Some(&AttributeValue::String(b"asymmetric".to_vec()))
    );
    assert_eq!(
        attr(n, "nearest_mode"),
        Some(&AttributeValue::String(b"floor".to_vec()))
    );
    let down = convert_opset(&up, 8).unwrap();
    assert_eq!(down.graph.nodes[0].op_type, "Upsample");
    assert!(attr(&down.graph.nodes[0], "scales").is_some());
}

#[test]
fn slice_steps_other_than_one_are_refused_going_down() {
    let ints = |v: Vec<i64>| Tensor::from_vec([v.len()], v).unwrap();
    let inits = vec![
        ("s", ints(vec![0])),
        ("e", ints(vec![2])),
        ("st", ints(vec![2])),
    ];
    let m = model(
        13,
        vec![node("Slice", &["x", "s", "e", "", "st"], &["y"], vec![])],
        vec![value("x", &[4])],
        inits,
    );
    assert!(convert_opset(&m, 9).is_err());
    let m = model(
        13,
        vec![node("Slice", &["x", "s", "e"], &["y"], vec![])],
        vec![value("x", &[4])],
        vec![("s", ints(vec![0])), ("e", ints(vec![2]))],
    );
    let n = &convert_opset(&m, 9).unwrap().graph.nodes[0];
    assert_eq!(
        (attr(n, "starts"), attr(n, "ends")),
        (
            Some(&AttributeValue::Ints(vec![0])),
            Some(&AttributeValue::Ints(vec![2]))
        )
    );
    assert_eq!(n.inputs, ["x"]);
}

#[test]
fn ops_missing_at_the_target_are_listed() {
    let m = model(
        13,
        vec![
            node("Where", &["c", "a", "b"], &["y"], vec![]),
            node("Range", &["a", "b", "c"], &["z"], vec![]),
        ],
        vec![],
        vec![],
    );
    match convert_opset(&m, 8).unwrap_err() {
        OpsetError::MissingOps { ops, .. } => assert_eq!(ops, ["Range"]),
        e => panic!("{e}"),
    }
}

#[test]
fn subgraphs_and_unknown_domains_are_handled() {
    let body = Graph {
        nodes: vec![node(
            "Squeeze",
            &["x"],
            &["t"],
            vec![("axes", AttributeValue::Ints(vec![0]))],
        )],
        outputs: vec![value("t", &[])],
        ..Graph::default()
    };
    let mut custom = node(
        "Custom",
        &["x"],
        &["z"],
        vec![("axes", AttributeValue::Ints(vec![0]))],
    );
    custom.domain = "com.example".into();
    let iff = node(
        "If",
        &["c"],
        &["y"],
        vec![
            ("then_branch", AttributeValue::Graph(Arc::new(body.clone()))),
            ("else_branch", AttributeValue::Graph(Arc::new(body))),
        ],
    );
    let up = convert_opset(
        &model(
            11,
            vec![iff, custom.clone()],
            vec![value("x", &[1, 2])],
            vec![],
        ),
        13,
    )
    .unwrap();
    let Some(AttributeValue::Graph(then)) = attr(&up.graph.nodes[0], "then_branch") else {
        panic!()
    };
    assert_eq!(then.nodes[0].inputs, ["x", "t_axes"]);
    assert_eq!(then.initializers.len(), 1);
    assert_eq!(up.graph.nodes[1], custom);
}

#[test]
fn types_an_older_version_lacks_are_refused() {
    let x = ValueInfo {
        name: "x".into(),
        ty: ValueType::tensor(DataType::Int32, Some(vec![Dim::Fixed(2)])),
        doc_string: String::new(),
    };
    let m = model(
        13,
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![x],
        vec![],
    );
    let err = convert_opset(&m, 13 - 7).unwrap_err();
    assert!(err.to_string().contains("int32"), "{err}");
    assert!(convert_opset(&m, 14).is_ok());
}
