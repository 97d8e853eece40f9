//! Permutations of dimensions: Transpose, DepthToSpace, SpaceToDepth. Each is a permuted
//! [`StridedView`] of its input, materialised by the tiled copy in [`super::copy`].

use runnx_ir::{Tensor, Value};

use super::copy::{view_tensor, StridedView};
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "Transpose", &[1, 13], build_transpose);
    reg.add_versions("", "DepthToSpace", &[1, 11, 13], build_depth_to_space);
    reg.add_versions("", "SpaceToDepth", &[1, 13], build_space_to_depth);
}

/// ONNX `Transpose`, opsets 1-25: output dimension `i` is input dimension `perm[i]`; `perm`
/// defaults to reversing the dimensions. Permutations that only move size-1 dimensions share
/// the input's buffer.
struct Transpose {
    perm: Option<Vec<i64>>,
}

fn build_transpose(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(Transpose {
        perm: info.attr_ints_opt("perm")?,
    }))
}

/// Checks that `perm` is a permutation of `0..rank`.
pub(crate) fn permutation(perm: &[i64], rank: usize) -> Result<Vec<usize>, OpError> {
    let mut seen = vec![false; rank];
    let valid = perm.len() == rank
        && perm.iter().all(|&p| {
            usize::try_from(p).is_ok_and(|p| p < rank && !std::mem::replace(&mut seen[p], true))
        });
    if !valid {
        return Err(OpError::attribute(
            "perm",
            format!("{perm:?} is not a permutation of the {rank} input dimensions"),
        ));
    }
    Ok(perm.iter().map(|&p| p as usize).collect())
}

impl Kernel for Transpose {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let perm = match &self.perm {
            Some(p) => permutation(p, x.rank())?,
            None => (0..x.rank()).rev().collect(),
        };
        let view = StridedView::contiguous(x.shape()).permuted(&perm);
        Ok(vec![view_tensor(x, &view)?.into()])
    }
}

/// Block order of DepthToSpace and SpaceToDepth: depth-column-row or column-row-depth.
#[derive(Clone, Copy, PartialEq, Debug)]
enum BlockMode {
    Dcr,
    Crd,
}

fn block_params(info: &NodeInfo) -> Result<(usize, BlockMode), OpError> {
    let blocksize = info
        .attr_int_opt("blocksize")?
        .ok_or_else(|| OpError::attribute("blocksize", "is required"))?;
    if blocksize < 1 {
        return Err(OpError::attribute(
            "blocksize",
            format!("must be positive, got {blocksize}"),
        ));
    }
    let mode = match info.attr_string("mode", "DCR")?.as_str() {
        "DCR" => BlockMode::Dcr,
        "CRD" => BlockMode::Crd,
        other => {
            return Err(OpError::attribute(
                "mode",
                format!("must be DCR or CRD, got {other}"),
            ))
        }
    };
    Ok((blocksize as usize, mode))
}

/// The four dimensions of an NCHW input.
fn nchw(x: &Tensor) -> Result<[usize; 4], OpError> {
    <[usize; 4]>::try_from(x.shape()).map_err(|_| {
        OpError::input(
            0,
            format!("expected a 4-D tensor, got shape {:?}", x.shape()),
        )
    })
}

/// ONNX `DepthToSpace`, opsets 1-28: moves `blocksize`² channels into spatial blocks. Mode
/// `DCR` (default; opset 11 added `CRD`) reads the channels as `[bs, bs, C']`, `CRD` as
/// `[C', bs, bs]`.
struct DepthToSpace {
    blocksize: usize,
    mode: BlockMode,
}

fn build_depth_to_space(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let (blocksize, mode) = block_params(info)?;
    Ok(Box::new(DepthToSpace { blocksize, mode }))
}

impl Kernel for DepthToSpace {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let [b, c, h, w] = nchw(x)?;
        let bs = self.blocksize;
        if c % (bs * bs) != 0 {
            return Err(OpError::invalid(format!(
                "{c} channels are not a multiple of blocksize² = {}",
                bs * bs
            )));
        }
        let c_out = c / (bs * bs);
        let (split, perm) = match self.mode {
            BlockMode::Dcr => ([b, bs, bs, c_out, h, w], [0, 3, 4, 1, 5, 2]),
            BlockMode::Crd => ([b, c_out, bs, bs, h, w], [0, 1, 4, 2, 5, 3]),
        };
        let view = StridedView::contiguous(&split).permuted(&perm);
        let y = view_tensor(x, &view)?.reshape([b, c_out, h * bs, w * bs])?;
        Ok(vec![y.into()])
    }
}

/// ONNX `SpaceToDepth`, opsets 1-28: the inverse of DepthToSpace (mode `DCR` by default,
/// `CRD` since opset 28).
struct SpaceToDepth {
    blocksize: usize,
    mode: BlockMode,
}

fn build_space_to_depth(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let (blocksize, mode) = block_params(info)?;
    Ok(Box::new(SpaceToDepth { blocksize, mode }))
}

impl Kernel for SpaceToDepth {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let [b, c, h, w] = nchw(x)?;
        let bs = self.blocksize;
        if h % bs != 0 || w % bs != 0 {
            return Err(OpError::invalid(format!(
                "spatial size {h}x{w} is not a multiple of blocksize {bs}"
            )));
        }
        let split = [b, c, h / bs, bs, w / bs, bs];
        let perm = match self.mode {
            BlockMode::Dcr => [0, 3, 5, 1, 2, 4],
            BlockMode::Crd => [0, 1, 3, 5, 2, 4],
        };
        let view = StridedView::contiguous(&split).permuted(&perm);
        let y = view_tensor(x, &view)?.reshape([b, c * bs * bs, h / bs, w / bs])?;
        Ok(vec![y.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_checked() {
        assert_eq!(permutation(&[2, 0, 1], 3).unwrap(), vec![2, 0, 1]);
        assert!(permutation(&[0, 0, 1], 3).is_err());
        assert!(permutation(&[0, 1], 3).is_err());
        assert!(permutation(&[0, 1, 3], 3).is_err());
        assert!(permutation(&[0, -1, 1], 3).is_err());
    }

    #[test]
    fn depth_to_space_dcr() {
        // The spec's example: x of shape [1, 8, 2, 3], blocksize 2.
        let x = Tensor::from_vec([1, 8, 2, 3], (0..48).map(|v| v as f32).collect()).unwrap();
        let k = DepthToSpace {
            blocksize: 2,
            mode: BlockMode::Dcr,
        };
        let y = k.run(Inputs::new(vec![Some(x.into())])).unwrap();
        let y = y[0].as_tensor().unwrap();
        assert_eq!(y.shape(), &[1, 2, 4, 6]);
        let first_row = [0., 12., 1., 13., 2., 14.];
        assert_eq!(&y.as_slice::<f32>().unwrap()[..6], &first_row);
    }
}
