//! Matrix products: MatMul, Gemm, MatMulInteger. All go through [`crate::kernels::gemm`].

use rayon::prelude::*;
use runnx_ir::{shape_len, DataType, Element, Tensor, TensorData, Value};

use super::norm::Real;
use super::shape::copy::{view_tensor, StridedView};
use super::shape::transpose::permutation;
use crate::kernels::gemm::{gemm, Bias, Epilogue, GemmScalar, Lhs, MatMut, MatRef, Rhs};
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry, RUNNX_DOMAIN};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "MatMul", &[1, 9, 13], build_matmul);
    reg.add_versions("", "Gemm", &[1, 6, 7, 9, 11, 13], build_gemm);
    reg.add("", "MatMulInteger", 10, build_matmul_integer);
    reg.add(RUNNX_DOMAIN, "MatMulBias", 1, build_matmul_bias);
    reg.add(RUNNX_DOMAIN, "MatMulPermuted", 1, build_matmul_permuted);
}

/// How a (batched, broadcast) matrix product maps onto GEMM calls.
#[derive(Debug, PartialEq)]
pub(crate) struct MatMulPlan {
    m: usize,
    k: usize,
    n: usize,
    out_shape: Vec<usize>,
    /// Per output matrix, the index of the A (and B) matrix it reads.
    a_index: Vec<usize>,
    b_index: Vec<usize>,
    /// B is shared by every batch item and A's batch is not broadcast: one GEMM with
    /// `batch·m` rows does it all.
    fold_batch: bool,
}

impl MatMulPlan {
    /// NumPy `matmul` shapes: 1-D operands are promoted (and the added dim dropped from the
    /// output), batch dims broadcast.
    pub(crate) fn new(a: &[usize], b: &[usize]) -> Result<MatMulPlan, OpError> {
        let scalar = || OpError::invalid("MatMul operands must have rank 1 or more");
        let (a_batch, m, k) = match *a {
            [] => return Err(scalar()),
            [k] => (&a[..0], 1, k),
            [.., m, k] => (&a[..a.len() - 2], m, k),
        };
        let (b_batch, kb, n) = match *b {
            [] => return Err(scalar()),
            [k] => (&b[..0], k, 1),
            [.., k, n] => (&b[..b.len() - 2], k, n),
        };
        if k != kb {
            return Err(OpError::invalid(format!(
                "MatMul: cannot multiply shapes {a:?} and {b:?} (inner dims {k} and {kb})"
            )));
        }
        let batch = broadcast_shapes(a_batch, b_batch).ok_or_else(|| {
            OpError::invalid(format!(
                "MatMul: batch dims of {a:?} and {b:?} do not broadcast"
            ))
        })?;
        let mut out_shape = batch.clone();
        if a.len() > 1 {
            out_shape.push(m);
        }
        if b.len() > 1 {
            out_shape.push(n);
        }
        let a_index = broadcast_index(&batch, a_batch);
        let b_index = broadcast_index(&batch, b_batch);
        let fold_batch = shape_len(b_batch) == 1 && shape_len(a_batch) == shape_len(&batch);
        Ok(MatMulPlan {
            m,
            k,
            n,
            out_shape,
            a_index,
            b_index,
            fold_batch,
        })
    }

    fn batch(&self) -> usize {
        self.a_index.len()
    }

    /// `(m, k, n)`: each product is `[m, k] x [k, n]`.
    pub(crate) fn dims(&self) -> (usize, usize, usize) {
        (self.m, self.k, self.n)
    }

    /// The output shape (batch dims, then `m` and `n` unless an operand was 1-D).
    pub(crate) fn out_shape(&self) -> &[usize] {
        &self.out_shape
    }

    /// Computes every output matrix.
    pub(crate) fn run<T: GemmScalar>(&self, a: &[T], b: &[T]) -> Result<Vec<T>, OpError> {
        self.run_packed(a, b, None, None)
    }

    /// As [`MatMulPlan::run`]; `packed`, when given, is a 2-D `b` packed once, and `bias`
    /// (`n` values) is added to every row of every product in the GEMM's epilogue.
    fn run_packed<T: GemmScalar>(
        &self,
        a: &[T],
        b: &[T],
        packed: Option<&T::PackedRhs>,
        bias: Option<&[T]>,
    ) -> Result<Vec<T>, OpError> {
        let (m, k, n) = (self.m, self.k, self.n);
        // Written whole: every product below is a GEMM with a write-only C.
        let mut out = T::output_buffer(self.batch() * m * n);
        if out.is_empty() {
            return Ok(out);
        }
        let epilogue = Epilogue::with_bias(match bias {
            Some(bias) => Bias::PerColumn(bias),
            None => Bias::None,
        });
        if self.fold_batch {
            let rows = self.batch() * m;
            let a = Lhs::Unpacked(MatRef::row_major(&a[..rows * k], rows, k)?);
            let b = match packed {
                Some(p) => Rhs::Packed(p),
                None => Rhs::Unpacked(MatRef::row_major(b, k, n)?),
            };
            let c = MatMut::row_major(&mut out, rows, n)?;
            return gemm(T::ONE, a, b, T::ZERO, c, &epilogue).map(|()| out);
        }
        self.each_product(&mut out, |i, c| {
            let a = &a[self.a_index[i] * m * k..][..m * k];
            let b = &b[self.b_index[i] * k * n..][..k * n];
            multiply(a, m, k, b, n, c, &epilogue)
        })?;
        Ok(out)
    }

