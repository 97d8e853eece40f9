//! Building the ONNX graph: nodes, initializers, unique names, and the layout of each Keras
//! tensor.
//!
//! Keras tensors are channels-last; ONNX convolutions and pools are channels-first. Instead of
//! wrapping every convolution in a pair of Transposes, each Keras tensor remembers how its ONNX
//! value is laid out (`Tensor::perm`): logical (Keras) axis `i` is physical axis `perm[i]`. A
//! convolution leaves its output channels-first and says so; the next layer asks for the order it
//! needs, and a Transpose is emitted only when the orders differ (and only once per order).
//! Elementwise layers, pooling, padding and concatenation work in whatever layout they get.

use std::collections::{HashMap, HashSet};

use runnx_ir::Tensor as IrTensor;
use runnx_onnx::proto::{self, attribute_proto::AttributeType, AttributeProto, NodeProto};

use crate::array::Array;

pub const FLOAT: i32 = 1;
pub const INT64: i32 = 7;

/// A Keras tensor during conversion.
#[derive(Clone, Debug)]
pub struct Tensor {
    /// The ONNX value holding it.
    pub value: String,
    /// Logical axis `i` is axis `perm[i]` of the ONNX value.
    pub perm: Vec<usize>,
    /// Keras shape, batch first; `None` is unknown (always for the batch).
    pub shape: Vec<Option<usize>>,
    /// ONNX element type of the value.
    pub dtype: i32,
}

impl Tensor {
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// This tensor with another ONNX value of the same layout, shape and type.
    pub fn with_value(&self, value: String) -> Tensor {
        Tensor {
            value,
            ..self.clone()
        }
    }

    /// Normalises a Keras axis (may be negative) for this tensor.
    pub fn axis(&self, axis: i64) -> Option<usize> {
        let r = self.rank() as i64;
        let a = if axis < 0 { axis + r } else { axis };
        (0..r).contains(&a).then_some(a as usize)
    }
}

pub fn identity(rank: usize) -> Vec<usize> {
    (0..rank).collect()
}

pub fn is_identity(perm: &[usize]) -> bool {
    perm.iter().enumerate().all(|(i, &p)| i == p)
}

pub fn inverse(perm: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    inv
}

/// The logical axes of a channels-last tensor in channels-first order: `[0, r-1, 1, .., r-2]`.
pub fn channels_first_order(rank: usize) -> Vec<usize> {
    let mut v = vec![0, rank - 1];
    v.extend(1..rank - 1);
    v
}

/// The `perm` of a channels-last Keras tensor stored channels-first: `[0, 2, .., r-1, 1]`.
pub fn channels_first_perm(rank: usize) -> Vec<usize> {
    inverse(&channels_first_order(rank))
}

pub struct Builder {
    pub opset: i64,
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<proto::TensorProto>,
    used: HashSet<String>,
    transposes: HashMap<(String, Vec<usize>), String>,
    constants: HashMap<String, String>,
}

pub fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

pub fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

pub fn attr_s(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(v.as_bytes().to_vec().into()),
        ..Default::default()
    }
}

pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub fn attr_floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Floats as i32),
        floats: v.to_vec(),
        ..Default::default()
    }
}

pub fn attr_strs(name: &str, v: &[&str]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Strings as i32),
        strings: v.iter().map(|s| s.as_bytes().to_vec().into()).collect(),
        ..Default::default()
    }
}

impl Builder {
    pub fn new(opset: i64) -> Builder {
        Builder {
            opset,
            nodes: Vec::new(),
            initializers: Vec::new(),
            used: HashSet::new(),
            transposes: HashMap::new(),
            constants: HashMap::new(),
        }
    }

    /// Reserves a name (a graph input's) so nothing else takes it.
    pub fn reserve(&mut self, name: &str) -> bool {
        self.used.insert(name.to_string())
    }

    /// `base`, or `base_1`, `base_2`, ... whichever is free.
    pub fn unique(&mut self, base: &str) -> String {
        if self.used.insert(base.to_string()) {
            return base.to_string();
        }
        (1..)
            .map(|i| format!("{base}_{i}"))
            .find(|n| self.used.insert(n.clone()))
            .expect("a free name")
    }

