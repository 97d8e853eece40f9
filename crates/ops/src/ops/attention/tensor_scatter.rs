//! ONNX `TensorScatter`, opset 24: writes `update` into a copy of `past_cache` along the
//! sequence axis at a per-batch offset — the functional form of an in-place KV cache update.
//!
//! For every prefix index `p` of the dims before `axis` (batch `p[0]`) and every update position
//! `s`: `present[p, write_indices[p[0]] + s, ...] = update[p, s, ...]`, the cache index taken
//! modulo the cache length in `circular` mode and required to fit in `linear` mode.
//!
//! Type-agnostic: the output is one gather from the concatenation of the two buffers.

use runnx_ir::{Tensor, TensorData, Value};

use crate::{Inputs, Kernel, NodeInfo, OpError};

pub(super) struct TensorScatter {
    axis: i64,
    circular: bool,
}

pub(super) fn build(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let circular = match info.attr_string("mode", "linear")?.as_str() {
        "linear" => false,
        "circular" => true,
        other => {
            return Err(OpError::attribute(
                "mode",
                format!("'{other}' is not one of linear, circular"),
            ))
        }
    };
    Ok(Box::new(TensorScatter {
        axis: info.attr_int("axis", -2)?,
        circular,
    }))
}

impl Kernel for TensorScatter {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (past, update) = (inputs.tensor(0)?, inputs.tensor(1)?);
        let (ps, us) = (past.shape(), update.shape());
        let rank = ps.len() as i64;
        let axis = if self.axis < 0 {
            self.axis + rank
        } else {
            self.axis
        };
        if axis <= 0 || axis >= rank {
            return Err(OpError::attribute(
                "axis",
                format!(
                    "{} is not a non-batch axis of a rank-{rank} cache",
                    self.axis
                ),
            ));
        }
        let axis = axis as usize;
        let fits = us.len() == ps.len()
            && us
                .iter()
                .zip(ps)
                .enumerate()
                .all(|(i, (u, p))| if i == axis { u <= p } else { u == p });
        if !fits || past.dtype() != update.dtype() {
            return Err(OpError::invalid(format!(
                "update {} {us:?} does not fit cache {} {ps:?} along axis {axis}",
                update.dtype(),
                past.dtype()
            )));
        }
        let batch = ps[0];
        let write: Vec<i64> = match inputs.opt_tensor(2)? {
            Some(w) => {
                let w = w
                    .as_slice::<i64>()
                    .map_err(|_| OpError::input(2, format!("expected int64, got {}", w.dtype())))?;
                if w.len() != batch {
                    return Err(OpError::input(
                        2,
                        format!("expected {batch} write indices, got {}", w.len()),
                    ));
                }
                w.to_vec()
            }
            None => vec![0; batch],
        };
        let outer: usize = ps[..axis].iter().product();
        let (max_len, len) = (ps[axis], us[axis]);
        let inner: usize = ps[axis + 1..].iter().product();
        let per_batch = outer.checked_div(batch).unwrap_or(0);

        // Output element i reads element indices[i] of [past; update].
        let mut indices: Vec<usize> = (0..past.len()).collect();
        for o in 0..outer {
            let start = write[o / per_batch.max(1)];
            for s in 0..len {
                let pos = start + s as i64;
                let dst = if self.circular {
                    pos.rem_euclid(max_len as i64)
                } else {
                    pos
                };
                if dst < 0 || dst >= max_len as i64 {
                    return Err(OpError::input(
                        2,
                        format!(
                            "write index {start} + {len} updates overflows the cache length {max_len}"
                        ),
                    ));
                }
                let to = (o * max_len + dst as usize) * inner;
                let from = past.len() + (o * len + s) * inner;
                for (i, slot) in indices[to..to + inner].iter_mut().enumerate() {
                    *slot = from + i;
                }
            }
        }
        let all = TensorData::concat(&[past.data(), update.data()])
            .ok_or_else(|| OpError::invalid("past_cache and update differ in type"))?;
        Ok(vec![Value::Tensor(Tensor::new(ps, all.gather(&indices))?)])
    }
}

#[cfg(test)]
mod tests {
    use runnx_ir::AttributeValue;

    use crate::ops::elementwise::tests::{run_op, t};

    #[test]
    fn writes_at_each_batch_offset_and_wraps_when_circular() {
        // Cache (batch 2, length 4, 1), three updates per batch at offsets 2 and 0.
        let past = || t(&[2, 4, 1], vec![0i32; 8]);
        let update = || t(&[2, 3, 1], vec![1i32, 2, 3, 4, 5, 6]);
        let circular = vec![("mode", AttributeValue::String(b"circular".to_vec()))];
        let out = run_op(
            "TensorScatter",
            24,
            circular,
            vec![past(), update(), t(&[2], vec![2i64, 0])],
        )
        .unwrap();
        assert_eq!(out[0].as_slice::<i32>().unwrap(), &[3, 0, 1, 2, 4, 5, 6, 0]);
        // Linear mode must not run past the end of the cache.
        let err = run_op(
            "TensorScatter",
            24,
            vec![],
            vec![past(), update(), t(&[2], vec![2i64, 0])],
        );
        assert!(err.is_err());
        let out = run_op("TensorScatter", 24, vec![], vec![past(), update()]).unwrap();
        assert_eq!(out[0].as_slice::<i32>().unwrap(), &[1, 2, 3, 0, 4, 5, 6, 0]);
    }
}
