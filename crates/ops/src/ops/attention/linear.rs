//! ONNX `LinearAttention`, opset 27: the recurrent form of linear attention, for prefill
//! (T > 1) and decode (T = 1), over packed `(B, T, H·D)` inputs.
//!
//! Each key/value head keeps a state `S` of `d_k x d_v`, updated token by token:
//! - `linear`:      `S = S + k ⊗ v`
//! - `gated`:       `S = exp(g)·S + k ⊗ v`
//! - `delta`:       `S = S + β·k ⊗ (v - Sᵀk)`
//! - `gated_delta`: `S = exp(g)·S` first, then the delta update on the decayed state,
//!
//! and each query head of its group reads `o = scale·qᵀS` (GQA: query head `h` uses state
//! `h / (q_heads / kv_heads)`). The decay `g` is per head `(B, T, H_kv)` or per key dimension
//! `(B, T, H_kv·d_k)`; `β` is per head `(B, T, H_kv)` or shared `(B, T, 1)`.
//!
//! Everything is computed in f32 whatever the input type (float, float16, bfloat16), one rayon
//! task per (batch, key/value head); the recurrence is sequential in T by definition.
//! `chunk_size` is a tuning hint for chunk-parallel implementations and does not change the
//! result.

use rayon::prelude::*;
use runnx_ir::Value;

