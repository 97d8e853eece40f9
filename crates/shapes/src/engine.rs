//! The inference driver: walks a graph's nodes in order, runs each op's rule, merges what it
//! infers with what the model declares, and descends into subgraphs and model-local functions.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use runnx_ir::graph::canonical_domain;
use runnx_ir::{Attribute, AttributeValue, Graph, Model, Node, Tensor, ValueType};

use crate::context::{NodeContext, RuleError};
use crate::merge::merge_types;
use crate::value::SymValue;
use crate::{ops, InferError, InferOptions};

/// Values visible at one level of nesting; subgraphs look names up in their parents.
pub(crate) struct Scope<'p> {
    parent: Option<&'p Scope<'p>>,
    pub(crate) types: HashMap<String, ValueType>,
    values: HashMap<String, SymValue>,
    /// Small constants (see [`MAX_CONST_ELEMENTS`]), copied.
    consts: HashMap<String, Tensor>,
    /// Types the model declares (value_info, graph outputs), merged with inferred ones.
    declared: HashMap<String, ValueType>,
    /// Node outputs in production order (what gets written back as value_info).
    pub(crate) produced: Vec<String>,
}

/// Constants up to this many elements are kept for rules to read (shapes, scales, axes).
const MAX_CONST_ELEMENTS: usize = 1 << 12;

impl<'p> Scope<'p> {
    fn new(parent: Option<&'p Scope<'p>>) -> Self {
        Scope {
            parent,
            types: HashMap::new(),
            values: HashMap::new(),
            consts: HashMap::new(),
            declared: HashMap::new(),
            produced: Vec::new(),
        }
    }

    fn ty(&self, name: &str) -> Option<&ValueType> {
        self.types
            .get(name)
            .or_else(|| self.parent.and_then(|p| p.ty(name)))
    }

    fn value(&self, name: &str) -> Option<&SymValue> {
        self.values
            .get(name)
            .or_else(|| self.parent.and_then(|p| p.value(name)))
    }

    /// What is known about the contents of a value defined at this level.
    pub(crate) fn value_of(&self, name: &str) -> Option<&SymValue> {
        self.values.get(name)
    }

    fn constant(&self, name: &str) -> Option<&Tensor> {
        self.consts
            .get(name)
            .or_else(|| self.parent.and_then(|p| p.constant(name)))
    }

    /// A name defined here shadows the parent's constant of the same name.
    fn defines(&self, name: &str) -> bool {
        self.types.contains_key(name)
    }

    fn bind_const(&mut self, name: &str, tensor: &Tensor) {
        if let Some(v) = SymValue::from_tensor(tensor) {
            self.values.insert(name.to_string(), v);
        }
        if tensor.len() <= MAX_CONST_ELEMENTS {
            self.consts.insert(name.to_string(), tensor.clone());
        }
    }

    /// Declares the graph's value_info and outputs, its inputs and its initializers.
    fn bind_graph(&mut self, graph: &Graph, input_types: Option<&[Option<ValueType>]>) {
        for vi in graph.value_info.iter().chain(&graph.outputs) {
            if vi.ty != ValueType::Unknown {
                self.declared.insert(vi.name.clone(), vi.ty.clone());
            }
        }
        for (i, input) in graph.inputs.iter().enumerate() {
            let given = input_types.and_then(|t| t.get(i).cloned().flatten());
            let ty = match given {
                Some(g) => merge_types(&input.ty, &g).unwrap_or(g),
                None => input.ty.clone(),
            };
            self.types.insert(input.name.clone(), ty);
        }
        let input_names: BTreeSet<&str> = graph.inputs.iter().map(|i| i.name.as_str()).collect();
        for (name, tensor) in &graph.initializers {
            if input_names.contains(name.as_str()) {
                // An initializer listed as an input is only a default: a feed may replace it.
                continue;
            }
            self.types.insert(
                name.clone(),
                ValueType::tensor(
                    tensor.dtype(),
                    Some(
                        tensor
                            .shape()
                            .iter()
                            .map(|&d| runnx_ir::Dim::Fixed(d))
                            .collect(),
                    ),
                ),
            );
            self.bind_const(name, tensor);
        }
    }
}

