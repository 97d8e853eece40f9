//! Pooling: MaxPool, AveragePool, LpPool, their global forms, and MaxUnpool.
//!
//! Windows come from the conv geometry ([`WindowAttrs`], [`Sampling`]): for each kernel offset
//! the in-bounds (output, input) pairs form runs along the last spatial dim, so a pool is a few
//! vectorisable passes over an output plane (`out[o] = max(out[o], x[i])`, one per kernel
//! offset) rather than a per-element window walk. Planes (`N·C` of them) run in parallel.

use half::{bf16, f16};
use rayon::prelude::*;
use runnx_ir::{DataType, Element, Tensor, Value};

use super::conv::{Sampling, Window, WindowAttrs};
use super::norm::{FloatKind, Real};
use crate::kernels::multiversion;
use crate::kernels::padded::split_phases;
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "MaxPool", &[1, 8, 10, 11, 12, 22], build_max_pool);
    reg.add_versions(
        "",
        "AveragePool",
        &[1, 7, 10, 11, 19, 22],
        build_average_pool,
    );
    reg.add_versions("", "LpPool", &[1, 2, 11, 18, 22], build_lp_pool);
    reg.add_versions("", "GlobalAveragePool", &[1, 22], build_global_average_pool);
    reg.add_versions("", "GlobalMaxPool", &[1, 22], build_global_max_pool);
    reg.add_versions("", "GlobalLpPool", &[1, 2, 22], build_global_lp_pool);
    reg.add_versions("", "MaxUnpool", &[9, 11, 22], build_max_unpool);
}

/// Below this much work (output elements times window size) pooling stays on one thread.
const PARALLEL_WORK: usize = 1 << 15;

/// The window attributes of a pooling node.
struct PoolWindow {
    attrs: WindowAttrs,
    kernel: Vec<usize>,
    ceil_mode: bool,
}

/// A pooling window resolved for an input shape.
struct Resolved {
    sampling: Sampling,
    window: Window,
    out_shape: Vec<usize>,
    in_plane: usize,
    out_plane: usize,
}

impl PoolWindow {
    fn parse(info: &NodeInfo) -> Result<PoolWindow, OpError> {
        let attrs = WindowAttrs::parse(info)?;
        Ok(PoolWindow {
            kernel: attrs.kernel(None)?,
            attrs,
            ceil_mode: info.attr_int("ceil_mode", 0)? != 0,
        })
    }

    fn resolve(&self, x: &[usize]) -> Result<Resolved, OpError> {
        if x.len() < 3 {
            return Err(OpError::input(
                0,
                format!("expected [N, C, spatial...], got shape {x:?}"),
            ));
        }
        let window = self.attrs.resolve(&x[2..], &self.kernel, self.ceil_mode)?;
        let sampling = window.forward();
        let mut out_shape = x[..2].to_vec();
        out_shape.extend_from_slice(&window.output);
        Ok(Resolved {
            in_plane: sampling.plane_len(),
            out_plane: sampling.sweep_len(),
            sampling,
            window,
            out_shape,
        })
    }
}

/// Runs `f(plane index, input plane, output plane)` over every plane, in parallel when the
/// total `work` is large.
fn for_each_plane<T: Sync, U: Send>(
    x: &[T],
    in_plane: usize,
    out: &mut [U],
    out_plane: usize,
    work: usize,
    f: impl Fn(usize, &[T], &mut [U]) + Sync + Send,
) {
    if out_plane == 0 {
        return;
    }
    let job = |(i, o): (usize, &mut [U])| f(i, &x[i * in_plane..][..in_plane], o);
    if work >= PARALLEL_WORK {
        out.par_chunks_mut(out_plane).enumerate().for_each(job);
    } else {
        out.chunks_mut(out_plane).enumerate().for_each(job);
    }
}

/// Calls `f(output, input)` for every (output, input) element pair of kernel offset `k`.
fn for_each_pair<T: Copy, U>(
    s: &Sampling,
    k: usize,
    plane: &[T],
    out: &mut [U],
    mut f: impl FnMut(&mut U, T),
) {
    s.for_each_run(k, &mut |r| {
        let outs = &mut out[r.sweep..r.sweep + r.len];
        for (o, &v) in outs.iter_mut().zip(plane[r.plane..].iter().step_by(r.step)) {
            f(o, v);
        }
    });
}