use super::{heads_attr, split_even};
use crate::ops::norm::Real;
use crate::{Inputs, Kernel, NodeInfo, OpError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UpdateRule {
    Linear,
    Gated,
    Delta,
    GatedDelta,
}

impl UpdateRule {
    fn gated(self) -> bool {
        matches!(self, UpdateRule::Gated | UpdateRule::GatedDelta)
    }
    fn delta(self) -> bool {
        matches!(self, UpdateRule::Delta | UpdateRule::GatedDelta)
    }
}

pub(super) struct LinearAttention {
    q_heads: usize,
    kv_heads: usize,
    /// 0 means `1/√d_k`.
    scale: f32,
    rule: UpdateRule,
}

pub(super) fn build(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let required = |name: &str| {
        heads_attr(info.attr_int_opt(name)?, name)?
            .ok_or_else(|| OpError::attribute(name, "is required"))
    };
    let (q_heads, kv_heads) = (required("q_num_heads")?, required("kv_num_heads")?);
    if q_heads % kv_heads != 0 {
        return Err(OpError::attribute(
            "q_num_heads",
            format!("{q_heads} is not a multiple of kv_num_heads {kv_heads}"),
        ));
    }
    let rule = match info.attr_string("update_rule", "gated_delta")?.as_str() {
        "linear" => UpdateRule::Linear,
        "gated" => UpdateRule::Gated,
        "delta" => UpdateRule::Delta,
        "gated_delta" => UpdateRule::GatedDelta,
        other => {
            return Err(OpError::attribute(
                "update_rule",
                format!("'{other}' is not one of linear, gated, delta, gated_delta"),
            ))
        }
    };
    info.attr_int("chunk_size", 64)?;
    Ok(Box::new(LinearAttention {
        q_heads,
        kv_heads,
        scale: info.attr_float("scale", 0.0)?,
        rule,
    }))
}

/// A per-token gate input (`decay` or `beta`) seen as `(B, T, heads, width)`, where `heads`
/// is the number of key/value heads or 1 (one value shared by every head).
struct Gate {
    values: Vec<f32>,
    heads: usize,
    width: usize,
}

impl Gate {
    /// The `width` values of head `h` at token `t` of batch `b` (of `len` tokens).
    fn at(&self, b: usize, t: usize, len: usize, h: usize) -> &[f32] {
        let head = if self.heads == 1 { 0 } else { h };
        &self.values[((b * len + t) * self.heads + head) * self.width..][..self.width]
    }
}

impl LinearAttention {
    /// Reads a rank-3 gate input laid out as one of `layouts` (`(heads, width)` pairs).
    fn gate(
        inputs: &Inputs,
        index: usize,
        name: &str,
        bt: (usize, usize),
        layouts: &[(usize, usize)],
    ) -> Result<Gate, OpError> {
        let t = inputs.tensor(index)?;
        let s = t.shape();
        if s.len() != 3 || (s[0], s[1]) != bt {
            return Err(OpError::input(
                index,
                format!("{name} must be ({}, {}, ·), got {s:?}", bt.0, bt.1),
            ));
        }
        let &(heads, width) = layouts.iter().find(|(h, w)| h * w == s[2]).ok_or_else(|| {
            OpError::input(
                index,
                format!(
                    "{name} last dim {} must be one of {:?}",
                    s[2],
                    layouts.iter().map(|(h, w)| h * w).collect::<Vec<_>>()
                ),
            )
        })?;
        Ok(Gate {
            values: f32::read(t, index)?.into_owned(),
            heads,
            width,
        })
    }
}

impl Kernel for LinearAttention {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (q, k, v) = (inputs.tensor(0)?, inputs.tensor(1)?, inputs.tensor(2)?);
        let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
        if qs.len() != 3 || ks.len() != 3 || vs.len() != 3 {
            return Err(OpError::invalid(format!(
                "query, key and value must be rank 3 (B, T, H·D), got {qs:?}, {ks:?}, {vs:?}"
            )));
        }
        let (b, len) = (qs[0], qs[1]);
        if ks[..2] != [b, len] || vs[..2] != [b, len] {
            return Err(OpError::invalid(format!(
                "query {qs:?}, key {ks:?} and value {vs:?} disagree on batch or length"
            )));
        }
        let (hq, hkv) = (self.q_heads, self.kv_heads);
        let dk = split_even(qs[2], hq, "query hidden size")?;
        let dv = split_even(vs[2], hkv, "value hidden size")?;
        if ks[2] != hkv * dk {
            return Err(OpError::input(
                1,
                format!("key hidden size must be {hkv}·{dk}, got {}", ks[2]),
            ));
        }
        let (has_decay, has_beta) = (inputs.has(4), inputs.has(5));
        if self.rule.gated() != has_decay {
            return Err(OpError::invalid(format!(
                "update rule {:?} {} the decay input",
                self.rule,
                if has_decay { "forbids" } else { "requires" }
            )));
        }
        if self.rule.delta() != has_beta {
            return Err(OpError::invalid(format!(
                "update rule {:?} {} the beta input",
                self.rule,
                if has_beta { "forbids" } else { "requires" }
            )));
        }
        let decay = has_decay
            .then(|| Self::gate(&inputs, 4, "decay", (b, len), &[(hkv, 1), (hkv, dk)]))
            .transpose()?;
        let beta = has_beta
            .then(|| Self::gate(&inputs, 5, "beta", (b, len), &[(hkv, 1), (1, 1)]))
            .transpose()?;
        let past = inputs.opt_tensor(3)?;
        if let Some(p) = past {
            if p.shape() != [b, hkv, dk, dv] {
                return Err(OpError::input(
                    3,
                    format!(
                        "past_state must be ({b}, {hkv}, {dk}, {dv}), got {:?}",
                        p.shape()
                    ),
                ));
            }
        }
        let past_values = past.map(|p| f32::read(p, 3)).transpose()?;
        let (qf, kf, vf) = (f32::read(q, 0)?, f32::read(k, 1)?, f32::read(v, 2)?);
        let scale = if self.scale == 0.0 {
            1.0 / (dk as f32).sqrt()
        } else {
            self.scale
        };
        let group = hq / hkv;
        let state_len = dk * dv;

        // One task per (batch, kv head): its final state and its group's outputs (T, group, dv).
        let tasks: Vec<(Vec<f32>, Vec<f32>)> = (0..b * hkv)
            .into_par_iter()
            .map(|task| {
                let (bi, h) = (task / hkv, task % hkv);
                let mut state = match &past_values {
                    Some(p) => p[task * state_len..][..state_len].to_vec(),
                    None => vec![0.0f32; state_len],
                };
                let mut out = vec![0.0f32; len * group * dv];
                let mut update = vec![0.0f32; dv];
                for t in 0..len {
                    let token = (bi * len + t) * hkv;
                    let kt = &kf[(token + h) * dk..][..dk];
                    let vt = &vf[(token + h) * dv..][..dv];
                    if let Some(g) = &decay {
                        let g = g.at(bi, t, len, h);
                        for (d, row) in state.chunks_mut(dv).enumerate() {
                            let factor = g[if g.len() == 1 { 0 } else { d }].exp();
                            row.iter_mut().for_each(|s| *s *= factor);
                        }
                    }
                    update.copy_from_slice(vt);
                    if let Some(beta) = &beta {
                        // v ← β·(v - Sᵀk): write only the part the state does not yet hold.
                        let bt = beta.at(bi, t, len, h)[0];
                        for (m, u) in update.iter_mut().enumerate() {
                            let retrieved: f32 = (0..dk).map(|d| state[d * dv + m] * kt[d]).sum();
                            *u = bt * (*u - retrieved);
                        }
                    }
                    for (row, &kd) in state.chunks_mut(dv).zip(kt) {
                        row.iter_mut().zip(&update).for_each(|(s, &u)| *s += kd * u);
                    }
                    for g in 0..group {
                        let qh = h * group + g;
                        let qt = &qf[((bi * len + t) * hq + qh) * dk..][..dk];
                        let o = &mut out[(t * group + g) * dv..][..dv];
                        for (row, &qd) in state.chunks(dv).zip(qt) {
                            o.iter_mut().zip(row).for_each(|(o, &s)| *o += qd * s);
                        }
                        o.iter_mut().for_each(|o| *o *= scale);
                    }
                }
                (state, out)
            })
            .collect();

        let mut output = vec![0.0f32; b * len * hq * dv];
        let mut present = Vec::with_capacity(b * hkv * state_len);
        for (task, (state, out)) in tasks.into_iter().enumerate() {
            let (bi, h) = (task / hkv, task % hkv);
            for t in 0..len {
                let dst = ((bi * len + t) * hq + h * group) * dv;
                output[dst..dst + group * dv].copy_from_slice(&out[t * group * dv..][..group * dv]);
            }
            present.extend_from_slice(&state);
        }
        let state_dtype = past.map_or(q.dtype(), |p| p.dtype());
        Ok(vec![
            Value::Tensor(f32::to_tensor(output, q.dtype(), &[b, len, hq * dv])?),
            Value::Tensor(f32::to_tensor(present, state_dtype, &[b, hkv, dk, dv])?),
        ])
    }
}

