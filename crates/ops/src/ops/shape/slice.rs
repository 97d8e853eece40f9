//! Slice, Expand, Tile and Pad: strided views of the input ([`StridedView`]), plus Pad's
//! border modes.

use runnx_ir::{strides_of, Shape, Tensor, TensorData, Value};

use super::copy::{for_row_chunks, view_tensor, StridedView, Strides};
use super::dispatch::{scalar_from_f64, with_any_type, AnyFn, Elem};
use super::{dims_from_i64, int_scalar_input, ints_input, normalize_axes, normalize_axis};
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "Slice", &[1, 10, 11, 13], build_slice);
    reg.add_versions("", "Expand", &[8, 13], |_| Ok(Box::new(Expand)));
    reg.add_versions("", "Tile", &[1, 6, 13], |info| {
        Ok(Box::new(Tile {
            legacy: info.opset < 6,
        }))
    });
    reg.add_versions("", "Pad", &[1, 2, 11, 13, 18, 19], build_pad);
}

/// ONNX `Slice`, opsets 1-13. Opsets 1-9 take `starts`, `ends` and optional `axes` as
/// attributes; from 10 they are inputs 1-3, with optional `steps` (input 4; negative steps walk
/// backwards). Negative starts and ends count from the end; all are clamped to the dimension.
struct Slice {
    attrs: Option<SliceArgs>,
}

#[derive(Clone)]
struct SliceArgs {
    starts: Vec<i64>,
    ends: Vec<i64>,
    axes: Option<Vec<i64>>,
    steps: Option<Vec<i64>>,
}

fn build_slice(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    if info.opset >= 10 {
        return Ok(Box::new(Slice { attrs: None }));
    }
    let required = |name: &str| {
        info.attr_ints_opt(name)?
            .ok_or_else(|| OpError::attribute(name, "is required"))
    };
    Ok(Box::new(Slice {
        attrs: Some(SliceArgs {
            starts: required("starts")?,
            ends: required("ends")?,
            axes: info.attr_ints_opt("axes")?,
            steps: None,
        }),
    }))
}

impl Kernel for Slice {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let args = match &self.attrs {
            Some(a) => a.clone(),
            None => {
                let opt = |i| inputs.opt_tensor(i)?.map(|t| ints_input(t, i)).transpose();
                SliceArgs {
                    starts: ints_input(inputs.tensor(1)?, 1)?,
                    ends: ints_input(inputs.tensor(2)?, 2)?,
                    axes: opt(3)?,
                    steps: opt(4)?,
                }
            }
        };
        let view = slice_view(x.shape(), &args)?;
        Ok(vec![view_tensor(x, &view)?.into()])
    }
}

/// The view a slice selects from a tensor of `shape`.
fn slice_view(shape: &[usize], args: &SliceArgs) -> Result<StridedView, OpError> {
    let n = args.starts.len();
    let axes = match &args.axes {
        Some(a) => normalize_axes(a, shape.len())?,
        None => (0..n).collect(),
    };
    let steps = args.steps.clone().unwrap_or_else(|| vec![1; n]);
    if args.ends.len() != n || axes.len() != n || steps.len() != n {
        return Err(OpError::invalid(format!(
            "slice has {n} starts but {} ends, {} axes and {} steps",
            args.ends.len(),
            axes.len(),
            steps.len()
        )));
    }
    if n > shape.len() {
        return Err(OpError::invalid(format!(
            "{n} slice axes for a rank-{} input",
            shape.len()
        )));
    }
    let mut view = StridedView::contiguous(shape);
    let mut offset = 0isize;
    for i in 0..n {
        let axis = axes[i];
        let (start, count) = slice_range(args.starts[i], args.ends[i], steps[i], shape[axis])?;
        offset += start as isize * view.strides[axis];
        view.strides[axis] *= steps[i] as isize;
        view.shape[axis] = count;
    }
    view.offset = offset as usize;
    Ok(view)
}

/// The first index and the count of `start..end` by `step` on a dimension of `dim`, after the
/// spec's adjustment of negative and out-of-range bounds.
fn slice_range(start: i64, end: i64, step: i64, dim: usize) -> Result<(i64, usize), OpError> {
    if step == 0 {
        return Err(OpError::invalid("slice step cannot be 0"));
    }
    let dim = dim as i64;
    let wrap = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
    let (start, end) = if step > 0 {
        (wrap(start).clamp(0, dim), wrap(end).clamp(0, dim))
    } else {
        (
            wrap(start).clamp(0, (dim - 1).max(0)),
            wrap(end).clamp(-1, dim - 1),
        )
    };
    let span = end - start;
    let count = if (span > 0) == (step > 0) && span != 0 {
        (span.unsigned_abs()).div_ceil(step.unsigned_abs()) as usize
    } else {
        0
    };
    Ok((start, count))
}

