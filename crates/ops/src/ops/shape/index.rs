//! Index producers and consumers: OneHot, NonZero, ReverseSequence.

use runnx_ir::{Shape, Tensor, TensorData, Value};

use super::copy::product;
use super::dispatch::{to_f64_vec, with_any_type, AnyFn, Elem};
use super::gather::take_along;
use super::slice::advance;
use super::{ints_input, normalize_axis};
use crate::{Inputs, Kernel, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "OneHot", &[9, 11], |info| {
        Ok(Box::new(OneHot {
            axis: info.attr_int("axis", -1)?,
        }))
    });
    reg.add_versions("", "NonZero", &[9, 13], |_| Ok(Box::new(NonZero)));
    reg.add("", "ReverseSequence", 10, |info| {
        let batch_axis = info.attr_int("batch_axis", 1)?;
        let time_axis = info.attr_int("time_axis", 0)?;
        let valid = |a: i64| a == 0 || a == 1;
        if !valid(batch_axis) || !valid(time_axis) || batch_axis == time_axis {
            return Err(OpError::invalid(format!(
                "batch_axis {batch_axis} and time_axis {time_axis} must be 0 and 1 in some order"
            )));
        }
        Ok(Box::new(ReverseSequence {
            time_first: time_axis == 0,
        }))
    });
}

/// ONNX `OneHot`, opsets 9-28: a new dimension of size `depth` (input 1) at `axis` (default
/// -1, the last; negative from 11) holding `values[1]` where its index equals the index input
/// and `values[0]` elsewhere. Negative indices count from `depth`; indices outside
/// `-depth..depth` (or not integral) give an all-off row.
struct OneHot {
    axis: i64,
}

impl Kernel for OneHot {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let indices = inputs.tensor(0)?;
        let depth = match to_f64_vec(inputs.tensor(1)?)?.as_slice() {
            [d] if *d >= 1.0 => *d as usize,
            other => {
                return Err(OpError::input(
                    1,
                    format!("depth must be one positive value, got {other:?}"),
                ))
            }
        };
        let values = inputs.tensor(2)?;
        if values.len() != 2 {
            return Err(OpError::input(
                2,
                format!("expected [off, on], got {} values", values.len()),
            ));
        }
        let axis = normalize_axis(self.axis, indices.rank() + 1)?;
        let mut shape = Shape::from_slice(indices.shape());
        shape.insert(axis, depth);
        // Each index position `p` = (o, i) writes to out[o, hot, i].
        let inner = product(&indices.shape()[axis..]);
        let hot: Vec<Option<usize>> = to_f64_vec(indices)?
            .into_iter()
            .map(|v| {
                let v = if v < 0.0 { v + depth as f64 } else { v };
                (v.fract() == 0.0 && (0.0..depth as f64).contains(&v)).then_some(v as usize)
            })
            .collect();
        let data = with_any_type(
            values.dtype(),
            Hot {
                values,
                hot: &hot,
                depth,
                inner,
            },
        )?;
        Ok(vec![Tensor::new(shape, data)?.into()])
    }
}

struct Hot<'a> {
    values: &'a Tensor,
    hot: &'a [Option<usize>],
    depth: usize,
    inner: usize,
}

impl AnyFn for Hot<'_> {
    type Out = Result<TensorData, OpError>;
    fn call<T: Elem>(self) -> Self::Out {
        let [off, on] = <&[T; 2]>::try_from(self.values.as_slice::<T>()?)
            .map_err(|_| OpError::input(2, "expected two values"))?;
        let mut out = vec![off.clone(); self.hot.len() * self.depth];
        for (p, h) in self.hot.iter().enumerate() {
            if let Some(h) = h {
                let (o, i) = (p / self.inner, p % self.inner);
                out[(o * self.depth + h) * self.inner + i] = on.clone();
            }
        }
        Ok(T::wrap(out))
    }
}

/// ONNX `NonZero`, opsets 9-13: the int64 coordinates `[rank, count]` of the non-zero elements
/// (not equal to the type's default: zero, false, empty string) in row-major order. A scalar
/// gives shape `[0, count]`, as the reference does.
struct NonZero;

impl Kernel for NonZero {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let (count, coords) = with_any_type(x.dtype(), Coordinates(x))?;
        Ok(vec![Tensor::from_vec([x.rank(), count], coords)?.into()])
    }
}

struct Coordinates<'a>(&'a Tensor);

