//! Col2Im (opset 18).

use num_complex::Complex;
use runnx_ir::{DataType, Element, Tensor, Value};

use crate::ops::shape::copy::for_row_chunks;
use crate::ops::shape::dispatch::{with_num_type, Num, NumFn};
use crate::ops::shape::ints_input;
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(super) fn register(reg: &mut Registry) {
    reg.add("", "Col2Im", 18, build);
}

/// ONNX `Col2Im`, the inverse of im2col: input `[N, C·∏block, L]` holds, for each of the `L`
/// sliding-block positions over an image of `image_shape` (padded by `pads`, stepped by
/// `strides`, dilated by `dilations`), the block's values; overlapping contributions are
/// summed into `[N, C, image_shape...]`. Every numeric and complex type (integers wrap).
struct Col2Im {
    strides: Option<Vec<i64>>,
    pads: Option<Vec<i64>>,
    dilations: Option<Vec<i64>>,
}

fn build(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(Col2Im {
        strides: info.attr_ints_opt("strides")?,
        pads: info.attr_ints_opt("pads")?,
        dilations: info.attr_ints_opt("dilations")?,
    }))
}

/// Where each (kernel offset, block position) pair lands in the image.
struct Geometry {
    /// `[N, C, image...]`.
    out_shape: Vec<usize>,
    /// ∏block: the kernel offsets per channel.
    kernel: usize,
    /// L: the block positions.
    blocks: usize,
    /// Per (kernel offset, block position): the flat offset in an image plane, or `None` when
    /// it falls in the padding.
    target: Vec<Option<usize>>,
}

impl Col2Im {
    fn geometry(&self, x: &[usize], image: &[i64], block: &[i64]) -> Result<Geometry, OpError> {
        let r = image.len();
        if block.len() != r || r == 0 {
            return Err(OpError::invalid(format!(
                "image_shape {image:?} and block_shape {block:?} must have the same, nonzero length"
            )));
        }
        let list = |v: &Option<Vec<i64>>, len: usize, default: i64, name: &str| {
            let v = v.clone().unwrap_or_else(|| vec![default; len]);
            if v.len() != len {
                return Err(OpError::attribute(
                    name,
                    format!("expected {len} values, got {}", v.len()),
                ));
            }
            Ok(v)
        };
        let strides = list(&self.strides, r, 1, "strides")?;
        let dilations = list(&self.dilations, r, 1, "dilations")?;
        let pads = list(&self.pads, 2 * r, 0, "pads")?;
        if strides.iter().chain(&dilations).any(|&v| v <= 0) || pads.iter().any(|&p| p < 0) {
            return Err(OpError::invalid(
                "strides and dilations must be positive and pads non-negative",
            ));
        }
        if image.iter().chain(block).any(|&v| v <= 0) {
            return Err(OpError::invalid(format!(
                "image_shape {image:?} and block_shape {block:?} must be positive"
            )));
        }
        let kernel: usize = block.iter().map(|&b| b as usize).product();
        let &[n, ck, blocks] = x else {
            return Err(OpError::input(
                0,
                format!("expected [N, C·∏block, L], got {x:?}"),
            ));
        };
        if ck % kernel != 0 {
            return Err(OpError::input(
                0,
                format!("dimension 1 ({ck}) is not a multiple of the block size {kernel}"),
            ));
        }
        // Block positions along each axis.
        let counts: Vec<i64> = (0..r)
            .map(|i| {
                (image[i] + pads[i] + pads[r + i] - dilations[i] * (block[i] - 1) - 1) / strides[i]
                    + 1
            })
            .collect();
        if counts.iter().any(|&c| c <= 0) || counts.iter().product::<i64>() != blocks as i64 {
            return Err(OpError::input(
                0,
                format!(
                    "{blocks} block positions given, the geometry gives {counts:?} (image {image:?}, block {block:?})"
                ),
            ));
        }
        let mut target = Vec::with_capacity(kernel * blocks);
        let mut k_idx = vec![0i64; r];
        let mut b_idx = vec![0i64; r];
        for k in 0..kernel {
            unravel(k, block, &mut k_idx);
            for b in 0..blocks {
                unravel(b, &counts, &mut b_idx);
                let mut flat = Some(0usize);
                for i in 0..r {
                    let pos = b_idx[i] * strides[i] - pads[i] + k_idx[i] * dilations[i];
                    flat = flat
                        .filter(|_| (0..image[i]).contains(&pos))
                        .map(|f| f * image[i] as usize + pos as usize);
                }
                target.push(flat);
            }
        }
        let mut out_shape = vec![n, ck / kernel];
        out_shape.extend(image.iter().map(|&d| d as usize));
        Ok(Geometry {
            out_shape,
            kernel,
            blocks,
            target,
        })
    }
}

/// Row-major multi-index of `flat` in `dims`.
fn unravel(mut flat: usize, dims: &[i64], out: &mut [i64]) {
    for i in (0..dims.len()).rev() {
        out[i] = (flat % dims[i] as usize) as i64;
        flat /= dims[i] as usize;
    }
}

/// Element types that can be summed.
trait Summable: Element + Copy + Default {
    fn plus(self, rhs: Self) -> Self;
}

impl<T: Num> Summable for T {
    fn plus(self, rhs: Self) -> Self {
        self.add(rhs)
    }
}

impl Summable for Complex<f32> {
    fn plus(self, rhs: Self) -> Self {
        self + rhs
    }
}

impl Summable for Complex<f64> {
    fn plus(self, rhs: Self) -> Self {
        self + rhs
    }
}

fn scatter<T: Summable>(x: &Tensor, g: &Geometry) -> Result<Tensor, OpError> {
    let src = x.as_slice::<T>()?;
    let plane: usize = g.out_shape[2..].iter().product();
    let mut out = vec![T::default(); g.out_shape.iter().product()];
    for_row_chunks(&mut out, plane.max(1), |first, chunk| {
        for (k, img) in chunk.chunks_mut(plane.max(1)).enumerate() {
            // Image plane (n, c) reads rows c·kernel .. (c+1)·kernel of batch item n.
            let cols = &src[(first + k) * g.kernel * g.blocks..][..g.kernel * g.blocks];
            for (&v, t) in cols.iter().zip(&g.target) {
                if let Some(t) = *t {
                    img[t] = img[t].plus(v);
                }
            }
        }
    });
    Ok(Tensor::from_vec(&g.out_shape, out)?)
}

struct Scatter<'a> {
    x: &'a Tensor,
    g: &'a Geometry,
}

impl NumFn for Scatter<'_> {
    type Out = Result<Tensor, OpError>;
    fn call<T: Num>(self) -> Result<Tensor, OpError> {
        scatter::<T>(self.x, self.g)
    }
}

impl Kernel for Col2Im {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let image = ints_input(inputs.tensor(1)?, 1)?;
        let block = ints_input(inputs.tensor(2)?, 2)?;
        let g = self.geometry(x.shape(), &image, &block)?;
        let y = match x.dtype() {
            DataType::Complex64 => scatter::<Complex<f32>>(x, &g)?,
            DataType::Complex128 => scatter::<Complex<f64>>(x, &g)?,
            dtype => with_num_type(dtype, Scatter { x, g: &g })??,
        };
        Ok(vec![Value::Tensor(y)])
    }
}
