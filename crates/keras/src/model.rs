//! Walking a Keras model config: Sequential and Functional models, nested models, shared layers,
//! graph inputs and outputs.

use std::collections::HashMap;

use runnx_onnx::proto::{
    self, tensor_shape_proto, type_proto, ModelProto, OperatorSetIdProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};
use serde_json::Value as Json;

use crate::archive::{to_snake_case, KerasFile, KerasMajor, WeightPath};
use crate::array::Array;
use crate::builder::{channels_first_perm, identity, Builder, Tensor, FLOAT};
use crate::{layers, KerasError, Options};

/// Conversion state shared by every layer.
pub struct Cx<'f> {
    pub b: Builder,
    pub file: &'f KerasFile,
    pub major: KerasMajor,
    /// Initializers already made for a layer's weight, by key (shared layers reuse them).
    weight_names: HashMap<String, String>,
}

/// One layer of a model config, with what is needed to convert a call of it.
pub struct Layer<'j> {
    pub class: String,
    pub name: String,
    pub config: &'j Json,
    pub path: WeightPath,
    /// Prefix of ONNX names made for this layer (the nested model's name, if any).
    pub prefix: String,
}

impl Layer<'_> {
    pub fn err(&self, message: impl Into<String>) -> KerasError {
        KerasError::Layer {
            layer: self.name.clone(),
            class: self.class.clone(),
            message: message.into(),
        }
    }

    /// ONNX name base for something this layer makes.
    pub fn base(&self, what: &str) -> String {
        if what.is_empty() {
            format!("{}{}", self.prefix, self.name)
        } else {
            format!("{}{}/{what}", self.prefix, self.name)
        }
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        self.config.get(key).filter(|v| !v.is_null())
    }

    pub fn bool(&self, key: &str, default: bool) -> bool {
        self.get(key).and_then(Json::as_bool).unwrap_or(default)
    }

    pub fn f32(&self, key: &str, default: f32) -> f32 {
        self.get(key)
            .and_then(Json::as_f64)
            .map(|v| v as f32)
            .unwrap_or(default)
    }

    pub fn i64(&self, key: &str) -> Result<i64, KerasError> {
        self.get(key)
            .and_then(Json::as_i64)
            .ok_or_else(|| self.err(format!("config has no integer '{key}'")))
    }

    pub fn str<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).and_then(Json::as_str).unwrap_or(default)
    }

    /// An int or a list of ints, as `n` values (a single int is repeated).
    pub fn ints(&self, key: &str, n: usize) -> Result<Vec<usize>, KerasError> {
        let v = self
            .get(key)
            .ok_or_else(|| self.err(format!("config has no '{key}'")))?;
        ints_of(v, n).ok_or_else(|| self.err(format!("'{key}' = {v} is not {n} integers")))
    }

    /// Rejects a setting whose value is not the one the converter implements.
    pub fn require(&self, key: &str, ok: impl Fn(&Json) -> bool) -> Result<(), KerasError> {
        match self.config.get(key) {
            Some(v) if !v.is_null() && !ok(v) => {
                Err(self.err(format!("{key}={v} is not supported")))
            }
            _ => Ok(()),
        }
    }
}

pub fn ints_of(v: &Json, n: usize) -> Option<Vec<usize>> {
    match v {
        Json::Number(x) => Some(vec![x.as_u64()? as usize; n]),
        Json::Array(a) => {
            let v: Option<Vec<usize>> = a.iter().map(|x| x.as_u64().map(|x| x as usize)).collect();
            let v = v?;
            (v.len() == n).then_some(v)
        }
        _ => None,
    }
}

