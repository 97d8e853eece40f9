//! Planning a graph: topological order, kernels, constant folding, value slots; and executing
//! the plan.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runnx_ir::{Graph, Node, Tensor, Value, ValueInfo, ValueType};
use runnx_ops::{Inputs, Kernel, NodeInfo, OpError, Registry, Subgraph, SubgraphCompiler};

use crate::inline::inline_functions;
use crate::RuntimeError;

/// The time one step took in a profiled run.
#[derive(Clone, Debug)]
pub struct StepProfile {
    pub name: String,
    pub op_type: String,
    pub start: Instant,
    pub duration: Duration,
    /// Shapes of the tensor outputs (empty for non-tensor values).
    pub output_shapes: Vec<Vec<usize>>,
}

/// What every graph of a model is planned with.
pub(crate) struct PlanContext<'a> {
    pub registry: &'a Registry,
    pub opsets: &'a BTreeMap<String, i64>,
    pub functions: &'a [Arc<runnx_ir::Function>],
    pub fold_constants: bool,
}

/// One node, ready to run.
struct Step {
    /// How errors name the node.
    label: String,
    /// The node's name and op type, for profiles.
    name: String,
    op_type: String,
    kernel: Box<dyn Kernel>,
    /// Slots of the declared inputs (`None` for absent optional inputs), then implicit inputs.
    inputs: Vec<Option<usize>>,
    /// Slots of the outputs (`None` for unnamed optional outputs).
    outputs: Vec<Option<usize>>,
}

/// A graph compiled to steps over numbered value slots.
pub(crate) struct GraphPlan {
    num_slots: usize,
    /// Initializers and folded values, placed in their slots before every run.
    constants: Vec<(usize, Value)>,
    /// Formal graph inputs that are fed (not initializers): name, slot, declared type.
    pub inputs: Vec<(ValueInfo, usize)>,
    pub outputs: Vec<(ValueInfo, usize)>,
    /// Values read from an enclosing graph (subgraphs only), and their slots here.
    captured: Vec<String>,
    captured_slots: Vec<usize>,
    steps: Vec<Step>,
    /// Which steps to run, and when to release values, per requested output set.
    schedules: Mutex<HashMap<Vec<usize>, Arc<Schedule>>>,
}

/// The steps one set of requested outputs needs, in order, with each slot's last reader.
struct Schedule {
    steps: Vec<usize>,
    /// For each scheduled step, per input position: whether the step may take the value
    /// (it is the value's last use and the value is not an output or a constant).
    takes: Vec<Vec<bool>>,
}