impl AnyFn for Coordinates<'_> {
    type Out = Result<(usize, Vec<i64>), OpError>;
    fn call<T: Elem>(self) -> Self::Out {
        let shape = self.0.shape();
        let zero = T::default();
        let mut per_dim: Vec<Vec<i64>> = vec![Vec::new(); shape.len()];
        let mut index: Shape = smallvec::smallvec![0; shape.len()];
        let mut count = 0;
        for x in self.0.as_slice::<T>()? {
            if *x != zero {
                count += 1;
                for (d, coords) in per_dim.iter_mut().enumerate() {
                    coords.push(index[d] as i64);
                }
            }
            advance(&mut index, shape);
        }
        Ok((count, per_dim.concat()))
    }
}

/// ONNX `ReverseSequence`, opsets 10-28: for each batch entry `b` (dimension `batch_axis`),
/// reverses the first `sequence_lens[b]` steps along `time_axis`; the two axes are 0 and 1.
struct ReverseSequence {
    time_first: bool,
}

impl Kernel for ReverseSequence {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        if x.rank() < 2 {
            return Err(OpError::input(
                0,
                format!("expected rank 2 or more, got shape {:?}", x.shape()),
            ));
        }
        let (d0, d1) = (x.shape()[0], x.shape()[1]);
        let (time, batch) = if self.time_first { (d0, d1) } else { (d1, d0) };
        let lens = ints_input(inputs.tensor(1)?, 1)?;
        if lens.len() != batch {
            return Err(OpError::input(
                1,
                format!("expected {batch} sequence lengths, got {}", lens.len()),
            ));
        }
        if let Some(bad) = lens.iter().find(|&&l| l < 0 || l as usize > time) {
            return Err(OpError::input(
                1,
                format!("sequence length {bad} is outside 0..={time}"),
            ));
        }
        // Source row (d0, d1) of each output row, a row being everything after the two axes.
        let rows: Vec<usize> = (0..d0 * d1)
            .map(|r| {
                let (i0, i1) = (r / d1, r % d1);
                let (t, b) = if self.time_first { (i0, i1) } else { (i1, i0) };
                let len = lens[b] as usize;
                let t = if t < len { len - 1 - t } else { t };
                if self.time_first {
                    t * d1 + b
                } else {
                    b * d1 + t
                }
            })
            .collect();
        let flat = x.reshape([d0 * d1, product(&x.shape()[2..])])?;
        let y = take_along(&flat, 0, &rows)?.reshape(Shape::from_slice(x.shape()))?;
        Ok(vec![y.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(k: &dyn Kernel, inputs: Vec<Tensor>) -> Result<Tensor, OpError> {
        let values = inputs.into_iter().map(|t| Some(t.into())).collect();
        Ok(k.run(Inputs::new(values))?.remove(0).into_tensor().unwrap())
    }

    #[test]
    fn one_hot_on_the_first_axis() {
        let idx = Tensor::from_vec([3], vec![0i64, -1, 7]).unwrap();
        let values = Tensor::from_vec([2], vec![0f32, 5.]).unwrap();
        let y = run(&OneHot { axis: 0 }, vec![idx, Tensor::scalar(3f32), values]).unwrap();
        assert_eq!(y.shape(), &[3, 3]);
        assert_eq!(
            y.as_slice::<f32>().unwrap(),
            &[5., 0., 0., 0., 0., 0., 0., 5., 0.]
        );
    }

    #[test]
    fn nonzero_coordinates() {
        let x = Tensor::from_vec([2, 2], vec![1, 0, 1, 1]).unwrap();
        let y = run(&NonZero, vec![x]).unwrap();
        assert_eq!(y.shape(), &[2, 3]);
        assert_eq!(y.as_slice::<i64>().unwrap(), &[0, 1, 1, 0, 0, 1]);
        let s = run(&NonZero, vec![Tensor::scalar(String::from("a"))]).unwrap();
        assert_eq!(s.shape(), &[0, 1]);
    }

    #[test]
    fn reverse_sequence_spec_example_1() {
        let x = Tensor::from_vec(
            [4, 4],
            (0..16).map(|v| ((v % 4) * 4 + v / 4) as f32).collect(),
        )
        .unwrap();
        let lens = Tensor::from_vec([4], vec![4i64, 3, 2, 1]).unwrap();
        let y = run(&ReverseSequence { time_first: true }, vec![x, lens]).unwrap();
        let expected = [
            3., 6., 9., 12., 2., 5., 8., 13., 1., 4., 10., 14., 0., 7., 11., 15.,
        ];
        assert_eq!(y.as_slice::<f32>().unwrap(), &expected);
    }
}
