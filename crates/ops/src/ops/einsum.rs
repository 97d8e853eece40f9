//! ONNX `Einsum`: Einstein summation over any number of operands.
//!
//! Evaluation plan, for an equation parsed once when the session is built:
//! 1. Each operand is reduced on its own: repeated labels become a diagonal (one dim whose
//!    stride is the sum of theirs), labels needed by no other operand and not by the output are
//!    summed out, and size-1 dims broadcast against a larger size elsewhere are dropped. One
//!    strided gather and one block sum do it all.
//! 2. Operands are contracted left to right, two at a time, as batched matrix products on the
//!    GEMM kernel: labels shared and still needed later are the batch, labels shared and not
//!    needed are the inner dimension, the others are the rows (left) and columns (right).
//! 3. The result is permuted to the output's label order.
//!
//! Sums are accumulated in the element type (integers wrap); float16 and bfloat16 compute in
//! float and round once.

use std::borrow::Cow;

use half::{bf16, f16};
use rayon::prelude::*;
use runnx_ir::{strides_of, DataType, Element, Tensor, TensorData, Value};

use crate::kernels::gemm::{gemm, Epilogue, GemmScalar, Lhs, MatMut, MatRef, Rhs};
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "Einsum", &[12, 28], build_einsum);
}

/// The number of letter labels: `A..Z` are 0..26 and `a..z` 26..52, so that label order is
/// ASCII order. Ellipsis dims get the labels from 52 on.
const LETTERS: usize = 52;

/// One symbol of a term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sym {
    Letter(usize),
    Ellipsis,
}

/// A parsed equation: one term per input and the explicit output term, if any.
#[derive(Debug)]
struct Equation {
    inputs: Vec<Vec<Sym>>,
    output: Option<Vec<Sym>>,
}

fn parse_term(term: &str) -> Result<Vec<Sym>, OpError> {
    let mut syms = Vec::new();
    let mut rest = term;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("...") {
            if syms.contains(&Sym::Ellipsis) {
                return Err(OpError::attribute(
                    "equation",
                    format!("term '{term}' has more than one ellipsis"),
                ));
            }
            syms.push(Sym::Ellipsis);
            rest = after;
            continue;
        }
        let label = match c {
            'A'..='Z' => c as usize - 'A' as usize,
            'a'..='z' => 26 + c as usize - 'a' as usize,
            _ => {
                return Err(OpError::attribute(
                    "equation",
                    format!("unexpected character '{c}' in term '{term}'"),
                ))
            }
        };
        syms.push(Sym::Letter(label));
        rest = &rest[c.len_utf8()..];
    }
    Ok(syms)
}

impl Equation {
    fn parse(equation: &str) -> Result<Equation, OpError> {
        let eq: String = equation.chars().filter(|&c| c != ' ').collect();
        let (lhs, rhs) = match eq.split_once("->") {
            Some((l, r)) => (l, Some(r)),
            None => (eq.as_str(), None),
        };
        let inputs = lhs
            .split(',')
            .map(parse_term)
            .collect::<Result<Vec<_>, _>>()?;
        let output = rhs.map(parse_term).transpose()?;
        if let Some(out) = &output {
            for (i, s) in out.iter().enumerate() {
                if out[..i].contains(s) {
                    return Err(OpError::attribute(
                        "equation",
                        format!("output label {s:?} is repeated in '{equation}'"),
                    ));
                }
                if let Sym::Letter(_) = s {
                    if !inputs.iter().any(|t| t.contains(s)) {
                        return Err(OpError::attribute(
                            "equation",
                            format!("an output label of '{equation}' is in no input term"),
                        ));
                    }
                }
            }
        }
        Ok(Equation { inputs, output })
    }
}

/// ONNX `Einsum`, opsets 12 and 28 (bfloat16): explicit and implicit output, repeated labels
/// (diagonals, traces), broadcast ellipses, any number of operands.
struct Einsum {
    equation: Equation,
}

