//! Multidirectional (NumPy-style) broadcasting, and the parallel elementwise loops built on it.
//!
//! Every broadcast walk goes through a [`Plan`]: the output shape with its size-1 dimensions
//! dropped and adjacent dimensions merged wherever every input either advances contiguously
//! across both or is broadcast across both. What remains is an innermost dimension along which
//! each input is either contiguous (step 1) or a single repeated element (step 0), and a few outer
//! dimensions walked by an odometer once per inner run. Same-shape inputs, scalars, `[N, C] + [C]`
//! rows and `[N, C, H, W] + [1, C, 1, 1]` channel biases all become long contiguous runs, so the hot
//! loops never do per-element index arithmetic.
//!
//! Outputs of at least [`PARALLEL_MIN_LEN`] elements are split into chunks computed on the rayon
//! pool; each chunk starts its odometer at its first element, so chunks need not align with runs.

use std::ops::Range;

use rayon::prelude::*;
use runnx_ir::{shape_len, strides_of, Shape};
use smallvec::smallvec;

use crate::OpError;

/// Outputs with at least this many elements are computed in parallel; below it rayon's overhead
/// dominates.
pub const PARALLEL_MIN_LEN: usize = 32 * 1024;

/// Elements per parallel task (at least; large outputs get about four tasks per thread).
const MIN_CHUNK_LEN: usize = 16 * 1024;

/// The shape every one of `shapes` broadcasts to under ONNX's multidirectional rule: shapes are
/// right-aligned, and each dimension must be equal or 1 across them (a 0 broadcasts only with 0
/// and 1). A rank-0 shape broadcasts with anything.
pub fn broadcast_shapes(shapes: &[&[usize]]) -> Result<Shape, OpError> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out: Shape = smallvec![1; rank];
    for shape in shapes {
        let pad = rank - shape.len();
        for (i, &d) in shape.iter().enumerate() {
            let o = &mut out[pad + i];
            if d == *o || d == 1 {
                continue;
            }
            if *o != 1 {
                return Err(OpError::invalid(format!(
                    "shapes {} cannot be broadcast together",
                    describe_shapes(shapes)
                )));
            }
            *o = d;
        }
    }
    Ok(out)
}

/// Whether `shape` broadcasts to exactly `target` (ONNX's unidirectional broadcasting).
pub fn is_broadcastable_to(shape: &[usize], target: &[usize]) -> bool {
    shape.len() <= target.len()
        && shape
            .iter()
            .rev()
            .zip(target.iter().rev())
            .all(|(&d, &t)| d == t || d == 1)
}

/// `f(a, b)` over the broadcast of `a` and `b`: returns the output shape and elements.
pub fn binary_map<A, B, O>(
    a: &[A],
    a_shape: &[usize],
    b: &[B],
    b_shape: &[usize],
    f: impl Fn(&A, &B) -> O + Sync,
) -> Result<(Shape, Vec<O>), OpError>
where
    A: Sync,
    B: Sync,
    O: Clone + Default + Send + 'static,
{
    check_len(0, a, a_shape)?;
    check_len(1, b, b_shape)?;
    let shape = broadcast_shapes(&[a_shape, b_shape])?;
    let plan = Plan::new(&shape, [a_shape, b_shape]);
    // Every element is written by the plan's runs.
    let mut out = super::buffers::buffer::<O>(plan.len);
    plan.fill(&mut out, |run, [oa, ob], [sa, sb]| {
        let n = run.len();
        binary_loop(
            run,
            Source::new(a, oa, sa, n),
            Source::new(b, ob, sb, n),
            &f,
        )
    });
    Ok((shape, out))
}