impl GraphPlan {
    /// Plans `graph`. Names the graph uses but does not define are looked up in `outer`
    /// (names visible in enclosing graphs) and become captured values.
    pub fn build(
        graph: &Graph,
        ctx: &PlanContext,
        outer: &HashSet<String>,
    ) -> Result<GraphPlan, RuntimeError> {
        let nodes = inline_functions(&graph.nodes, ctx.functions)?;
        let mut slots: HashMap<String, usize> = HashMap::new();
        let slot_of = |name: &str, slots: &mut HashMap<String, usize>| -> usize {
            let next = slots.len();
            *slots.entry(name.to_string()).or_insert(next)
        };
        let mut constants: HashMap<usize, Value> = HashMap::new();
        let mut known_types: HashMap<String, ValueType> = HashMap::new();
        for vi in graph
            .inputs
            .iter()
            .chain(&graph.value_info)
            .chain(&graph.outputs)
        {
            known_types.insert(vi.name.clone(), vi.ty.clone());
        }
        for (name, tensor) in &graph.initializers {
            let slot = slot_of(name, &mut slots);
            constants.insert(slot, Value::Tensor(tensor.clone()));
        }
        let mut inputs = Vec::new();
        for vi in graph.feed_inputs() {
            inputs.push((vi.clone(), slot_of(&vi.name, &mut slots)));
        }
        let order = topological_order(&nodes, &slots, outer)?;

        let mut captured = Vec::new();
        let mut captured_slots = Vec::new();
        let mut defined: HashSet<usize> = slots.values().copied().collect();
        let mut steps = Vec::with_capacity(nodes.len());
        for &index in &order {
            let node = &nodes[index];
            let label = node.describe();
            let opset = opset_for(node, ctx.opsets)
                .map_err(|m| RuntimeError::Model(format!("{label}: {m}")))?;
            let def = ctx.registry.lookup(&node.domain, &node.op_type, opset).ok_or_else(|| {
                let domain = if node.domain.is_empty() { "ai.onnx" } else { &node.domain };
                if ctx.registry.knows(&node.domain, &node.op_type) {
                    RuntimeError::Model(format!("{label}: op {} is not implemented for opset {opset} of domain {domain}", node.op_type))
                } else {
                    RuntimeError::Model(format!("{label}: unknown op '{}' in domain '{domain}' (no implementation in runnx)", node.op_type))
                }
            })?;
            // Resolve inputs: a name defined in this graph, or captured from an enclosing one.
            let mut input_slots = Vec::with_capacity(node.inputs.len());
            for name in &node.inputs {
                if name.is_empty() {
                    input_slots.push(None);
                    continue;
                }
                let slot = match slots.get(name) {
                    Some(&s) if defined.contains(&s) => s,
                    _ if outer.contains(name) => {
                        let s = slot_of(name, &mut slots);
                        if !defined.contains(&s) {
                            captured.push(name.clone());
                            captured_slots.push(s);
                            defined.insert(s);
                        }
                        s
                    }
                    _ => {
                        return Err(RuntimeError::Model(format!(
                            "{label}: input '{name}' is not produced by any node and is not a graph input or initializer"
                        )))
                    }
                };
                input_slots.push(Some(slot));
            }
            let consts: Vec<Option<&Tensor>> = input_slots
                .iter()
                .map(|s| s.and_then(|s| constants.get(&s)).and_then(Value::as_tensor))
                .collect();
            let types: Vec<Option<&ValueType>> =
                node.inputs.iter().map(|n| known_types.get(n)).collect();
            // Names visible to this node's subgraphs: everything defined so far, here and outside.
            let mut visible: HashSet<String> = outer.clone();
            visible.extend(
                slots
                    .iter()
                    .filter(|(_, s)| defined.contains(s))
                    .map(|(n, _)| n.clone()),
            );
            let compiler = Compiler {
                ctx,
                visible: &visible,
                compiled: Mutex::new(Vec::new()),
            };
            let info = NodeInfo {
                node,
                opset,
                constants: consts,
                input_types: types,
                subgraphs: &compiler,
            };
            let kernel = (def.build)(&info).map_err(|e| RuntimeError::node(&label, e))?;
            // Implicit inputs: outer values the node's subgraphs read.
            let implicit = runnx_ops::implicit_input_names(
                &compiler.compiled.into_inner().unwrap_or_default(),
            );
            for name in &implicit {
                let slot = match slots.get(name) {
                    Some(&s) if defined.contains(&s) => s,
                    _ => {
                        let s = slot_of(name, &mut slots);
                        captured.push(name.clone());
                        captured_slots.push(s);
                        defined.insert(s);
                        s
                    }
                };
                input_slots.push(Some(slot));
            }
            let output_slots: Vec<Option<usize>> = node
                .outputs
                .iter()
                .map(|n| (!n.is_empty()).then(|| slot_of(n, &mut slots)))
                .collect();
            for s in output_slots.iter().flatten() {
                defined.insert(*s);
            }
            let step = Step {
                label,
                name: node.name.clone(),
                op_type: node.op_type.clone(),
                kernel,
                inputs: input_slots,
                outputs: output_slots,
            };
            let foldable = ctx.fold_constants
                && implicit.is_empty()
                && !is_nondeterministic(node)
                && step
                    .inputs
                    .iter()
                    .flatten()
                    .all(|s| constants.contains_key(s));
            if foldable {
                let values = step
                    .inputs
                    .iter()
                    .map(|s| s.and_then(|s| constants.get(&s).cloned()))
                    .collect();
                let outs = step
                    .kernel
                    .run(Inputs::new(values))
                    .map_err(|e| RuntimeError::node(&step.label, e))?;
                for (slot, value) in step.outputs.iter().zip(outs) {
                    if let Some(slot) = slot {
                        constants.insert(*slot, value);
                    }
                }
                continue;
            }
            steps.push(step);
        }
        let mut outputs = Vec::new();
        for vi in &graph.outputs {
            let slot = match slots.get(&vi.name) {
                Some(&s) if defined.contains(&s) => s,
                _ if outer.contains(&vi.name) => {
                    let s = slot_of(&vi.name, &mut slots);
                    captured.push(vi.name.clone());
                    captured_slots.push(s);
                    defined.insert(s);
                    s
                }
                _ => {
                    return Err(RuntimeError::Model(format!(
                        "graph output '{}' is not produced by any node and is not a graph input or initializer",
                        vi.name
                    )))
                }
            };
            outputs.push((vi.clone(), slot));
        }
        Ok(GraphPlan {
            num_slots: slots.len(),
            constants: constants.into_iter().collect(),
            inputs,
            outputs,
            captured,
            captured_slots,
            steps,
            schedules: Mutex::new(HashMap::new()),
        })
    }