fn build_einsum(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let equation = info
        .attr_string_opt("equation")?
        .ok_or_else(|| OpError::attribute("equation", "is required"))?;
    let equation = Equation::parse(&equation)?;
    if equation.inputs.len() != info.num_inputs() {
        return Err(OpError::invalid(format!(
            "the equation has {} input terms for {} inputs",
            equation.inputs.len(),
            info.num_inputs()
        )));
    }
    Ok(Box::new(Einsum { equation }))
}

/// The labels of every operand's dims and of the output, and every label's size.
struct Labelling {
    inputs: Vec<Vec<usize>>,
    output: Vec<usize>,
    sizes: Vec<usize>,
}

impl Equation {
    /// Expands the ellipses of each term for these shapes (the ellipsis dims, right-aligned,
    /// broadcast together) and checks that each label has one size.
    fn label(&self, shapes: &[&[usize]]) -> Result<Labelling, OpError> {
        if shapes.len() != self.inputs.len() {
            return Err(OpError::invalid(format!(
                "the equation has {} input terms for {} inputs",
                self.inputs.len(),
                shapes.len()
            )));
        }
        let mut ellipsis_ranks = Vec::with_capacity(shapes.len());
        for (i, (term, shape)) in self.inputs.iter().zip(shapes).enumerate() {
            let letters = term.iter().filter(|s| **s != Sym::Ellipsis).count();
            let has_ellipsis = term.contains(&Sym::Ellipsis);
            if shape.len() < letters || (!has_ellipsis && shape.len() != letters) {
                return Err(OpError::input(
                    i,
                    format!(
                        "rank {} does not match its term of {letters} labels",
                        shape.len()
                    ),
                ));
            }
            ellipsis_ranks.push(shape.len() - letters);
        }
        let ellipsis = ellipsis_ranks.iter().copied().max().unwrap_or(0);
        let expand = |term: &[Sym], rank: usize| -> Vec<usize> {
            term.iter()
                .flat_map(|s| match *s {
                    Sym::Letter(l) => vec![l],
                    Sym::Ellipsis => (LETTERS + ellipsis - rank..LETTERS + ellipsis).collect(),
                })
                .collect()
        };
        let inputs: Vec<Vec<usize>> = self
            .inputs
            .iter()
            .zip(&ellipsis_ranks)
            .map(|(t, &r)| expand(t, r))
            .collect();

        let mut sizes: Vec<Option<usize>> = vec![None; LETTERS + ellipsis];
        for (i, (labels, shape)) in inputs.iter().zip(shapes).enumerate() {
            for (&l, &d) in labels.iter().zip(shape.iter()) {
                sizes[l] = match sizes[l] {
                    None => Some(d),
                    Some(s) if s == d => Some(s),
                    // Ellipsis dims broadcast.
                    Some(s) if l >= LETTERS && (s == 1 || d == 1) => Some(s.max(d)),
                    Some(s) => {
                        return Err(OpError::input(
                            i,
                            format!("a label has size {d} here and {s} elsewhere"),
                        ))
                    }
                };
            }
        }

        let output = match &self.output {
            Some(term) => expand(term, ellipsis),
            None => {
                // Implicit: the ellipsis dims, then the letters used exactly once, in ASCII order.
                let mut count = [0usize; LETTERS];
                inputs
                    .iter()
                    .flatten()
                    .filter(|&&l| l < LETTERS)
                    .for_each(|&l| count[l] += 1);
                (LETTERS..LETTERS + ellipsis)
                    .chain((0..LETTERS).filter(|&l| count[l] == 1))
                    .collect()
            }
        };
        Ok(Labelling {
            inputs,
            output,
            sizes: sizes.into_iter().map(|s| s.unwrap_or(1)).collect(),
        })
    }
}

/// A contiguous row-major operand whose dims carry distinct labels.
struct Operand<'a, T: Clone> {
    data: Cow<'a, [T]>,
    labels: Vec<usize>,
    dims: Vec<usize>,
}