/// The `p` attribute: a float in opset 1, an int later; accept either.
fn parse_p(info: &NodeInfo) -> Result<f32, OpError> {
    let p = match info.attr_int_opt("p") {
        Ok(p) => p.map_or(2.0, |p| p as f32),
        Err(_) => info.attr_float("p", 2.0)?,
    };
    if p > 0.0 {
        Ok(p)
    } else {
        Err(OpError::attribute(
            "p",
            format!("must be positive, got {p}"),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// MaxPool

/// An element MaxPool supports, with the identity of `max`.
trait MaxElement: Element + Copy + PartialOrd {
    const LOWEST: Self;
}

macro_rules! max_element {
    ($($t:ty => $lowest:expr),*) => {$(
        impl MaxElement for $t {
            const LOWEST: Self = $lowest;
        }
    )*};
}

max_element!(f32 => f32::NEG_INFINITY, f64 => f64::NEG_INFINITY, f16 => f16::NEG_INFINITY,
    bf16 => bf16::NEG_INFINITY, i8 => i8::MIN, u8 => u8::MIN);

/// ONNX `MaxPool`, opsets 1, 8 (`storage_order`, Indices output), 10 (`ceil_mode`,
/// `dilations`), 11, 12 (int8, uint8) and 22 (bfloat16). NaN inputs never win. The optional
/// Indices output holds each maximum's flat index in X (plane offset plus the position within
/// the plane, row-major, or column-major within the plane when `storage_order` is 1); ties go
/// to the first position in window order.
struct MaxPool {
    window: PoolWindow,
    column_major: bool,
    /// Whether the node names the Indices output.
    indices: bool,
}

fn build_max_pool(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(MaxPool {
        window: PoolWindow::parse(info)?,
        column_major: info.attr_int("storage_order", 0)? != 0,
        indices: info
            .node
            .outputs
            .get(1)
            .is_some_and(|name| !name.is_empty()),
    }))
}

impl MaxPool {
    fn typed<T: MaxElement>(
        &self,
        x: &Tensor,
        r: &Resolved,
        indices: bool,
    ) -> Result<Vec<Value>, OpError> {
        let xs = x.as_slice::<T>()?;
        let planes = x.shape()[0] * x.shape()[1];
        let s = &r.sampling;
        let work = planes * r.out_plane * s.kernel_len();
        let mut y = vec![T::LOWEST; planes * r.out_plane];
        if !indices && r.window.input.len() == 2 {
            for_each_plane(
                xs,
                r.in_plane,
                &mut y,
                r.out_plane,
                work,
                |_, plane, out| max_pool_2d(plane, out, &r.window),
            );
            return Ok(vec![Tensor::from_vec(r.out_shape.clone(), y)?.into()]);
        }
        if !indices {
            for_each_plane(
                xs,
                r.in_plane,
                &mut y,
                r.out_plane,
                work,
                |_, plane, out| {
                    for k in 0..s.kernel_len() {
                        for_each_pair(s, k, plane, out, |o, v| {
                            if v > *o {
                                *o = v;
                            }
                        });
                    }
                },
            );
            return Ok(vec![Tensor::from_vec(r.out_shape.clone(), y)?.into()]);
        }
        // Values and their positions side by side; position usize::MAX means none yet.
        let mut best: Vec<(T, usize)> = vec![(T::LOWEST, usize::MAX); y.len()];
        for_each_plane(
            xs,
            r.in_plane,
            &mut best,
            r.out_plane,
            work,
            |_, plane, out| {
                for k in 0..s.kernel_len() {
                    s.for_each_run(k, &mut |run| {
                        for (t, o) in out[run.sweep..run.sweep + run.len].iter_mut().enumerate() {
                            let pos = run.plane + t * run.step;
                            let v = plane[pos];
                            if v > o.0 || o.1 == usize::MAX {
                                *o = (v, pos);
                            }
                        }
                    });
                }
            },
        );
        let mut idx = Vec::with_capacity(best.len());
        for (i, (v, pos)) in best.into_iter().enumerate() {
            y[i] = v;
            let plane = (i / r.out_plane.max(1)) * r.in_plane;
            let pos = if pos == usize::MAX {
                0
            } else if self.column_major {
                column_major(pos, &r.window.input)
            } else {
                pos
            };
            idx.push((plane + pos) as i64);
        }
        Ok(vec![
            Tensor::from_vec(r.out_shape.clone(), y)?.into(),
            Tensor::from_vec(r.out_shape.clone(), idx)?.into(),
        ])
    }
}

/// MaxPool of one 2-D plane into `out` (filled with the lowest value): row by row, the maximum
/// over the window's input rows, then over each kernel column's samples of it. Padding never
/// wins. (The N-D run visitor took 5.5 ms for ResNet-18's 3x3 stride-2 pool, 1.8 M compares.)
///
/// Not compiled for AVX-512: LLVM turns the select into a compare and masked store, and the
/// next input row's load of the same elements then stalls on it (MaxPool ran 1.6x slower).
fn max_pool_2d<T: MaxElement>(plane: &[T], out: &mut [T], w: &Window) {
    let (height, width) = (w.input[0] as isize, w.input[1]);
    let out_width = w.output[1];
    if out_width == 0 {
        return;
    }
    let step = w.strides[1] as isize;
    // The maximum over the window's rows of each input column, then over the window's columns:
    // the row pass is contiguous and vectorises, and leaves one strided compare per kernel
    // column instead of one per kernel element.
    let mut column_max = vec![T::LOWEST; width];
    // With a column stride, the window maxima's columns split by phase (column mod stride):
    // kernel column kw then reads a contiguous run of one phase rather than every step-th
    // element, and its compares vectorise (ResNet-18's 3x3 stride-2 pool: 0.81 -> 0.38 ms).
    let phase_width = width.div_ceil(step as usize);
    let phases_len = if step > 1 {
        phase_width * step as usize
    } else {
        0
    };
    let mut phases = vec![T::LOWEST; phases_len];
    for (row, out_row) in out.chunks_mut(out_width).enumerate() {
        column_max.fill(T::LOWEST);
        let mut any_row = false;
        for kh in 0..w.kernel[0] {
            let ih = (row * w.strides[0] + kh * w.dilations[0]) as isize - w.pads_begin[0] as isize;
            if ih < 0 || ih >= height {
                continue;
            }
            any_row = true;
            let in_row = &plane[ih as usize * width..][..width];
            for (m, &v) in column_max.iter_mut().zip(in_row) {
                // A select, not a conditional store: branch-free. NaN never wins, as in the
                // generic path.
                let best = *m;
                *m = if v > best { v } else { best };
            }
        }
        if !any_row {
            continue;
        }
        let pairs = w.kernel[1] == 2 && step == 2 && w.dilations[1] == 1;
        if pairs && w.pads_begin[1] == 0 && 2 * out_width <= width {
            // 2-wide, stride-2 windows inside the row (the usual 2x2 pool): adjacent pairs.
            for (o, pair) in out_row.iter_mut().zip(column_max.chunks_exact(2)) {
                let best = if pair[1] > pair[0] { pair[1] } else { pair[0] };
                let current = *o;
                *o = if best > current { best } else { current };
            }
            continue;
        }
        let (source, source_width) = if step > 1 {
            split_phases(&column_max, step as usize, &mut phases);
            (&phases[..], phase_width as isize)
        } else {
            (&column_max[..], width as isize)
        };
        for kw in 0..w.kernel[1] {
            // Output column c samples input column c·step + shift, inside when 0 <= it < width;
            // that is element c + shift.div_euclid(step) of phase shift.rem_euclid(step).
            let shift = (kw * w.dilations[1]) as isize - w.pads_begin[1] as isize;
            let lo = if shift >= 0 {
                0
            } else {
                (-shift + step - 1) / step
            };
            let hi = ((width as isize - shift + step - 1) / step).clamp(0, out_width as isize);
            if lo >= hi {
                continue;
            }
            let first = shift.rem_euclid(step) * source_width + shift.div_euclid(step) + lo;
            let samples = &source[first as usize..][..(hi - lo) as usize];
            for (o, &v) in out_row[lo as usize..hi as usize].iter_mut().zip(samples) {
                let best = *o;
                *o = if v > best { v } else { best };
            }
        }
    }
}

/// f32 MaxPool of 2-D planes with AVX-512, any window (see [`max_pool_plane_avx512`]); `None`
/// without AVX-512.
fn max_pool_2d_f32(xs: &[f32], r: &Resolved) -> Option<Vec<f32>> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        let planes = xs.len() / r.in_plane.max(1);
        // Every output element is written.
        let mut y = crate::kernels::buffers::f32_buffer(planes * r.out_plane);
        let work = planes * r.out_plane * r.sampling.kernel_len();
        let w = &r.window;
        let (out_width, step) = (w.output[1], w.strides[1]);
        let reach = (w.kernel[1] - 1) * w.dilations[1];
        // Row buffer: `pad` border values, one row's column maxima, then border values up to
        // the last element a (whole-vector) sample reads.
        let row_len = (w.pads_begin[1] + w.input[1])
            .max(out_width.next_multiple_of(POOL_LANES) * step + reach + POOL_LANES);
        for_each_plane(
            xs,
            r.in_plane,
            &mut y,
            r.out_plane,
            work,
            |_, plane, out| {
                let mut row = vec![f32::NEG_INFINITY; row_len];
                // SAFETY: AVX-512 is present (checked above); `plane` and `out` are one input and
                // one output plane of `w`, and `row` is as long as the kernel reads.
                unsafe { max_pool_plane_avx512(plane, out, w, &mut row) }
            },
        );
        return Some(y);
    }
    let _ = (xs, r);
    None
}

/// Vector width of [`max_pool_plane_avx512`].
const POOL_LANES: usize = 16;

/// Pools one input plane into `out`: per output row, the maximum over the window's input rows
/// of each column, kept in registers across the rows, into `row` (between `-inf` borders), then
/// over the window's columns: stride-1 samples are one load, stride-2 ones a two-vector
/// deinterleave, others picked one by one. Written with intrinsics because LLVM turned the
/// equivalent loops into compare-and-masked-store sequences whose stores the next loads then
/// waited on (1.6x slower than SSE, and the deinterleave into lane inserts).
///
/// A NaN input never wins, as in the generic path: `max_ps(v, best)` keeps `best` when `v`
/// is NaN, and `best` starts at `-inf`.
///
/// # Safety
/// AVX-512F is present; `plane` and `out` are one input and one output plane of `w`; `row`
/// holds at least `pads_begin[1] + input[1]` values and `round_up(output[1], 16)·stride +
/// (kernel[1] - 1)·dilation + 16`, all `-inf` outside `pads_begin[1]..pads_begin[1] + width`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn max_pool_plane_avx512(plane: &[f32], out: &mut [f32], w: &Window, row: &mut [f32]) {
    use std::arch::x86_64::*;
    const L: usize = POOL_LANES;
    let (height, width) = (w.input[0], w.input[1]);
    let out_width = w.output[1];
    let (step, dilation, pad) = (w.strides[1], w.dilations[1], w.pads_begin[1]);
    debug_assert_eq!(plane.len(), height * width);
    debug_assert_eq!(out.len(), w.output[0] * out_width);
    if out_width == 0 {
        return;
    }
    let lowest = _mm512_set1_ps(f32::NEG_INFINITY);
    let tail_mask = |n: usize| -> __mmask16 { ((1u32 << n.min(L)) - 1) as __mmask16 };
    // Lanes 0..16 of `a` then of `b` at even positions: `permutex2var` indexes `b` from 16.
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let mut input_rows = Vec::with_capacity(w.kernel[0]);
    for (oy, out_row) in out.chunks_exact_mut(out_width).enumerate() {
        input_rows.clear();
        for kh in 0..w.kernel[0] {
            let ih = (oy * w.strides[0] + kh * w.dilations[0]).checked_sub(w.pads_begin[0]);
            if let Some(ih) = ih.filter(|&ih| ih < height) {
                input_rows.push(plane.as_ptr().add(ih * width));
            }
        }
        if input_rows.is_empty() {
            // Every window row lies in the padding (large pads or ceil_mode).
            out_row.fill(f32::NEG_INFINITY);
            continue;
        }
        let columns = row.as_mut_ptr().add(pad);
        let mut x = 0;
        while x < width {
            let mask = tail_mask(width - x);
            let mut best = lowest;
            for &input in &input_rows {
                best = _mm512_max_ps(_mm512_maskz_loadu_ps(mask, input.add(x)), best);
            }
            _mm512_mask_storeu_ps(columns.add(x), mask, best);
            x += L;
        }
        let row_ptr = row.as_ptr();
        let mut c = 0;
        while c < out_width {
            let mut best = lowest;
            for kw in 0..w.kernel[1] {
                let at = row_ptr.add(c * step + kw * dilation);
                let samples = match step {
                    1 => _mm512_loadu_ps(at),
                    2 => _mm512_permutex2var_ps(
                        _mm512_loadu_ps(at),
                        evens,
                        _mm512_loadu_ps(at.add(L)),
                    ),
                    _ => {
                        let picked: [f32; L] = std::array::from_fn(|l| *at.add(l * step));
                        _mm512_loadu_ps(picked.as_ptr())
                    }
                };
                best = _mm512_max_ps(samples, best);
            }
            _mm512_mask_storeu_ps(out_row.as_mut_ptr().add(c), tail_mask(out_width - c), best);
            c += L;
        }
    }
}