    /// Calls `product(i, c)` for each output matrix `c` (the `i`-th) of `out`, in parallel
    /// when the batch is worth it.
    fn each_product<T: Send>(
        &self,
        out: &mut [T],
        product: impl Fn(usize, &mut [T]) -> Result<(), OpError> + Sync,
    ) -> Result<(), OpError> {
        let (m, k, n) = (self.m, self.k, self.n);
        let macs = m * n * k.max(1);
        let one = |(i, c): (usize, &mut [T])| product(i, c);
        if self.batch() > 1 && self.batch() * macs >= PARALLEL_MACS {
            // Group small products so that each task has a worthwhile amount of work.
            out.par_chunks_mut(m * n)
                .with_min_len(TASK_MACS.div_ceil(macs))
                .enumerate()
                .try_for_each(one)
        } else {
            out.chunks_mut(m * n).enumerate().try_for_each(one)
        }
    }
}

/// Batched products with fewer multiply-adds in all run on one thread; larger batches run in
/// parallel (each GEMM splitting further if it is big itself).
const PARALLEL_MACS: usize = 1 << 18;
/// The least work a parallel task gets: small products are grouped until they reach it.
const TASK_MACS: usize = 1 << 15;

/// `c = a·b`, then `epilogue`, for contiguous row-major matrices.
fn multiply<T: GemmScalar>(
    a: &[T],
    m: usize,
    k: usize,
    b: &[T],
    n: usize,
    c: &mut [T],
    epilogue: &Epilogue<'_, T>,
) -> Result<(), OpError> {
    gemm(
        T::ONE,
        Lhs::Unpacked(MatRef::row_major(a, m, k)?),
        Rhs::Unpacked(MatRef::row_major(b, k, n)?),
        T::ZERO,
        MatMut::row_major(c, m, n)?,
        epilogue,
    )
}

/// NumPy broadcasting of two shapes; `None` when they are incompatible.
fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    (0..rank)
        .map(|i| {
            let da = if i + a.len() >= rank {
                a[i + a.len() - rank]
            } else {
                1
            };
            let db = if i + b.len() >= rank {
                b[i + b.len() - rank]
            } else {
                1
            };
            match (da, db) {
                _ if da == db => Some(da),
                (1, d) | (d, 1) => Some(d),
                _ => None,
            }
        })
        .collect()
}

/// For each index of `out` (row-major), the row-major index into `dims`, which broadcasts to
/// `out` (right-aligned, size-1 dims repeated).
fn broadcast_index(out: &[usize], dims: &[usize]) -> Vec<usize> {
    let pad = out.len() - dims.len();
    let mut strides = vec![0; out.len()];
    let mut stride = 1;
    for (i, &d) in dims.iter().enumerate().rev() {
        strides[pad + i] = if d == 1 { 0 } else { stride };
        stride *= d;
    }
    let total = shape_len(out);
    let mut index = Vec::with_capacity(total);
    let mut pos = vec![0; out.len()];
    for _ in 0..total {
        index.push(pos.iter().zip(&strides).map(|(p, s)| p * s).sum());
        for d in (0..out.len()).rev() {
            pos[d] += 1;
            if pos[d] < out[d] {
                break;
            }
            pos[d] = 0;
        }
    }
    index
}

/// ONNX `MatMul`, opsets 1, 9 (integer types) and 13 (bfloat16): NumPy `matmul`. float16 and
/// bfloat16 are computed in f32 and rounded once at the end; integers wrap on overflow. A
/// constant 2-D f32 B (a weight) is packed once, when the session is built.
struct MatMul {
    packed_b: Option<<f32 as GemmScalar>::PackedRhs>,
}

fn build_matmul(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(MatMul {
        packed_b: info.constant(1).and_then(pack_weight),
    }))
}

/// A constant 2-D f32 right operand packed for the GEMM kernels (`transpose`: its transpose).
fn pack_weight_as(b: &Tensor, transpose: bool) -> Option<<f32 as GemmScalar>::PackedRhs> {
    let (&[rows, cols], Ok(data)) = (b.shape(), b.as_slice::<f32>()) else {
        return None;
    };
    let view = MatRef::row_major(data, rows, cols).ok()?;
    f32::pack_rhs(if transpose { view.t() } else { view })
}

fn pack_weight(b: &Tensor) -> Option<<f32 as GemmScalar>::PackedRhs> {
    pack_weight_as(b, false)
}