/// ONNX `Expand`, opsets 8-13: broadcasts the input to input 1's shape (numpy rules, in both
/// directions: a 1 in the requested shape keeps the input's dimension).
struct Expand;

impl Kernel for Expand {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let requested = ints_input(inputs.tensor(1)?, 1)?;
        let requested = dims_from_i64(&requested, "shape")?;
        let rank = x.rank().max(requested.len());
        let x_dims = pad_left(x.shape(), rank);
        let req_dims = pad_left(&requested, rank);
        let x_strides = strides_of(&x_dims);
        let mut view = StridedView {
            shape: Shape::with_capacity(rank),
            strides: Strides::with_capacity(rank),
            offset: 0,
        };
        for d in 0..rank {
            let (a, b) = (x_dims[d], req_dims[d]);
            let dim = match (a, b) {
                _ if a == b => a,
                (1, _) => b,
                (_, 1) => a,
                _ => {
                    return Err(OpError::invalid(format!(
                        "cannot expand shape {:?} to {requested:?}",
                        x.shape()
                    )))
                }
            };
            view.shape.push(dim);
            view.strides
                .push(if a == 1 { 0 } else { x_strides[d] as isize });
        }
        Ok(vec![view_tensor(x, &view)?.into()])
    }
}

/// `shape` with leading 1s up to `rank` dimensions.
fn pad_left(shape: &[usize], rank: usize) -> Shape {
    let mut out: Shape = smallvec::smallvec![1; rank - shape.len()];
    out.extend_from_slice(shape);
    out
}

/// ONNX `Tile`, opsets 1-13: repeats the input `repeats[d]` times along each dimension. Opset 1
/// takes a scalar count (input 1) and the one axis to tile (input 2) instead.
///
/// The output `[r0 * d0, r1 * d1, ..]` is the view `[r0, d0, r1, d1, ..]` of the input with
/// stride 0 on each repeat dimension.
struct Tile {
    legacy: bool,
}

impl Kernel for Tile {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let repeats = if self.legacy {
            let tiles = int_scalar_input(inputs.tensor(1)?, 1)?;
            let axis = normalize_axis(int_scalar_input(inputs.tensor(2)?, 2)?, x.rank())?;
            let mut r = vec![1; x.rank()];
            r[axis] = tiles;
            r
        } else {
            ints_input(inputs.tensor(1)?, 1)?
        };
        if repeats.len() != x.rank() {
            return Err(OpError::input(
                1,
                format!("{} repeats for a rank-{} input", repeats.len(), x.rank()),
            ));
        }
        let repeats = dims_from_i64(&repeats, "repeats")?;
        let strides = strides_of(x.shape());
        let mut view = StridedView {
            shape: Shape::new(),
            strides: Strides::new(),
            offset: 0,
        };
        for d in 0..x.rank() {
            view.shape.extend_from_slice(&[repeats[d], x.shape()[d]]);
            view.strides.extend_from_slice(&[0, strides[d] as isize]);
        }
        let out_shape: Shape = (0..x.rank()).map(|d| repeats[d] * x.shape()[d]).collect();
        Ok(vec![view_tensor(x, &view)?.reshape(out_shape)?.into()])
    }
}

/// How Pad fills the border.
#[derive(Clone, Copy, Debug, PartialEq)]
enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

/// ONNX `Pad`, opsets 1-25. Pads are `[begin_0, .., begin_n, end_0, .., end_n]`: the
/// `paddings` attribute in opset 1, `pads` attribute in 2-10, input 1 from 11, for the axes
/// of input 3 (opset 18+) or all. The fill value is the `value` attribute before 11, the
/// optional scalar input 2 from 11 (default 0). Modes: `constant`, `reflect` (mirror without
/// repeating the edge), `edge`, `wrap` (opset 19). Negative pads crop.
struct Pad {
    mode: PadMode,
    pads_attr: Option<Vec<i64>>,
    value_attr: f32,
}