/// Whether `w` is the usual 2-D 2x2 stride-2 pool with every window inside the input.
fn is_pair_pool(w: &Window) -> bool {
    w.input.len() == 2
        && w.kernel == [2, 2]
        && w.strides == [2, 2]
        && w.dilations == [1, 1]
        && w.pads_begin == [0, 0]
        && 2 * w.output[0] <= w.input[0]
        && 2 * w.output[1] <= w.input[1]
}

/// f32 MaxPool over 2x2 stride-2 windows (see [`is_pair_pool`]), vectorised. As in the general
/// path a NaN never wins over a number; a window of NaNs gives NaN.
fn pair_pool(xs: &[f32], r: &Resolved) -> Vec<f32> {
    let planes = xs.len() / r.in_plane.max(1);
    // Every output row is written (whole vectors, then the remainder).
    let mut y = crate::kernels::buffers::f32_buffer(planes * r.out_plane);
    if y.is_empty() {
        return y;
    }
    let geometry = PairPool {
        in_plane: r.in_plane,
        in_width: r.window.input[1],
        out_rows: r.window.output[0],
        out_width: r.window.output[1],
    };
    // Runs of whole planes, so that a vector may run on into the next plane: with one call per
    // plane, the last row of each (MNIST's 5x5 and 13x13 planes) was pooled one value at a time.
    let parts = if y.len() * 4 >= PARALLEL_WORK {
        2 * rayon::current_num_threads()
    } else {
        1
    };
    let per_part = planes.div_ceil(parts) * r.out_plane;
    if parts > 1 {
        y.par_chunks_mut(per_part).enumerate().for_each(|(i, out)| {
            let first = i * per_part / r.out_plane;
            pair_pool_planes(&xs[first * r.in_plane..], out, &geometry);
        });
    } else {
        pair_pool_planes(xs, &mut y, &geometry);
    }
    y
}