/// The product of two tensors of type `T`.
fn matmul_typed<T: GemmScalar + Element>(
    plan: &MatMulPlan,
    a: &Tensor,
    b: &Tensor,
    packed_b: Option<&T::PackedRhs>,
) -> Result<TensorData, OpError> {
    let b = b
        .as_slice::<T>()
        .map_err(|_| OpError::input(1, format!("expected {}, got {}", T::DTYPE, b.dtype())))?;
    Ok(T::wrap(plan.run_packed(
        a.as_slice::<T>()?,
        b,
        packed_b,
        None,
    )?))
}

/// The product of two float16/bfloat16 tensors, computed in f32.
fn matmul_via_f32(plan: &MatMulPlan, a: &Tensor, b: &Tensor) -> Result<TensorData, OpError> {
    if a.dtype() != b.dtype() {
        return Err(OpError::input(
            1,
            format!("expected {}, got {}", a.dtype(), b.dtype()),
        ));
    }
    let out = plan.run(&f32::read(a, 0)?, &f32::read(b, 1)?)?;
    f32::to_data(out, a.dtype())
}

/// `MatMul(a, b)` for every element type MatMul takes.
fn matmul_any(
    plan: &MatMulPlan,
    a: &Tensor,
    b: &Tensor,
    packed_b: Option<&<f32 as GemmScalar>::PackedRhs>,
) -> Result<TensorData, OpError> {
    match a.dtype() {
        DataType::Float => matmul_typed::<f32>(plan, a, b, packed_b),
        DataType::Double => matmul_typed::<f64>(plan, a, b, None),
        DataType::Int32 => matmul_typed::<i32>(plan, a, b, None),
        DataType::Int64 => matmul_typed::<i64>(plan, a, b, None),
        DataType::Uint32 => matmul_typed::<u32>(plan, a, b, None),
        DataType::Uint64 => matmul_typed::<u64>(plan, a, b, None),
        DataType::Float16 | DataType::Bfloat16 => matmul_via_f32(plan, a, b),
        other => Err(OpError::input(
            0,
            format!("MatMul does not support {other}"),
        )),
    }
}

impl Kernel for MatMul {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (a, b) = (inputs.tensor(0)?, inputs.tensor(1)?);
        let plan = MatMulPlan::new(a.shape(), b.shape())?;
        let data = matmul_any(&plan, a, b, self.packed_b.as_ref())?;
        Ok(vec![Tensor::new(plan.out_shape, data)?.into()])
    }
}

/// runnx's `MatMulPermuted`: `alpha · MatMul(Transpose(A, perm_a), Transpose(B, perm_b))`, each
/// permutation optional. The session's optimizer makes it of a MatMul whose operands come
/// through Transposes and Muls by a scalar (attention's `Q·Kᵀ` with its scale, as exporters
/// write it), so that the transposed operands are never copied: float and double products read
/// them through their strides (A in place, B while packing it). Other types copy the permuted
/// operands first; `alpha` must then be 1.
struct MatMulPermuted {
    perm_a: Option<Vec<i64>>,
    perm_b: Option<Vec<i64>>,
    alpha: f32,
}

fn build_matmul_permuted(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(MatMulPermuted {
        perm_a: info.attr_ints_opt("perm_a")?,
        perm_b: info.attr_ints_opt("perm_b")?,
        alpha: info.attr_float("alpha", 1.0)?,
    }))
}

/// Input `index`, `x`, as the product sees it: permuted by `perm` when given.
fn permuted_operand(x: &Tensor, perm: Option<&[i64]>) -> Result<StridedView, OpError> {
    let whole = StridedView::contiguous(x.shape());
    Ok(match perm {
        Some(perm) => whole.permuted(&permutation(perm, x.rank())?),
        None => whole,
    })
}

/// Which side of a product an operand is on, which decides how a 1-D one is promoted.
#[derive(Clone, Copy)]
enum Side {
    /// A 1-D left operand is one row.
    Left,
    /// A 1-D right operand is one column.
    Right,
}

/// An operand's matrices: `(row_stride, col_stride)` of each and the strides of its batch
/// dimensions. A 1-D operand is a row (left) or a column (right) of unit stride.
fn matrix_strides(view: &StridedView, side: Side) -> ((usize, usize), Vec<usize>) {
    let strides: Vec<usize> = view.strides.iter().map(|&s| s as usize).collect();
    match (strides.len(), side) {
        (1, Side::Left) => ((0, strides[0]), Vec::new()),
        (1, Side::Right) => ((strides[0], 0), Vec::new()),
        (r, _) => ((strides[r - 2], strides[r - 1]), strides[..r - 2].to_vec()),
    }
}

/// The offset of batch matrix `index` (row-major over `dims`) for batch `strides`.
fn batch_offset(mut index: usize, dims: &[usize], strides: &[usize]) -> usize {
    let mut offset = 0;
    for (&d, &s) in dims.iter().zip(strides).rev() {
        offset += index % d * s;
        index /= d;
    }
    offset
}