/// `a[i] = f(a[i], b[i])` in place, with `b` broadcast to `a`'s shape (an error when it does not
/// broadcast to exactly that shape). Saves an allocation when the caller owns `a`'s buffer.
pub fn binary_assign<A, B>(
    a: &mut [A],
    a_shape: &[usize],
    b: &[B],
    b_shape: &[usize],
    f: impl Fn(&A, &B) -> A + Sync,
) -> Result<(), OpError>
where
    A: Send,
    B: Sync,
{
    check_len(0, a, a_shape)?;
    check_len(1, b, b_shape)?;
    if !is_broadcastable_to(b_shape, a_shape) {
        return Err(OpError::invalid(format!(
            "shape {b_shape:?} does not broadcast to {a_shape:?}"
        )));
    }
    let plan = Plan::new(a_shape, [b_shape]);
    plan.fill(a, |run, [ob], [sb]| {
        if sb == 1 {
            let n = run.len();
            for (x, y) in run.iter_mut().zip(&b[ob..ob + n]) {
                *x = f(x, y);
            }
        } else {
            let y = &b[ob];
            for x in run.iter_mut() {
                *x = f(x, y);
            }
        }
    });
    Ok(())
}

/// `f(a, b, c)` over the broadcast of three inputs (Where): returns the output shape and elements.
pub fn ternary_map<A, B, C, O>(
    a: (&[A], &[usize]),
    b: (&[B], &[usize]),
    c: (&[C], &[usize]),
    f: impl Fn(&A, &B, &C) -> O + Sync,
) -> Result<(Shape, Vec<O>), OpError>
where
    A: Sync,
    B: Sync,
    C: Sync,
    O: Clone + Default + Send + 'static,
{
    check_len(0, a.0, a.1)?;
    check_len(1, b.0, b.1)?;
    check_len(2, c.0, c.1)?;
    let shape = broadcast_shapes(&[a.1, b.1, c.1])?;
    let plan = Plan::new(&shape, [a.1, b.1, c.1]);
    // Every element is written by the plan's runs.
    let mut out = super::buffers::buffer::<O>(plan.len);
    plan.fill(&mut out, |run, [oa, ob, oc], [sa, sb, sc]| {
        let n = run.len();
        ternary_loop(
            run,
            Source::new(a.0, oa, sa, n),
            Source::new(b.0, ob, sb, n),
            Source::new(c.0, oc, sc, n),
            &f,
        )
    });
    Ok((shape, out))
}

/// `data` (of `shape`) repeated to `target`, which `shape` must broadcast to unidirectionally
/// (Expand computes `target` as the multidirectional broadcast of both first).
pub fn broadcast_to<T>(data: &[T], shape: &[usize], target: &[usize]) -> Result<Vec<T>, OpError>
where
    T: Clone + Default + Send + Sync + 'static,
{
    check_len(0, data, shape)?;
    if !is_broadcastable_to(shape, target) {
        return Err(OpError::invalid(format!(
            "shape {shape:?} does not broadcast to {target:?}"
        )));
    }
    let plan = Plan::new(target, [shape]);
    // Every element is written by the plan's runs.
    let mut out = super::buffers::buffer::<T>(plan.len);
    plan.fill(&mut out, |run, [o], [s]| {
        if s == 1 {
            run.clone_from_slice(&data[o..o + run.len()]);
        } else {
            run.fill(data[o].clone());
        }
    });
    Ok(out)
}

/// Applies `f` to `data` in chunks, in parallel when it is large. The building block of unary
/// elementwise kernels: `f` is typically a slice function a SIMD version can replace.
pub fn par_chunks_apply<T: Send>(data: &mut [T], f: impl Fn(&mut [T]) + Sync) {
    if data.len() < PARALLEL_MIN_LEN {
        f(data);
    } else {
        data.par_chunks_mut(chunk_len(data.len()))
            .for_each(|c| f(c));
    }
}

/// As [`par_chunks_apply`], with every chunk a whole number of `row`-long rows (for ops that
/// apply a per-column vector to each row).
pub fn par_rows_apply<T: Send>(data: &mut [T], row: usize, f: impl Fn(&mut [T]) + Sync) {
    if data.len() < PARALLEL_MIN_LEN || row == 0 {
        f(data);
    } else {
        data.par_chunks_mut(chunk_len(data.len()).div_ceil(row) * row)
            .for_each(|c| f(c));
    }
}