impl<T: Clone> Operand<'_, T> {
    fn has(&self, label: usize) -> bool {
        self.labels.contains(&label)
    }
}

/// Copies the strided view `(size, stride)` per dim of `src` into a contiguous buffer.
fn gather<T: Copy>(src: &[T], view: &[(usize, usize)]) -> Vec<T> {
    let total: usize = view.iter().map(|v| v.0).product();
    let mut out = Vec::with_capacity(total);
    if total == 0 {
        return out;
    }
    let Some((&(inner, inner_stride), outer)) = view.split_last() else {
        out.push(src[0]);
        return out;
    };
    let mut index = vec![0usize; outer.len()];
    let mut offset = 0usize;
    loop {
        out.extend((0..inner).map(|j| src[offset + j * inner_stride]));
        // Advance the odometer over the outer dims.
        let mut d = outer.len();
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            index[d] += 1;
            offset += outer[d].1;
            if index[d] < outer[d].0 {
                break;
            }
            offset -= outer[d].1 * outer[d].0;
            index[d] = 0;
        }
    }
}

/// Brings an operand to distinct labels: takes diagonals of repeated labels, drops size-1
/// dims that broadcast (the label is larger elsewhere), and sums out the labels `needed`
/// rejects. Returns the operand unchanged (borrowed) when there is nothing to do.
fn reduce<'a, T: GemmScalar>(
    data: Cow<'a, [T]>,
    labels: &[usize],
    shape: &[usize],
    sizes: &[usize],
    needed: impl Fn(usize) -> bool,
) -> Operand<'a, T> {
    let strides = strides_of(shape);
    // (label, size, stride) per distinct label, first occurrence first.
    let mut view: Vec<(usize, usize, usize)> = Vec::with_capacity(labels.len());
    let mut simple = true;
    for ((&l, &d), &s) in labels.iter().zip(shape).zip(strides.iter()) {
        if d == 1 && sizes[l] > 1 {
            continue;
        }
        match view.iter_mut().find(|v| v.0 == l) {
            Some(v) => {
                v.2 += s;
                simple = false;
            }
            None => view.push((l, d, s)),
        }
    }
    let (kept, summed): (Vec<_>, Vec<_>) = view.into_iter().partition(|v| needed(v.0));
    let labels: Vec<usize> = kept.iter().map(|v| v.0).collect();
    let dims: Vec<usize> = kept.iter().map(|v| v.1).collect();
    if simple && summed.is_empty() {
        return Operand { data, labels, dims };
    }
    let order: Vec<(usize, usize)> = kept.iter().chain(&summed).map(|v| (v.1, v.2)).collect();
    let gathered = gather(&data, &order);
    let block: usize = summed.iter().map(|v| v.1).product();
    let data = if block == 1 {
        gathered
    } else if block == 0 {
        vec![T::ZERO; dims.iter().product()]
    } else {
        gathered
            .chunks(block)
            .map(|c| c.iter().fold(T::ZERO, |a, &b| a.add(b)))
            .collect()
    };
    Operand {
        data: Cow::Owned(data),
        labels,
        dims,
    }
}

/// The operand's data with its dims reordered as `order` (indices into its dims).
fn permuted<'a, T: GemmScalar>(op: &'a Operand<'_, T>, order: &[usize]) -> Cow<'a, [T]> {
    if order.iter().enumerate().all(|(i, &d)| i == d) {
        return Cow::Borrowed(&op.data);
    }
    let strides = strides_of(&op.dims);
    let view: Vec<(usize, usize)> = order.iter().map(|&d| (op.dims[d], strides[d])).collect();
    Cow::Owned(gather(&op.data, &view))
}

/// Batched products with at least this many multiply-adds run their batch items in parallel.
const PARALLEL_MACS: usize = 1 << 18;