impl MatMulPlan {
    /// `alpha·a·b` for operands read through the strided views `views` of `a` and `b`.
    fn run_strided<T: GemmScalar>(
        &self,
        [a, b]: [&[T]; 2],
        views: &[StridedView; 2],
        alpha: T,
    ) -> Result<Vec<T>, OpError> {
        let (m, k, n) = (self.m, self.k, self.n);
        let mut out = T::output_buffer(self.batch() * m * n);
        if out.is_empty() {
            return Ok(out);
        }
        let ((a_rs, a_cs), a_batch_strides) = matrix_strides(&views[0], Side::Left);
        let ((b_rs, b_cs), b_batch_strides) = matrix_strides(&views[1], Side::Right);
        let batch_dims = |v: &StridedView| v.shape[..v.shape.len().saturating_sub(2)].to_vec();
        let (a_dims, b_dims) = (batch_dims(&views[0]), batch_dims(&views[1]));
        let outside = || OpError::invalid("MatMul: a permuted operand outside its data");
        self.each_product(&mut out, |i, c| {
            let a_at = batch_offset(self.a_index[i], &a_dims, &a_batch_strides);
            let b_at = batch_offset(self.b_index[i], &b_dims, &b_batch_strides);
            gemm(
                alpha,
                Lhs::Unpacked(MatRef::new(
                    a.get(a_at..).ok_or_else(outside)?,
                    m,
                    k,
                    a_rs,
                    a_cs,
                )?),
                Rhs::Unpacked(MatRef::new(
                    b.get(b_at..).ok_or_else(outside)?,
                    k,
                    n,
                    b_rs,
                    b_cs,
                )?),
                T::ZERO,
                MatMut::row_major(c, m, n)?,
                &Epilogue::none(),
            )
        })?;
        Ok(out)
    }
}

impl Kernel for MatMulPermuted {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (a, b) = (inputs.tensor(0)?, inputs.tensor(1)?);
        let views = [
            permuted_operand(a, self.perm_a.as_deref())?,
            permuted_operand(b, self.perm_b.as_deref())?,
        ];
        let plan = MatMulPlan::new(&views[0].shape, &views[1].shape)?;
        if a.dtype() != b.dtype() {
            return Err(OpError::input(
                1,
                format!("expected {}, got {}", a.dtype(), b.dtype()),
            ));
        }
        let data = match a.dtype() {
            DataType::Float => TensorData::Float(plan.run_strided(
                [a.as_slice()?, b.as_slice()?],
                &views,
                self.alpha,
            )?),
            DataType::Double => TensorData::Double(plan.run_strided(
                [a.as_slice()?, b.as_slice()?],
                &views,
                f64::from(self.alpha),
            )?),
            _ if self.alpha == 1.0 => {
                let (a, b) = (view_tensor(a, &views[0])?, view_tensor(b, &views[1])?);
                matmul_any(&plan, &a, &b, None)?
            }
            other => {
                return Err(OpError::input(
                    0,
                    format!("MatMulPermuted scales only float and double, not {other}"),
                ))
            }
        };
        Ok(vec![Tensor::new(plan.out_shape, data)?.into()])
    }
}

/// runnx's `MatMulBias`: `MatMul(A, B) + bias` for a bias of `n` values (B's last dim), added
/// in the GEMM's epilogue instead of a separate pass. The session's optimizer makes it of a
/// MatMul by a constant matrix followed by the Add of a constant vector (a linear layer's
/// bias, as exporters write it); float and double.
struct MatMulBias {
    packed_b: Option<<f32 as GemmScalar>::PackedRhs>,
}

fn build_matmul_bias(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(MatMulBias {
        packed_b: info.constant(1).and_then(pack_weight),
    }))
}

impl MatMulBias {
    fn typed<T: GemmScalar + Element>(
        plan: &MatMulPlan,
        tensors: [&Tensor; 3],
        packed_b: Option<&T::PackedRhs>,
    ) -> Result<TensorData, OpError> {
        let [a, b, bias] = tensors.map(|t| t.as_slice::<T>());
        let expected = |i: usize| OpError::input(i, format!("expected {}", T::DTYPE));
        let (b, bias) = (b.map_err(|_| expected(1))?, bias.map_err(|_| expected(2))?);
        Ok(T::wrap(plan.run_packed(a?, b, packed_b, Some(bias))?))
    }
}

impl Kernel for MatMulBias {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (a, b, bias) = (inputs.tensor(0)?, inputs.tensor(1)?, inputs.tensor(2)?);
        let plan = MatMulPlan::new(a.shape(), b.shape())?;
        if b.shape().len() < 2 || bias.shape() != [plan.n] {
            return Err(OpError::input(
                2,
                format!(
                    "the bias must be a vector of B's {} columns, got shape {:?}",
                    plan.n,
                    bias.shape()
                ),
            ));
        }
        let tensors = [a, b, bias];
        let data = match a.dtype() {
            DataType::Float => Self::typed::<f32>(&plan, tensors, self.packed_b.as_ref())?,
            DataType::Double => Self::typed::<f64>(&plan, tensors, None)?,
            other => {
                return Err(OpError::input(
                    0,
                    format!("MatMulBias does not support {other}"),
                ))
            }
        };
        Ok(vec![Tensor::new(plan.out_shape, data)?.into()])
    }
}

