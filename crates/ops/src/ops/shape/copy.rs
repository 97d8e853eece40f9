//! Type-generic data movement: copies of contiguous runs, written once for every element type.
//!
//! Most data-movement ops (Transpose, Slice, Split, Expand, Tile, DepthToSpace...) are a
//! [`StridedView`] of their input: an output shape and, per output dimension, the step in the
//! source buffer (negative for reversed slices, zero for broadcast dimensions). [`gather_view`]
//! materialises a view: it first merges dimensions that are contiguous in both layouts, then
//! copies row by row, a row being the innermost dimension: a block copy when its source is
//! contiguous, a fill when broadcast, a strided loop otherwise. When the innermost dimension is
//! strided but the next one is contiguous in the source (a 2-D transpose, NCHW <-> NHWC), rows
//! are copied in tiles so that reads and writes both stay in cache.
//!
//! Work is split over whole output rows with rayon once the output is large.

use rayon::prelude::*;
use runnx_ir::{strides_of, Shape, Tensor};
use smallvec::SmallVec;

use super::dispatch::{with_any_type, AnyFn, Elem};
use crate::OpError;

/// Below this many output elements a kernel runs on one thread: rayon's overhead would dominate.
pub(crate) const PARALLEL_MIN: usize = 32 * 1024;

/// Signed element strides.
pub(crate) type Strides = SmallVec<[isize; 6]>;

/// `out[i_0, .., i_n] = src[offset + Σ i_k * strides[k]]`: a strided view of a source buffer.
///
/// Whoever builds a view guarantees that every element it addresses is inside the source.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StridedView {
    pub shape: Shape,
    pub strides: Strides,
    pub offset: usize,
}

impl StridedView {
    /// The whole of a contiguous tensor of `shape`.
    pub fn contiguous(shape: &[usize]) -> StridedView {
        StridedView {
            shape: Shape::from_slice(shape),
            strides: strides_of(shape).iter().map(|&s| s as isize).collect(),
            offset: 0,
        }
    }

    /// The view with its dimensions reordered: output dimension `i` is dimension `perm[i]`.
    /// `perm` must be a permutation of the view's dimensions.
    pub fn permuted(&self, perm: &[usize]) -> StridedView {
        StridedView {
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        }
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The same elements in the same order with fewer dimensions: size-1 dimensions dropped and
    /// neighbours merged where the outer one steps over exactly the inner one. Never empty.
    fn simplified(&self) -> StridedView {
        let mut shape = Shape::new();
        let mut strides = Strides::new();
        for (&n, &s) in self.shape.iter().zip(&self.strides) {
            if n == 1 {
                continue;
            }
            match (shape.last_mut(), strides.last_mut()) {
                (Some(last_n), Some(last_s)) if *last_s == s * n as isize => {
                    *last_n *= n;
                    *last_s = s;
                }
                _ => {
                    shape.push(n);
                    strides.push(s);
                }
            }
        }
        if shape.is_empty() {
            shape.push(1);
            strides.push(1);
        }
        StridedView {
            shape,
            strides,
            offset: self.offset,
        }
    }
}

/// Copies the elements `view` addresses in `src` into a new contiguous buffer.
pub(crate) fn gather_view<T: Clone + Default + Send + Sync + 'static>(
    src: &[T],
    view: &StridedView,
) -> Vec<T> {
    let len = view.len();
    if len == 0 {
        return Vec::new();
    }
    let view = view.simplified();
    let rank = view.shape.len();
    if view.strides[rank - 1] == 1 && rank == 1 {
        return src[view.offset..view.offset + len].to_vec();
    }
    // Every row is copied below.
    let mut out = crate::kernels::buffers::buffer::<T>(len);
    let row_len = view.shape[rank - 1];
    for_row_chunks(&mut out, row_len, |first_row, rows| {
        copy_rows(src, &view, first_row, rows)
    });
    out
}

/// The view of `x` as a tensor of the view's shape, sharing `x`'s buffer when the view is all of
/// it in order.
pub(crate) fn view_tensor(x: &Tensor, view: &StridedView) -> Result<Tensor, OpError> {
    let simple = view.simplified();
    if simple.offset == 0
        && simple.shape.len() == 1
        && simple.strides[0] == 1
        && simple.shape[0] == x.len()
    {
        return Ok(x.reshape(view.shape.clone())?);
    }
    struct Gather<'a>(&'a Tensor, &'a StridedView);
    impl AnyFn for Gather<'_> {
        type Out = Result<Tensor, OpError>;
        fn call<T: Elem>(self) -> Self::Out {
            let src = self.0.as_slice::<T>()?;
            Ok(Tensor::from_vec(
                self.1.shape.clone(),
                gather_view(src, self.1),
            )?)
        }
    }
    with_any_type(x.dtype(), Gather(x, view))
}