fn chunk_len(len: usize) -> usize {
    let tasks = 4 * rayon::current_num_threads().max(1);
    len.div_ceil(tasks).max(MIN_CHUNK_LEN)
}

fn check_len<T>(index: usize, data: &[T], shape: &[usize]) -> Result<(), OpError> {
    if data.len() == shape_len(shape) {
        Ok(())
    } else {
        Err(OpError::input(
            index,
            format!("{} elements do not fill shape {shape:?}", data.len()),
        ))
    }
}

fn describe_shapes(shapes: &[&[usize]]) -> String {
    let parts: Vec<String> = shapes.iter().map(|s| format!("{s:?}")).collect();
    parts.join(", ")
}

/// How to walk `N` inputs broadcast to an output shape; see the module docs.
struct Plan<const N: usize> {
    /// Output element count.
    len: usize,
    /// Length of the innermost merged dimension: the length of every run.
    inner: usize,
    /// Per input, its step along the inner dimension: 1 (contiguous) or 0 (broadcast).
    inner_step: [usize; N],
    /// The merged outer dimensions, outermost first.
    outer_dims: Shape,
    /// Per input, its stride along each outer dimension (0 where broadcast).
    outer_strides: [Shape; N],
}

impl<const N: usize> Plan<N> {
    /// A plan for inputs of `shapes`, each of which must broadcast to `out`.
    fn new(out: &[usize], shapes: [&[usize]; N]) -> Plan<N> {
        let rank = out.len();
        // Per input, the element stride along each output dimension (0 where broadcast).
        let strides: [Shape; N] = shapes.map(|shape| {
            let own = strides_of(shape);
            let pad = rank - shape.len();
            (0..rank)
                .map(|d| match d.checked_sub(pad) {
                    Some(i) if shape[i] != 1 => own[i],
                    _ => 0,
                })
                .collect()
        });
        // Merge dimensions from the innermost outwards, skipping size-1 ones.
        let mut dims: Shape = Shape::new();
        let mut merged: [Shape; N] = std::array::from_fn(|_| Shape::new());
        for d in (0..rank).rev().filter(|&d| out[d] != 1) {
            let last = dims.len().checked_sub(1);
            let mergeable =
                last.is_some_and(|l| (0..N).all(|k| strides[k][d] == merged[k][l] * dims[l]));
            if let (true, Some(l)) = (mergeable, last) {
                dims[l] *= out[d];
            } else {
                dims.push(out[d]);
                for k in 0..N {
                    merged[k].push(strides[k][d]);
                }
            }
        }
        // `dims` is innermost first; split off the inner dimension and flip the rest.
        let inner = dims.first().copied().unwrap_or(1);
        let inner_step = std::array::from_fn(|k| merged[k].first().copied().unwrap_or(0));
        let outer_dims: Shape = dims.iter().skip(1).rev().copied().collect();
        let outer_strides = merged.map(|s| s.iter().skip(1).rev().copied().collect());
        Plan {
            len: shape_len(out),
            inner,
            inner_step,
            outer_dims,
            outer_strides,
        }
    }

    /// Fills `out` (the whole output) run by run: `run(out_run, offsets, steps)` gets the output
    /// slice of one run, each input's offset at its start and each input's step (0 or 1).
    fn fill<O: Send>(&self, out: &mut [O], run: impl Fn(&mut [O], [usize; N], [usize; N]) + Sync) {
        if out.len() < PARALLEL_MIN_LEN {
            self.for_each_run(0..out.len(), |pos, n, offsets| {
                run(&mut out[pos..pos + n], offsets, self.inner_step)
            });
        } else {
            let chunk = chunk_len(out.len());
            out.par_chunks_mut(chunk).enumerate().for_each(|(i, part)| {
                let start = i * chunk;
                self.for_each_run(start..start + part.len(), |pos, n, offsets| {
                    run(
                        &mut part[pos - start..pos - start + n],
                        offsets,
                        self.inner_step,
                    )
                });
            });
        }
    }