fn build_pad(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let mode = match info.attr_string("mode", "constant")?.as_str() {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        other => {
            return Err(OpError::attribute(
                "mode",
                format!("unknown mode '{other}'"),
            ))
        }
    };
    let pads_attr = match info.opset {
        ..=1 => Some(
            info.attr_ints_opt("paddings")?
                .ok_or_else(|| OpError::attribute("paddings", "is required"))?,
        ),
        2..=10 => Some(
            info.attr_ints_opt("pads")?
                .ok_or_else(|| OpError::attribute("pads", "is required"))?,
        ),
        _ => None,
    };
    Ok(Box::new(Pad {
        mode,
        pads_attr,
        value_attr: info.attr_float("value", 0.0)?,
    }))
}

/// One dimension of a Pad: output index `i` reads source index `map[i]`, or the fill value.
struct DimPad {
    map: Vec<Option<usize>>,
    /// The output range copied straight from the source, and where it starts in the source.
    interior: std::ops::Range<usize>,
    source_start: usize,
}

impl DimPad {
    fn new(len: usize, begin: i64, end: i64, mode: PadMode) -> Result<DimPad, OpError> {
        let out_len = len as i64 + begin + end;
        let crop_start = (-begin).max(0);
        let kept = len as i64 - crop_start - (-end).max(0);
        if out_len < 0 || kept < 0 {
            return Err(OpError::invalid(format!(
                "pads {begin}, {end} crop more than a dimension of {len}"
            )));
        }
        let before = begin.max(0);
        if kept == 0 && out_len > 0 && mode != PadMode::Constant {
            return Err(OpError::invalid(format!(
                "cannot pad an empty dimension in {mode:?} mode"
            )));
        }
        let map = (0..out_len)
            .map(|i| {
                let r = i - before;
                let src = match mode {
                    _ if (0..kept).contains(&r) => r,
                    PadMode::Constant => return None,
                    PadMode::Edge => r.clamp(0, kept - 1),
                    PadMode::Wrap => r.rem_euclid(kept),
                    PadMode::Reflect if kept == 1 => 0,
                    PadMode::Reflect => {
                        let period = 2 * (kept - 1);
                        let m = r.rem_euclid(period);
                        if m < kept {
                            m
                        } else {
                            period - m
                        }
                    }
                };
                Some((crop_start + src) as usize)
            })
            .collect();
        Ok(DimPad {
            map,
            interior: before as usize..(before + kept) as usize,
            source_start: crop_start as usize,
        })
    }
}

impl Kernel for Pad {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let rank = x.rank();
        let pads = match &self.pads_attr {
            Some(p) => p.clone(),
            None => ints_input(inputs.tensor(1)?, 1)?,
        };
        let axes = match inputs.opt_tensor(3)? {
            Some(t) => normalize_axes(&ints_input(t, 3)?, rank)?,
            None => (0..rank).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return Err(OpError::invalid(format!(
                "{} pads for {} axes",
                pads.len(),
                axes.len()
            )));
        }
        let (mut begin, mut end) = (vec![0i64; rank], vec![0i64; rank]);
        for (i, &a) in axes.iter().enumerate() {
            begin[a] = pads[i];
            end[a] = pads[axes.len() + i];
        }
        let dims: Vec<DimPad> = (0..rank)
            .map(|d| DimPad::new(x.shape()[d], begin[d], end[d], self.mode))
            .collect::<Result<_, _>>()?;
        let value = match inputs.opt_tensor(2)? {
            Some(v) if self.pads_attr.is_none() => {
                if v.dtype() != x.dtype() || v.len() != 1 {
                    return Err(OpError::input(
                        2,
                        format!(
                            "expected one {} value, got {}{:?}",
                            x.dtype(),
                            v.dtype(),
                            v.shape()
                        ),
                    ));
                }
                v.clone()
            }
            _ => scalar_from_f64(x.dtype(), f64::from(self.value_attr))?,
        };
        let shape: Shape = dims.iter().map(|d| d.map.len()).collect();
        let data = with_any_type(
            x.dtype(),
            PadFn {
                x,
                value: &value,
                dims: &dims,
                len: shape.iter().product(),
            },
        )?;
        Ok(vec![Tensor::new(shape, data)?.into()])
    }
}

struct PadFn<'a> {
    x: &'a Tensor,
    value: &'a Tensor,
    dims: &'a [DimPad],
    len: usize,
}