/// A tensor of `shape` filled with the first element of `value` (a stride-0 view).
pub(crate) fn filled(value: &Tensor, shape: &[usize]) -> Result<Tensor, OpError> {
    if value.is_empty() {
        return Err(OpError::invalid("the fill value is empty"));
    }
    let view = StridedView {
        shape: Shape::from_slice(shape),
        strides: smallvec::smallvec![0; shape.len()],
        offset: 0,
    };
    view_tensor(value, &view)
}

/// Splits `out` into chunks of whole rows of `row_len` elements and calls `f(first_row, chunk)`
/// on each, in parallel when `out` is large.
pub(crate) fn for_row_chunks<T: Send>(
    out: &mut [T],
    row_len: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    if row_len == 0 || out.is_empty() {
        return;
    }
    let rows = out.len() / row_len;
    if out.len() < PARALLEL_MIN || rows < 2 {
        f(0, out);
        return;
    }
    // A few chunks per thread balances uneven rows; each chunk is at least ~8K elements.
    let chunks = (rayon::current_num_threads() * 4)
        .min(out.len() / (PARALLEL_MIN / 4))
        .max(1);
    let rows_per_chunk = rows.div_ceil(chunks);
    out.par_chunks_mut(rows_per_chunk * row_len)
        .enumerate()
        .for_each(|(i, chunk)| f(i * rows_per_chunk, chunk));
}

/// Walks the rows of a strided view in order, tracking each row's source offset.
struct RowCursor<'a> {
    shape: &'a [usize],
    strides: &'a [isize],
    index: Shape,
    offset: isize,
}

impl<'a> RowCursor<'a> {
    /// A cursor at row `row` of the outer dimensions `shape` (all but the innermost).
    fn new(shape: &'a [usize], strides: &'a [isize], base: usize, row: usize) -> RowCursor<'a> {
        let mut index: Shape = smallvec::smallvec![0; shape.len()];
        let mut rest = row;
        let mut offset = base as isize;
        for d in (0..shape.len()).rev() {
            index[d] = rest % shape[d];
            rest /= shape[d];
            offset += index[d] as isize * strides[d];
        }
        RowCursor {
            shape,
            strides,
            index,
            offset,
        }
    }

    fn advance(&mut self) {
        for d in (0..self.shape.len()).rev() {
            self.index[d] += 1;
            self.offset += self.strides[d];
            if self.index[d] < self.shape[d] {
                return;
            }
            self.offset -= self.strides[d] * self.shape[d] as isize;
            self.index[d] = 0;
        }
    }
}

/// Rows copied per tile in the tiled (transposing) path, and columns per tile.
const TILE: usize = 16;

/// Copies the rows `first_row..` of a simplified view into `out` (whole rows).
fn copy_rows<T: Clone>(src: &[T], view: &StridedView, first_row: usize, out: &mut [T]) {
    let rank = view.shape.len();
    let row_len = view.shape[rank - 1];
    let step = view.strides[rank - 1];
    let outer = &view.shape[..rank - 1];
    let outer_strides = &view.strides[..rank - 1];
    let mut cursor = RowCursor::new(outer, outer_strides, view.offset, first_row);
    let transposing = step.unsigned_abs() > 1 && outer_strides.last() == Some(&1) && row_len > 1;
    if !transposing {
        for row in out.chunks_exact_mut(row_len) {
            copy_row(src, cursor.offset, step, row);
            cursor.advance();
        }
        return;
    }
    // Consecutive rows start at consecutive source elements: copy up to TILE rows at a time,
    // TILE columns at a time.
    let inner_rows = outer[outer.len() - 1];
    let mut done = 0;
    let total_rows = out.len() / row_len;
    while done < total_rows {
        let group = TILE
            .min(inner_rows - cursor.index[outer.len() - 1])
            .min(total_rows - done);
        let block = &mut out[done * row_len..(done + group) * row_len];
        copy_tile_rows(src, cursor.offset, step, row_len, group, block);
        for _ in 0..group {
            cursor.advance();
        }
        done += group;
    }
}