    /// Calls `visit(position, length, input_offsets)` for each run (or part of a run) within
    /// output positions `range`, in order.
    fn for_each_run(&self, range: Range<usize>, mut visit: impl FnMut(usize, usize, [usize; N])) {
        if range.is_empty() {
            return;
        }
        let mut pos = range.start;
        let mut col = pos % self.inner;
        // Start the odometer at the row holding `pos`.
        let mut index: Shape = smallvec![0; self.outer_dims.len()];
        let mut row = pos / self.inner;
        for d in (0..self.outer_dims.len()).rev() {
            index[d] = row % self.outer_dims[d];
            row /= self.outer_dims[d];
        }
        let mut base: [usize; N] = std::array::from_fn(|k| {
            index
                .iter()
                .zip(&self.outer_strides[k])
                .map(|(i, s)| i * s)
                .sum()
        });
        loop {
            let n = (self.inner - col).min(range.end - pos);
            visit(
                pos,
                n,
                std::array::from_fn(|k| base[k] + col * self.inner_step[k]),
            );
            pos += n;
            if pos >= range.end {
                return;
            }
            col = 0;
            for d in (0..self.outer_dims.len()).rev() {
                index[d] += 1;
                for (b, s) in base.iter_mut().zip(&self.outer_strides) {
                    *b += s[d];
                }
                if index[d] < self.outer_dims[d] {
                    break;
                }
                index[d] = 0;
                for (b, s) in base.iter_mut().zip(&self.outer_strides) {
                    *b -= s[d] * self.outer_dims[d];
                }
            }
        }
    }
}