    pub fn captured_names(&self) -> &[String] {
        &self.captured
    }

    /// The steps needed for `wanted` output slots, computed once per output set.
    fn schedule(&self, wanted: &[usize]) -> Arc<Schedule> {
        let mut cache = self.schedules.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = cache.get(wanted) {
            return s.clone();
        }
        let mut producer: HashMap<usize, usize> = HashMap::new();
        for (i, step) in self.steps.iter().enumerate() {
            for s in step.outputs.iter().flatten() {
                producer.insert(*s, i);
            }
        }
        let mut needed = vec![false; self.steps.len()];
        let mut stack: Vec<usize> = wanted
            .iter()
            .filter_map(|s| producer.get(s).copied())
            .collect();
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut needed[i], true) {
                continue;
            }
            for s in self.steps[i].inputs.iter().flatten() {
                if let Some(&p) = producer.get(s) {
                    if !needed[p] {
                        stack.push(p);
                    }
                }
            }
        }
        let steps: Vec<usize> = (0..self.steps.len()).filter(|&i| needed[i]).collect();
        // A value may be taken by its last reader unless the caller or the plan still needs it.
        let mut keep = vec![false; self.num_slots];
        for &s in wanted {
            keep[s] = true;
        }
        for (s, _) in &self.constants {
            keep[*s] = true;
        }
        let mut last_reader: HashMap<usize, (usize, usize)> = HashMap::new();
        for (pos, &i) in steps.iter().enumerate() {
            for (k, s) in self.steps[i].inputs.iter().enumerate() {
                if let Some(s) = s {
                    last_reader.insert(*s, (pos, k));
                }
            }
        }
        let takes = steps
            .iter()
            .enumerate()
            .map(|(pos, &i)| {
                self.steps[i]
                    .inputs
                    .iter()
                    .enumerate()
                    .map(|(k, s)| {
                        s.is_some_and(|s| !keep[s] && last_reader.get(&s) == Some(&(pos, k)))
                    })
                    .collect()
            })
            .collect();
        let schedule = Arc::new(Schedule { steps, takes });
        cache.insert(wanted.to_vec(), schedule.clone());
        schedule
    }

    /// Runs the plan. `feeds` are values for `self.inputs` slots, `captured` for captured names.
    /// With `profile`, appends one record per executed step.
    pub fn execute(
        &self,
        feeds: Vec<(usize, Value)>,
        captured: &[Value],
        wanted: &[usize],
        mut profile: Option<&mut Vec<StepProfile>>,
    ) -> Result<Vec<Value>, RuntimeError> {
        let mut slots: Vec<Option<Value>> = vec![None; self.num_slots];
        for (slot, value) in &self.constants {
            slots[*slot] = Some(value.clone());
        }
        for (slot, value) in self.captured_slots.iter().zip(captured) {
            slots[*slot] = Some(value.clone());
        }
        for (slot, value) in feeds {
            slots[slot] = Some(value);
        }
        let schedule = self.schedule(wanted);
        for (&i, takes) in schedule.steps.iter().zip(&schedule.takes) {
            let step = &self.steps[i];
            let values = step
                .inputs
                .iter()
                .zip(takes)
                .map(|(s, &take)| {
                    s.and_then(|s| {
                        if take {
                            slots[s].take()
                        } else {
                            slots[s].clone()
                        }
                    })
                })
                .collect();
            let started = profile.as_ref().map(|_| Instant::now());
            let outs = step
                .kernel
                .run(Inputs::new(values))
                .map_err(|e| RuntimeError::node(&step.label, e))?;
            if let (Some(records), Some(started)) = (profile.as_deref_mut(), started) {
                records.push(StepProfile {
                    name: step.name.clone(),
                    op_type: step.op_type.clone(),
                    start: started,
                    duration: started.elapsed(),
                    output_shapes: outs
                        .iter()
                        .map(|v| {
                            v.as_tensor()
                                .map(|t| t.shape().to_vec())
                                .unwrap_or_default()
                        })
                        .collect(),
                });
            }
            if outs.len()
                < step
                    .outputs
                    .iter()
                    .rposition(Option::is_some)
                    .map_or(0, |p| p + 1)
            {
                return Err(RuntimeError::node(
                    &step.label,
                    OpError::invalid(format!(
                        "produced {} outputs, the node declares {}",
                        outs.len(),
                        step.outputs.len()
                    )),
                ));
            }
            for (slot, value) in step.outputs.iter().zip(outs) {
                if let Some(slot) = slot {
                    slots[*slot] = Some(value);
                }
            }
        }
        wanted
            .iter()
            .map(|&s| {
                slots[s].clone().ok_or_else(|| {
                    RuntimeError::Model(
                        "an output was not computed (an optional output the node did not produce)"
                            .into(),
                    )
                })
            })
            .collect()
    }

    pub fn num_steps(&self) -> usize {
        self.steps.len()
    }

    pub fn output_slots(&self) -> Vec<usize> {
        self.outputs.iter().map(|(_, s)| *s).collect()
    }
}

