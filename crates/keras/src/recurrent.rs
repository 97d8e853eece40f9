//! SimpleRNN, GRU and LSTM (and Bidirectional wrappers of them) as ONNX RNN, GRU and LSTM.
//!
//! Weights: Keras kernels are `[input, gates·units]` with LSTM gates `i, f, c, o` and GRU gates
//! `z, r, h`; ONNX wants `[gates·units, input]` with LSTM gates `i, o, f, c` (GRU's agree).
//! A GRU with `reset_after` (the Keras 2.3+ and 3 default) has separate input and recurrent
//! biases and is ONNX's `linear_before_reset=1`.
//!
//! Layout: the op reads `[time, batch, features]`; the sequence output stays time-major and is
//! tagged so (perm `[1, 0, 2]`), so stacked recurrent layers need no Transpose between them.
//! `go_backwards` is the reverse direction, and Keras returns its sequence in processing
//! order, so it is flipped back in time; Bidirectional's backward half is aligned to the input,
//! as ONNX's is.

use serde_json::Value as Json;

use crate::activations::rnn_activation;
use crate::array::Array;
use crate::builder::{attr_floats, attr_i, attr_s, attr_strs, Tensor, FLOAT};
use crate::model::{Cx, Kwargs, Layer};
use crate::KerasError;

type Result<T> = std::result::Result<T, KerasError>;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Simple,
    Gru { reset_after: bool },
    Lstm,
}

impl Kind {
    fn gates(self) -> usize {
        match self {
            Kind::Simple => 1,
            Kind::Gru { .. } => 3,
            Kind::Lstm => 4,
        }
    }

    fn op(self) -> &'static str {
        match self {
            Kind::Simple => "RNN",
            Kind::Gru { .. } => "GRU",
            Kind::Lstm => "LSTM",
        }
    }
}

/// The settings of one recurrent layer config that shape the ONNX op.
struct Spec {
    kind: Kind,
    units: usize,
    use_bias: bool,
    return_sequences: bool,
    return_state: bool,
    go_backwards: bool,
    activations: Vec<&'static str>,
    alphas: Vec<f32>,
    betas: Vec<f32>,
}

fn spec(cx: &Cx, l: &Layer, class: &str, c: &Json) -> Result<Spec> {
    let get_bool = |k: &str, d: bool| c.get(k).and_then(Json::as_bool).unwrap_or(d);
    let kind = match class {
        "SimpleRNN" => Kind::Simple,
        "GRU" => Kind::Gru {
            reset_after: get_bool("reset_after", true),
        },
        "LSTM" => Kind::Lstm,
        other => return Err(l.err(format!("wraps a {other}, which is not supported"))),
    };
    for flag in ["stateful", "time_major"] {
        if get_bool(flag, false) {
            return Err(l.err(format!("{flag}=true is not supported")));
        }
    }
    let units = c
        .get("units")
        .and_then(Json::as_u64)
        .ok_or_else(|| l.err("config has no 'units'"))? as usize;
    // A missing key is Keras's default; an explicit null is linear.
    let default_tanh = Json::String("tanh".into());
    let default_sigmoid = Json::String("sigmoid".into());
    let act = match c.get("activation") {
        None => Some(&default_tanh),
        Some(Json::Null) => None,
        Some(v) => Some(v),
    };
    let rec = match c.get("recurrent_activation") {
        None => Some(&default_sigmoid),
        Some(Json::Null) => None,
        Some(v) => Some(v),
    };
    let mut names = Vec::new();
    let mut alphas = Vec::new();
    let mut betas = Vec::new();
    let mut push = |spec: Option<&Json>| -> Result<()> {
        let (n, a, b) = rnn_activation(l, spec, cx.major)?;
        names.push(n);
        alphas.extend(a);
        betas.extend(b);
        Ok(())
    };
    match kind {
        Kind::Simple => push(act)?,
        Kind::Gru { .. } => {
            push(rec)?;
            push(act)?;
        }
        Kind::Lstm => {
            push(rec)?;
            push(act)?;
            push(act)?;
        }
    }
    Ok(Spec {
        kind,
        units,
        use_bias: get_bool("use_bias", true),
        return_sequences: get_bool("return_sequences", false),
        return_state: get_bool("return_state", false),
        go_backwards: get_bool("go_backwards", false),
        activations: names,
        alphas,
        betas,
    })
}