/// One output row: `row[j] = src[start + j * step]`.
fn copy_row<T: Clone>(src: &[T], start: isize, step: isize, row: &mut [T]) {
    let start = start as usize;
    match step {
        1 => row.clone_from_slice(&src[start..start + row.len()]),
        0 => row.fill(src[start].clone()),
        _ => {
            let mut at = start as isize;
            for x in row {
                *x = src[at as usize].clone();
                at += step;
            }
        }
    }
}

/// `rows` output rows where row `r` column `c` is `src[start + r + c * step]`, in tiles.
fn copy_tile_rows<T: Clone>(
    src: &[T],
    start: isize,
    step: isize,
    row_len: usize,
    rows: usize,
    out: &mut [T],
) {
    for c0 in (0..row_len).step_by(TILE) {
        let c1 = (c0 + TILE).min(row_len);
        for r in 0..rows {
            let row = &mut out[r * row_len + c0..r * row_len + c1];
            let mut at = start + r as isize + c0 as isize * step;
            for x in row {
                *x = src[at as usize].clone();
                at += step;
            }
        }
    }
}

/// Concatenates along an axis: the input is `outer` rows, part `i` contributing `blocks[i]`
/// consecutive elements to each row.
pub(crate) fn concat_rows<T: Clone + Default + Send + Sync>(
    parts: &[&[T]],
    blocks: &[usize],
    outer: usize,
) -> Vec<T> {
    let row_len: usize = blocks.iter().sum();
    let mut out = vec![T::default(); row_len * outer];
    for_row_chunks(&mut out, row_len, |first_row, rows| {
        for (r, row) in rows.chunks_exact_mut(row_len).enumerate() {
            let o = first_row + r;
            let mut at = 0;
            for (part, &block) in parts.iter().zip(blocks) {
                row[at..at + block].clone_from_slice(&part[o * block..(o + 1) * block]);
                at += block;
            }
        }
    });
    out
}

/// Gathers blocks along an axis: `src` is `[outer, axis_len, inner]`, the output
/// `[outer, indices.len(), inner]` with `out[o, j, :] = src[o, indices[j], :]`.
/// Every index must be below `axis_len`.
pub(crate) fn gather_blocks<T: Clone + Default + Send + Sync>(
    src: &[T],
    outer: usize,
    axis_len: usize,
    inner: usize,
    indices: &[usize],
) -> Vec<T> {
    let mut out = vec![T::default(); outer * indices.len() * inner];
    if inner == 1 {
        // One element per index: loop over indices instead of one-element rows.
        for_row_chunks(&mut out, indices.len(), |first, rows| {
            for (r, row) in rows.chunks_exact_mut(indices.len()).enumerate() {
                let base = (first + r) * axis_len;
                for (x, &i) in row.iter_mut().zip(indices) {
                    *x = src[base + i].clone();
                }
            }
        });
        return out;
    }
    for_row_chunks(&mut out, inner, |first_row, rows| {
        for (r, row) in rows.chunks_exact_mut(inner).enumerate() {
            let row_index = first_row + r;
            let (o, j) = (row_index / indices.len(), row_index % indices.len());
            let start = (o * axis_len + indices[j]) * inner;
            row.clone_from_slice(&src[start..start + inner]);
        }
    });
    out
}

