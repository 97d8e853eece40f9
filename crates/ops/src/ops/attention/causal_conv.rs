//! ONNX `CausalConvWithState`, opset 27: a causal depthwise 1D convolution that carries its
//! left context between calls (Mamba, Gated DeltaNet).
//!
//! With `x̃ = [past_state (or k-1 zeros); input]` along the length axis, for each batch `b`,
//! channel `c` and position `t`: `out[b, c, t] = bias[c] + Σ_i weight[c, 0, i]·x̃[b, c, t + i]`,
//! optionally followed by SiLU (`silu` or `swish`: `y·sigmoid(y)`), and
//! `present_state = x̃[b, c, len - (k-1)..]`, the last `k-1` positions of `x̃`.
//!
//! Computed in f32 for float, float16 and bfloat16; the convolution result is rounded to the
//! input type before the activation, as the reference does. One rayon task per channel row.

use rayon::prelude::*;
use runnx_ir::Value;

use crate::ops::norm::Real;
use crate::{Inputs, Kernel, NodeInfo, OpError};

pub(super) struct CausalConvWithState {
    silu: bool,
}

pub(super) fn build(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let silu = match info.attr_string("activation", "none")?.as_str() {
        "none" => false,
        "silu" | "swish" => true,
        other => {
            return Err(OpError::attribute(
                "activation",
                format!("'{other}' is not one of none, silu, swish"),
            ))
        }
    };
    Ok(Box::new(CausalConvWithState { silu }))
}

impl Kernel for CausalConvWithState {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (x, w) = (inputs.tensor(0)?, inputs.tensor(1)?);
        let (xs, ws) = (x.shape(), w.shape());
        if xs.len() != 3 {
            return Err(OpError::input(
                0,
                format!("input must be (batch, channels, length), got {xs:?}"),
            ));
        }
        let (batch, channels, len) = (xs[0], xs[1], xs[2]);
        if ws.len() != 3 || ws[0] != channels || ws[1] != 1 || ws[2] == 0 {
            return Err(OpError::input(
                1,
                format!("weight must be ({channels}, 1, k) with k >= 1, got {ws:?}"),
            ));
        }
        let k = ws[2];
        let carry = k - 1;
        let bias = inputs.opt_tensor(2)?;
        if let Some(b) = bias {
            if b.shape() != [channels] {
                return Err(OpError::input(
                    2,
                    format!("bias must be ({channels}), got {:?}", b.shape()),
                ));
            }
        }
        let past = inputs.opt_tensor(3)?;
        if let Some(p) = past {
            if p.shape() != [batch, channels, carry] {
                return Err(OpError::input(
                    3,
                    format!(
                        "past_state must be ({batch}, {channels}, {carry}), got {:?}",
                        p.shape()
                    ),
                ));
            }
        }
        let dtype = x.dtype();
        let xv = f32::read(x, 0)?;
        let wv = f32::read(w, 1)?;
        let bv = bias.map(|b| f32::read(b, 2)).transpose()?;
        let pv = past.map(|p| f32::read(p, 3)).transpose()?;

        let rows: Vec<(Vec<f32>, Vec<f32>)> = (0..batch * channels)
            .into_par_iter()
            .map(|row| {
                let c = row % channels;
                // x̃ for this row: the carried context, then the input.
                let mut padded = match &pv {
                    Some(p) => p[row * carry..][..carry].to_vec(),
                    None => vec![0.0; carry],
                };
                padded.extend_from_slice(&xv[row * len..][..len]);
                let kernel = &wv[c * k..][..k];
                let b = bv.as_ref().map_or(0.0, |b| b[c]);
                let mut out: Vec<f32> = padded
                    .windows(k)
                    .map(|win| b + win.iter().zip(kernel).map(|(x, w)| x * w).sum::<f32>())
                    .collect();
                if self.silu {
                    super::round_to(&mut out, dtype);
                    out.iter_mut().for_each(|y| *y /= 1.0 + (-*y).exp());
                }
                let state = padded[padded.len() - carry..].to_vec();
                (out, state)
            })
            .collect();
        let (mut out, mut state) = (Vec::with_capacity(xv.len()), Vec::new());
        for (o, s) in rows {
            out.extend_from_slice(&o);
            state.extend_from_slice(&s);
        }
        Ok(vec![
            Value::Tensor(f32::to_tensor(out, dtype, xs)?),
            Value::Tensor(f32::to_tensor(state, dtype, &[batch, channels, carry])?),
        ])
    }
}
