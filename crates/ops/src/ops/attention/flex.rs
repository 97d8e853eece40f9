//! ai.onnx.preview `FlexAttention`, version 1: scaled dot-product attention over rank-4
//! inputs with two optional user subgraphs, `score_mod` on the logits and `prob_mod` on the
//! probabilities (PyTorch's `flex_attention`):
//!
//! ```text
//! S = (Q·√scale)·(K·√scale)ᵀ   in the input type, then cast to the softmax precision
//! S = score_mod(S)             (B, Hq, L, S) -> same
//! P = softmax(S)               along the keys
//! P = prob_mod(P)
//! Y = P·V                      in the softmax precision, cast to V's type
//! ```
//!
//! GQA as in `Attention`: query head `h` reads key/value head `h / (Hq / Hkv)`. The softmax
//! precision defaults to f32 (f64 for double inputs). Unlike `Attention`, a row that
//! `score_mod` masks entirely is not special-cased: its softmax is NaN, as in the reference.
//!
//! The subgraphs see the whole score tensor at once, so the computation runs in three batched
//! phases (all `Q·Kᵀ` products, the modifiers and softmax, all `P·V` products), each product
//! one rayon task per (batch, query head).

use std::sync::Arc;

use rayon::prelude::*;
use runnx_ir::{DataType, Tensor, Value};

use super::{pv_product, qk_product, round_to, softmax_precision, softmax_row};
use crate::context::{captured_positions, implicit_input_names};
use crate::ops::norm::Real;
use crate::{Inputs, Kernel, NodeInfo, OpError, Subgraph};

/// A compiled modifier subgraph and where its captured values sit among the implicit inputs.
struct Modifier {
    name: &'static str,
    graph: Arc<dyn Subgraph>,
    positions: Vec<usize>,
}

pub(super) struct FlexAttention {
    scale: Option<f32>,
    softmax_precision: Option<DataType>,
    score_mod: Option<Modifier>,
    prob_mod: Option<Modifier>,
    declared: usize,
}

pub(super) fn build(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let mut compiled = Vec::new();
    for name in ["score_mod", "prob_mod"] {
        if info.has_attr(name) {
            compiled.push((name, info.subgraphs.compile(info.attr_graph(name)?)?));
        }
    }
    let graphs: Vec<Arc<dyn Subgraph>> = compiled.iter().map(|(_, g)| g.clone()).collect();
    let implicit = implicit_input_names(&graphs);
    let mut score_mod = None;
    let mut prob_mod = None;
    for (name, graph) in compiled {
        let m = Modifier {
            name,
            positions: captured_positions(&implicit, graph.as_ref()),
            graph,
        };
        if name == "score_mod" {
            score_mod = Some(m);
        } else {
            prob_mod = Some(m);
        }
    }
    Ok(Box::new(FlexAttention {
        scale: info.attr_float_opt("scale")?,
        softmax_precision: softmax_precision(info.attr_int_opt("softmax_precision")?)?,
        score_mod,
        prob_mod,
        declared: info.num_inputs(),
    }))
}

impl Modifier {
    /// Runs the subgraph on `values` (shape `shape`, carried as `dtype`) and returns its single
    /// output, checked to keep the shape.
    fn apply<W: Real>(
        &self,
        values: Vec<W>,
        shape: &[usize],
        dtype: DataType,
        implicit: &[Value],
    ) -> Result<Vec<W>, OpError> {
        let input = Value::Tensor(W::to_tensor(values, dtype, shape)?);
        let captured: Vec<Value> = self
            .positions
            .iter()
            .map(|&p| implicit[p].clone())
            .collect();
        let mut outs = self.graph.run(vec![input], &captured)?;
        if outs.len() != 1 {
            return Err(OpError::invalid(format!(
                "{} must produce exactly one output, got {}",
                self.name,
                outs.len()
            )));
        }
        let Some(Value::Tensor(out)) = outs.pop() else {
            return Err(OpError::invalid(format!(
                "{} must produce a tensor",
                self.name
            )));
        };
        if out.shape() != shape {
            return Err(OpError::invalid(format!(
                "{} must keep the shape {shape:?}, produced {:?}",
                self.name,
                out.shape()
            )));
        }
        Ok(W::read(&out, 0)
            .map_err(|_| {
                OpError::invalid(format!("{} produced a {} tensor", self.name, out.dtype()))
            })?
            .into_owned())
    }
}

