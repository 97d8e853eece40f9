//! ONNX `CumSum` and `CumProd`.

use rayon::prelude::*;
use runnx_ir::{Shape, Tensor, TensorData, Value};

use super::copy::{product, PARALLEL_MIN};
use super::dispatch::{with_num_type, Num, NumFn};
use super::{int_scalar_input, normalize_axis};
use crate::{Inputs, Kernel, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "CumSum", &[11, 14], |info| build(info, Accumulate::Sum));
    reg.add("", "CumProd", 26, |info| build(info, Accumulate::Product));
}

fn build(info: &crate::NodeInfo, op: Accumulate) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(Cumulative {
        op,
        exclusive: info.attr_int("exclusive", 0)? != 0,
        reverse: info.attr_int("reverse", 0)? != 0,
    }))
}

/// What a running scan accumulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Accumulate {
    Sum,
    Product,
}

/// ONNX `CumSum`, opsets 11-14, and `CumProd`, opset 26: running sums (products) along the axis
/// given by the scalar input 1; `exclusive` leaves out the current element (starting from 0, or
/// 1 for products), `reverse` runs from the end. Integers wrap; float16 and bfloat16 round after
/// each step, like an accumulator of the element type. Works in place in the input's buffer
/// when it can.
struct Cumulative {
    op: Accumulate,
    exclusive: bool,
    reverse: bool,
}

impl Kernel for Cumulative {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let axis = int_scalar_input(inputs.tensor(1)?, 1)?;
        let x = inputs.take_tensor(0)?;
        let axis = normalize_axis(axis, x.rank())?;
        let shape = Shape::from_slice(x.shape());
        let task = Cumulate {
            op: self.op,
            len: shape[axis],
            inner: product(&shape[axis + 1..]),
            exclusive: self.exclusive,
            reverse: self.reverse,
            x,
        };
        let data = with_num_type(task.x.dtype(), task)??;
        Ok(vec![Tensor::new(shape, data)?.into()])
    }
}

struct Cumulate {
    op: Accumulate,
    x: Tensor,
    len: usize,
    inner: usize,
    exclusive: bool,
    reverse: bool,
}

impl NumFn for Cumulate {
    type Out = Result<TensorData, OpError>;
    fn call<T: Num>(self) -> Self::Out {
        let mut data = self.x.into_vec::<T>()?;
        let block = self.len * self.inner;
        if block == 0 {
            return Ok(T::wrap(data));
        }
        let (len, inner, exclusive, reverse) = (self.len, self.inner, self.exclusive, self.reverse);
        let (identity, combine): (T, fn(T, T) -> T) = match self.op {
            Accumulate::Sum => (T::ZERO, T::add),
            Accumulate::Product => (T::ONE, T::mul),
        };
        let scan_block = |b: &mut [T]| {
            let mut acc = vec![identity; inner];
            for step in 0..len {
                let t = if reverse { len - 1 - step } else { step };
                for (a, x) in acc.iter_mut().zip(&mut b[t * inner..(t + 1) * inner]) {
                    let v = *x;
                    if exclusive {
                        *x = *a;
                        *a = combine(*a, v);
                    } else {
                        *a = combine(*a, v);
                        *x = *a;
                    }
                }
            }
        };
        if data.len() >= PARALLEL_MIN {
            data.par_chunks_mut(block).for_each(scan_block);
        } else {
            data.chunks_mut(block).for_each(scan_block);
        }
        Ok(T::wrap(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cumsum(exclusive: bool, reverse: bool, axis: i64) -> Vec<f64> {
        let x = Tensor::from_vec([2, 3], vec![1f64, 2., 3., 4., 5., 6.]).unwrap();
        let inputs = Inputs::new(vec![
            Some(x.into()),
            Some(Tensor::scalar(axis as i32).into()),
        ]);
        let y = Cumulative {
            op: Accumulate::Sum,
            exclusive,
            reverse,
        }
        .run(inputs)
        .unwrap()
        .remove(0);
        y.into_tensor().unwrap().as_slice::<f64>().unwrap().to_vec()
    }

    #[test]
    fn cumsum_variants() {
        assert_eq!(cumsum(false, false, 1), [1., 3., 6., 4., 9., 15.]);
        assert_eq!(cumsum(true, false, -1), [0., 1., 3., 0., 4., 9.]);
        assert_eq!(cumsum(false, true, 1), [6., 5., 3., 15., 11., 6.]);
        assert_eq!(cumsum(true, true, 1), [5., 3., 0., 11., 6., 0.]);
        assert_eq!(cumsum(false, false, 0), [1., 2., 3., 5., 7., 9.]);
    }

    #[test]
    fn cumprod_variants() {
        let x = Tensor::from_vec([3], vec![1i64, 2, 3]).unwrap();
        let run = |exclusive, reverse| {
            let inputs = Inputs::new(vec![
                Some(x.clone().into()),
                Some(Tensor::scalar(0i64).into()),
            ]);
            let k = Cumulative {
                op: Accumulate::Product,
                exclusive,
                reverse,
            };
            let y = k.run(inputs).unwrap().remove(0).into_tensor().unwrap();
            y.as_slice::<i64>().unwrap().to_vec()
        };
        assert_eq!(run(false, false), [1, 2, 6]);
        assert_eq!(run(true, false), [1, 1, 2]);
        assert_eq!(run(false, true), [6, 6, 3]);
        assert_eq!(run(true, true), [6, 3, 1]);
    }
}