#[cfg(test)]
mod tests {
    use runnx_ir::AttributeValue;

    use crate::ops::elementwise::tests::{run_op, t};

    #[test]
    fn linear_rule_is_causal_linear_attention() {
        // One batch, 3 tokens, 2 query heads sharing 1 kv head, d_k = 2, d_v = 1.
        let q = vec![
            1.0f32, 0.5, -1.0, 2.0, 0.25, 0.0, 1.0, 1.0, -0.5, 0.5, 2.0, -1.0,
        ];
        let k = vec![1.0f32, -1.0, 0.5, 0.5, 2.0, 1.0];
        let v = vec![1.0f32, -2.0, 0.5];
        let attrs = vec![
            ("q_num_heads", AttributeValue::Int(2)),
            ("kv_num_heads", AttributeValue::Int(1)),
            ("update_rule", AttributeValue::String(b"linear".to_vec())),
        ];
        let out = run_op(
            "LinearAttention",
            27,
            attrs,
            vec![
                t(&[1, 3, 4], q.clone()),
                t(&[1, 3, 2], k.clone()),
                t(&[1, 3, 1], v.clone()),
            ],
        )
        .unwrap();
        let scale = 1.0 / 2f32.sqrt();
        // o[t, h] = scale · Σ_{s <= t} (q[t, h] · k[s]) v[s]
        let mut want = Vec::new();
        for ti in 0..3 {
            for h in 0..2 {
                let qt = &q[(ti * 2 + h) * 2..][..2];
                let o: f32 = (0..=ti)
                    .map(|s| (qt[0] * k[s * 2] + qt[1] * k[s * 2 + 1]) * v[s])
                    .sum();
                want.push(scale * o);
            }
        }
        let got = out[0].as_slice::<f32>().unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        // The final state is Σ k ⊗ v.
        let state = out[1].as_slice::<f32>().unwrap();
        let s0: f32 = (0..3).map(|s| k[s * 2] * v[s]).sum();
        let s1: f32 = (0..3).map(|s| k[s * 2 + 1] * v[s]).sum();
        assert_eq!(out[1].shape(), [1, 1, 2, 1]);
        assert!((state[0] - s0).abs() < 1e-6 && (state[1] - s1).abs() < 1e-6);
    }
}