/// Contracts two operands with distinct labels: shared labels `keep` accepts are the batch,
/// other shared labels are summed; the result's labels are `[batch, a only, b only]`.
fn contract<T: GemmScalar>(
    a: Operand<'_, T>,
    b: Operand<'_, T>,
    keep: &dyn Fn(usize) -> bool,
) -> Result<Operand<'static, T>, OpError> {
    let positions = |op: &Operand<'_, T>, pick: &dyn Fn(usize) -> bool| -> Vec<usize> {
        (0..op.labels.len())
            .filter(|&i| pick(op.labels[i]))
            .collect()
    };
    let batch_a = positions(&a, &|l| b.has(l) && keep(l));
    let inner_a = positions(&a, &|l| b.has(l) && !keep(l));
    let left = positions(&a, &|l| !b.has(l));
    let right = positions(&b, &|l| !a.has(l));
    let find_in_b = |ps: &[usize]| -> Vec<usize> {
        ps.iter()
            .map(|&p| b.labels.iter().position(|&l| l == a.labels[p]).unwrap_or(0))
            .collect()
    };
    let (batch_b, inner_b) = (find_in_b(&batch_a), find_in_b(&inner_a));
    let size =
        |op: &Operand<'_, T>, ps: &[usize]| ps.iter().map(|&p| op.dims[p]).product::<usize>();
    let (nb, nl, nk, nr) = (
        size(&a, &batch_a),
        size(&a, &left),
        size(&a, &inner_a),
        size(&b, &right),
    );

    let a_order: Vec<usize> = [&batch_a[..], &left, &inner_a].concat();
    let b_order: Vec<usize> = [&batch_b[..], &inner_b, &right].concat();
    let a_data = permuted(&a, &a_order);
    let b_data = permuted(&b, &b_order);
    let mut out = vec![T::ZERO; nb * nl * nr];
    if nk > 0 && !out.is_empty() {
        let one = |(i, c): (usize, &mut [T])| -> Result<(), OpError> {
            gemm(
                T::ONE,
                Lhs::Unpacked(MatRef::row_major(
                    &a_data[i * nl * nk..][..nl * nk],
                    nl,
                    nk,
                )?),
                Rhs::Unpacked(MatRef::row_major(
                    &b_data[i * nk * nr..][..nk * nr],
                    nk,
                    nr,
                )?),
                T::ZERO,
                MatMut::row_major(c, nl, nr)?,
                &Epilogue::none(),
            )
        };
        if nb > 1 && out.len() * nk >= PARALLEL_MACS {
            out.par_chunks_mut(nl * nr).enumerate().try_for_each(one)?;
        } else {
            out.chunks_mut(nl * nr).enumerate().try_for_each(one)?;
        }
    }
    let pick = |op: &Operand<'_, T>, ps: &[usize]| -> (Vec<usize>, Vec<usize>) {
        ps.iter().map(|&p| (op.labels[p], op.dims[p])).unzip()
    };
    let (mut labels, mut dims) = pick(&a, &batch_a);
    for (op, ps) in [(&a, &left), (&b, &right)] {
        let (l, d) = pick(op, ps);
        labels.extend(l);
        dims.extend(d);
    }
    Ok(Operand {
        data: Cow::Owned(out),
        labels,
        dims,
    })
}