pub(crate) struct Engine<'m> {
    model: &'m Model,
    options: &'m InferOptions,
    pub(crate) problems: RefCell<Vec<InferError>>,
    pub(crate) ops_without_rule: RefCell<BTreeSet<String>>,
}

impl<'m> Engine<'m> {
    pub(crate) fn new(model: &'m Model, options: &'m InferOptions) -> Self {
        Engine {
            model,
            options,
            problems: RefCell::new(Vec::new()),
            ops_without_rule: RefCell::new(BTreeSet::new()),
        }
    }

    /// Infers the main graph; returns its scope (types of every value).
    pub(crate) fn infer_main(&self) -> Result<Scope<'static>, InferError> {
        let mut scope = Scope::new(None);
        scope.bind_graph(&self.model.graph, None);
        self.infer_nodes(
            &mut scope,
            &self.model.graph.nodes,
            &self.model.opset_imports,
        )?;
        Ok(scope)
    }

    fn infer_nodes(
        &self,
        scope: &mut Scope<'_>,
        nodes: &[Node],
        opsets: &BTreeMap<String, i64>,
    ) -> Result<(), InferError> {
        for node in nodes {
            self.infer_node(scope, node, opsets)?;
        }
        Ok(())
    }

    fn infer_node(
        &self,
        scope: &mut Scope<'_>,
        node: &Node,
        opsets: &BTreeMap<String, i64>,
    ) -> Result<(), InferError> {
        let domain = canonical_domain(&node.domain);
        let opset = opsets
            .iter()
            .find(|(d, _)| canonical_domain(d) == domain)
            .map(|(_, v)| *v)
            .unwrap_or(1);
        let (outputs, output_values, result) = {
            let mut ctx = self.context(&*scope, node, opset);
            let result = self.run_rule(&mut ctx, domain);
            (ctx.outputs, ctx.output_values, result)
        };
        match result {
            Ok(()) | Err(RuleError::Unknown) => {}
            Err(RuleError::Invalid(message)) => {
                self.report(InferError::Node {
                    node: node.describe(),
                    message,
                })?;
            }
        }
        for (i, name) in node.outputs.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            let inferred = outputs[i].clone();
            let declared = scope.declared.get(name).cloned();
            let ty = match (declared, inferred) {
                (Some(d), Some(t)) => match merge_types(&d, &t) {
                    Ok(m) => m,
                    Err(why) => {
                        self.report(InferError::Node {
                            node: node.describe(),
                            message: format!(
                                "output '{name}': inferred {t} but the model declares {d} ({why})"
                            ),
                        })?;
                        d
                    }
                },
                (Some(d), None) => d,
                (None, Some(t)) => t,
                (None, None) => ValueType::Unknown,
            };
            scope.types.insert(name.clone(), ty);
            scope.produced.push(name.clone());
            if let Some(v) = output_values[i].clone() {
                scope.values.insert(name.clone(), v);
            } else {
                scope.values.remove(name);
            }
            scope.consts.remove(name);
        }
        if node.op_type == "Constant" && domain.is_empty() {
            if let (Some(out), Some(AttributeValue::Tensor(t))) = (
                node.outputs.first(),
                node.attribute("value").map(|a| &a.value),
            ) {
                scope.bind_const(out, t);
            }
        }
        Ok(())
    }

    fn context<'s>(&'s self, scope: &'s Scope<'s>, node: &'s Node, opset: i64) -> NodeContext<'s> {
        fn lookup(name: &str) -> Option<&str> {
            (!name.is_empty()).then_some(name)
        }
        let inputs = node
            .inputs
            .iter()
            .map(|n| lookup(n).and_then(|n| scope.ty(n).cloned()))
            .collect();
        let input_values = node
            .inputs
            .iter()
            .map(|n| lookup(n).and_then(|n| scope.value(n).cloned()))
            .collect();
        let input_consts = node
            .inputs
            .iter()
            .map(|n| {
                lookup(n).and_then(|n| {
                    if scope.defines(n) && !scope.consts.contains_key(n) {
                        None
                    } else {
                        scope.constant(n)
                    }
                })
            })
            .collect();
        NodeContext {
            engine: self,
            scope,
            node,
            opset,
            inputs,
            input_values,
            input_consts,
            outputs: vec![None; node.outputs.len()],
            output_values: vec![None; node.outputs.len()],
        }
    }

    fn run_rule(&self, ctx: &mut NodeContext<'_>, domain: &str) -> Result<(), RuleError> {
        let node = ctx.node;
        if let Some(rule) = ops::lookup(domain, &node.op_type) {
            return rule(ctx);
        }
        if let Some(function) = self
            .model
            .functions
            .iter()
            .find(|f| f.name == node.op_type && canonical_domain(&f.domain) == domain)
        {
            return self.infer_function(ctx, function);
        }
        self.ops_without_rule
            .borrow_mut()
            .insert(if domain.is_empty() {
                node.op_type.clone()
            } else {
                format!("{domain}.{}", node.op_type)
            });
        if self.options.strict {
            return Err(RuleError::invalid(format!(
                "no type and shape inference for op {}{}",
                if domain.is_empty() { "" } else { domain },
                node.op_type
            )));
        }
        Err(RuleError::Unknown)
    }

    /// Infers a call of a model-local function by inferring its body with the actual input
    /// types and the caller's attributes.
    fn infer_function(
        &self,
        ctx: &mut NodeContext<'_>,
        function: &runnx_ir::Function,
    ) -> Result<(), RuleError> {
        let caller = ctx.node;
        let body: Vec<Node> = function
            .nodes
            .iter()
            .map(|n| resolve_attribute_refs(n, caller, function))
            .collect();
        let mut scope = Scope::new(None);
        for (i, formal) in function.inputs.iter().enumerate() {
            if let Some(Some(t)) = ctx.inputs.get(i) {
                scope.types.insert(formal.clone(), t.clone());
            }
            if let Some(Some(v)) = ctx.input_values.get(i) {
                scope.values.insert(formal.clone(), v.clone());
            }
        }
        let result = self.infer_nodes(&mut scope, &body, &function.opset_imports);
        if let Err(e) = result {
            return Err(RuleError::invalid(format!(
                "in function {}: {e}",
                function.name
            )));
        }
        for (i, formal) in function.outputs.iter().enumerate() {
            if let Some(t) = scope.types.get(formal) {
                if *t != ValueType::Unknown {
                    ctx.set_output(i, t.clone());
                }
            }
            if let Some(v) = scope.values.get(formal) {
                ctx.set_output_value(i, v.clone());
            }
        }
        Ok(())
    }

    pub(crate) fn infer_subgraph(
        &self,
        parent: &Scope<'_>,
        graph: &Graph,
        input_types: &[Option<ValueType>],
    ) -> Result<Vec<Option<ValueType>>, RuleError> {
        let mut scope = Scope::new(Some(parent));
        scope.bind_graph(graph, Some(input_types));
        if let Err(e) = self.infer_nodes(&mut scope, &graph.nodes, &self.model.opset_imports) {
            return Err(RuleError::invalid(format!(
                "in subgraph '{}': {e}",
                graph.name
            )));
        }
        Ok(graph
            .outputs
            .iter()
            .map(|o| {
                scope
                    .ty(&o.name)
                    .cloned()
                    .filter(|t| *t != ValueType::Unknown)
            })
            .collect())
    }

    /// Records a problem; in strict mode it ends inference.
    fn report(&self, problem: InferError) -> Result<(), InferError> {
        if self.options.strict {
            return Err(problem);
        }
        self.problems.borrow_mut().push(problem);
        Ok(())
    }
}

/// A function body's node with `ref_attr_name` attributes replaced by the caller's values (or
/// the function's defaults); references to attributes nobody gave are dropped.
fn resolve_attribute_refs(node: &Node, caller: &Node, function: &runnx_ir::Function) -> Node {
    let mut resolved = node.clone();
    resolved.attributes = node
        .attributes
        .iter()
        .filter_map(|a| match &a.ref_attr_name {
            None => Some(a.clone()),
            Some(from) => caller
                .attribute(from)
                .or_else(|| function.attribute_defaults.iter().find(|d| &d.name == from))
                .map(|src| Attribute {
                    name: a.name.clone(),
                    value: src.value.clone(),
                    ref_attr_name: None,
                }),
        })
        .collect();
    resolved
}