/// One direction's `W [G·H, in]`, `R [G·H, H]` and `B [2·G·H]` from Keras's weights.
fn direction(l: &Layer, s: &Spec, w: &[Array]) -> Result<(Array, Array, Option<Array>)> {
    let g = s.kind.gates();
    let h = s.units;
    let expected = 2 + s.use_bias as usize;
    if w.len() != expected {
        return Err(l.err(format!(
            "found {} weight arrays, expected {expected}",
            w.len()
        )));
    }
    let (kernel, recurrent) = (&w[0], &w[1]);
    if kernel.shape.len() != 2 || kernel.shape[1] != g * h || recurrent.shape != [h, g * h] {
        return Err(l.err(format!(
            "kernel {:?} / recurrent kernel {:?} do not match {h} units",
            kernel.shape, recurrent.shape
        )));
    }
    // LSTM: Keras i, f, c, o -> ONNX i, o, f, c.
    let order: Vec<usize> = if s.kind == Kind::Lstm {
        vec![0, 3, 1, 2]
    } else {
        (0..g).collect()
    };
    let wt = kernel.transpose(&[1, 0]).reorder_blocks(0, g, &order);
    let rt = recurrent.transpose(&[1, 0]).reorder_blocks(0, g, &order);
    let b = if s.use_bias {
        let bias = &w[2];
        let (wb, rb) = match s.kind {
            Kind::Gru { reset_after: true } => {
                if bias.shape != [2, g * h] {
                    return Err(l.err(format!("bias has shape {:?}", bias.shape)));
                }
                (
                    Array::vector(bias.data[..g * h].to_vec()),
                    Array::vector(bias.data[g * h..].to_vec()),
                )
            }
            _ => {
                if bias.len() != g * h {
                    return Err(l.err(format!("bias has shape {:?}", bias.shape)));
                }
                (
                    Array::vector(bias.data.clone()).reorder_blocks(0, g, &order),
                    Array::vector(vec![0.0; g * h]),
                )
            }
        };
        Some(Array::concat0(&[&wb, &rb]))
    } else {
        None
    };
    Ok((wt, rt, b))
}

fn stack(parts: &[&Array]) -> Array {
    let mut shape = vec![parts.len()];
    shape.extend(&parts[0].shape);
    let data = parts.iter().flat_map(|p| p.data.iter().copied()).collect();
    Array { shape, data }
}

fn reject_state_kwargs(l: &Layer, kwargs: &Kwargs) -> Result<()> {
    for k in ["initial_state", "mask", "constants"] {
        if kwargs.tensors.contains_key(k) || kwargs.get(k).is_some_and(|v| v.is_array()) {
            return Err(l.err(format!("a call with {k} is not supported")));
        }
    }
    Ok(())
}