/// The shape of a [`pair_pool`]: input planes `in_plane` values apart, rows `in_width` long.
struct PairPool {
    in_plane: usize,
    in_width: usize,
    out_rows: usize,
    out_width: usize,
}

multiversion! {
    /// Pools the planes of `out` (whole output planes) from `xs`, which starts at their first
    /// input plane and may run on past the last (vectors read ahead, never write past `out`).
    fn pair_pool_planes(xs: &[f32], out: &mut [f32], g: &PairPool) => pair_pool_body
}

#[inline(always)]
fn pair_pool_body(xs: &[f32], out: &mut [f32], g: &PairPool) {
    const LANES: usize = 16;
    let out_width = g.out_width;
    if out_width == 0 || g.out_rows == 0 {
        return;
    }
    for (index, at) in (0..out.len()).step_by(out_width).enumerate() {
        let (plane, row) = (index / g.out_rows, index % g.out_rows);
        let top = plane * g.in_plane + 2 * row * g.in_width;
        let bottom = top + g.in_width;
        let mut col = 0;
        // Whole vectors: 2·LANES inputs from each row make LANES outputs. Past the row's end
        // they read the next rows and write the start of the next output row, which that row
        // then rewrites.
        while col < out_width
            && bottom + 2 * col + 2 * LANES <= xs.len()
            && at + col + LANES <= out.len()
        {
            let load = |start: usize| -> [f32; 2 * LANES] {
                *<&[f32; 2 * LANES]>::try_from(&xs[start + 2 * col..][..2 * LANES])
                    .expect("2·LANES floats")
            };
            let (a, b) = (load(top), load(bottom));
            let m: [f32; 2 * LANES] = std::array::from_fn(|l| a[l].max(b[l]));
            let pooled: [f32; LANES] = std::array::from_fn(|l| m[2 * l].max(m[2 * l + 1]));
            out[at + col..at + col + LANES].copy_from_slice(&pooled);
            col += LANES;
        }
        for c in col..out_width {
            let (i, j) = (top + 2 * c, bottom + 2 * c);
            out[at + c] = xs[i].max(xs[i + 1]).max(xs[j].max(xs[j + 1]));
        }
    }
}

/// A row-major position within `dims` re-expressed column-major (first dim fastest).
fn column_major(mut pos: usize, dims: &[usize]) -> usize {
    let mut coords = vec![0; dims.len()];
    for d in (0..dims.len()).rev() {
        coords[d] = pos % dims[d];
        pos /= dims[d];
    }
    let (mut index, mut stride) = (0, 1);
    for (c, d) in coords.iter().zip(dims) {
        index += c * stride;
        stride *= d;
    }
    index
}

