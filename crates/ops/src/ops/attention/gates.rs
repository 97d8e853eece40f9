//! The Swish activation and the SwiGLU gate built on it.
//!
//! - `Swish` (opset 24): `y = x·sigmoid(alpha·x)`.
//! - `SwiGLU` (opset 28): `y = Swish_alpha(a)·b` for gate `a` and value `b` of one shape (no
//!   broadcasting).
//!
//! float16 and bfloat16 compute in f32, double in f64; large tensors are split across the
//! rayon pool.

use rayon::prelude::*;
use runnx_ir::Value;

use crate::ops::norm::{FloatKind, Real};
use crate::{Inputs, Kernel, NodeInfo, OpError};

/// Below this many elements a gate runs on one thread.
const PARALLEL_ELEMENTS: usize = 1 << 15;

fn swish<R: Real>(x: R, alpha: R) -> R {
    x / (R::one() + (-(alpha * x)).exp())
}

pub(super) struct Swish {
    alpha: f32,
}

pub(super) fn build_swish(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(Swish {
        alpha: info.attr_float("alpha", 1.0)?,
    }))
}

impl Swish {
    fn typed<R: Real>(&self, inputs: &Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let alpha = R::of(self.alpha);
        let mut y = R::read(x, 0)?.into_owned();
        let f = |v: &mut R| *v = swish(*v, alpha);
        if y.len() >= PARALLEL_ELEMENTS {
            y.par_iter_mut().for_each(f);
        } else {
            y.iter_mut().for_each(f);
        }
        Ok(vec![Value::Tensor(R::to_tensor(y, x.dtype(), x.shape())?)])
    }
}

impl Kernel for Swish {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        match FloatKind::of(inputs.tensor(0)?.dtype(), 0)? {
            FloatKind::F32 => self.typed::<f32>(&inputs),
            FloatKind::F64 => self.typed::<f64>(&inputs),
        }
    }
}

pub(super) struct SwiGlu {
    alpha: f32,
}

pub(super) fn build_swiglu(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(SwiGlu {
        alpha: info.attr_float("alpha", 1.0)?,
    }))
}

impl SwiGlu {
    fn typed<R: Real>(&self, inputs: &Inputs) -> Result<Vec<Value>, OpError> {
        let (a, b) = (inputs.tensor(0)?, inputs.tensor(1)?);
        if a.shape() != b.shape() || a.dtype() != b.dtype() {
            return Err(OpError::invalid(format!(
                "SwiGLU needs A and B of one shape and type (no broadcasting), got {} {:?} and {} {:?}",
                a.dtype(),
                a.shape(),
                b.dtype(),
                b.shape()
            )));
        }
        let alpha = R::of(self.alpha);
        let mut y = R::read(a, 0)?.into_owned();
        let value = R::read(b, 1)?;
        let f = |(y, &v): (&mut R, &R)| *y = swish(*y, alpha) * v;
        if y.len() >= PARALLEL_ELEMENTS {
            y.par_iter_mut().zip(value.par_iter()).for_each(f);
        } else {
            y.iter_mut().zip(value.iter()).for_each(f);
        }
        Ok(vec![Value::Tensor(R::to_tensor(y, a.dtype(), a.shape())?)])
    }
}

impl Kernel for SwiGlu {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        match FloatKind::of(inputs.tensor(0)?.dtype(), 0)? {
            FloatKind::F32 => self.typed::<f32>(&inputs),
            FloatKind::F64 => self.typed::<f64>(&inputs),
        }
    }
}