impl<'f> Cx<'f> {
    /// The weights of `layer` in Keras's order, checked to be `expected` many (several counts may
    /// be valid, e.g. with or without bias).
    pub fn weights(
        &mut self,
        layer: &Layer,
        v3_children: &[&str],
        expected: &[usize],
    ) -> Result<Vec<Array>, KerasError> {
        let w = self
            .file
            .weights
            .layer_weights(&layer.path, v3_children)
            .map_err(|e| layer.err(format!("reading weights: {e}")))?;
        if !expected.contains(&w.len()) {
            return Err(layer.err(format!(
                "found {} weight arrays, expected {}",
                w.len(),
                expected
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
        Ok(w)
    }

    /// An initializer made once per (layer, key) however often the layer is called.
    pub fn init(&mut self, layer: &Layer, key: &str, make: impl FnOnce() -> Array) -> String {
        let full = layer.base(key);
        if let Some(n) = self.weight_names.get(&full) {
            return n.clone();
        }
        let name = self.b.weight(&full, make());
        self.weight_names.insert(full, name.clone());
        name
    }
}

/// A reference to a tensor in a config: (layer name, node index, tensor index).
type Ref = (String, usize, usize);

/// One call of a layer: its positional tensor arguments and keyword arguments.
pub struct Call {
    pub args: Vec<Ref>,
    pub kwargs: Json,
}

/// Parses a `[name, node, tensor]` list or a Keras 3 `__keras_tensor__` object.
fn as_ref(v: &Json) -> Option<Ref> {
    if let Some(h) = v
        .get("config")
        .and_then(|c| c.get("keras_history"))
        .filter(|_| v.get("class_name").and_then(Json::as_str) == Some("__keras_tensor__"))
    {
        return as_ref(h);
    }
    let a = v.as_array()?;
    if a.len() < 3 {
        return None;
    }
    Some((
        a[0].as_str()?.to_string(),
        a[1].as_u64()? as usize,
        a[2].as_u64()? as usize,
    ))
}

fn collect_refs(v: &Json, out: &mut Vec<Ref>) {
    if let Some(r) = as_ref(v) {
        out.push(r);
    } else if let Some(a) = v.as_array() {
        for x in a {
            collect_refs(x, out);
        }
    }
}

/// The calls recorded in a layer's `inbound_nodes`, Keras 3 or Keras 2 style.
fn parse_calls(layer: &Json) -> Result<Vec<Call>, KerasError> {
    let mut calls = Vec::new();
    let Some(nodes) = layer.get("inbound_nodes").and_then(Json::as_array) else {
        return Ok(calls);
    };
    for node in nodes {
        if node.get("args").is_some() {
            let mut args = Vec::new();
            collect_refs(&node["args"], &mut args);
            calls.push(Call {
                args,
                kwargs: node.get("kwargs").cloned().unwrap_or(Json::Null),
            });
        } else if let Some(entries) = node.as_array() {
            // Keras 2: [[name, node, tensor, kwargs], ...]
            let mut args = Vec::new();
            let mut kwargs = Json::Null;
            for e in entries {
                let r = as_ref(e).ok_or_else(|| {
                    KerasError::Config(format!("unreadable inbound node entry {e}"))
                })?;
                args.push(r);
                if let Some(k) = e.get(3).filter(|k| k.is_object()) {
                    if kwargs.is_null() {
                        kwargs = k.clone();
                    }
                }
            }
            calls.push(Call { args, kwargs });
        } else {
            return Err(KerasError::Config(format!(
                "unreadable inbound node {node}"
            )));
        }
    }
    Ok(calls)
}

/// Where a model's layers find their weights and name their ONNX values.
#[derive(Clone, Default)]
struct Scope {
    legacy: Vec<String>,
    v3: String,
    prefix: String,
}

/// The `.keras` group names of a list of layers: snake-cased class names made unique.
fn v3_names(layers: &[&Json]) -> Vec<String> {
    let mut used: HashMap<String, usize> = HashMap::new();
    layers
        .iter()
        .map(|l| {
            let base = to_snake_case(l["class_name"].as_str().unwrap_or(""));
            match used.get_mut(&base) {
                Some(n) => {
                    *n += 1;
                    format!("{base}_{n}")
                }
                None => {
                    used.insert(base.clone(), 0);
                    base
                }
            }
        })
        .collect()
}

fn layer_name(l: &Json) -> String {
    l["config"]["name"]
        .as_str()
        .or_else(|| l["name"].as_str())
        .unwrap_or("")
        .to_string()
}

fn is_model_class(class: &str) -> bool {
    matches!(class, "Sequential" | "Functional" | "Model")
}

/// Converts a call of a (possibly nested) model; `inputs` are `None` for the top-level model,
/// whose InputLayers become graph inputs.
fn call_model(
    cx: &mut Cx,
    model: &Json,
    scope: &Scope,
    inputs: Option<Vec<Tensor>>,
    graph_inputs: &mut Vec<(String, Tensor)>,
    options: &Options,
) -> Result<Vec<(String, Tensor)>, KerasError> {
    let class = model["class_name"].as_str().unwrap_or("");
    let config = &model["config"];
    // Keras 1/2.0 Sequential configs are a bare list of layers.
    let layers: Vec<&Json> = match config
        .get("layers")
        .or(Some(config))
        .and_then(Json::as_array)
    {
        Some(l) => l.iter().collect(),
        None => return Err(KerasError::Config(format!("{class} model has no layers"))),
    };
    match class {
        "Sequential" => call_sequential(cx, config, &layers, scope, inputs, graph_inputs, options),
        "Functional" | "Model" => {
            call_functional(cx, config, &layers, scope, inputs, graph_inputs, options)
        }
        other => Err(KerasError::Config(format!(
            "the top-level object is a {other}, not a Sequential or Functional model"
        ))),
    }
}

fn onnx_dtype(name: &str) -> Option<i32> {
    Some(match name {
        "float32" => FLOAT,
        "float64" => 11,
        "float16" => 10,
        "int32" => 6,
        "int64" => 7,
        "int8" => 3,
        "uint8" => 2,
        "int16" => 5,
        "bool" => 9,
        _ => return None,
    })
}

/// Declares a graph input for an InputLayer config (or a first layer's `batch_input_shape`).
fn graph_input(
    cx: &mut Cx,
    name: &str,
    config: &Json,
    graph_inputs: &mut Vec<(String, Tensor)>,
    options: &Options,
) -> Result<Tensor, KerasError> {
    let shape = config
        .get("batch_shape")
        .or_else(|| config.get("batch_input_shape"))
        .and_then(Json::as_array)
        .ok_or_else(|| KerasError::Config(format!("input '{name}' has no batch_shape")))?;
    let mut shape: Vec<Option<usize>> = shape
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize))
        .collect();
    if let Some(first) = shape.first_mut() {
        *first = None;
    }
    let dtype_name = config
        .get("dtype")
        .and_then(|d| d.as_str().or_else(|| d["config"]["name"].as_str()))
        .unwrap_or("float32");
    let dtype = onnx_dtype(dtype_name).ok_or_else(|| {
        KerasError::Config(format!(
            "input '{name}': dtype {dtype_name} is not supported"
        ))
    })?;
    if config.get("sparse").and_then(Json::as_bool) == Some(true)
        || config.get("ragged").and_then(Json::as_bool) == Some(true)
    {
        return Err(KerasError::Config(format!(
            "input '{name}': sparse and ragged inputs are not supported"
        )));
    }
    let rank = shape.len();
    let perm = if options.inputs_as_nchw.iter().any(|n| n == name) {
        if rank < 3 {
            return Err(KerasError::InputsAsNchw {
                name: name.to_string(),
                message: format!("the input has rank {rank}; channels-first needs rank 3 or more"),
            });
        }
        channels_first_perm(rank)
    } else {
        identity(rank)
    };
    if !cx.b.reserve(name) {
        return Err(KerasError::Config(format!("two inputs are named '{name}'")));
    }
    let t = Tensor {
        value: name.to_string(),
        perm,
        shape,
        dtype,
    };
    graph_inputs.push((name.to_string(), t.clone()));
    Ok(t)
}

#[allow(clippy::too_many_arguments)]
fn call_sequential(
    cx: &mut Cx,
    config: &Json,
    layers: &[&Json],
    scope: &Scope,
    inputs: Option<Vec<Tensor>>,
    graph_inputs: &mut Vec<(String, Tensor)>,
    options: &Options,
) -> Result<Vec<(String, Tensor)>, KerasError> {
    let (input_layer, body): (Option<&Json>, Vec<&Json>) =
        match layers.first().map(|l| l["class_name"].as_str()) {
            Some(Some("InputLayer")) => (Some(layers[0]), layers[1..].to_vec()),
            _ => (None, layers.to_vec()),
        };
    let mut x = match inputs {
        Some(mut v) if v.len() == 1 => v.remove(0),
        Some(v) => {
            return Err(KerasError::Config(format!(
                "a Sequential model called with {} inputs",
                v.len()
            )))
        }
        None => match input_layer {
            Some(l) => graph_input(cx, &layer_name(l), &l["config"], graph_inputs, options)?,
            None => {
                // Keras 2 without an InputLayer: the first layer carries the input shape.
                let first = body
                    .first()
                    .ok_or_else(|| KerasError::Config("an empty Sequential model".into()))?;
                let mut c = first["config"].clone();
                if c.get("batch_input_shape").is_none() {
                    if let Some(s) = config.get("build_input_shape") {
                        c["batch_input_shape"] = s.clone();
                    }
                }
                let name = format!("{}_input", layer_name(first));
                graph_input(cx, &name, &c, graph_inputs, options)?
            }
        },
    };
    let names = v3_names(&body);
    let mut last = String::new();
    for (l, v3) in body.iter().zip(names) {
        let outs = call_layer(
            cx,
            l,
            &v3,
            scope,
            vec![x],
            &Kwargs::default(),
            graph_inputs,
            options,
        )?;
        last = layer_name(l);
        x = outs
            .into_iter()
            .next()
            .ok_or_else(|| KerasError::Config(format!("layer '{last}' has no output")))?;
    }
    Ok(vec![(last, x)])
}

#[allow(clippy::too_many_arguments)]
fn call_functional(
    cx: &mut Cx,
    config: &Json,
    layers: &[&Json],
    scope: &Scope,
    inputs: Option<Vec<Tensor>>,
    graph_inputs: &mut Vec<(String, Tensor)>,
    options: &Options,
) -> Result<Vec<(String, Tensor)>, KerasError> {
    let refs = |key: &str| -> Result<Vec<Ref>, KerasError> {
        let v = config
            .get(key)
            .ok_or_else(|| KerasError::Config(format!("a Functional model without {key}")))?;
        // Keras 3 writes a single input as [name, 0, 0] rather than [[name, 0, 0]].
        if let Some(r) = as_ref(v) {
            return Ok(vec![r]);
        }
        let mut out = Vec::new();
        collect_refs(v, &mut out);
        Ok(out)
    };
    let input_refs = refs("input_layers")?;
    let output_refs = refs("output_layers")?;
    let by_name: HashMap<String, &Json> = layers.iter().map(|l| (layer_name(l), *l)).collect();
    let mut values: HashMap<Ref, Tensor> = HashMap::new();
    match inputs {
        Some(given) => {
            if given.len() != input_refs.len() {
                return Err(KerasError::Config(format!(
                    "a model with {} inputs called with {}",
                    input_refs.len(),
                    given.len()
                )));
            }
            for (r, t) in input_refs.iter().zip(given) {
                values.insert(r.clone(), t);
            }
        }
        None => {
            for r in &input_refs {
                let l = by_name.get(&r.0).ok_or_else(|| {
                    KerasError::Config(format!("input layer '{}' is not in the model", r.0))
                })?;
                let t = graph_input(cx, &r.0, &l["config"], graph_inputs, options)?;
                values.insert(r.clone(), t);
            }
        }
    }
    let v3 = v3_names(layers);
    // Every (layer, node) still to convert; a node runs once all its inputs exist.
    let mut pending: Vec<(usize, usize, Call)> = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        if l["class_name"].as_str() == Some("InputLayer") {
            continue;
        }
        for (n, call) in parse_calls(l)?.into_iter().enumerate() {
            pending.push((i, n, call));
        }
    }
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for (i, n, call) in pending {
            let kw_refs = {
                let mut v = Vec::new();
                collect_kwarg_refs(&call.kwargs, &mut v);
                v
            };
            if !call
                .args
                .iter()
                .chain(&kw_refs)
                .all(|r| values.contains_key(r))
            {
                rest.push((i, n, call));
                continue;
            }
            let ins: Vec<Tensor> = call.args.iter().map(|r| values[r].clone()).collect();
            let kwargs = Kwargs::resolve(&call.kwargs, &values);
            let outs = call_layer(
                cx,
                layers[i],
                &v3[i],
                scope,
                ins,
                &kwargs,
                graph_inputs,
                options,
            )?;
            let name = layer_name(layers[i]);
            for (t, out) in outs.into_iter().enumerate() {
                values.insert((name.clone(), n, t), out);
            }
        }
        if rest.len() == before {
            let (i, _, call) = &rest[0];
            let missing: Vec<String> = call
                .args
                .iter()
                .filter(|r| !values.contains_key(*r))
                .map(|r| format!("{}[{}][{}]", r.0, r.1, r.2))
                .collect();
            return Err(KerasError::Config(format!(
                "layer '{}' needs {} which no layer produces",
                layer_name(layers[*i]),
                missing.join(", ")
            )));
        }
        pending = rest;
    }
    output_refs
        .iter()
        .map(|r| {
            let t = values.get(r).cloned().ok_or_else(|| {
                KerasError::Config(format!(
                    "output {}[{}][{}] is never computed",
                    r.0, r.1, r.2
                ))
            })?;
            let name = if r.2 == 0 {
                r.0.clone()
            } else {
                format!("{}_{}", r.0, r.2)
            };
            Ok((name, t))
        })
        .collect()
}

