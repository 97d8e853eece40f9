//! Linear algebra on batches of small matrices: Det.

use rayon::prelude::*;
use runnx_ir::Value;

use super::norm::Real;
use crate::{Inputs, Kernel, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "Det", &[11, 22], |_| Ok(Box::new(Det)));
}

/// Batches with at least this many multiply-adds in all are split across threads.
const PARALLEL_WORK: usize = 1 << 16;

/// ONNX `Det`, opsets 11 and 22 (bfloat16): the determinants of `[*, M, M]`, of shape `[*]`.
/// float16, bfloat16 and float are computed in f64 and rounded once.
struct Det;

impl Kernel for Det {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let shape = x.shape();
        let (batch_dims, n) = match shape {
            [batch @ .., m, n] if m == n => (batch, *n),
            _ => {
                return Err(OpError::input(
                    0,
                    format!("expected square matrices [*, M, M], got shape {shape:?}"),
                ))
            }
        };
        let mut values = f64::read(x, 0)?.into_owned();
        let batch: usize = batch_dims.iter().product();
        let dets: Vec<f64> = if n == 0 {
            // The empty product.
            vec![1.0; batch]
        } else if batch > 1 && batch * n * n * n >= PARALLEL_WORK {
            values
                .par_chunks_mut(n * n)
                .map(|a| determinant(a, n))
                .collect()
        } else {
            values
                .chunks_mut(n * n)
                .map(|a| determinant(a, n))
                .collect()
        };
        Ok(vec![f64::to_tensor(dets, x.dtype(), batch_dims)?.into()])
    }
}

/// The determinant of the row-major `n x n` matrix `a` (overwritten), by Gaussian elimination
/// with partial pivoting: the product of the pivots, negated per row swap. Backward stable:
/// the result is the exact determinant of a matrix within about `n·ε·growth` of `a`
/// (relative, per element), where the growth factor is small in practice. A NaN anywhere gives
/// NaN.
fn determinant(a: &mut [f64], n: usize) -> f64 {
    let mut det = 1.0;
    for col in 0..n {
        // The largest magnitude on or below the diagonal (NaN, which `total_cmp` puts above
        // every number, wins and propagates).
        let pivot = (col..n)
            .max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))
            .unwrap_or(col);
        let p = a[pivot * n + col];
        if p == 0.0 {
            return 0.0;
        }
        if pivot != col {
            for c in col..n {
                a.swap(pivot * n + c, col * n + c);
            }
            det = -det;
        }
        det *= p;
        let (top, below) = a.split_at_mut((col + 1) * n);
        let pivot_row = &top[col * n..];
        for row in below.chunks_mut(n) {
            let f = row[col] / p;
            if f != 0.0 {
                for (v, &u) in row[col + 1..].iter_mut().zip(&pivot_row[col + 1..]) {
                    *v -= f * u;
                }
            }
        }
    }
    det
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnx_ir::Tensor;

    fn det(shape: &[usize], values: Vec<f32>) -> Vec<f32> {
        let x = Tensor::from_vec(shape, values).unwrap();
        let y = Det.run(Inputs::new(vec![Some(x.into())])).unwrap();
        let t = y.into_iter().next().and_then(Value::into_tensor).unwrap();
        t.as_slice::<f32>().unwrap().to_vec()
    }

    #[test]
    fn determinants_of_a_batch() {
        // [[1, 2], [3, 4]] -> -2; [[0, 1], [1, 0]] needs a swap -> -1; singular -> 0.
        let d = det(
            &[3, 2, 2],
            vec![1., 2., 3., 4., 0., 1., 1., 0., 1., 2., 2., 4.],
        );
        assert_eq!(d, [-2.0, -1.0, 0.0]);
        let d = det(&[3, 3], vec![2., 0., 1., 1., 3., 2., 1., 1., 2.]);
        assert!((d[0] - 6.0).abs() < 1e-5, "{d:?}");
    }

    #[test]
    fn rejects_non_square() {
        let x = Tensor::from_vec([2, 3], vec![0f32; 6]).unwrap();
        assert!(Det.run(Inputs::new(vec![Some(x.into())])).is_err());
    }
}