impl FlexAttention {
    /// Computes in `W`, the type of the softmax precision (f32 for float/float16/bfloat16, f64
    /// for double).
    fn typed<W: Real>(&self, inputs: &Inputs, precision: DataType) -> Result<Vec<Value>, OpError> {
        let (q, k, v) = (inputs.tensor(0)?, inputs.tensor(1)?, inputs.tensor(2)?);
        let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
        if qs.len() != 4 || ks.len() != 4 || vs.len() != 4 {
            return Err(OpError::invalid(format!(
                "FlexAttention needs rank-4 Q, K, V, got {qs:?}, {ks:?}, {vs:?}"
            )));
        }
        let (b, hq, l, e) = (qs[0], qs[1], qs[2], qs[3]);
        let (hkv, s, ev) = (ks[1], ks[2], vs[3]);
        if ks[0] != b || vs[0] != b || vs[1] != hkv || vs[2] != s || ks[3] != e {
            return Err(OpError::invalid(format!(
                "Q {qs:?}, K {ks:?} and V {vs:?} do not agree on batch, heads, length or head size"
            )));
        }
        if hkv == 0 || hq % hkv != 0 {
            return Err(OpError::invalid(format!(
                "{hq} query heads are not a multiple of {hkv} key/value heads"
            )));
        }
        let group = hq / hkv;
        let t1 = q.dtype();
        let implicit: Vec<Value> = inputs.rest(self.declared).flatten().cloned().collect();

        // Logits in the input type: √scale (computed in f32, as the reference does) cast to
        // T1, applied to Q and K, the product rounded to T1.
        let scale = self.scale.unwrap_or_else(|| 1.0 / (e as f32).sqrt());
        let mut root = [W::of(scale.sqrt())];
        round_to(&mut root, t1);
        let scaled = |x: &Tensor, index: usize| -> Result<Vec<W>, OpError> {
            let mut s: Vec<W> = W::read(x, index)?.iter().map(|&x| x * root[0]).collect();
            round_to(&mut s, t1);
            Ok(s)
        };
        let (qw, kw) = (scaled(q, 0)?, scaled(k, 1)?);
        let vw = W::read(v, 2)?;
        let heads: Vec<Vec<W>> = (0..b * hq)
            .into_par_iter()
            .map(|task| {
                let kv = (task / hq) * hkv + (task % hq) / group;
                let mut sc = qk_product(
                    &qw[task * l * e..][..l * e],
                    &kw[kv * s * e..][..s * e],
                    l,
                    s,
                    e,
                )?;
                round_to(&mut sc, t1);
                round_to(&mut sc, precision);
                Ok(sc)
            })
            .collect::<Result<_, OpError>>()?;
        let mut scores: Vec<W> = heads.concat();
        let shape = [b, hq, l, s];

        if let Some(m) = &self.score_mod {
            scores = m.apply(scores, &shape, precision, &implicit)?;
        }
        for row in scores.chunks_mut(s.max(1)) {
            plain_softmax(row, precision);
        }
        if let Some(m) = &self.prob_mod {
            scores = m.apply(scores, &shape, precision, &implicit)?;
        }

        let outs: Vec<Vec<W>> = (0..b * hq)
            .into_par_iter()
            .map(|task| {
                let kv = (task / hq) * hkv + (task % hq) / group;
                let mut vh = vw[kv * s * ev..][..s * ev].to_vec();
                round_to(&mut vh, precision);
                pv_product(&scores[task * l * s..][..l * s], &vh, l, s, ev)
            })
            .collect::<Result<_, OpError>>()?;
        let y = W::to_tensor(outs.concat(), v.dtype(), &[b, hq, l, ev])?;
        Ok(vec![Value::Tensor(y)])
    }
}

/// `exp(x - max) / Σ exp(x - max)` with no masked-row guard: an all `-inf` row gives NaN.
fn plain_softmax<W: Real>(row: &mut [W], precision: DataType) {
    let max = row.iter().fold(W::neg_infinity(), |m, &x| {
        if m.is_nan() || x.is_nan() {
            W::nan()
        } else {
            m.max(x)
        }
    });
    if max == W::neg_infinity() {
        row.fill(W::nan());
        return;
    }
    // Otherwise identical to the guarded softmax.
    softmax_row(row, precision);
}

impl Kernel for FlexAttention {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let t1 = inputs.tensor(0)?.dtype();
        let precision = match self.softmax_precision {
            Some(p) => p,
            None => match t1 {
                DataType::Double => DataType::Double,
                DataType::Float | DataType::Float16 | DataType::Bfloat16 => DataType::Float,
                other => {
                    return Err(OpError::input(
                        0,
                        format!("expected float, double, float16 or bfloat16, got {other}"),
                    ))
                }
            },
        };
        if precision == DataType::Double {
            self.typed::<f64>(&inputs, precision)
        } else {
            self.typed::<f32>(&inputs, precision)
        }
    }
}