/// ONNX `Gemm`, opsets 1-13: `Y = alpha·A'·B' + beta·C` with `A' = transA ? Aᵀ : A` (same for
/// B) and C broadcast to `M x N`. C is required before opset 11. The opset < 7 `broadcast`
/// attribute is accepted and not needed: a C that broadcasts is always broadcast. Integer
/// types need integral `alpha` and `beta`; float16/bfloat16 compute in f32.
struct Gemm {
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
    /// A constant f32 B', packed once.
    packed_b: Option<<f32 as GemmScalar>::PackedRhs>,
}

fn build_gemm(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    if info.opset < 11 && !info.has_input(2) {
        return Err(OpError::input(2, "C is required before opset 11"));
    }
    if info.opset < 7 {
        // Parsed for validation only; see the doc comment.
        info.attr_int("broadcast", 0)?;
    }
    let trans_b = info.attr_int("transB", 0)? != 0;
    Ok(Box::new(Gemm {
        alpha: info.attr_float("alpha", 1.0)?,
        beta: info.attr_float("beta", 1.0)?,
        trans_a: info.attr_int("transA", 0)? != 0,
        trans_b,
        packed_b: info.constant(1).and_then(|b| pack_weight_as(b, trans_b)),
    }))
}

/// C seen as an `m x n` matrix (zero strides where it broadcasts).
struct CView {
    row_stride: usize,
    col_stride: usize,
    /// C has one value per column (shape `[n]`, `[1, n]`) or per row (`[m, 1]`).
    per_column: bool,
    per_row: bool,
}

impl CView {
    fn new(shape: &[usize], m: usize, n: usize) -> Result<CView, OpError> {
        let (cm, cn) = match *shape {
            [] => (1, 1),
            [cn] => (1, cn),
            [cm, cn] => (cm, cn),
            _ => {
                return Err(OpError::input(
                    2,
                    format!("C of shape {shape:?} does not broadcast to [{m}, {n}]"),
                ))
            }
        };
        if (cm != 1 && cm != m) || (cn != 1 && cn != n) {
            return Err(OpError::input(
                2,
                format!("C of shape {shape:?} does not broadcast to [{m}, {n}]"),
            ));
        }
        Ok(CView {
            row_stride: if cm == 1 { 0 } else { cn },
            col_stride: if cn == 1 { 0 } else { 1 },
            per_column: cm == 1 && cn == n,
            per_row: cn == 1 && cm == m,
        })
    }
}

/// A Gemm coefficient as `T`; integer types need an integral value.
fn coefficient<T: GemmScalar + num_traits::NumCast>(name: &str, value: f32) -> Result<T, OpError> {
    num_traits::cast::<f32, T>(value)
        .filter(|v| num_traits::cast::<T, f32>(*v) == Some(value))
        .ok_or_else(|| {
            OpError::attribute(
                name,
                format!("{value} is not representable in the input type"),
            )
        })
}

impl Gemm {
    fn compute<T: GemmScalar + num_traits::NumCast>(
        &self,
        a: &[T],
        a_shape: &[usize],
        b: &[T],
        b_shape: &[usize],
        c: Option<(&[T], &[usize])>,
        packed_b: Option<&T::PackedRhs>,
    ) -> Result<(Vec<T>, [usize; 2]), OpError> {
        let (&[ar, ac], &[br, bc]) = (a_shape, b_shape) else {
            return Err(OpError::invalid(format!(
                "Gemm needs 2-D A and B, got {a_shape:?} and {b_shape:?}"
            )));
        };
        let mut a = MatRef::row_major(a, ar, ac)?;
        let mut b = MatRef::row_major(b, br, bc)?;
        if self.trans_a {
            a = a.t();
        }
        if self.trans_b {
            b = b.t();
        }
        let (m, n) = (a.rows(), b.cols());
        if a.cols() != b.rows() {
            return Err(OpError::invalid(format!(
                "Gemm: cannot multiply A' of shape [{m}, {}] by B' of shape [{}, {n}]",
                a.cols(),
                b.rows()
            )));
        }
        let alpha = coefficient::<T>("alpha", self.alpha)?;
        let mut beta = coefficient::<T>("beta", self.beta)?;
        let mut out = vec![T::ZERO; m * n];
        let mut bias = Bias::None;
        match c {
            Some((c, shape)) if beta != T::ZERO => {
                let view = CView::new(shape, m, n)?;
                if beta == T::ONE && view.per_column {
                    bias = Bias::PerColumn(c);
                    beta = T::ZERO;
                } else if beta == T::ONE && view.per_row {
                    bias = Bias::PerRow(c);
                    beta = T::ZERO;
                } else {
                    // Bounds: C has `cm·cn` elements and the strides are zero where cm or cn is 1.
                    for (i, row) in out.chunks_mut(n.max(1)).enumerate() {
                        for (j, v) in row.iter_mut().enumerate() {
                            *v = c[i * view.row_stride + j * view.col_stride];
                        }
                    }
                }
            }
            _ => beta = T::ZERO,
        }
        gemm(
            alpha,
            Lhs::Unpacked(a),
            match packed_b {
                Some(p) => Rhs::Packed(p),
                None => Rhs::Unpacked(b),
            },
            beta,
            MatMut::row_major(&mut out, m, n)?,
            &Epilogue::with_bias(bias),
        )?;
        Ok((out, [m, n]))
    }

