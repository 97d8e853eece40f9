//! ONNX `RotaryEmbedding`, opset 23: rotary positional embeddings (RoPE).
//!
//! Each head vector's first `rotary_embedding_dim` values are taken as `rd/2` pairs, either the
//! two halves (`x[i]`, `x[i + rd/2]`) or, `interleaved`, neighbours (`x[2i]`, `x[2i+1]`), and
//! each pair is rotated by the angle of its token's position:
//! `(x1, x2) -> (cos·x1 - sin·x2, sin·x1 + cos·x2)`; the remaining values pass through.
//! `cos`/`sin` come from caches indexed by `position_ids` (`(max_pos, rd/2)` caches), or, with
//! no position ids, are given per token (`(B, S, rd/2)` caches).
//!
//! X is `(B, H, S, D)` or packed `(B, S, H·D)` (then `num_heads` gives H). Computed in f32 for
//! float, float16 and bfloat16, one head vector at a time, in parallel for large inputs.

use rayon::prelude::*;
use runnx_ir::Value;

use crate::ops::norm::Real;
use crate::{Inputs, Kernel, NodeInfo, OpError};

pub(super) struct RotaryEmbedding {
    interleaved: bool,
    /// 0 rotates the whole head.
    rotary_dim: usize,
    num_heads: Option<usize>,
}

pub(super) fn build(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let rotary_dim = info.attr_int("rotary_embedding_dim", 0)?;
    if rotary_dim < 0 {
        return Err(OpError::attribute(
            "rotary_embedding_dim",
            format!("must be nonnegative, got {rotary_dim}"),
        ));
    }
    Ok(Box::new(RotaryEmbedding {
        interleaved: info.attr_int("interleaved", 0)? != 0,
        rotary_dim: rotary_dim as usize,
        num_heads: super::heads_attr(info.attr_int_opt("num_heads")?, "num_heads")?,
    }))
}

/// Below this many elements the rotation runs on one thread.
const PARALLEL_ELEMENTS: usize = 1 << 15;

impl Kernel for RotaryEmbedding {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let shape = x.shape().to_vec();
        // (batch, heads, seq, head_size), and whether X is packed (B, S, H·D).
        let (b, h, s, d, packed) = match shape.len() {
            4 => (shape[0], shape[1], shape[2], shape[3], false),
            3 => {
                let h = self
                    .num_heads
                    .ok_or_else(|| OpError::attribute("num_heads", "is required for a 3D input"))?;
                let d = super::split_even(shape[2], h, "hidden size")?;
                (shape[0], h, shape[1], d, true)
            }
            r => {
                return Err(OpError::input(
                    0,
                    format!("X must be 3D or 4D, got rank {r}"),
                ))
            }
        };
        let rd = if self.rotary_dim == 0 {
            d
        } else {
            self.rotary_dim
        };
        if rd > d || rd % 2 != 0 {
            return Err(OpError::invalid(format!(
                "rotary_embedding_dim {rd} must be even and at most the head size {d}"
            )));
        }
        let half = rd / 2;
        let (cos_t, sin_t) = (inputs.tensor(1)?, inputs.tensor(2)?);
        if cos_t.shape() != sin_t.shape() {
            return Err(OpError::invalid(format!(
                "cos_cache {:?} and sin_cache {:?} differ in shape",
                cos_t.shape(),
                sin_t.shape()
            )));
        }
        let cache = cos_t.shape();
        // Row of the caches for token (batch, position in sequence).
        let rows: Vec<usize> = match inputs.opt_tensor(3)? {
            Some(p) => {
                if p.shape() != [b, s] {
                    return Err(OpError::input(
                        3,
                        format!("position_ids must be ({b}, {s}), got {:?}", p.shape()),
                    ));
                }
                if cache.len() != 2 || cache[1] != half {
                    return Err(OpError::input(
                        1,
                        format!("with position_ids the caches must be (max_position, {half}), got {cache:?}"),
                    ));
                }
                let ids = p
                    .as_slice::<i64>()
                    .map_err(|_| OpError::input(3, format!("expected int64, got {}", p.dtype())))?;
                ids.iter()
                    .map(|&id| {
                        usize::try_from(id)
                            .ok()
                            .filter(|&i| i < cache[0])
                            .ok_or_else(|| {
                                OpError::input(
                                    3,
                                    format!(
                                        "position id {id} is outside the {} cached positions",
                                        cache[0]
                                    ),
                                )
                            })
                    })
                    .collect::<Result<_, _>>()?
            }
            None => {
                if cache != [b, s, half] {
                    return Err(OpError::input(
                        1,
                        format!("without position_ids the caches must be ({b}, {s}, {half}), got {cache:?}"),
                    ));
                }
                (0..b * s).collect()
            }
        };
        let (cos, sin) = (f32::read(cos_t, 1)?, f32::read(sin_t, 2)?);
        let mut y = f32::read(x, 0)?.into_owned();

        let rotate = |(index, v): (usize, &mut [f32])| {
            // The head vector `index` in X's layout: (b, h, s) or, packed, (b, s, h).
            let (bi, si) = if packed {
                (index / (s * h), index / h % s)
            } else {
                (index / (h * s), index % s)
            };
            let row = rows[bi * s + si] * half;
            let (c, sn) = (&cos[row..row + half], &sin[row..row + half]);
            for i in 0..half {
                let (a, bb) = if self.interleaved {
                    (2 * i, 2 * i + 1)
                } else {
                    (i, i + half)
                };
                let (x1, x2) = (v[a], v[bb]);
                v[a] = c[i] * x1 - sn[i] * x2;
                v[bb] = sn[i] * x1 + c[i] * x2;
            }
        };
        if d > 0 {
            if y.len() >= PARALLEL_ELEMENTS {
                y.par_chunks_mut(d).enumerate().for_each(rotate);
            } else {
                y.chunks_mut(d).enumerate().for_each(rotate);
            }
        }
        Ok(vec![Value::Tensor(f32::to_tensor(y, x.dtype(), &shape)?)])
    }
}