/// Product of a shape's dimensions `dims` (the outer or inner block size around an axis).
pub(crate) fn product(dims: &[usize]) -> usize {
    dims.iter().product()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: one multi-index per element.
    fn naive(src: &[i32], view: &StridedView) -> Vec<i32> {
        let n = view.len();
        let mut out = Vec::with_capacity(n);
        for flat in 0..n {
            let mut rest = flat;
            let mut at = view.offset as isize;
            for d in (0..view.shape.len()).rev() {
                at += (rest % view.shape[d]) as isize * view.strides[d];
                rest /= view.shape[d];
            }
            out.push(src[at as usize]);
        }
        out
    }

    fn permute_view(shape: &[usize], perm: &[usize]) -> StridedView {
        StridedView::contiguous(shape).permuted(perm)
    }

    #[test]
    fn transposes_of_awkward_sizes_match_the_reference() {
        for (shape, perm) in [
            (vec![7, 17], vec![1, 0]),
            (vec![1000, 33], vec![1, 0]),
            (vec![3, 1, 5], vec![2, 1, 0]),
            (vec![2, 300, 70], vec![0, 2, 1]),
            (vec![4, 5, 6, 7], vec![0, 2, 1, 3]),
            (vec![4, 5, 6, 7], vec![3, 1, 0, 2]),
            (vec![1, 1, 1], vec![2, 0, 1]),
            (vec![], vec![]),
        ] {
            let n: usize = shape.iter().product();
            let src: Vec<i32> = (0..n as i32).collect();
            let view = permute_view(&shape, &perm);
            assert_eq!(
                gather_view(&src, &view),
                naive(&src, &view),
                "{shape:?} {perm:?}"
            );
        }
    }

    #[test]
    fn reversed_and_broadcast_views() {
        let src: Vec<i32> = (0..12).collect();
        // x[::-1, ::2] of a 3x4 matrix.
        let view = StridedView {
            shape: Shape::from_slice(&[3, 2]),
            strides: Strides::from_slice(&[-4, 2]),
            offset: 8,
        };
        assert_eq!(gather_view(&src, &view), vec![8, 10, 4, 6, 0, 2]);
        // A row broadcast to 2x4, then a column broadcast.
        let rows = StridedView {
            shape: Shape::from_slice(&[2, 4]),
            strides: Strides::from_slice(&[0, 1]),
            offset: 4,
        };
        assert_eq!(gather_view(&src, &rows), vec![4, 5, 6, 7, 4, 5, 6, 7]);
        let cols = StridedView {
            shape: Shape::from_slice(&[3, 40000]),
            strides: Strides::from_slice(&[4, 0]),
            offset: 0,
        };
        assert_eq!(gather_view(&src, &cols), naive(&src, &cols));
    }

    #[test]
    fn big_views_split_over_threads_match_the_reference() {
        let shape = [3, 257, 129];
        let src: Vec<i32> = (0..product(&shape) as i32).collect();
        for perm in [[0, 2, 1], [2, 1, 0], [1, 0, 2]] {
            let view = permute_view(&shape, &perm);
            assert_eq!(gather_view(&src, &view), naive(&src, &view), "{perm:?}");
        }
    }

    #[test]
    fn concat_and_gather_blocks() {
        let a = [1, 2, 3, 4];
        let b = [5, 6];
        assert_eq!(
            concat_rows(&[&a[..], &b[..]], &[2, 1], 2),
            vec![1, 2, 5, 3, 4, 6]
        );
        let src: Vec<i32> = (0..12).collect();
        assert_eq!(
            gather_blocks(&src, 2, 3, 2, &[2, 0]),
            vec![4, 5, 0, 1, 10, 11, 6, 7]
        );
        assert_eq!(
            gather_blocks(&src, 3, 4, 1, &[3, 3]),
            vec![3, 3, 7, 7, 11, 11]
        );
    }

    #[test]
    fn whole_views_share_the_buffer() {
        let x = Tensor::from_vec([2, 1, 3], vec![1f32, 2., 3., 4., 5., 6.]).unwrap();
        let same = StridedView::contiguous(&[2, 1, 3]).permuted(&[1, 0, 2]);
        let y = view_tensor(&x, &same).unwrap();
        assert!(y.shares_data_with(&x));
        assert_eq!(y.shape(), &[1, 2, 3]);
    }
}

#[cfg(test)]
mod bench_tmp {
    use super::*;
    #[test]
    #[ignore]
    fn bench_transposes() {
        for (shape, perm) in [
            (vec![64usize, 512, 512], vec![0usize, 2, 1]),
            (vec![64, 512, 512], vec![1, 0, 2]),
            (vec![4096, 4096], vec![1, 0]),
            (vec![8, 64, 112, 112], vec![0, 2, 3, 1]),
            (vec![8, 112, 112, 64], vec![0, 3, 1, 2]),
            (vec![16, 128, 12, 64], vec![0, 2, 1, 3]),
        ] {
            let n: usize = shape.iter().product();
            let src: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let view = StridedView::contiguous(&shape).permuted(&perm);
            let _ = gather_view(&src, &view);
            let t = std::time::Instant::now();
            let reps = 5;
            for _ in 0..reps {
                std::hint::black_box(gather_view(&src, &view));
            }
            let dt = t.elapsed().as_secs_f64() / reps as f64;
            println!(
                "{shape:?} {perm:?}: {:.2} ms, {:.2} GB/s",
                dt * 1e3,
                (n * 8) as f64 / dt / 1e9
            );
        }
    }
}