impl AnyFn for PadFn<'_> {
    type Out = Result<TensorData, OpError>;
    fn call<T: Elem>(self) -> Self::Out {
        let src = self.x.as_slice::<T>()?;
        let value = self.value.as_slice::<T>()?[0].clone();
        let Some((last, outer)) = self.dims.split_last() else {
            return Ok(T::wrap(src.to_vec()));
        };
        let mut out = vec![value.clone(); self.len];
        let src_strides = strides_of(self.x.shape());
        let outer_shape: Shape = outer.iter().map(|d| d.map.len()).collect();
        for_row_chunks(&mut out, last.map.len(), |first_row, rows| {
            let mut index = unravel(first_row, &outer_shape);
            for row in rows.chunks_exact_mut(last.map.len()) {
                let base = outer
                    .iter()
                    .zip(&index)
                    .zip(&src_strides)
                    .try_fold(0, |acc, ((d, &i), &s)| d.map[i].map(|src| acc + src * s));
                if let Some(base) = base {
                    pad_row(&src[base..], last, &value, row);
                }
                advance(&mut index, &outer_shape);
            }
        });
        Ok(T::wrap(out))
    }
}

/// One output row of Pad from the source row `src` (rows start filled with the value).
fn pad_row<T: Clone>(src: &[T], dim: &DimPad, value: &T, row: &mut [T]) {
    let inner = dim.interior.clone();
    row[inner.clone()].clone_from_slice(&src[dim.source_start..dim.source_start + inner.len()]);
    for j in (0..inner.start).chain(inner.end..row.len()) {
        row[j] = match dim.map[j] {
            Some(s) => src[s].clone(),
            None => value.clone(),
        };
    }
}

/// The multi-index of row-major position `flat` in `shape`.
pub(crate) fn unravel(mut flat: usize, shape: &[usize]) -> Shape {
    let mut index: Shape = smallvec::smallvec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        index[d] = flat % shape[d];
        flat /= shape[d];
    }
    index
}

/// Steps a row-major multi-index to the next position (wrapping to zeros after the last).
pub(crate) fn advance(index: &mut [usize], shape: &[usize]) {
    for d in (0..shape.len()).rev() {
        index[d] += 1;
        if index[d] < shape[d] {
            return;
        }
        index[d] = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_ranges_follow_the_spec() {
        assert_eq!(slice_range(0, 3, 1, 5).unwrap(), (0, 3));
        assert_eq!(slice_range(-2, i64::MAX, 1, 5).unwrap(), (3, 2));
        assert_eq!(slice_range(1000, 1000, 1, 5).unwrap(), (5, 0));
        assert_eq!(slice_range(-1, i64::MIN, -1, 5).unwrap(), (4, 5));
        assert_eq!(slice_range(20, 0, -3, 10).unwrap(), (9, 3));
        assert_eq!(slice_range(0, 5, -1, 5).unwrap(), (0, 0));
        assert_eq!(slice_range(0, 7, 3, 10).unwrap(), (0, 3));
        assert!(slice_range(0, 1, 0, 5).is_err());
    }

    fn pad(x: Tensor, pads: Vec<i64>, mode: PadMode) -> Vec<f32> {
        let k = Pad {
            mode,
            pads_attr: Some(pads),
            value_attr: 9.0,
        };
        let y = k.run(Inputs::new(vec![Some(x.into())])).unwrap();
        y[0].as_tensor()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn pad_modes() {
        let x = || Tensor::from_vec([3], vec![1f32, 2., 3.]).unwrap();
        assert_eq!(
            pad(x(), vec![2, 1], PadMode::Constant),
            [9., 9., 1., 2., 3., 9.]
        );
        assert_eq!(
            pad(x(), vec![3, 3], PadMode::Reflect),
            [2., 3., 2., 1., 2., 3., 2., 1., 2.]
        );
        assert_eq!(
            pad(x(), vec![2, 2], PadMode::Edge),
            [1., 1., 1., 2., 3., 3., 3.]
        );
        assert_eq!(
            pad(x(), vec![4, 2], PadMode::Wrap),
            [3., 1., 2., 3., 1., 2., 3., 1., 2.]
        );
        assert_eq!(pad(x(), vec![-1, 1], PadMode::Constant), [2., 3., 9.]);
        assert_eq!(pad(x(), vec![-1, 1], PadMode::Reflect), [2., 3., 2.]);
        let m = Tensor::from_vec([2, 2], vec![1f32, 2., 3., 4.]).unwrap();
        assert_eq!(
            pad(m, vec![1, 0, 0, 1], PadMode::Constant),
            [9., 9., 9., 1., 2., 9., 3., 4., 9.]
        );
    }
}