impl Kernel for MaxPool {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let r = self.window.resolve(x.shape())?;
        let indices = self.indices;
        if x.dtype() == DataType::Float && !indices && is_pair_pool(&r.window) {
            let y = pair_pool(x.as_slice::<f32>()?, &r);
            return Ok(vec![Tensor::from_vec(r.out_shape.clone(), y)?.into()]);
        }
        if x.dtype() == DataType::Float && !indices && r.window.input.len() == 2 {
            if let Some(y) = max_pool_2d_f32(x.as_slice::<f32>()?, &r) {
                return Ok(vec![Tensor::from_vec(r.out_shape.clone(), y)?.into()]);
            }
        }
        match x.dtype() {
            DataType::Float => self.typed::<f32>(x, &r, indices),
            DataType::Double => self.typed::<f64>(x, &r, indices),
            DataType::Float16 => self.typed::<f16>(x, &r, indices),
            DataType::Bfloat16 => self.typed::<bf16>(x, &r, indices),
            DataType::Int8 => self.typed::<i8>(x, &r, indices),
            DataType::Uint8 => self.typed::<u8>(x, &r, indices),
            other => Err(OpError::input(
                0,
                format!("MaxPool does not support {other}"),
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AveragePool and LpPool

/// For each output position, how many window elements are averaged: those inside the input,
/// or with `include_pad` also those in the explicit/automatic padding (never the extra
/// positions `ceil_mode` adds past the end padding).
fn window_counts(w: &Window, include_pad: bool) -> Vec<u32> {
    let sampling = if include_pad {
        let padded: Vec<usize> = (0..w.input.len())
            .map(|d| w.input[d] + w.pads_begin[d] + w.pads_end[d])
            .collect();
        let unpadded = Window {
            pads_begin: vec![0; w.input.len()],
            ..w.clone()
        };
        Sampling::new(&w.output, &padded, &unpadded)
    } else {
        w.forward()
    };
    let mut counts = vec![0u32; sampling.sweep_len()];
    for k in 0..sampling.kernel_len() {
        sampling.for_each_run(k, &mut |r| {
            counts[r.sweep..r.sweep + r.len]
                .iter_mut()
                .for_each(|c| *c += 1);
        });
    }
    counts
}

/// ONNX `AveragePool`, opsets 1, 7 (`count_include_pad`), 10 (`ceil_mode`), 11, 19
/// (`dilations`) and 22 (bfloat16). float16/bfloat16 compute in f32.
struct AveragePool {
    window: PoolWindow,
    count_include_pad: bool,
}

fn build_average_pool(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(AveragePool {
        window: PoolWindow::parse(info)?,
        count_include_pad: info.attr_int("count_include_pad", 0)? != 0,
    }))
}

impl AveragePool {
    fn typed<R: Real>(&self, x: &Tensor) -> Result<Tensor, OpError> {
        let r = self.window.resolve(x.shape())?;
        let xs = R::read(x, 0)?;
        let s = &r.sampling;
        let counts: Vec<R> = window_counts(&r.window, self.count_include_pad)
            .into_iter()
            .map(|c| R::one() / R::from_u32(c).unwrap_or_else(R::nan))
            .collect();
        let planes = x.shape()[0] * x.shape()[1];
        let mut y = vec![R::zero(); planes * r.out_plane];
        let work = y.len() * s.kernel_len();
        for_each_plane(
            &xs,
            r.in_plane,
            &mut y,
            r.out_plane,
            work,
            |_, plane, out| {
                for k in 0..s.kernel_len() {
                    for_each_pair(s, k, plane, out, |o, v| *o = *o + v);
                }
                out.iter_mut().zip(&counts).for_each(|(o, &c)| *o = *o * c);
            },
        );
        R::to_tensor(y, x.dtype(), &r.out_shape)
    }
}

impl Kernel for AveragePool {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let y = match FloatKind::of(x.dtype(), 0)? {
            FloatKind::F32 => self.typed::<f32>(x)?,
            FloatKind::F64 => self.typed::<f64>(x)?,
        };
        Ok(vec![y.into()])
    }
}

/// `(Σ |x|^p)^(1/p)` finished from the sum of powers, with exact fast paths for p = 1 and 2.
fn lp_power<R: Real>(v: R, p: R) -> R {
    if p == R::one() {
        v.abs()
    } else if p == R::of(2.0) {
        v * v
    } else {
        v.abs().powf(p)
    }
}

fn lp_root<R: Real>(sum: R, p: R) -> R {
    if p == R::one() {
        sum
    } else if p == R::of(2.0) {
        sum.sqrt()
    } else {
        sum.powf(R::one() / p)
    }
}

/// ONNX `LpPool`, opsets 1 (float `p`), 2 (int `p`), 11, 18 (`ceil_mode`, `dilations`) and 22
/// (bfloat16): `(Σ |x|^p)^(1/p)` over each window; padding contributes nothing.
struct LpPool {
    window: PoolWindow,
    p: f32,
}

fn build_lp_pool(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(LpPool {
        window: PoolWindow::parse(info)?,
        p: parse_p(info)?,
    }))
}

impl LpPool {
    fn typed<R: Real>(&self, x: &Tensor) -> Result<Tensor, OpError> {
        let r = self.window.resolve(x.shape())?;
        let xs = R::read(x, 0)?;
        let s = &r.sampling;
        let p = R::of(self.p);
        let planes = x.shape()[0] * x.shape()[1];
        let mut y = vec![R::zero(); planes * r.out_plane];
        let work = y.len() * s.kernel_len();
        for_each_plane(
            &xs,
            r.in_plane,
            &mut y,
            r.out_plane,
            work,
            |_, plane, out| {
                for k in 0..s.kernel_len() {
                    for_each_pair(s, k, plane, out, |o, v| *o = *o + lp_power(v, p));
                }
                out.iter_mut().for_each(|o| *o = lp_root(*o, p));
            },
        );
        R::to_tensor(y, x.dtype(), &r.out_shape)
    }
}

impl Kernel for LpPool {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let y = match FloatKind::of(x.dtype(), 0)? {
            FloatKind::F32 => self.typed::<f32>(x)?,
            FloatKind::F64 => self.typed::<f64>(x)?,
        };
        Ok(vec![y.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// Global pools

/// The output shape of a global pool (`[N, C, 1, ...]`) and the plane size.
fn global_shape(x: &[usize]) -> Result<(Vec<usize>, usize), OpError> {
    if x.len() < 2 {
        return Err(OpError::input(
            0,
            format!("expected [N, C, spatial...], got shape {x:?}"),
        ));
    }
    let mut out = x[..2].to_vec();
    out.resize(x.len(), 1);
    Ok((out, x[2..].iter().product()))
}

/// Reduces each plane of `x` to one value with `f`.
fn reduce_planes<T: Sync, U: Send + Default + Clone>(
    x: &[T],
    shape: &[usize],
    f: impl Fn(&[T]) -> U + Sync + Send,
) -> Vec<U> {
    let planes = shape[0] * shape[1];
    let plane = x.len() / planes.max(1);
    let mut y = vec![U::default(); planes];
    for_each_plane(x, plane, &mut y, 1, x.len(), |_, p, o| o[0] = f(p));
    y
}

/// ONNX `GlobalAveragePool`, opsets 1 and 22 (bfloat16): the mean of each plane.
struct GlobalAveragePool;

fn build_global_average_pool(_info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(GlobalAveragePool))
}

fn global_average<R: Real>(x: &Tensor) -> Result<Tensor, OpError> {
    let (shape, plane) = global_shape(x.shape())?;
    let scale = R::one() / R::from_usize(plane).unwrap_or_else(R::nan);
    let y = reduce_planes(&R::read(x, 0)?, x.shape(), |p| {
        p.iter().copied().sum::<R>() * scale
    });
    R::to_tensor(y, x.dtype(), &shape)
}

impl Kernel for GlobalAveragePool {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let y = match FloatKind::of(x.dtype(), 0)? {
            FloatKind::F32 => global_average::<f32>(x)?,
            FloatKind::F64 => global_average::<f64>(x)?,
        };
        Ok(vec![y.into()])
    }
}

/// ONNX `GlobalMaxPool`, opsets 1 and 22 (bfloat16): the maximum of each plane (NaN ignored).
struct GlobalMaxPool;

fn build_global_max_pool(_info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(GlobalMaxPool))
}

fn global_max<T: MaxElement>(x: &Tensor) -> Result<Tensor, OpError> {
    let (shape, _) = global_shape(x.shape())?;
    let y = reduce_planes(x.as_slice::<T>()?, x.shape(), |p| {
        p.iter().fold(T::LOWEST, |m, &v| if v > m { v } else { m })
    });
    Ok(Tensor::from_vec(shape, y)?)
}

impl Kernel for GlobalMaxPool {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let y = match x.dtype() {
            DataType::Float => global_max::<f32>(x)?,
            DataType::Double => global_max::<f64>(x)?,
            DataType::Float16 => global_max::<f16>(x)?,
            DataType::Bfloat16 => global_max::<bf16>(x)?,
            other => {
                return Err(OpError::input(
                    0,
                    format!("GlobalMaxPool does not support {other}"),
                ))
            }
        };
        Ok(vec![y.into()])
    }
}

