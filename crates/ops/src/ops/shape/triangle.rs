//! Matrix masks: Trilu and EyeLike.

use runnx_ir::{DataType, Shape, Tensor, TensorData, Value};

use super::copy::product;
use super::dispatch::{with_any_type, with_num_type, AnyFn, Elem, Num, NumFn};
use super::int_scalar_input;
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add("", "Trilu", 14, |info| {
        Ok(Box::new(Trilu {
            upper: info.attr_int("upper", 1)? != 0,
        }))
    });
    reg.add_versions("", "EyeLike", &[9, 22], build_eye_like);
}

/// ONNX `Trilu`, opset 14: keeps the upper (`upper`=1, default) or lower triangle of each
/// matrix in the last two dimensions, from diagonal `k` (input 1, default 0; positive above the
/// main diagonal), and zeroes the rest. Reuses the input's buffer when it can.
struct Trilu {
    upper: bool,
}

impl Kernel for Trilu {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let k = match inputs.opt_tensor(1)? {
            Some(t) => int_scalar_input(t, 1)?,
            None => 0,
        };
        let x = inputs.take_tensor(0)?;
        if x.rank() < 2 {
            return Err(OpError::input(
                0,
                format!("expected rank 2 or more, got shape {:?}", x.shape()),
            ));
        }
        let shape = Shape::from_slice(x.shape());
        let cols = shape[shape.len() - 1];
        let rows = shape[shape.len() - 2];
        let data = with_any_type(
            x.dtype(),
            Mask {
                x,
                rows,
                cols,
                k,
                upper: self.upper,
            },
        )?;
        Ok(vec![Tensor::new(shape, data)?.into()])
    }
}

struct Mask {
    x: Tensor,
    rows: usize,
    cols: usize,
    k: i64,
    upper: bool,
}

impl AnyFn for Mask {
    type Out = Result<TensorData, OpError>;
    fn call<T: Elem>(self) -> Self::Out {
        let (rows, cols) = (self.rows, self.cols);
        let mut data = self.x.into_vec::<T>()?;
        if cols == 0 {
            return Ok(T::wrap(data));
        }
        for (r, row) in data.chunks_exact_mut(cols).enumerate() {
            // Column j is kept when j - i >= k (upper) or j - i <= k (lower).
            let diagonal = (r % rows) as i64 + self.k;
            let split = diagonal.clamp(0, cols as i64) as usize;
            if self.upper {
                row[..split].fill(T::default());
            } else {
                let from = (diagonal + 1).clamp(0, cols as i64) as usize;
                row[from..].fill(T::default());
            }
        }
        Ok(T::wrap(data))
    }
}

/// ONNX `EyeLike`, opsets 9-22: a matrix of the input's 2-D shape with ones on diagonal `k`
/// and zeros elsewhere, of type `dtype` (default: the input's type).
struct EyeLike {
    dtype: Option<DataType>,
    k: i64,
}

fn build_eye_like(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let dtype = match info.attr_int_opt("dtype")? {
        Some(code) => Some(
            DataType::from_onnx(code as i32)
                .ok_or_else(|| OpError::attribute("dtype", format!("unknown type code {code}")))?,
        ),
        None => None,
    };
    Ok(Box::new(EyeLike {
        dtype,
        k: info.attr_int("k", 0)?,
    }))
}

impl Kernel for EyeLike {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let [rows, cols] = <[usize; 2]>::try_from(x.shape()).map_err(|_| {
            OpError::input(
                0,
                format!("expected a 2-D tensor, got shape {:?}", x.shape()),
            )
        })?;
        let dtype = self.dtype.unwrap_or(x.dtype());
        let data = with_num_type(
            dtype,
            Eye {
                rows,
                cols,
                k: self.k,
            },
        )?;
        Ok(vec![Tensor::new([rows, cols], data)?.into()])
    }
}

struct Eye {
    rows: usize,
    cols: usize,
    k: i64,
}

impl NumFn for Eye {
    type Out = TensorData;
    fn call<T: Num>(self) -> TensorData {
        let mut out = vec![T::ZERO; product(&[self.rows, self.cols])];
        for i in 0..self.rows {
            let j = i as i64 + self.k;
            if (0..self.cols as i64).contains(&j) {
                out[i * self.cols + j as usize] = T::ONE;
            }
        }
        T::wrap(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trilu(upper: bool, k: i64) -> Vec<i32> {
        let x = Tensor::from_vec([3, 4], (1..=12).collect::<Vec<i32>>()).unwrap();
        let inputs = Inputs::new(vec![Some(x.into()), Some(Tensor::scalar(k).into())]);
        let y = Trilu { upper }.run(inputs).unwrap().remove(0);
        y.into_tensor().unwrap().as_slice::<i32>().unwrap().to_vec()
    }

    #[test]
    fn triangles() {
        assert_eq!(trilu(true, 0), [1, 2, 3, 4, 0, 6, 7, 8, 0, 0, 11, 12]);
        assert_eq!(trilu(true, -1), [1, 2, 3, 4, 5, 6, 7, 8, 0, 10, 11, 12]);
        assert_eq!(trilu(false, 0), [1, 0, 0, 0, 5, 6, 0, 0, 9, 10, 11, 0]);
        assert_eq!(trilu(false, -5), [0; 12]);
        assert_eq!(trilu(true, 9), [0; 12]);
    }

    #[test]
    fn eye_off_diagonal() {
        let x = Tensor::zeros(DataType::Int32, [2, 3]);
        let k = EyeLike {
            dtype: Some(DataType::Double),
            k: 1,
        };
        let y = k
            .run(Inputs::new(vec![Some(x.into())]))
            .unwrap()
            .remove(0)
            .into_tensor()
            .unwrap();
        assert_eq!(y.as_slice::<f64>().unwrap(), &[0., 1., 0., 0., 0., 1.]);
    }
}