/// Tensor references inside keyword arguments (attention's `key`, a mask, ...).
fn collect_kwarg_refs(kwargs: &Json, out: &mut Vec<Ref>) {
    if let Some(o) = kwargs.as_object() {
        for v in o.values() {
            if v.get("class_name").and_then(Json::as_str) == Some("__keras_tensor__")
                || (v
                    .as_array()
                    .is_some_and(|a| a.len() >= 3 && a[0].is_string()))
            {
                if let Some(r) = as_ref(v) {
                    out.push(r);
                }
            }
        }
    }
}

/// A call's keyword arguments, with the tensors among them resolved.
#[derive(Default)]
pub struct Kwargs {
    pub config: Json,
    pub tensors: HashMap<String, Tensor>,
}

impl Kwargs {
    fn resolve(kwargs: &Json, values: &HashMap<Ref, Tensor>) -> Kwargs {
        let mut tensors = HashMap::new();
        if let Some(o) = kwargs.as_object() {
            for (k, v) in o {
                let mut refs = Vec::new();
                collect_kwarg_refs(&serde_json::json!({ k: v }), &mut refs);
                if let Some(t) = refs.first().and_then(|r| values.get(r)) {
                    tensors.insert(k.clone(), t.clone());
                }
            }
        }
        Kwargs {
            config: kwargs.clone(),
            tensors,
        }
    }