impl Einsum {
    /// Evaluates the equation on operands of type `T`; returns the output shape and values.
    fn compute<T: GemmScalar>(
        &self,
        operands: &[(&[T], &[usize])],
    ) -> Result<(Vec<usize>, Vec<T>), OpError> {
        let shapes: Vec<&[usize]> = operands.iter().map(|o| o.1).collect();
        let lab = self.equation.label(&shapes)?;
        let in_output = |l: usize| lab.output.contains(&l);
        let used_by = |l: usize, mut ops: std::ops::Range<usize>, skip: usize| {
            ops.any(|j| j != skip && lab.inputs[j].contains(&l))
        };
        let count = operands.len();

        let mut reduced = operands.iter().enumerate().map(|(i, &(data, shape))| {
            let needed = |l| in_output(l) || used_by(l, 0..count, i);
            reduce(
                Cow::Borrowed(data),
                &lab.inputs[i],
                shape,
                &lab.sizes,
                needed,
            )
        });
        let Some(mut acc) = reduced.next() else {
            return Err(OpError::invalid("Einsum needs at least one input"));
        };
        for (j, op) in reduced.enumerate() {
            // Operand j + 1 joins; labels used after it must survive.
            let keep = |l| in_output(l) || used_by(l, j + 2..count, usize::MAX);
            acc = contract(acc, op, &keep)?;
        }
        let acc = reduce(acc.data, &acc.labels, &acc.dims, &lab.sizes, in_output);

        let order = lab
            .output
            .iter()
            .map(|l| acc.labels.iter().position(|m| m == l))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| {
                OpError::invalid("Einsum: an output label is missing from the result")
            })?;
        let data = permuted(&acc, &order).into_owned();
        let shape = lab.output.iter().map(|&l| lab.sizes[l]).collect();
        Ok((shape, data))
    }

    fn typed<T: GemmScalar + Element>(
        &self,
        inputs: &[&Tensor],
    ) -> Result<(Vec<usize>, TensorData), OpError> {
        let operands = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let data = t.as_slice::<T>().map_err(|_| {
                    OpError::input(
                        i,
                        format!("expected {} like input 0, got {}", T::DTYPE, t.dtype()),
                    )
                })?;
                Ok((data, t.shape()))
            })
            .collect::<Result<Vec<_>, OpError>>()?;
        let (shape, data) = self.compute(&operands)?;
        Ok((shape, T::wrap(data)))
    }
}

impl Kernel for Einsum {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let tensors = (0..inputs.len())
            .map(|i| inputs.tensor(i))
            .collect::<Result<Vec<_>, _>>()?;
        let dtype = tensors
            .first()
            .map(|t| t.dtype())
            .ok_or_else(|| OpError::invalid("Einsum needs at least one input"))?;
        let (shape, data) = match dtype {
            DataType::Float => self.typed::<f32>(&tensors)?,
            DataType::Double => self.typed::<f64>(&tensors)?,
            DataType::Int8 => self.typed::<i8>(&tensors)?,
            DataType::Int16 => self.typed::<i16>(&tensors)?,
            DataType::Int32 => self.typed::<i32>(&tensors)?,
            DataType::Int64 => self.typed::<i64>(&tensors)?,
            DataType::Uint8 => self.typed::<u8>(&tensors)?,
            DataType::Uint16 => self.typed::<u16>(&tensors)?,
            DataType::Uint32 => self.typed::<u32>(&tensors)?,
            DataType::Uint64 => self.typed::<u64>(&tensors)?,
            DataType::Float16 | DataType::Bfloat16 => {
                let widened = tensors
                    .iter()
                    .enumerate()
                    .map(|(i, t)| to_f32(t, dtype, i))
                    .collect::<Result<Vec<_>, _>>()?;
                let operands: Vec<_> = widened.iter().map(|(v, t)| (&v[..], t.shape())).collect();
                let (shape, out) = self.compute(&operands)?;
                let data = if dtype == DataType::Float16 {
                    TensorData::Float16(out.into_iter().map(f16::from_f32).collect())
                } else {
                    TensorData::Bfloat16(out.into_iter().map(bf16::from_f32).collect())
                };
                (shape, data)
            }
            other => {
                return Err(OpError::input(
                    0,
                    format!("Einsum does not support {other}"),
                ))
            }
        };
        Ok(vec![Tensor::new(shape, data)?.into()])
    }
}