    fn typed<T: GemmScalar + Element + num_traits::NumCast>(
        &self,
        a: &Tensor,
        b: &Tensor,
        c: Option<&Tensor>,
        packed_b: Option<&T::PackedRhs>,
    ) -> Result<Tensor, OpError> {
        let c = match c {
            Some(c) => Some((slice_of::<T>(c, 2)?, c.shape())),
            None => None,
        };
        let (out, shape) = self.compute(
            slice_of::<T>(a, 0)?,
            a.shape(),
            slice_of::<T>(b, 1)?,
            b.shape(),
            c,
            packed_b,
        )?;
        Ok(Tensor::from_vec(shape, out)?)
    }

    fn via_f32(&self, a: &Tensor, b: &Tensor, c: Option<&Tensor>) -> Result<Tensor, OpError> {
        let c_data = c.map(|c| f32::read(c, 2)).transpose()?;
        let c = c_data.as_deref().zip(c.map(Tensor::shape));
        let (out, shape) = self.compute(
            &f32::read(a, 0)?,
            a.shape(),
            &f32::read(b, 1)?,
            b.shape(),
            c,
            None,
        )?;
        f32::to_tensor(out, a.dtype(), &shape)
    }
}

fn slice_of<T: Element>(t: &Tensor, index: usize) -> Result<&[T], OpError> {
    t.as_slice::<T>()
        .map_err(|_| OpError::input(index, format!("expected {}, got {}", T::DTYPE, t.dtype())))
}

impl Kernel for Gemm {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (a, b, c) = (inputs.tensor(0)?, inputs.tensor(1)?, inputs.opt_tensor(2)?);
        let y = match a.dtype() {
            DataType::Float => self.typed::<f32>(a, b, c, self.packed_b.as_ref())?,
            DataType::Double => self.typed::<f64>(a, b, c, None)?,
            DataType::Int32 => self.typed::<i32>(a, b, c, None)?,
            DataType::Int64 => self.typed::<i64>(a, b, c, None)?,
            DataType::Uint32 => self.typed::<u32>(a, b, c, None)?,
            DataType::Uint64 => self.typed::<u64>(a, b, c, None)?,
            DataType::Float16 | DataType::Bfloat16 => self.via_f32(a, b, c)?,
            other => return Err(OpError::input(0, format!("Gemm does not support {other}"))),
        };
        Ok(vec![y.into()])
    }
}

/// ONNX `MatMulInteger`, opset 10: `(A - a_zero_point)·(B - b_zero_point)` in int32, for int8
/// and uint8 inputs. A's zero point is a scalar or one per row (`[M]`, or one per row of every
/// batch item); B's is a scalar or one per column (`[N]`, or per column of every batch item).
struct MatMulInteger;

fn build_matmul_integer(_info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(MatMulInteger))
}

/// An 8-bit integer tensor widened to i32.
pub(crate) fn widen_8bit(t: &Tensor, index: usize) -> Result<Vec<i32>, OpError> {
    match t.data() {
        TensorData::Uint8(v) => Ok(v.iter().map(|&x| i32::from(x)).collect()),
        TensorData::Int8(v) => Ok(v.iter().map(|&x| i32::from(x)).collect()),
        _ => Err(OpError::input(
            index,
            format!("expected int8 or uint8, got {}", t.dtype()),
        )),
    }
}

/// Subtracts per-row zero points (one, or one per row cycling) from rows of `row_len` values.
fn subtract_row_zero_points(values: &mut [i32], row_len: usize, zp: &[i32]) {
    if row_len == 0 || zp.is_empty() {
        return;
    }
    for (r, row) in values.chunks_mut(row_len).enumerate() {
        let z = zp[r % zp.len()];
        row.iter_mut().for_each(|v| *v -= z);
    }
}