    /// A keyword argument that is not a tensor, unless null.
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.config.get(key).filter(|v| !v.is_null())
    }
}

#[allow(clippy::too_many_arguments)]
fn call_layer(
    cx: &mut Cx,
    layer: &Json,
    v3_name: &str,
    scope: &Scope,
    inputs: Vec<Tensor>,
    kwargs: &Kwargs,
    graph_inputs: &mut Vec<(String, Tensor)>,
    options: &Options,
) -> Result<Vec<Tensor>, KerasError> {
    let class = layer["class_name"].as_str().unwrap_or("").to_string();
    let name = layer_name(layer);
    let v3 = if scope.v3.is_empty() {
        format!("layers/{v3_name}")
    } else {
        format!("{}/layers/{v3_name}", scope.v3)
    };
    let mut legacy = scope.legacy.clone();
    legacy.push(name.clone());
    if is_model_class(&class) {
        let inner = Scope {
            legacy,
            v3,
            prefix: format!("{}{}/", scope.prefix, name),
        };
        let outs = call_model(cx, layer, &inner, Some(inputs), graph_inputs, options)?;
        return Ok(outs.into_iter().map(|(_, t)| t).collect());
    }
    let l = Layer {
        class,
        name,
        config: &layer["config"],
        path: WeightPath { legacy, v3 },
        prefix: scope.prefix.clone(),
    };
    layers::convert_layer(cx, &l, inputs, kwargs)
}