fn opset_for(node: &Node, opsets: &BTreeMap<String, i64>) -> Result<i64, String> {
    let domain = runnx_ir::graph::canonical_domain(&node.domain);
    opsets
        .iter()
        .find(|(d, _)| runnx_ir::graph::canonical_domain(d) == domain)
        .map(|(_, v)| *v)
        .ok_or_else(|| format!("the model imports no opset for domain '{}'", node.domain))
}

pub(crate) fn is_nondeterministic(node: &Node) -> bool {
    matches!(
        node.op_type.as_str(),
        "RandomNormal"
            | "RandomUniform"
            | "RandomNormalLike"
            | "RandomUniformLike"
            | "Bernoulli"
            | "Multinomial"
    )
}

/// Orders nodes so every input is produced before it is read (Kahn's algorithm, stable: a
/// sorted graph keeps its order). Fails on cycles.
fn topological_order(
    nodes: &[Node],
    initial: &HashMap<String, usize>,
    outer: &HashSet<String>,
) -> Result<Vec<usize>, RuntimeError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.outputs.iter().filter(|o| !o.is_empty()) {
            if producer.insert(o.as_str(), i).is_some() || initial.contains_key(o) {
                return Err(RuntimeError::Model(format!(
                    "value '{o}' is assigned more than once (ONNX graphs are single-assignment)"
                )));
            }
        }
    }
    let mut pending = vec![0usize; nodes.len()];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        let mut deps: HashSet<usize> = HashSet::new();
        for name in n.inputs.iter().chain(subgraph_reads(n).iter()) {
            if let Some(&p) = producer.get(name.as_str()) {
                if p != i && deps.insert(p) {
                    consumers[p].push(i);
                }
            }
        }
        pending[i] = deps.len();
    }
    let _ = outer;
    let mut ready: std::collections::BTreeSet<usize> =
        (0..nodes.len()).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &c in &consumers[i] {
            pending[c] -= 1;
            if pending[c] == 0 {
                ready.insert(c);
            }
        }
    }
    if order.len() != nodes.len() {
        let stuck = (0..nodes.len())
            .find(|&i| pending[i] > 0)
            .map(|i| nodes[i].describe())
            .unwrap_or_default();
        return Err(RuntimeError::Model(format!(
            "the graph has a cycle (at {stuck})"
        )));
    }
    Ok(order)
}