/// ONNX `GlobalLpPool`, opsets 1 (float `p`), 2 (int `p`) and 22 (bfloat16): the p-norm of
/// each plane.
struct GlobalLpPool {
    p: f32,
}

fn build_global_lp_pool(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(GlobalLpPool { p: parse_p(info)? }))
}

impl GlobalLpPool {
    fn typed<R: Real>(&self, x: &Tensor) -> Result<Tensor, OpError> {
        let (shape, _) = global_shape(x.shape())?;
        let p = R::of(self.p);
        let y = reduce_planes(&R::read(x, 0)?, x.shape(), |plane| {
            lp_root(plane.iter().map(|&v| lp_power(v, p)).sum(), p)
        });
        R::to_tensor(y, x.dtype(), &shape)
    }
}

impl Kernel for GlobalLpPool {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let y = match FloatKind::of(x.dtype(), 0)? {
            FloatKind::F32 => self.typed::<f32>(x)?,
            FloatKind::F64 => self.typed::<f64>(x)?,
        };
        Ok(vec![y.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// MaxUnpool

/// ONNX `MaxUnpool`, opsets 9, 11 and 22 (bfloat16): scatters X into zeros at the flat indices
/// I (as MaxPool's Indices output gives them) of a tensor of the size the pooling window
/// inverts to, `(in - 1)·stride - pad_begin - pad_end + kernel`. A larger `output_shape` input
/// pads that result with zeros at the end of each dim (the reference implementation's
/// placement).
struct MaxUnpool {
    attrs: WindowAttrs,
    kernel: Vec<usize>,
}

fn build_max_unpool(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let attrs = WindowAttrs::parse(info)?;
    Ok(Box::new(MaxUnpool {
        kernel: attrs.kernel(None)?,
        attrs,
    }))
}

impl MaxUnpool {
    /// The unpooled shape before `output_shape` is applied.
    fn inferred_shape(&self, x: &[usize]) -> Result<Vec<usize>, OpError> {
        if x.len() < 3 {
            return Err(OpError::input(
                0,
                format!("expected [N, C, spatial...], got shape {x:?}"),
            ));
        }
        let spatial = &x[2..];
        if self.kernel.len() != spatial.len() {
            return Err(OpError::attribute(
                "kernel_shape",
                format!(
                    "has {} values for {} spatial dims",
                    self.kernel.len(),
                    spatial.len()
                ),
            ));
        }
        let w = self.attrs.per_axis(spatial.len())?;
        let mut shape = x[..2].to_vec();
        for (d, &size) in spatial.iter().enumerate() {
            let full = size.saturating_sub(1) * w.strides[d] + self.kernel[d];
            let size = full
                .checked_sub(w.pads_begin[d] + w.pads_end[d])
                .ok_or_else(|| {
                    OpError::invalid(format!(
                        "pads exceed the unpooled size {full} on spatial axis {d}"
                    ))
                })?;
            shape.push(size);
        }
        Ok(shape)
    }

    fn typed<T: Element + Copy>(
        &self,
        x: &Tensor,
        indices: &[i64],
        target: Option<Vec<usize>>,
    ) -> Result<Tensor, OpError> {
        let xs = x.as_slice::<T>()?;
        let shape = self.inferred_shape(x.shape())?;
        let mut y = vec![T::default(); shape.iter().product()];
        for (&v, &i) in xs.iter().zip(indices) {
            let slot = usize::try_from(i)
                .ok()
                .and_then(|i| y.get_mut(i))
                .ok_or_else(|| {
                    OpError::input(
                        1,
                        format!("index {i} is outside the output of shape {shape:?}"),
                    )
                })?;
            *slot = v;
        }
        let Some(target) = target.filter(|t| *t != shape) else {
            return Ok(Tensor::from_vec(shape, y)?);
        };
        if target.len() != shape.len() || target.iter().zip(&shape).any(|(t, s)| t < s) {
            return Err(OpError::input(
                2,
                format!("output_shape {target:?} is smaller than the unpooled shape {shape:?}"),
            ));
        }
        // Copy rows of the last dim into the top-left corner of the larger tensor.
        let mut out = vec![T::default(); target.iter().product()];
        let (row, target_row) = (shape[shape.len() - 1], target[target.len() - 1]);
        let outer = &shape[..shape.len() - 1];
        let target_strides = runnx_ir::strides_of(&target[..target.len() - 1]);
        let mut pos = vec![0; outer.len()];
        for src in y.chunks(row.max(1)).take(outer.iter().product()) {
            let base: usize = pos.iter().zip(&target_strides).map(|(p, s)| p * s).sum();
            out[base * target_row..][..src.len()].copy_from_slice(src);
            for d in (0..outer.len()).rev() {
                pos[d] += 1;
                if pos[d] < outer[d] {
                    break;
                }
                pos[d] = 0;
            }
        }
        Ok(Tensor::from_vec(target, out)?)
    }
}

impl Kernel for MaxUnpool {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (x, i) = (inputs.tensor(0)?, inputs.tensor(1)?);
        let indices = i
            .as_slice::<i64>()
            .map_err(|_| OpError::input(1, format!("expected int64 indices, got {}", i.dtype())))?;
        if i.shape() != x.shape() {
            return Err(OpError::input(
                1,
                format!(
                    "indices of shape {:?} do not match X {:?}",
                    i.shape(),
                    x.shape()
                ),
            ));
        }
        let target = match inputs.opt_tensor(2)? {
            Some(t) => Some(
                t.to_i64_vec()?
                    .into_iter()
                    .map(|d| {
                        usize::try_from(d)
                            .map_err(|_| OpError::input(2, format!("negative dim {d}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        let y = match x.dtype() {
            DataType::Float => self.typed::<f32>(x, indices, target)?,
            DataType::Double => self.typed::<f64>(x, indices, target)?,
            DataType::Float16 => self.typed::<f16>(x, indices, target)?,
            DataType::Bfloat16 => self.typed::<bf16>(x, indices, target)?,
            other => {
                return Err(OpError::input(
                    0,
                    format!("MaxUnpool does not support {other}"),
                ))
            }
        };
        Ok(vec![y.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv::AutoPad;

    fn window(kernel: &[usize], strides: &[usize], pads: &[usize], ceil_mode: bool) -> PoolWindow {
        PoolWindow {
            attrs: WindowAttrs::for_tests(kernel, strides, pads, AutoPad::NotSet),
            kernel: kernel.to_vec(),
            ceil_mode,
        }
    }

    #[test]
    fn max_pool_with_indices() {
        // 1x1x3x3 input, 2x2 window, stride 1.
        let x = Tensor::from_vec(
            [1, 1, 3, 3],
            vec![1f32, 5.0, 3.0, 4.0, 2.0, 9.0, 7.0, 8.0, 6.0],
        )
        .unwrap();
        let pool = MaxPool {
            window: window(&[2, 2], &[1, 1], &[0, 0, 0, 0], false),
            column_major: false,
            indices: true,
        };
        let r = pool.window.resolve(x.shape()).unwrap();
        let out = pool.typed::<f32>(&x, &r, true).unwrap();
        assert_eq!(
            out[0].as_tensor().unwrap().as_slice::<f32>().unwrap(),
            &[5.0, 9.0, 8.0, 9.0]
        );
        assert_eq!(
            out[1].as_tensor().unwrap().as_slice::<i64>().unwrap(),
            &[1, 5, 7, 5]
        );
        let pool = MaxPool {
            column_major: true,
            ..pool
        };
        let out = pool.typed::<f32>(&x, &r, true).unwrap();
        assert_eq!(
            out[1].as_tensor().unwrap().as_slice::<i64>().unwrap(),
            &[3, 7, 5, 7]
        );
    }

    #[test]
    fn pair_pool_matches_window_maxima() {
        // (N, C, H, W): planes narrower and wider than a vector, odd sides (floor), rows whose
        // vectors run into the next rows and planes, and enough planes to split among threads.
        let cases = [
            (1, 3, 26, 26),
            (2, 2, 7, 9),
            (1, 1, 2, 70),
            (1, 2, 40, 33),
            (8, 64, 11, 11),
        ];
        for (case, &(n, c, h, w)) in cases.iter().enumerate() {
            let len = n * c * h * w;
            let xs: Vec<f32> = (0..len)
                .map(|i| ((i * 7919 + case * 131) % 1009) as f32 - 500.0)
                .collect();
            let x = Tensor::from_vec([n, c, h, w], xs.clone()).unwrap();
            let pool = MaxPool {
                window: window(&[2, 2], &[2, 2], &[0, 0, 0, 0], false),
                column_major: false,
                indices: false,
            };
            let r = pool.window.resolve(x.shape()).unwrap();
            assert!(is_pair_pool(&r.window));
            let y = pool.run(Inputs::new(vec![Some(x.into())])).unwrap();
            let y = y[0].as_tensor().unwrap();
            let (oh, ow) = (h / 2, w / 2);
            assert_eq!(y.shape(), &[n, c, oh, ow]);
            let y = y.as_slice::<f32>().unwrap();
            for p in 0..n * c {
                for i in 0..oh {
                    for j in 0..ow {
                        let at = |di: usize, dj: usize| xs[(p * h + 2 * i + di) * w + 2 * j + dj];
                        let want = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
                        assert_eq!(
                            y[(p * oh + i) * ow + j],
                            want,
                            "case {case} plane {p} ({i}, {j})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn max_pool_2d_matches_window_maxima() {
        // (H, W, kernel, strides, dilations, pads top/left/bottom/right, ceil_mode): ResNet's
        // stem pool, column strides 1 to 3 with uneven phases, windows hanging over every edge,
        // rows narrower and wider than a vector with partial last vectors, dilated windows.
        type Case = (
            usize,
            usize,
            [usize; 2],
            [usize; 2],
            [usize; 2],
            [usize; 4],
            bool,
        );
        let cases: [Case; 10] = [
            (12, 12, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1], false),
            (9, 11, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1], true),
            (7, 10, [2, 3], [1, 3], [1, 1], [0, 2, 1, 0], false),
            (8, 13, [3, 2], [3, 2], [1, 1], [2, 1, 0, 1], true),
            (5, 6, [4, 4], [1, 1], [1, 1], [2, 2, 2, 2], false),
            (21, 37, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1], false),
            (6, 40, [2, 5], [1, 1], [1, 1], [0, 2, 0, 2], false),
            (9, 50, [3, 3], [1, 3], [1, 1], [1, 1, 1, 1], true),
            (11, 35, [3, 3], [2, 2], [2, 3], [2, 3, 2, 3], true),
            (10, 18, [2, 3], [1, 1], [3, 2], [0, 0, 0, 0], false),
        ];
        for (case, &(h, w, kernel, strides, dilations, pads, ceil_mode)) in cases.iter().enumerate()
        {
            let xs: Vec<f32> = (0..2 * h * w)
                .map(|i| ((i * 7919 + case * 131) % 1009) as f32 - 500.0)
                .collect();
            let pool = MaxPool {
                window: PoolWindow {
                    attrs: WindowAttrs::for_tests(&kernel, &strides, &pads, AutoPad::NotSet)
                        .with_dilations(&dilations),
                    kernel: kernel.to_vec(),
                    ceil_mode,
                },
                column_major: false,
                indices: false,
            };
            let r = pool.window.resolve(&[1, 2, h, w]).unwrap();
            assert!(!is_pair_pool(&r.window));
            let (oh, ow) = (r.window.output[0], r.window.output[1]);
            let mut want = vec![f32::NEG_INFINITY; 2 * oh * ow];
            for p in 0..2 {
                for i in 0..oh {
                    for j in 0..ow {
                        let best = &mut want[(p * oh + i) * ow + j];
                        for kh in 0..kernel[0] {
                            for kw in 0..kernel[1] {
                                let iy = (i * strides[0] + kh * dilations[0]) as isize
                                    - pads[0] as isize;
                                let ix = (j * strides[1] + kw * dilations[1]) as isize
                                    - pads[1] as isize;
                                if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                                    *best = best.max(xs[(p * h + iy as usize) * w + ix as usize]);
                                }
                            }
                        }
                    }
                }
            }
            // The f32 kernel (run) and the generic one (f64), against the definition.
            let x = Tensor::from_vec([1, 2, h, w], xs.clone()).unwrap();
            let y = pool.run(Inputs::new(vec![Some(x.into())])).unwrap();
            let y = y[0]
                .as_tensor()
                .unwrap()
                .as_slice::<f32>()
                .unwrap()
                .to_vec();
            assert_eq!(y, want, "f32, case {case}");
            let x64 =
                Tensor::from_vec([1, 2, h, w], xs.iter().map(|&v| v as f64).collect()).unwrap();
            let y64 = pool.typed::<f64>(&x64, &r, false).unwrap();
            let y64 = y64[0]
                .as_tensor()
                .unwrap()
                .as_slice::<f64>()
                .unwrap()
                .to_vec();
            let want64: Vec<f64> = want.iter().map(|&v| v as f64).collect();
            assert_eq!(y64, want64, "f64, case {case}");
        }
    }

    #[test]
    fn average_pool_padding_counts() {
        // 1-D input [1, 2, 3, 4], kernel 3, stride 2, pads 1/1, ceil mode:
        // windows [-1,1], [1,3], [3,5] -> the last starts inside the input.
        let x = Tensor::from_vec([1, 1, 4], vec![1f32, 2.0, 3.0, 4.0]).unwrap();
        let exclude = AveragePool {
            window: window(&[3], &[2], &[1, 1], true),
            count_include_pad: false,
        };
        let y = exclude.typed::<f32>(&x).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[1.5, 3.0, 4.0]);
        let include = AveragePool {
            count_include_pad: true,
            ..exclude
        };
        // Counts include the one padded position on each side but not past it: 3, 3, 2.
        let y = include.typed::<f32>(&x).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[1.0, 3.0, 2.0]);
    }

    #[test]
    fn lp_and_global_pools() {
        let x = Tensor::from_vec([1, 2, 2], vec![3f64, 4.0, -1.0, 1.0]).unwrap();
        let y = GlobalLpPool { p: 2.0 }.typed::<f64>(&x).unwrap();
        assert_eq!(y.shape(), &[1, 2, 1]);
        assert_eq!(y.as_slice::<f64>().unwrap(), &[5.0, 2f64.sqrt()]);
        let y = global_average::<f64>(&x).unwrap();
        assert_eq!(y.as_slice::<f64>().unwrap(), &[3.5, 0.0]);
        let y = global_max::<f64>(&x).unwrap();
        assert_eq!(y.as_slice::<f64>().unwrap(), &[4.0, 1.0]);
        let lp = LpPool {
            window: window(&[2], &[2], &[0, 0], false),
            p: 1.0,
        };
        assert_eq!(
            lp.typed::<f64>(&x).unwrap().as_slice::<f64>().unwrap(),
            &[7.0, 2.0]
        );
    }

    #[test]
    fn max_unpool_scatters_and_pads() {
        let op = MaxUnpool {
            attrs: WindowAttrs::for_tests(&[2, 2], &[2, 2], &[0, 0, 0, 0], AutoPad::NotSet),
            kernel: vec![2, 2],
        };
        let x = Tensor::from_vec([1, 1, 2, 2], vec![5f32, 6.0, 7.0, 8.0]).unwrap();
        let y = op
            .typed::<f32>(&x, &[5, 7, 13, 15], Some(vec![1, 1, 5, 5]))
            .unwrap();
        let mut want = vec![0f32; 25];
        (want[6], want[8], want[16], want[18]) = (5.0, 6.0, 7.0, 8.0);
        assert_eq!(y.as_slice::<f32>().unwrap(), want.as_slice());
        assert!(op.typed::<f32>(&x, &[5, 7, 13, 16], None).is_err());
    }

    #[test]
    fn column_major_positions() {
        assert_eq!(column_major(5, &[3, 3]), 7);
        assert_eq!(column_major(1, &[2, 3, 4]), 6);
    }
}
