//! What a rewrite can see and add while it converts one node: constants and declared types in
//! scope, fresh names, and new initializers for the graph being converted.

use std::collections::{HashMap, HashSet};

use runnx_ir::{
    AttributeValue, DataType, Dim, Graph, Model, Node, Tensor, TensorType, ValueInfo, ValueType,
};

/// Every name used in the model (values and nodes, subgraphs included), to make fresh ones.
#[derive(Default)]
pub(crate) struct Names(HashSet<String>);

impl Names {
    pub(crate) fn of_model(model: &Model) -> Names {
        let mut names = Names::default();
        names.add_graph(&model.graph);
        names
    }

    fn add_graph(&mut self, g: &Graph) {
        let values = g.inputs.iter().chain(&g.outputs).chain(&g.value_info);
        self.0.extend(values.map(|v| v.name.clone()));
        self.0.extend(g.initializers.iter().map(|(n, _)| n.clone()));
        for n in &g.nodes {
            self.0.insert(n.name.clone());
            self.0.extend(n.inputs.iter().chain(&n.outputs).cloned());
            for a in &n.attributes {
                match &a.value {
                    AttributeValue::Graph(sub) => self.add_graph(sub),
                    AttributeValue::Graphs(subs) => subs.iter().for_each(|s| self.add_graph(s)),
                    _ => {}
                }
            }
        }
    }

    /// `base`, or `base_1`, `base_2`... whichever is unused; the name is taken from then on.
    pub(crate) fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 0;
        while self.0.contains(&name) {
            i += 1;
            name = format!("{base}_{i}");
        }
        self.0.insert(name.clone());
        name
    }
}

/// Constant values and declared tensor types visible in a graph (its own and enclosing scopes').
#[derive(Clone, Default)]
pub(crate) struct Scope {
    consts: HashMap<String, Tensor>,
    types: HashMap<String, TensorType>,
}

impl Scope {
    /// `outer` extended with `graph`'s initializers, Constant nodes and declared types. An
    /// initializer that is also a graph input can be overridden, so it is a constant only before
    /// IR 4 (when every initializer was listed as an input).
    pub(crate) fn enter(outer: &Scope, graph: &Graph, legacy_inputs: bool) -> Scope {
        let mut scope = outer.clone();
        let declared = graph
            .inputs
            .iter()
            .chain(&graph.outputs)
            .chain(&graph.value_info);
        for v in declared {
            match &v.ty {
                ValueType::Tensor(t) => scope.types.insert(v.name.clone(), t.clone()),
                _ => scope.types.remove(&v.name),
            };
            scope.consts.remove(&v.name);
        }
        for (name, t) in &graph.initializers {
            let shape = t.shape().iter().map(|&d| Dim::Fixed(d)).collect();
            let ty = TensorType {
                dtype: t.dtype(),
                shape: Some(shape),
            };
            scope.types.insert(name.clone(), ty);
            if legacy_inputs || !graph.inputs.iter().any(|i| &i.name == name) {
                scope.consts.insert(name.clone(), t.clone());
            }
        }
        for n in &graph.nodes {
            if let (Some(out), Some(t)) = (n.outputs.first(), constant_value(n)) {
                scope.consts.insert(out.clone(), t);
            }
        }
        scope
    }
}

/// The value of a default-domain Constant node.
fn constant_value(n: &Node) -> Option<Tensor> {
    if n.op_type != "Constant" || !matches!(n.domain.as_str(), "" | "ai.onnx") {
        return None;
    }
    match &n.attributes.first()?.value {
        AttributeValue::Tensor(t) => Some(t.clone()),
        AttributeValue::Int(v) => Some(Tensor::scalar(*v)),
        AttributeValue::Float(v) => Some(Tensor::scalar(*v)),
        AttributeValue::Ints(v) => Tensor::from_vec([v.len()], v.clone()).ok(),
        AttributeValue::Floats(v) => Tensor::from_vec([v.len()], v.clone()).ok(),
        _ => None,
    }
}

/// The view a rewrite gets of the graph its node is in.
pub(crate) struct Ctx<'a> {
    pub(crate) names: &'a mut Names,
    pub(crate) scope: &'a Scope,
    /// Initializers to add to the graph (and to its inputs before IR 4).
    pub(crate) new_initializers: Vec<(String, Tensor)>,
}

impl Ctx<'_> {
    pub(crate) fn constant(&self, name: &str) -> Option<&Tensor> {
        self.scope.consts.get(name)
    }

    pub(crate) fn dtype(&self, name: &str) -> Option<DataType> {
        self.scope.types.get(name).map(|t| t.dtype)
    }

    pub(crate) fn shape(&self, name: &str) -> Option<&[Dim]> {
        self.scope.types.get(name)?.shape.as_deref()
    }

    pub(crate) fn rank(&self, name: &str) -> Option<usize> {
        self.shape(name).map(<[Dim]>::len)
    }

    /// Adds a constant as a new initializer named after `base`; returns its name.
    pub(crate) fn add_initializer(&mut self, base: &str, tensor: Tensor) -> String {
        let name = self.names.fresh(base);
        self.new_initializers.push((name.clone(), tensor));
        name
    }
}

/// Adds `inits` to `graph`; before IR 4 every initializer must also be a graph input.
pub(crate) fn add_initializers(
    graph: &mut Graph,
    inits: Vec<(String, Tensor)>,
    legacy_inputs: bool,
) {
    for (name, t) in inits {
        if legacy_inputs {
            let shape = t.shape().iter().map(|&d| Dim::Fixed(d)).collect();
            graph.inputs.push(ValueInfo {
                name: name.clone(),
                ty: ValueType::tensor(t.dtype(), Some(shape)),
                doc_string: String::new(),
            });
        }
        graph.initializers.push((name, t));
    }
}