/// Emits the ONNX op for one or two directions; returns (Y, Y_h, Y_c).
fn emit(
    cx: &mut Cx,
    l: &Layer,
    x: &Tensor,
    specs: &[&Spec],
    weights: &[(Array, Array, Option<Array>)],
    direction: &str,
) -> Result<Vec<String>> {
    if x.rank() != 3 {
        return Err(l.err(format!("expects a rank-3 input, got rank {}", x.rank())));
    }
    let s = specs[0];
    let xin = cx.b.in_order(x, &[1, 0, 2]);
    let w = cx.init(l, "W", || {
        stack(&weights.iter().map(|w| &w.0).collect::<Vec<_>>())
    });
    let r = cx.init(l, "R", || {
        stack(&weights.iter().map(|w| &w.1).collect::<Vec<_>>())
    });
    let mut ins = vec![xin, w, r];
    if s.use_bias {
        let bs: Vec<&Array> = weights.iter().filter_map(|w| w.2.as_ref()).collect();
        ins.push(cx.init(l, "B", || stack(&bs)));
    }
    let acts: Vec<&str> = specs
        .iter()
        .flat_map(|s| s.activations.iter().copied())
        .collect();
    let alphas: Vec<f32> = specs
        .iter()
        .flat_map(|s| s.alphas.iter().copied())
        .collect();
    let betas: Vec<f32> = specs.iter().flat_map(|s| s.betas.iter().copied()).collect();
    let mut attrs = vec![
        attr_i("hidden_size", s.units as i64),
        attr_s("direction", direction),
        attr_strs("activations", &acts),
    ];
    if !alphas.is_empty() {
        attrs.push(attr_floats("activation_alpha", &alphas));
    }
    if !betas.is_empty() {
        attrs.push(attr_floats("activation_beta", &betas));
    }
    if let Kind::Gru { reset_after } = s.kind {
        attrs.push(attr_i("linear_before_reset", reset_after as i64));
    }
    let outputs = if s.kind == Kind::Lstm { 3 } else { 2 };
    let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
    Ok(cx.b.node_n(s.kind.op(), &l.base(""), &ins, attrs, outputs))
}

fn seq_tensor(value: String, x: &Tensor, features: usize) -> Tensor {
    Tensor {
        value,
        perm: vec![1, 0, 2],
        shape: vec![None, x.shape[1], Some(features)],
        dtype: FLOAT,
    }
}

fn flat_tensor(value: String, features: usize) -> Tensor {
    Tensor {
        value,
        perm: vec![0, 1],
        shape: vec![None, Some(features)],
        dtype: FLOAT,
    }
}

/// Reverses axis 0 (time) of a value.
fn flip_time(cx: &mut Cx, l: &Layer, v: &str) -> String {
    let (s, e, a, st) = (
        cx.b.ints(&[-1]),
        cx.b.ints(&[i64::MIN]),
        cx.b.ints(&[0]),
        cx.b.ints(&[-1]),
    );
    cx.b.op("Slice", &l.base("reversed"), &[v, &s, &e, &a, &st], vec![])
}

pub fn rnn(cx: &mut Cx, l: &Layer, x: Tensor, kwargs: &Kwargs) -> Result<Vec<Tensor>> {
    reject_state_kwargs(l, kwargs)?;
    let s = spec(cx, l, &l.class, l.config)?;
    let w = cx.weights(l, &["cell"], &[2, 3])?;
    let dw = direction(l, &s, &w)?;
    let dir = if s.go_backwards { "reverse" } else { "forward" };
    let outs = emit(cx, l, &x, &[&s], &[dw], dir)?;
    let h = s.units;
    let y = if s.return_sequences {
        let y = cx.b.squeeze(&l.base("sequence"), &outs[0], &[1]);
        let y = if s.go_backwards {
            flip_time(cx, l, &y)
        } else {
            y
        };
        seq_tensor(y, &x, h)
    } else {
        flat_tensor(cx.b.squeeze(&l.base("last"), &outs[1], &[0]), h)
    };
    let mut result = vec![y];
    if s.return_state {
        for (i, name) in ["state_h", "state_c"]
            .iter()
            .enumerate()
            .take(outs.len() - 1)
        {
            let v = cx.b.squeeze(&l.base(name), &outs[1 + i], &[0]);
            result.push(flat_tensor(v, h));
        }
    }
    Ok(result)
}

/// Slice `d` of axis `axis`, that axis removed.
fn pick(cx: &mut Cx, l: &Layer, v: &str, axis: i64, d: i64, tag: &str) -> String {
    let (s, e, a) = (cx.b.ints(&[d]), cx.b.ints(&[d + 1]), cx.b.ints(&[axis]));
    let sl = cx.b.op(
        "Slice",
        &l.base(&format!("{tag}_slice")),
        &[v, &s, &e, &a],
        vec![],
    );
    cx.b.squeeze(&l.base(tag), &sl, &[axis])
}