/// Names a node's subgraphs read from outside themselves (so the node runs after their producers).
fn subgraph_reads(node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    for a in &node.attributes {
        match &a.value {
            runnx_ir::AttributeValue::Graph(g) => free_names(g, &mut out),
            runnx_ir::AttributeValue::Graphs(gs) => gs.iter().for_each(|g| free_names(g, &mut out)),
            _ => {}
        }
    }
    out
}

fn free_names(graph: &Graph, out: &mut Vec<String>) {
    let mut defined: HashSet<&str> = graph.inputs.iter().map(|v| v.name.as_str()).collect();
    defined.extend(graph.initializers.iter().map(|(n, _)| n.as_str()));
    for n in &graph.nodes {
        defined.extend(n.outputs.iter().map(String::as_str));
    }
    for n in &graph.nodes {
        for i in n.inputs.iter().filter(|i| !i.is_empty()) {
            if !defined.contains(i.as_str()) {
                out.push(i.clone());
            }
        }
        for name in subgraph_reads(n) {
            if !defined.contains(name.as_str()) {
                out.push(name);
            }
        }
    }
    for o in &graph.outputs {
        if !defined.contains(o.name.as_str()) {
            out.push(o.name.clone());
        }
    }
}

/// Compiles a node's subgraph attributes with the names visible at that node.
struct Compiler<'a> {
    ctx: &'a PlanContext<'a>,
    visible: &'a HashSet<String>,
    compiled: Mutex<Vec<Arc<dyn Subgraph>>>,
}

impl SubgraphCompiler for Compiler<'_> {
    fn compile(&self, graph: &Arc<Graph>) -> Result<Arc<dyn Subgraph>, OpError> {
        let plan = GraphPlan::build(graph, self.ctx, self.visible)
            .map_err(|e| OpError::invalid(format!("in subgraph '{}': {e}", graph.name)))?;
        let sub: Arc<dyn Subgraph> = Arc::new(PlannedSubgraph { plan });
        self.compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sub.clone());
        Ok(sub)
    }
}

struct PlannedSubgraph {
    plan: GraphPlan,
}

impl Subgraph for PlannedSubgraph {
    fn run(&self, inputs: Vec<Value>, captured: &[Value]) -> Result<Vec<Value>, OpError> {
        if inputs.len() != self.plan.inputs.len() {
            return Err(OpError::invalid(format!(
                "subgraph takes {} inputs, got {}",
                self.plan.inputs.len(),
                inputs.len()
            )));
        }
        let feeds = self
            .plan
            .inputs
            .iter()
            .map(|(_, s)| *s)
            .zip(inputs)
            .collect();
        self.plan
            .execute(feeds, captured, &self.plan.output_slots(), None)
            .map_err(|e| OpError::invalid(format!("in subgraph: {e}")))
    }

    fn captured_names(&self) -> &[String] {
        self.plan.captured_names()
    }
}