    /// Adds a node with `outputs` outputs named after `base`; returns their names.
    pub fn node_n(
        &mut self,
        op: &str,
        base: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        outputs: usize,
    ) -> Vec<String> {
        let outs: Vec<String> = (0..outputs)
            .map(|i| {
                if i == 0 {
                    self.unique(base)
                } else {
                    self.unique(&format!("{base}:{i}"))
                }
            })
            .collect();
        let name = outs[0].clone();
        self.nodes.push(NodeProto {
            name: Some(name),
            op_type: Some(op.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outs.clone(),
            attribute: attrs,
            ..Default::default()
        });
        outs
    }

    /// Adds a one-output node; its output is named `base` (made unique).
    pub fn op(
        &mut self,
        op: &str,
        base: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        self.node_n(op, base, inputs, attrs, 1).remove(0)
    }

    /// Adds a float initializer.
    pub fn weight(&mut self, base: &str, a: Array) -> String {
        let name = self.unique(base);
        let t = IrTensor::from_vec(a.shape.clone(), a.data).expect("shape matches data");
        self.initializers
            .push(runnx_ir::convert::tensor_to_proto(&name, &t));
        name
    }

    /// A float scalar constant, shared by value.
    pub fn scalar(&mut self, v: f32) -> String {
        let key = format!("f32:{}", v.to_bits());
        if let Some(n) = self.constants.get(&key) {
            return n.clone();
        }
        let name = self.weight(&format!("const_{}", fmt_f(v)), Array::scalar(v));
        self.constants.insert(key, name.clone());
        name
    }

    /// An int64 vector constant, shared by value.
    pub fn ints(&mut self, v: &[i64]) -> String {
        let key = format!("i64:{v:?}");
        if let Some(n) = self.constants.get(&key) {
            return n.clone();
        }
        let base = format!(
            "const_i64_{}",
            v.iter()
                .map(|x| x.to_string().replace('-', "m"))
                .collect::<Vec<_>>()
                .join("_")
        );
        let base = if base.len() > 48 {
            "const_i64".to_string()
        } else {
            base
        };
        let name = self.unique(&base);
        let t = IrTensor::from_vec(vec![v.len()], v.to_vec()).expect("vector");
        self.initializers
            .push(runnx_ir::convert::tensor_to_proto(&name, &t));
        self.constants.insert(key, name.clone());
        name
    }

    /// `x` transposed by `perm` (ONNX semantics), emitted once per (value, perm).
    pub fn transpose(&mut self, x: &str, perm: &[usize]) -> String {
        if is_identity(perm) {
            return x.to_string();
        }
        let key = (x.to_string(), perm.to_vec());
        if let Some(v) = self.transposes.get(&key) {
            return v.clone();
        }
        let p: Vec<i64> = perm.iter().map(|&p| p as i64).collect();
        let out = self.op(
            "Transpose",
            &format!("{x}/transpose"),
            &[x],
            vec![attr_ints("perm", &p)],
        );
        self.transposes.insert(key, out.clone());
        out
    }

    /// The ONNX value of `t` with its axes in the logical order `order` (`order[j]` is the
    /// logical axis at physical position `j`).
    pub fn in_order(&mut self, t: &Tensor, order: &[usize]) -> String {
        let p: Vec<usize> = order.iter().map(|&o| t.perm[o]).collect();
        self.transpose(&t.value, &p)
    }

    /// The ONNX value of `t` in Keras's layout.
    pub fn logical(&mut self, t: &Tensor) -> String {
        self.in_order(t, &identity(t.rank()))
    }

    /// `t` in Keras's layout, as a tensor.
    pub fn logical_tensor(&mut self, t: &Tensor) -> Tensor {
        let value = self.logical(t);
        Tensor {
            value,
            perm: identity(t.rank()),
            ..t.clone()
        }
    }

    /// The ONNX value of `t` laid out as a tensor with permutation `perm`.
    pub fn as_perm(&mut self, t: &Tensor, perm: &[usize]) -> String {
        self.in_order(t, &inverse(perm))
    }

    /// `ReduceX` over physical `axes`; axes are an attribute before opset 18, an input from 18.
    pub fn reduce(
        &mut self,
        op: &str,
        base: &str,
        x: &str,
        axes: &[usize],
        keepdims: bool,
    ) -> String {
        let axes: Vec<i64> = axes.iter().map(|&a| a as i64).collect();
        let keep = attr_i("keepdims", keepdims as i64);
        let input_axes = self.opset >= 18 || op == "ReduceSum";
        if input_axes {
            let a = self.ints(&axes);
            self.op(op, base, &[x, &a], vec![keep])
        } else {
            self.op(op, base, &[x], vec![attr_ints("axes", &axes), keep])
        }
    }

    pub fn unsqueeze(&mut self, base: &str, x: &str, axes: &[i64]) -> String {
        let a = self.ints(axes);
        self.op("Unsqueeze", base, &[x, &a], vec![])
    }

    pub fn squeeze(&mut self, base: &str, x: &str, axes: &[i64]) -> String {
        let a = self.ints(axes);
        self.op("Squeeze", base, &[x, &a], vec![])
    }

    pub fn reshape(&mut self, base: &str, x: &str, shape: &[i64]) -> String {
        let s = self.ints(shape);
        self.op("Reshape", base, &[x, &s], vec![])
    }

    /// Renames a value everywhere it appears (to give graph outputs Keras's names).
    pub fn rename(&mut self, from: &str, to: &str) {
        for n in &mut self.nodes {
            for v in n.input.iter_mut().chain(n.output.iter_mut()) {
                if v == from {
                    *v = to.to_string();
                }
            }
        }
        self.used.insert(to.to_string());
    }

    /// Whether a node produces `value`.
    pub fn is_node_output(&self, value: &str) -> bool {
        self.nodes
            .iter()
            .any(|n| n.output.iter().any(|o| o == value))
    }
}

fn fmt_f(v: f32) -> String {
    format!("{v}").replace('-', "m").replace('.', "p")
}