pub fn bidirectional(cx: &mut Cx, l: &Layer, x: Tensor, kwargs: &Kwargs) -> Result<Vec<Tensor>> {
    reject_state_kwargs(l, kwargs)?;
    let inner = l
        .get("layer")
        .ok_or_else(|| l.err("config has no 'layer'"))?;
    let class = inner["class_name"].as_str().unwrap_or("");
    let fw = spec(cx, l, class, &inner["config"])?;
    let bw = match l.get("backward_layer") {
        Some(b) => spec(cx, l, b["class_name"].as_str().unwrap_or(""), &b["config"])?,
        None => {
            let mut s = spec(cx, l, class, &inner["config"])?;
            s.go_backwards = !s.go_backwards;
            s
        }
    };
    if fw.go_backwards || !bw.go_backwards {
        return Err(l.err("a forward layer with go_backwards=true is not supported"));
    }
    if fw.kind != bw.kind || fw.units != bw.units || fw.use_bias != bw.use_bias {
        return Err(l.err("forward and backward layers of different kinds are not supported"));
    }
    let w = cx.weights(l, &["forward_layer/cell", "backward_layer/cell"], &[4, 6])?;
    let half = w.len() / 2;
    let dws = [
        direction(l, &fw, &w[..half])?,
        direction(l, &bw, &w[half..])?,
    ];
    let outs = emit(cx, l, &x, &[&fw, &bw], &dws, "bidirectional")?;
    let h = fw.units;
    let merge = l.get("merge_mode").and_then(Json::as_str);
    let mut result = Vec::new();
    if fw.return_sequences {
        // Y: [T, 2, B, H]
        match merge {
            Some("concat") => {
                let t = cx.b.transpose(&outs[0], &[0, 2, 1, 3]);
                let v = cx.b.reshape(&l.base("concat"), &t, &[0, 0, -1]);
                result.push(seq_tensor(v, &x, 2 * h));
            }
            Some(m @ ("sum" | "ave" | "mul")) => {
                let op = match m {
                    "sum" => "ReduceSum",
                    "ave" => "ReduceMean",
                    _ => "ReduceProd",
                };
                let v = cx.b.reduce(op, &l.base(m), &outs[0], &[1], false);
                result.push(seq_tensor(v, &x, h));
            }
            None => {
                for (d, tag) in ["forward", "backward"].iter().enumerate() {
                    let v = pick(cx, l, &outs[0], 1, d as i64, tag);
                    result.push(seq_tensor(v, &x, h));
                }
            }
            Some(other) => return Err(l.err(format!("merge_mode='{other}' is not supported"))),
        }
    } else {
        // Y_h: [2, B, H]
        match merge {
            Some("concat") => {
                let t = cx.b.transpose(&outs[1], &[1, 0, 2]);
                let v = cx.b.reshape(&l.base("concat"), &t, &[0, -1]);
                result.push(flat_tensor(v, 2 * h));
            }
            Some(m @ ("sum" | "ave" | "mul")) => {
                let op = match m {
                    "sum" => "ReduceSum",
                    "ave" => "ReduceMean",
                    _ => "ReduceProd",
                };
                let v = cx.b.reduce(op, &l.base(m), &outs[1], &[0], false);
                result.push(flat_tensor(v, h));
            }
            None => {
                for (d, tag) in ["forward", "backward"].iter().enumerate() {
                    let v = pick(cx, l, &outs[1], 0, d as i64, tag);
                    result.push(flat_tensor(v, h));
                }
            }
            Some(other) => return Err(l.err(format!("merge_mode='{other}' is not supported"))),
        }
    }
    if fw.return_state {
        // Keras: forward states, then backward states.
        for d in 0..2 {
            for (i, tag) in ["h", "c"].iter().enumerate().take(outs.len() - 1) {
                let v = pick(cx, l, &outs[1 + i], 0, d, &format!("state_{tag}_{d}"));
                result.push(flat_tensor(v, h));
            }
        }
    }
    Ok(result)
}