fn value_info(name: &str, t: &Tensor, shape_order: &[usize]) -> ValueInfoProto {
    let dims = shape_order
        .iter()
        .enumerate()
        .map(|(i, &a)| tensor_shape_proto::Dimension {
            value: match (a, t.shape[a]) {
                (0, _) => Some(tensor_shape_proto::dimension::Value::DimParam(
                    "batch".into(),
                )),
                (_, Some(n)) => Some(tensor_shape_proto::dimension::Value::DimValue(n as i64)),
                (_, None) => Some(tensor_shape_proto::dimension::Value::DimParam(format!(
                    "{name}_dim{i}"
                ))),
            },
            denotation: None,
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(t.dtype),
                shape: Some(TensorShapeProto { dim: dims }),
            })),
            denotation: None,
        }),
        ..Default::default()
    }
}

pub fn convert_model(
    file: &KerasFile,
    opset: i64,
    options: &Options,
) -> Result<ModelProto, KerasError> {
    let mut cx = Cx {
        b: Builder::new(opset),
        file,
        major: file.major,
        weight_names: HashMap::new(),
    };
    let mut graph_inputs = Vec::new();
    let outputs = call_model(
        &mut cx,
        &file.config,
        &Scope::default(),
        None,
        &mut graph_inputs,
        options,
    )?;
    for name in &options.inputs_as_nchw {
        if !graph_inputs.iter().any(|(n, _)| n == name) {
            return Err(KerasError::InputsAsNchw {
                name: name.clone(),
                message: format!(
                    "the model has no such input (inputs: {})",
                    graph_inputs
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    let mut output_infos = Vec::new();
    let mut taken: Vec<String> = Vec::new();
    for (name, t) in &outputs {
        let value = cx.b.logical(t);
        let is_input = graph_inputs.iter().any(|(n, _)| *n == value);
        let final_name = if taken.contains(&value) || is_input || !cx.b.is_node_output(&value) {
            // Two outputs of one value, or an input passed through: copy it.
            cx.b.op("Identity", name, &[&value], vec![])
        } else if value != *name {
            let target = if cx.b.reserve(name) {
                name.clone()
            } else {
                cx.b.unique(name)
            };
            cx.b.rename(&value, &target);
            target
        } else {
            value
        };
        taken.push(final_name.clone());
        output_infos.push(value_info(&final_name, t, &identity(t.rank())));
    }
    let inputs = graph_inputs
        .iter()
        .map(|(n, t)| value_info(n, t, &crate::builder::inverse(&t.perm)))
        .collect();
    let graph = proto::GraphProto {
        name: Some(
            file.config["config"]["name"]
                .as_str()
                .unwrap_or("keras_model")
                .to_string(),
        ),
        node: std::mem::take(&mut cx.b.nodes),
        initializer: std::mem::take(&mut cx.b.initializers),
        input: inputs,
        output: output_infos,
        ..Default::default()
    };
    Ok(ModelProto {
        ir_version: Some(match opset {
            ..=18 => 8,
            19 | 20 => 9,
            _ => 10,
        }),
        producer_name: Some("runnx-keras".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(format!("Converted from Keras {}", file.keras_version)),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opset),
        }],
        graph: Some(graph),
        ..Default::default()
    })
}