/// A float16 or bfloat16 tensor (of type `dtype`, like input 0) widened to f32.
fn to_f32(t: &Tensor, dtype: DataType, index: usize) -> Result<(Vec<f32>, &Tensor), OpError> {
    let values = match t.data() {
        TensorData::Float16(v) if dtype == DataType::Float16 => {
            v.iter().map(|x| x.to_f32()).collect()
        }
        TensorData::Bfloat16(v) if dtype == DataType::Bfloat16 => {
            v.iter().map(|x| x.to_f32()).collect()
        }
        _ => {
            return Err(OpError::input(
                index,
                format!("expected {dtype} like input 0, got {}", t.dtype()),
            ))
        }
    };
    Ok((values, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn einsum(equation: &str, inputs: Vec<Tensor>) -> Tensor {
        let k = Einsum {
            equation: Equation::parse(equation).unwrap(),
        };
        let inputs = Inputs::new(inputs.into_iter().map(|t| Some(t.into())).collect());
        k.run(inputs).unwrap().remove(0).into_tensor().unwrap()
    }

    fn t(shape: &[usize], values: Vec<f64>) -> Tensor {
        Tensor::from_vec(shape, values).unwrap()
    }

    /// 0, 1, 2, ... as a tensor of `shape`.
    fn iota(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        t(shape, (0..n).map(|v| v as f64).collect())
    }

    #[test]
    fn matmul_transpose_trace_and_sum() {
        let a = iota(&[2, 3]);
        let b = iota(&[3, 2]);
        let y = einsum("ij,jk->ik", vec![a.clone(), b.clone()]);
        assert_eq!(y.as_slice::<f64>().unwrap(), &[10., 13., 28., 40.]);
        // Implicit output: 'ik' in ASCII order.
        assert_eq!(einsum("ij,jk", vec![a.clone(), b]), y);
        let y = einsum("ij->ji", vec![a.clone()]);
        assert_eq!(y.shape(), &[3, 2]);
        assert_eq!(y.as_slice::<f64>().unwrap(), &[0., 3., 1., 4., 2., 5.]);
        let y = einsum("ii", vec![iota(&[3, 3])]);
        assert_eq!(y.as_slice::<f64>().unwrap(), &[12.]);
        let y = einsum("ij->", vec![a]);
        assert_eq!(y.as_slice::<f64>().unwrap(), &[15.]);
    }

    #[test]
    fn ellipsis_diagonal_and_broadcast() {
        let x = iota(&[2, 2, 2]);
        let y = einsum("...ii->...i", vec![x]);
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(y.as_slice::<f64>().unwrap(), &[0., 3., 4., 7.]);
        // Batch [2] against a broadcast batch [1]: each item times the same matrix.
        let a = iota(&[2, 1, 2]);
        let b = t(&[1, 2, 1], vec![1., 1.]);
        let y = einsum("...ij,...jk->...ik", vec![a, b]);
        assert_eq!(y.shape(), &[2, 1, 1]);
        assert_eq!(y.as_slice::<f64>().unwrap(), &[1., 5.]);
    }

    #[test]
    fn three_operands_and_outer_product() {
        let a = t(&[2], vec![1., 2.]);
        let b = t(&[2], vec![3., 4.]);
        let y = einsum("i,j->ij", vec![a.clone(), b.clone()]);
        assert_eq!(y.as_slice::<f64>().unwrap(), &[3., 4., 6., 8.]);
        let y = einsum("i,i,i->", vec![a.clone(), b, a]);
        assert_eq!(y.as_slice::<f64>().unwrap(), &[1. * 3. * 1. + 2. * 4. * 2.]);
    }

    #[test]
    fn integer_and_errors() {
        let a = Tensor::from_vec([2], vec![3i32, 4]).unwrap();
        let y = einsum("i,i", vec![a.clone(), a]);
        assert_eq!(y.as_slice::<i32>().unwrap(), &[25]);
        assert!(Equation::parse("ij,jk->q").is_err());
        assert!(Equation::parse("i.j").is_err());
        let k = Einsum {
            equation: Equation::parse("ij,jk").unwrap(),
        };
        let inputs = Inputs::new(vec![Some(iota(&[2, 3]).into()), Some(iota(&[2, 3]).into())]);
        assert!(k.run(inputs).is_err());
    }
}