impl Kernel for MatMulInteger {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (a, b) = (inputs.tensor(0)?, inputs.tensor(1)?);
        let plan = MatMulPlan::new(a.shape(), b.shape())?;
        let mut a32 = widen_8bit(a, 0)?;
        let mut b32 = widen_8bit(b, 1)?;
        if let Some(zp) = inputs.opt_tensor(2)? {
            let zp = widen_8bit(zp, 2)?;
            let rows = a32.len() / plan.k.max(1);
            check_zero_points(&zp, plan.m, rows, 2)?;
            subtract_row_zero_points(&mut a32, plan.k, &zp);
        }
        if let Some(zp) = inputs.opt_tensor(3)? {
            let zp = widen_8bit(zp, 3)?;
            let matrices = b32.len() / (plan.k * plan.n).max(1);
            check_zero_points(&zp, plan.n, matrices * plan.n, 3)?;
            subtract_column_zero_points(&mut b32, plan.k, plan.n, &zp);
        }
        let out = plan.run(&a32, &b32)?;
        Ok(vec![Tensor::from_vec(plan.out_shape, out)?.into()])
    }
}

/// A zero point has 1 value, one per row/column (`per`), or one per row/column of every batch
/// item (`all`).
fn check_zero_points(zp: &[i32], per: usize, all: usize, index: usize) -> Result<(), OpError> {
    if zp.len() == 1 || zp.len() == per || zp.len() == all {
        Ok(())
    } else {
        Err(OpError::input(
            index,
            format!("{} zero points do not match {per} rows/columns", zp.len()),
        ))
    }
}