/// One input's elements along a run: a contiguous slice or one element repeated.
#[derive(Clone, Copy)]
enum Source<'a, T> {
    Slice(&'a [T]),
    Splat(&'a T),
}

impl<'a, T> Source<'a, T> {
    fn new(data: &'a [T], offset: usize, step: usize, n: usize) -> Source<'a, T> {
        if step == 1 {
            Source::Slice(&data[offset..offset + n])
        } else {
            Source::Splat(&data[offset])
        }
    }
}

/// The loop over one run, specialised for each combination of contiguous and repeated inputs so
/// the compiler sees plain slice loops.
fn binary_loop<A, B, O>(out: &mut [O], a: Source<A>, b: Source<B>, f: &impl Fn(&A, &B) -> O) {
    match (a, b) {
        (Source::Slice(a), Source::Slice(b)) => {
            for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
                *o = f(x, y);
            }
        }
        (Source::Slice(a), Source::Splat(y)) => {
            for (o, x) in out.iter_mut().zip(a) {
                *o = f(x, y);
            }
        }
        (Source::Splat(x), Source::Slice(b)) => {
            for (o, y) in out.iter_mut().zip(b) {
                *o = f(x, y);
            }
        }
        (Source::Splat(x), Source::Splat(y)) => {
            for o in out.iter_mut() {
                *o = f(x, y);
            }
        }
    }
}

/// [`binary_loop`] for three inputs: the first input is folded into the function so the
/// remaining two go through the same four specialised loops.
fn ternary_loop<A, B, C, O>(
    out: &mut [O],
    a: Source<A>,
    b: Source<B>,
    c: Source<C>,
    f: &impl Fn(&A, &B, &C) -> O,
) {
    match a {
        Source::Splat(x) => binary_loop(out, b, c, &|y, z| f(x, y, z)),
        Source::Slice(a) => match (b, c) {
            (Source::Slice(b), Source::Slice(c)) => {
                for (((o, x), y), z) in out.iter_mut().zip(a).zip(b).zip(c) {
                    *o = f(x, y, z);
                }
            }
            (Source::Slice(b), Source::Splat(z)) => {
                for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
                    *o = f(x, y, z);
                }
            }
            (Source::Splat(y), Source::Slice(c)) => {
                for ((o, x), z) in out.iter_mut().zip(a).zip(c) {
                    *o = f(x, y, z);
                }
            }
            (Source::Splat(y), Source::Splat(z)) => {
                for (o, x) in out.iter_mut().zip(a) {
                    *o = f(x, y, z);
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The obvious per-element implementation the planned walk is checked against.
    fn reference_binary(a: &[i64], a_shape: &[usize], b: &[i64], b_shape: &[usize]) -> Vec<i64> {
        let shape = broadcast_shapes(&[a_shape, b_shape]).unwrap();
        let index_of = |shape: &[usize], out_index: &[usize]| {
            let pad = out_index.len() - shape.len();
            shape.iter().enumerate().fold(0, |acc, (i, &d)| {
                acc * d + if d == 1 { 0 } else { out_index[pad + i] }
            })
        };
        (0..shape_len(&shape))
            .map(|mut flat| {
                let mut idx = vec![0; shape.len()];
                for d in (0..shape.len()).rev() {
                    idx[d] = flat % shape[d];
                    flat /= shape[d];
                }
                a[index_of(a_shape, &idx)] * 1000 + b[index_of(b_shape, &idx)]
            })
            .collect()
    }

    fn iota(shape: &[usize]) -> Vec<i64> {
        (0..shape_len(shape) as i64).collect()
    }

    #[test]
    fn shapes_broadcast_multidirectionally() {
        let s = |shapes: &[&[usize]]| broadcast_shapes(shapes).map(|s| s.to_vec());
        assert_eq!(s(&[&[2, 3, 4], &[4]]).unwrap(), vec![2, 3, 4]);
        assert_eq!(s(&[&[2, 1, 4], &[3, 1]]).unwrap(), vec![2, 3, 4]);
        assert_eq!(s(&[&[], &[5]]).unwrap(), vec![5]);
        assert_eq!(s(&[&[], &[]]).unwrap(), Vec::<usize>::new());
        assert_eq!(s(&[&[0, 3], &[1, 3]]).unwrap(), vec![0, 3]);
        assert_eq!(s(&[&[1], &[0]]).unwrap(), vec![0]);
        assert!(s(&[&[0], &[2]]).is_err());
        assert!(s(&[&[2, 3], &[3, 2]]).is_err());
        assert_eq!(
            s(&[&[2, 1, 1], &[1, 3, 1], &[1, 1, 4]]).unwrap(),
            vec![2, 3, 4]
        );
    }

    #[test]
    fn binary_map_by_hand() {
        // [2, 3] + [3]
        let (shape, out) = binary_map(&[1, 2, 3, 4, 5, 6], &[2, 3], &[10, 20, 30], &[3], |a, b| {
            a + b
        })
        .unwrap();
        assert_eq!(shape.as_slice(), &[2, 3]);
        assert_eq!(out, vec![11, 22, 33, 14, 25, 36]);
        // [2, 1] * [1, 3]
        let (shape, out) =
            binary_map(&[1, 2], &[2, 1], &[1, 10, 100], &[1, 3], |a, b| a * b).unwrap();
        assert_eq!(shape.as_slice(), &[2, 3]);
        assert_eq!(out, vec![1, 10, 100, 2, 20, 200]);
        // rank 0 with rank 0
        let (shape, out) = binary_map(&[2.0f32], &[], &[3.0f32], &[], |a, b| a - b).unwrap();
        assert!(shape.is_empty());
        assert_eq!(out, vec![-1.0]);
        // a zero-size dimension
        let (shape, out) =
            binary_map(&[] as &[i32], &[0, 3], &[1, 2, 3], &[3], |a, b| a + b).unwrap();
        assert_eq!(shape.as_slice(), &[0, 3]);
        assert!(out.is_empty());
        // mismatched data length is an error, not a panic
        assert!(binary_map(&[1, 2], &[3], &[1], &[1], |a, b| a + b).is_err());
        assert!(binary_map(&[1, 2], &[2], &[1, 2, 3], &[3], |a, b| a + b).is_err());
    }

    #[test]
    fn binary_map_matches_reference_on_awkward_shapes() {
        let cases: &[(&[usize], &[usize])] = &[
            (&[7], &[7]),
            (&[17], &[1]),
            (&[], &[3, 5]),
            (&[3, 1, 5], &[4, 1]),
            (&[2, 3, 4, 5], &[1, 3, 1, 1]),
            (&[2, 3, 4, 5], &[4, 5]),
            (&[2, 1, 4, 1], &[1, 3, 1, 5]),
            (&[1, 1, 1], &[1]),
            (&[5, 1, 7], &[5, 3, 1]),
            (&[2, 3, 0], &[3, 1]),
        ];
        for &(a_shape, b_shape) in cases {
            for (x, y) in [(a_shape, b_shape), (b_shape, a_shape)] {
                let (a, b) = (iota(x), iota(y));
                let (_, out) = binary_map(&a, x, &b, y, |p, q| p * 1000 + q).unwrap();
                assert_eq!(out, reference_binary(&a, x, &b, y), "{x:?} with {y:?}");
            }
        }
    }

    #[test]
    fn parallel_chunks_split_runs_correctly() {
        // Runs of 1000 (not a divisor of the chunk length) across many chunks.
        let (x, y): (&[usize], &[usize]) = (&[97, 1, 1000], &[1, 3, 1]);
        let (a, b) = (iota(x), iota(y));
        let (shape, out) = binary_map(&a, x, &b, y, |p, q| p * 1000 + q).unwrap();
        assert!(shape_len(&shape) > PARALLEL_MIN_LEN);
        assert_eq!(out, reference_binary(&a, x, &b, y));
        // Same shapes: a single run split across chunks.
        let n = [100_003];
        let a = iota(&n);
        let (_, out) = binary_map(&a, &n, &a, &n, |p, q| p + q).unwrap();
        assert!(out.iter().enumerate().all(|(i, &v)| v == 2 * i as i64));
    }

    #[test]
    fn assign_in_place() {
        let mut a = vec![1, 2, 3, 4, 5, 6];
        binary_assign(&mut a, &[2, 3], &[10, 20], &[2, 1], |x, y| x + y).unwrap();
        assert_eq!(a, vec![11, 12, 13, 24, 25, 26]);
        // b may not grow a
        assert!(binary_assign(&mut a, &[2, 3], &[1; 12], &[2, 2, 3], |x, y| x + y).is_err());
    }

    #[test]
    fn ternary_by_hand() {
        let cond = [true, false];
        let (shape, out) = ternary_map(
            (&cond, &[2, 1]),
            (&[1, 2, 3], &[3]),
            (&[-1], &[]),
            |&c, &x, &y| if c { x } else { y },
        )
        .unwrap();
        assert_eq!(shape.as_slice(), &[2, 3]);
        assert_eq!(out, vec![1, 2, 3, -1, -1, -1]);
        let strings = ["a".to_string(), "b".to_string()];
        let (_, out) = ternary_map(
            (&[false, true], &[2]),
            (&strings, &[2]),
            (&["z".to_string()], &[1]),
            |&c, x, y| if c { x.clone() } else { y.clone() },
        )
        .unwrap();
        assert_eq!(out, vec!["z", "b"]);
    }

    #[test]
    fn broadcast_to_by_hand() {
        assert_eq!(
            broadcast_to(&[1, 2, 3], &[3], &[2, 3]).unwrap(),
            vec![1, 2, 3, 1, 2, 3]
        );
        assert_eq!(
            broadcast_to(&[1, 2], &[2, 1], &[2, 2]).unwrap(),
            vec![1, 1, 2, 2]
        );
        assert_eq!(broadcast_to(&[7], &[], &[2]).unwrap(), vec![7, 7]);
        assert_eq!(broadcast_to(&[7], &[], &[]).unwrap(), vec![7]);
        assert!(broadcast_to(&[7], &[1], &[0, 4]).unwrap().is_empty());
        assert!(broadcast_to(&[1, 2], &[2], &[3]).is_err());
        assert!(broadcast_to(&[1, 2], &[2], &[]).is_err());
    }

    #[test]
    fn broadcastable_to() {
        assert!(is_broadcastable_to(&[3], &[2, 3]));
        assert!(is_broadcastable_to(&[], &[]));
        assert!(!is_broadcastable_to(&[2, 3], &[3]));
        assert!(!is_broadcastable_to(&[2], &[2, 3]));
    }
}
