//! CenterCropPad (opset 18).

use runnx_ir::{Tensor, Value};

use super::concat_default;
use crate::ops::shape::copy::for_row_chunks;
use crate::ops::shape::{ints_input, normalize_axes};
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(super) fn register(reg: &mut Registry) {
    reg.add("", "CenterCropPad", 18, build);
}

/// ONNX `CenterCropPad`: brings each axis in `axes` (default: all) to the length `shape` gives,
/// cropping or zero-padding around the centre; when the difference is odd, the extra element
/// is cropped from (or padded at) the end. Any element type (padding is the type's zero).
struct CenterCropPad {
    axes: Option<Vec<i64>>,
}

fn build(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(CenterCropPad {
        axes: info.attr_ints_opt("axes")?,
    }))
}

impl Kernel for CenterCropPad {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let target = ints_input(inputs.tensor(1)?, 1)?;
        let in_shape = x.shape();
        let rank = in_shape.len();
        let axes = match &self.axes {
            Some(a) => normalize_axes(a, rank)?,
            None => (0..rank).collect(),
        };
        if target.len() != axes.len() {
            return Err(OpError::input(
                1,
                format!("{} sizes for {} axes", target.len(), axes.len()),
            ));
        }
        let mut out_shape = in_shape.to_vec();
        // Per axis: the source index of output index 0 (negative when padding).
        let mut shift = vec![0i64; rank];
        for (&axis, &len) in axes.iter().zip(&target) {
            let len_u = usize::try_from(len)
                .map_err(|_| OpError::input(1, format!("size {len} is negative")))?;
            if len < in_shape[axis] as i64 {
                shift[axis] = (in_shape[axis] as i64 - len) / 2;
            } else {
                shift[axis] = -((len - in_shape[axis] as i64) / 2);
            }
            out_shape[axis] = len_u;
        }
        let total: usize = out_shape.iter().product();
        let (data, zero) = concat_default(x.data());
        let strides = runnx_ir::strides_of(in_shape);
        let row = out_shape.last().copied().unwrap_or(1).max(1);
        let mut index = vec![zero; total];
        for_row_chunks(&mut index, row, |first, chunk| {
            for (k, out) in chunk.chunks_mut(row).enumerate() {
                // The source offset of the row's leading indices, if inside the input.
                let mut rest = first + k;
                let mut base = Some(0usize);
                for a in (0..rank.saturating_sub(1)).rev() {
                    let o = (rest % out_shape[a]) as i64;
                    rest /= out_shape[a];
                    let s = o + shift[a];
                    base = base
                        .filter(|_| (0..in_shape[a] as i64).contains(&s))
                        .map(|b| b + s as usize * strides[a]);
                }
                let Some(base) = base else { continue };
                if rank == 0 {
                    out[0] = base;
                    continue;
                }
                let last = rank - 1;
                for (o, slot) in out.iter_mut().enumerate() {
                    let s = o as i64 + shift[last];
                    if (0..in_shape[last] as i64).contains(&s) {
                        *slot = base + s as usize;
                    }
                }
            }
        });
        Ok(vec![Value::Tensor(Tensor::new(
            &out_shape,
            data.gather(&index),
        )?)])
    }
}