/// Subtracts per-column zero points from B, a batch of `k x n` matrices.
fn subtract_column_zero_points(b: &mut [i32], k: usize, n: usize, zp: &[i32]) {
    if zp.len() == 1 {
        b.iter_mut().for_each(|v| *v -= zp[0]);
        return;
    }
    if k * n == 0 {
        return;
    }
    for (batch, matrix) in b.chunks_mut(k * n).enumerate() {
        let zp = &zp[(batch * n) % zp.len()..][..n];
        for row in matrix.chunks_mut(n) {
            row.iter_mut().zip(zp).for_each(|(v, z)| *v -= z);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_promotes_and_broadcasts() {
        let p = MatMulPlan::new(&[3], &[3]).unwrap();
        assert!(p.out_shape.is_empty());
        let p = MatMulPlan::new(&[2, 1, 4, 3], &[5, 3, 6]).unwrap();
        assert_eq!(p.out_shape, vec![2, 5, 4, 6]);
        assert_eq!(p.a_index, vec![0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
        assert_eq!(p.b_index, vec![0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
        assert!(!p.fold_batch);
        let p = MatMulPlan::new(&[2, 4, 3], &[3, 6]).unwrap();
        assert!(p.fold_batch);
        assert_eq!(p.out_shape, vec![2, 4, 6]);
        let p = MatMulPlan::new(&[3], &[2, 3, 6]).unwrap();
        assert_eq!(p.out_shape, vec![2, 6]);
        assert!(MatMulPlan::new(&[2, 3], &[2, 3]).is_err());
        assert!(MatMulPlan::new(&[2, 2, 3], &[3, 3, 1]).is_err());
        assert!(MatMulPlan::new(&[], &[3]).is_err());
    }

    /// `MatMulPermuted` against Transpose then MatMul (then Mul by alpha), through the
    /// registry's kernels.
    fn check_permuted(
        a: Tensor,
        perm_a: Option<Vec<i64>>,
        b: Tensor,
        perm_b: Option<Vec<i64>>,
        alpha: f32,
    ) {
        use crate::ops::elementwise::tests::run_op;
        let transposed = |x: &Tensor, perm: &Option<Vec<i64>>| match perm {
            Some(p) => {
                let attrs = vec![("perm", runnx_ir::AttributeValue::Ints(p.clone()))];
                run_op("Transpose", 13, attrs, vec![x.clone()])
                    .unwrap()
                    .remove(0)
            }
            None => x.clone(),
        };
        let plain = vec![transposed(&a, &perm_a), transposed(&b, &perm_b)];
        let mut want = run_op("MatMul", 13, vec![], plain).unwrap().remove(0);
        if alpha != 1.0 {
            let scale = match want.dtype() {
                DataType::Double => Tensor::from_vec([], vec![f64::from(alpha)]).unwrap(),
                _ => Tensor::from_vec([], vec![alpha]).unwrap(),
            };
            want = run_op("Mul", 14, vec![], vec![want, scale])
                .unwrap()
                .remove(0);
        }
        let kernel = MatMulPermuted {
            perm_a,
            perm_b,
            alpha,
        };
        let inputs = Inputs::new(vec![Some(a.into()), Some(b.into())]);
        let got = kernel.run(inputs).unwrap().remove(0).into_tensor().unwrap();
        assert_eq!(got.shape(), want.shape());
        match (got.as_slice::<f32>(), want.as_slice::<f32>()) {
            (Ok(g), Ok(w)) => {
                for (i, (g, w)) in g.iter().zip(w).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "element {i}: {g} vs {w}"
                    );
                }
            }
            _ => assert_eq!(got, want),
        }
    }

    #[test]
    fn permuted_products_match_transpose_then_matmul() {
        let floats = |shape: &[usize]| {
            let len = shape_len(shape);
            let v = (0..len)
                .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
                .collect();
            Tensor::from_vec(shape.to_vec(), v).unwrap()
        };
        // Attention's Q·Kᵀ, scaled: x [2, 3, 4, 5] read as [2, 4, 3, 5] by [2, 4, 5, 3].
        let x = floats(&[2, 3, 4, 5]);
        check_permuted(
            x.clone(),
            Some(vec![0, 2, 1, 3]),
            x.clone(),
            Some(vec![0, 2, 3, 1]),
            0.25,
        );
        // Broadcast batches ([1, 3] against [2, 1]) and a transposed A only.
        check_permuted(
            floats(&[1, 3, 6, 4]),
            Some(vec![0, 1, 3, 2]),
            floats(&[2, 1, 6, 5]),
            None,
            1.0,
        );
        // A 1-D B, and a permuted 2-D A.
        check_permuted(floats(&[7, 3]), Some(vec![1, 0]), floats(&[7]), None, 2.0);
        // Past the packed kernels' tile sizes, with a strided B.
        check_permuted(
            floats(&[40, 2, 33]),
            Some(vec![1, 0, 2]),
            floats(&[2, 35, 33]),
            Some(vec![0, 2, 1]),
            1.0,
        );
        // Double, and integers (copied, then multiplied).
        let doubles = Tensor::from_vec([2, 3, 4], (0..24).map(f64::from).collect()).unwrap();
        check_permuted(doubles.clone(), Some(vec![0, 2, 1]), doubles, None, 0.5);
        let ints = Tensor::from_vec([2, 3, 4], (0..24).collect::<Vec<i32>>()).unwrap();
        check_permuted(ints.clone(), Some(vec![0, 2, 1]), ints.clone(), None, 1.0);
        // A bad permutation is an error, not a panic.
        let kernel = MatMulPermuted {
            perm_a: Some(vec![0, 0, 1]),
            perm_b: None,
            alpha: 1.0,
        };
        let inputs = Inputs::new(vec![Some(ints.clone().into()), Some(ints.into())]);
        assert!(kernel.run(inputs).is_err());
    }

    #[test]
    fn batched_product() {
        // Two 2x2 matrices times one shared 2x1.
        let p = MatMulPlan::new(&[2, 2, 2], &[2, 1]).unwrap();
        let out = p.run(&[1i64, 2, 3, 4, 5, 6, 7, 8], &[1, 10]).unwrap();
        assert_eq!(out, vec![21, 43, 65, 87]);
        // A broadcast against a batch of B.
        let p = MatMulPlan::new(&[1, 2], &[2, 2, 1]).unwrap();
        assert_eq!(p.out_shape, vec![2, 1, 1]);
        assert_eq!(p.run(&[1i32, 2], &[3, 4, 5, 6]).unwrap(), vec![11, 17]);
    }

    #[test]
    fn gemm_broadcasts_c_and_transposes() {
        let g = Gemm {
            alpha: 2.0,
            beta: 0.5,
            trans_a: true,
            trans_b: false,
            packed_b: None,
        };
        // A' = [[1, 2]] from A = [[1], [2]]; B = [[1, 2], [3, 4]]; C = [[10], ] per row.
        let (out, shape) = g
            .compute(
                &[1f32, 2.0],
                &[2, 1],
                &[1.0, 2.0, 3.0, 4.0],
                &[2, 2],
                Some((&[10.0], &[1, 1])),
                None,
            )
            .unwrap();
        assert_eq!(shape, [1, 2]);
        assert_eq!(out, vec![2.0 * 7.0 + 5.0, 2.0 * 10.0 + 5.0]);
        let g = Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: true,
            packed_b: None,
        };
        let (out, _) = g
            .compute(
                &[1i64, 2, 3, 4],
                &[2, 2],
                &[1, 0, 0, 1],
                &[2, 2],
                Some((&[100, 200], &[2, 1])),
                None,
            )
            .unwrap();
        assert_eq!(out, vec![101, 102, 203, 204]);
        assert!(g
            .compute(
                &[1i64, 2, 3, 4],
                &[2, 2],
                &[1, 0, 0, 1],
                &[2, 2],
                Some((&[1, 2, 3], &[3])),
                None,
            )
            .is_err());
        let g = Gemm {
            alpha: 0.5,
            beta: 1.0,
            trans_a: false,
            trans_b: false,
            packed_b: None,
        };
        assert!(g
            .compute(&[1i64], &[1, 1], &[1], &[1, 1], None, None)
            .is_err());
    }

    #[test]
    fn zero_points() {
        let mut a = vec![1, 2, 3, 4];
        subtract_row_zero_points(&mut a, 2, &[1, 2]);
        assert_eq!(a, vec![0, 1, 1, 2]);
        let mut b = vec![1, 2, 3, 4];
        subtract_column_zero_points(&mut b, 2, 2, &[1, 2]);
        assert_eq!(b, vec![0, 0, 2, 2]);
    }
}
