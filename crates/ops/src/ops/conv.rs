//! Convolutions: Conv, ConvTranspose, ConvInteger, DeformConv; and the sliding-window geometry (padding,
//! output sizes, [`Sampling`]) that the pooling ops share.
//!
//! Conv lowers to GEMM: for each batch item and group, `Y_g = W_g · im2col(X_g)` with the bias
//! fused into the GEMM epilogue; a 1x1, stride-1, unpadded conv multiplies X directly.
//! ConvTranspose is the adjoint: `col = W_gᵀ · X_g`, then col2im scatters `col` into Y.
//! Work is parallel over (batch item, group) pairs, and within one pair the im2col/col2im and
//! GEMM split further on the rayon pool.

use rayon::prelude::*;
use runnx_ir::{shape_len, DataType, Tensor, Value};

use super::matmul::widen_8bit;
use super::norm::{FloatKind, Real};
use std::ops::Range;
use std::sync::OnceLock;

use crate::kernels::buffers::{f32_buffer, recycle};
use crate::kernels::direct_conv;
use crate::kernels::gemm::{
    apply_activation, gemm, Activation, Bias, Epilogue, GemmScalar, Lhs, MatMut, MatRef, Residual,
    Rhs, VirtualMatrix,
};
use crate::kernels::padded::PaddedLayout;
use crate::kernels::winograd::{self, Winograd3x3};
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry, RUNNX_DOMAIN};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "Conv", &[1, 11, 22], build_conv);
    reg.add_versions("", "ConvTranspose", &[1, 11, 22], build_conv_transpose);
    reg.add("", "ConvInteger", 10, build_conv_integer);
    reg.add_versions("", "DeformConv", &[19, 22], build_deform_conv);
    reg.add("com.microsoft", "FusedConv", 1, build_fused_conv);
    reg.add(
        RUNNX_DOMAIN,
        "FusedConvMaxPool",
        1,
        build_fused_conv_max_pool,
    );
}

/// A conv with one input channel per group and at most this many outputs per group sums
/// shifted planes directly; more outputs go through im2col and GEMM (the direct sum ran MNIST's
/// first conv, 1 → 32 channels, at about 4 GFLOP/s).
const DEPTHWISE_MAX_OUTPUTS: usize = 4;

/// Winograd needs at least this many input and output channels: its GEMMs have C-deep rows
/// and M columns, and a first conv on an RGB image has neither.
const WINOGRAD_MIN_CHANNELS: usize = 16;

/// Below this many elements, im2col/col2im and small loops stay on one thread.
const PARALLEL_ELEMENTS: usize = 1 << 15;

// ---------------------------------------------------------------------------------------------
// Window geometry, shared with pooling.

/// The `auto_pad` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AutoPad {
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

/// The window attributes of conv and pooling ops, as parsed at build time. Lengths are checked
/// against the spatial rank when the input shape is known.
#[derive(Clone, Debug)]
pub(super) struct WindowAttrs {
    pub(super) kernel_shape: Option<Vec<usize>>,
    strides: Option<Vec<usize>>,
    dilations: Option<Vec<usize>>,
    pads: Option<Vec<usize>>,
    pub(super) auto_pad: AutoPad,
}

/// Strides, dilations and explicit pads per spatial axis, defaults filled in.
pub(super) struct AxisParams {
    pub(super) strides: Vec<usize>,
    pub(super) dilations: Vec<usize>,
    pub(super) pads_begin: Vec<usize>,
    pub(super) pads_end: Vec<usize>,
}

/// A list of non-negative (or, with `min` 1, positive) integers from an attribute.
fn dims_attr(info: &NodeInfo, name: &str, min: i64) -> Result<Option<Vec<usize>>, OpError> {
    let Some(values) = info.attr_ints_opt(name)? else {
        return Ok(None);
    };
    values
        .iter()
        .map(|&v| {
            if v < min {
                Err(OpError::attribute(
                    name,
                    format!("values must be >= {min}, got {values:?}"),
                ))
            } else {
                usize::try_from(v)
                    .map_err(|_| OpError::attribute(name, format!("{v} is too large")))
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

impl WindowAttrs {
    pub(super) fn parse(info: &NodeInfo) -> Result<WindowAttrs, OpError> {
        let auto_pad = match info.attr_string("auto_pad", "NOTSET")?.as_str() {
            "NOTSET" | "" => AutoPad::NotSet,
            "SAME_UPPER" => AutoPad::SameUpper,
            "SAME_LOWER" => AutoPad::SameLower,
            "VALID" => AutoPad::Valid,
            other => {
                return Err(OpError::attribute(
                    "auto_pad",
                    format!("unknown value '{other}'"),
                ))
            }
        };
        Ok(WindowAttrs {
            kernel_shape: dims_attr(info, "kernel_shape", 1)?,
            strides: dims_attr(info, "strides", 1)?,
            dilations: dims_attr(info, "dilations", 1)?,
            pads: dims_attr(info, "pads", 0)?,
            auto_pad,
        })
    }

    #[cfg(test)]
    pub(super) fn for_tests(
        kernel: &[usize],
        strides: &[usize],
        pads: &[usize],
        auto_pad: AutoPad,
    ) -> WindowAttrs {
        WindowAttrs {
            kernel_shape: Some(kernel.to_vec()),
            strides: Some(strides.to_vec()),
            dilations: None,
            pads: Some(pads.to_vec()),
            auto_pad,
        }
    }

    #[cfg(test)]
    pub(super) fn with_dilations(self, dilations: &[usize]) -> WindowAttrs {
        WindowAttrs {
            dilations: Some(dilations.to_vec()),
            ..self
        }
    }

    /// Whether the attributes allow Winograd F(2x2, 3x3): a 3x3 kernel (when given), unit
    /// strides and dilations.
    fn suits_winograd(&self) -> bool {
        let ones = |v: &Option<Vec<usize>>| v.as_ref().is_none_or(|v| v.iter().all(|&d| d == 1));
        self.kernel_shape.as_ref().is_none_or(|k| k == &[3, 3])
            && ones(&self.strides)
            && ones(&self.dilations)
    }

    /// Strides, dilations and explicit pads (begin, end) for `rank` spatial dims.
    pub(super) fn per_axis(&self, rank: usize) -> Result<AxisParams, OpError> {
        let list = |name: &str, v: &Option<Vec<usize>>, len: usize, default: usize| match v {
            None => Ok(vec![default; len]),
            Some(v) if v.is_empty() => Ok(vec![default; len]),
            Some(v) if v.len() == len => Ok(v.clone()),
            Some(v) => Err(OpError::attribute(
                name,
                format!("has {} values for {rank} spatial dims", v.len()),
            )),
        };
        let strides = list("strides", &self.strides, rank, 1)?;
        let dilations = list("dilations", &self.dilations, rank, 1)?;
        let pads = list("pads", &self.pads, 2 * rank, 0)?;
        let (begin, end) = pads.split_at(rank);
        Ok(AxisParams {
            strides,
            dilations,
            pads_begin: begin.to_vec(),
            pads_end: end.to_vec(),
        })
    }

    /// The kernel shape: the attribute if given (checked against `from_weights` when known).
    pub(super) fn kernel(&self, from_weights: Option<&[usize]>) -> Result<Vec<usize>, OpError> {
        let kernel = match (&self.kernel_shape, from_weights) {
            (Some(k), Some(w)) if k.as_slice() != w => {
                return Err(OpError::attribute(
                    "kernel_shape",
                    format!("{k:?} does not match the weights' spatial shape {w:?}"),
                ))
            }
            (Some(k), _) => k.clone(),
            (None, Some(w)) => w.to_vec(),
            (None, None) => return Err(OpError::attribute("kernel_shape", "is required")),
        };
        if kernel.contains(&0) {
            return Err(OpError::invalid(format!("empty kernel {kernel:?}")));
        }
        Ok(kernel)
    }

    /// The forward (conv/pool) window over `input` spatial dims: output size and padding.
    /// `ceil_mode` (pooling) rounds the output size up, dropping windows that would start in
    /// the end padding.
    pub(super) fn resolve(
        &self,
        input: &[usize],
        kernel: &[usize],
        ceil_mode: bool,
    ) -> Result<Window, OpError> {
        let rank = input.len();
        if rank == 0 {
            return Err(OpError::invalid("expected at least one spatial dimension"));
        }
        if kernel.len() != rank {
            return Err(OpError::invalid(format!(
                "kernel shape {kernel:?} does not match {rank} spatial dims"
            )));
        }
        let AxisParams {
            strides,
            dilations,
            mut pads_begin,
            mut pads_end,
        } = self.per_axis(rank)?;
        let mut output = Vec::with_capacity(rank);
        for d in 0..rank {
            let (i, s) = (input[d], strides[d]);
            let extent = (kernel[d] - 1) * dilations[d] + 1;
            let o = match self.auto_pad {
                AutoPad::SameUpper | AutoPad::SameLower => {
                    let o = i.div_ceil(s);
                    let total = ((o.max(1) - 1) * s + extent).saturating_sub(i);
                    let small = total / 2;
                    (pads_begin[d], pads_end[d]) = if self.auto_pad == AutoPad::SameUpper {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                    o
                }
                AutoPad::Valid | AutoPad::NotSet => {
                    if self.auto_pad == AutoPad::Valid {
                        (pads_begin[d], pads_end[d]) = (0, 0);
                    }
                    let padded = i + pads_begin[d] + pads_end[d];
                    if padded < extent {
                        return Err(OpError::invalid(format!(
                            "window of extent {extent} is larger than padded input {padded} on spatial axis {d}"
                        )));
                    }
                    let span = padded - extent;
                    if ceil_mode && self.auto_pad == AutoPad::NotSet {
                        let mut o = span.div_ceil(s) + 1;
                        if (o - 1) * s >= i + pads_begin[d] {
                            o -= 1;
                        }
                        o
                    } else {
                        span / s + 1
                    }
                }
            };
            output.push(o);
        }
        Ok(Window {
            input: input.to_vec(),
            output,
            kernel: kernel.to_vec(),
            strides,
            dilations,
            pads_begin,
            pads_end,
        })
    }
}

/// A resolved sliding window over the spatial dims.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Window {
    pub(super) input: Vec<usize>,
    pub(super) output: Vec<usize>,
    pub(super) kernel: Vec<usize>,
    pub(super) strides: Vec<usize>,
    pub(super) dilations: Vec<usize>,
    pub(super) pads_begin: Vec<usize>,
    pub(super) pads_end: Vec<usize>,
}

impl Window {
    /// Output positions sweep, input plane sampled (conv, pooling).
    pub(super) fn forward(&self) -> Sampling {
        Sampling::new(&self.output, &self.input, self)
    }
}

/// How each kernel offset maps sweep positions to plane positions, per spatial dim:
/// `plane = sweep·stride + offset·dilation - pad_begin`. For Conv and pooling the sweep is the
/// output and the plane the input; for ConvTranspose it is the other way round.
///
/// For a kernel offset, [`Sampling::for_each_run`] yields the in-bounds positions as runs along
/// the last dim: contiguous in the sweep, `stride` apart in the plane. Kernels then process
/// whole runs (copy, max, add) instead of computing a multi-dim index per element.
pub(super) struct Sampling {
    sweep: Vec<usize>,
    plane: Vec<usize>,
    kernel: Vec<usize>,
    strides: Vec<usize>,
    sweep_strides: Vec<usize>,
    plane_strides: Vec<usize>,
    /// Every kernel offset's per-dim position, row-major, `rank` values each.
    offsets: Vec<usize>,
    /// For every kernel offset and dim (same layout): the sweep positions whose sample is inside
    /// the plane, and the plane position sampled at the first of them.
    valid: Vec<(Range<usize>, usize)>,
}

/// The sweep positions `o < sweep` whose sample `o·stride + shift - pad` lies in `0..plane`.
fn valid_range(
    shift: usize,
    pad: usize,
    stride: usize,
    plane: usize,
    sweep: usize,
) -> Range<usize> {
    let (s, shift) = (stride as i64, shift as i64 - pad as i64);
    let lo = if shift >= 0 { 0 } else { (-shift + s - 1) / s };
    let hi = (plane as i64 - shift).max(0);
    let hi = ((hi + s - 1) / s).min(sweep as i64);
    (lo.min(hi) as usize)..(hi as usize)
}

/// `len` positions: sweep `sweep..sweep+len`, plane `plane, plane+step, ...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Run {
    pub(super) sweep: usize,
    pub(super) plane: usize,
    pub(super) len: usize,
    pub(super) step: usize,
}

impl Sampling {
    pub(super) fn new(sweep: &[usize], plane: &[usize], w: &Window) -> Sampling {
        let rank = w.kernel.len();
        let mut offsets = Vec::with_capacity(shape_len(&w.kernel) * rank);
        for mut k in 0..shape_len(&w.kernel) {
            let start = offsets.len();
            offsets.resize(start + rank, 0);
            for d in (0..rank).rev() {
                offsets[start + d] = k % w.kernel[d];
                k /= w.kernel[d];
            }
        }
        let valid = offsets
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                let d = i % rank;
                let range = valid_range(
                    k * w.dilations[d],
                    w.pads_begin[d],
                    w.strides[d],
                    plane[d],
                    sweep[d],
                );
                let first = range.start * w.strides[d] + k * w.dilations[d];
                // Only meaningful (and only used) when the range is not empty.
                (range, first.saturating_sub(w.pads_begin[d]))
            })
            .collect();
        Sampling {
            sweep: sweep.to_vec(),
            plane: plane.to_vec(),
            kernel: w.kernel.clone(),
            strides: w.strides.clone(),
            sweep_strides: runnx_ir::strides_of(sweep).to_vec(),
            plane_strides: runnx_ir::strides_of(plane).to_vec(),
            offsets,
            valid,
        }
    }

    pub(super) fn kernel_len(&self) -> usize {
        shape_len(&self.kernel)
    }

    pub(super) fn sweep_len(&self) -> usize {
        shape_len(&self.sweep)
    }

    pub(super) fn plane_len(&self) -> usize {
        shape_len(&self.plane)
    }

    /// The per-dim kernel offset of flat kernel index `k` (row-major).
    pub(super) fn kernel_offset(&self, k: usize) -> &[usize] {
        let rank = self.kernel.len();
        &self.offsets[k * rank..][..rank]
    }

    /// Calls `f` with every in-bounds run of flat kernel offset `k` (see the type's docs).
    pub(super) fn for_each_run(&self, k: usize, f: &mut impl FnMut(Run)) {
        self.visit(k, 0, 0, 0, &(0..self.sweep_len()), f);
    }

    /// [`Sampling::for_each_run`] restricted to the sweep positions in `within` (flat indices).
    fn for_each_run_in(&self, k: usize, within: &Range<usize>, f: &mut impl FnMut(Run)) {
        self.visit(k, 0, 0, 0, within, f);
    }

    fn visit(
        &self,
        k: usize,
        d: usize,
        sweep_base: usize,
        plane_base: usize,
        within: &Range<usize>,
        f: &mut impl FnMut(Run),
    ) {
        let rank = self.sweep.len();
        let (range, first_plane) = &self.valid[k * rank + d];
        let s = self.strides[d];
        let plane_at = |o: usize| first_plane + (o - range.start) * s;
        if d + 1 == rank {
            let lo = (sweep_base + range.start).max(within.start);
            let hi = (sweep_base + range.end).min(within.end);
            if lo < hi {
                f(Run {
                    sweep: lo,
                    plane: plane_base + plane_at(lo - sweep_base),
                    len: hi - lo,
                    step: s,
                });
            }
            return;
        }
        let span = self.sweep_strides[d];
        // Skip straight to the first position whose span reaches `within` (a block late in the
        // sweep would otherwise walk every earlier row).
        let first = range
            .start
            .max(within.start.saturating_sub(sweep_base) / span.max(1));
        for o in first..range.end.max(first) {
            let start = sweep_base + o * span;
            if start + span <= within.start {
                continue;
            }
            if start >= within.end {
                break;
            }
            let plane = plane_base + plane_at(o) * self.plane_strides[d];
            self.visit(k, d + 1, start, plane, within, f);
        }
    }

    /// Columns `cols` of row `k` of the im2col matrix of one input plane: for each sweep
    /// position, the plane value kernel offset `k` samples there, or zero in the padding.
    fn gather_row<T: GemmScalar>(&self, plane: &[T], k: usize, cols: &Range<usize>, row: &mut [T]) {
        // Runs come in increasing sweep order: zero the gaps between them as we go.
        let mut filled = 0;
        self.for_each_run_in(k, cols, &mut |r| {
            let at = r.sweep - cols.start;
            row[filled..at].fill(T::ZERO);
            filled = at + r.len;
            let dst = &mut row[at..filled];
            if r.step == 1 {
                dst.copy_from_slice(&plane[r.plane..r.plane + r.len]);
            } else {
                dst.iter_mut()
                    .zip(plane[r.plane..].iter().step_by(r.step))
                    .for_each(|(d, &s)| *d = s);
            }
        });
        row[filled..].fill(T::ZERO);
    }

    /// Adds `weight ×` the plane values kernel offset `k` samples to `out` (one value per sweep
    /// position; padding contributes nothing).
    fn accumulate_row<T: GemmScalar>(&self, plane: &[T], k: usize, weight: T, out: &mut [T]) {
        self.for_each_run(k, &mut |r| {
            let dst = &mut out[r.sweep..r.sweep + r.len];
            if r.step == 1 {
                let src = &plane[r.plane..r.plane + r.len];
                dst.iter_mut()
                    .zip(src)
                    .for_each(|(d, &s)| *d = d.add(weight.mul(s)));
            } else {
                dst.iter_mut()
                    .zip(plane[r.plane..].iter().step_by(r.step))
                    .for_each(|(d, &s)| *d = d.add(weight.mul(s)));
            }
        });
    }

    /// The adjoint of [`Sampling::gather_row`]: adds `row` into the plane positions kernel
    /// offset `k` samples.
    fn scatter_add_row<T: GemmScalar>(&self, row: &[T], k: usize, plane: &mut [T]) {
        self.for_each_run(k, &mut |r| {
            let src = &row[r.sweep..r.sweep + r.len];
            for (s, d) in src.iter().zip(plane[r.plane..].iter_mut().step_by(r.step)) {
                *d = d.add(*s);
            }
        });
    }
}

/// The im2col matrix of one group's `channels` input planes, as a GEMM operand built block by
/// block: one row per (channel, kernel offset), one column per output position.
struct Im2Col<'a, T> {
    x: &'a [T],
    channels: usize,
    sampling: &'a Sampling,
    /// For 2-D convs: `x` zero-padded and phase-split, for [`Im2Col::fill_panels`]. Built
    /// before the GEMM: built by its first block, the other threads' blocks waited for it.
    padded: Option<PaddedInput<T>>,
}

impl<'a, T: GemmScalar> Im2Col<'a, T> {
    fn new(x: &'a [T], channels: usize, sampling: &'a Sampling, window: &Window) -> Self {
        Im2Col {
            x,
            channels,
            sampling,
            padded: PaddedInput::new(x, channels, window),
        }
    }
}

/// A 2-D conv input (one batch item and group) zero-padded and with its columns split by
/// phase ([`PaddedLayout`]): output row `oy` of kernel offset `k` then samples one contiguous
/// run at `taps[k] + oy·row_step` of a channel's padded plane, padding included.
struct PaddedInput<T> {
    data: Vec<T>,
    layout: PaddedLayout,
    /// Per flat kernel offset (ky, kx), where its sample of output (0, 0) lies in a plane.
    taps: Vec<usize>,
    /// How far the samples move from one output row to the next.
    row_step: usize,
    out_width: usize,
}

impl<T: GemmScalar> PaddedInput<T> {
    /// `None` unless the window is 2-D with a non-empty output.
    fn new(x: &[T], channels: usize, w: &Window) -> Option<PaddedInput<T>> {
        let two = |v: &[usize]| -> Option<[usize; 2]> { v.try_into().ok() };
        let ([oh, ow], [kh, kw]) = (two(&w.output)?, two(&w.kernel)?);
        let ([sy, sx], [dy, dx]) = (two(&w.strides)?, two(&w.dilations)?);
        if oh == 0 || ow == 0 || kh == 0 || kw == 0 {
            return None;
        }
        // Only what the samples reach: rows and columns past them are left out.
        let sampled = (ow - 1) * sx + (kw - 1) * dx + 1;
        let layout = PaddedLayout {
            rows: (oh - 1) * sy + (kh - 1) * dy + 1,
            stride: sx,
            phase_width: sampled.div_ceil(sx),
        };
        let mut data = T::output_buffer(channels * layout.plane_len());
        let (input, pads) = (two(&w.input)?, two(&w.pads_begin)?);
        let (in_plane, plane_len) = (input[0] * input[1], layout.plane_len());
        let per_task = PARALLEL_ELEMENTS.div_ceil(plane_len.max(1));
        if data.len() >= 2 * PARALLEL_ELEMENTS && per_task < channels {
            // In parallel by runs of channels (ResNet's 56x56 stride-2 conv: 64 planes of 3.3K).
            data.par_chunks_mut(per_task * plane_len)
                .enumerate()
                .for_each(|(i, planes)| {
                    let x = &x[(i * per_task * in_plane).min(x.len())..];
                    layout.fill(x, input, pads, T::ZERO, planes);
                });
        } else {
            layout.fill(x, input, pads, T::ZERO, &mut data);
        }
        let taps = (0..kh * kw)
            .map(|k| (k / kw) * dy * layout.row_len() + layout.position((k % kw) * dx))
            .collect();
        Some(PaddedInput {
            data,
            layout,
            taps,
            row_step: sy * layout.row_len(),
            out_width: ow,
        })
    }
}

/// `dst.copy_from_slice(src)` for the short runs of an im2col panel (a panel is 32 wide):
/// inline 8-element moves instead of a memcpy call per run, whose fixed cost was most of the
/// copy.
#[inline(always)]
fn copy_run<T: Copy>(dst: &mut [T], src: &[T]) {
    const CHUNK: usize = 8;
    let n = dst.len();
    assert_eq!(n, src.len());
    if n < CHUNK {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = v;
        }
        return;
    }
    let mut at = 0;
    while at + CHUNK <= n {
        dst[at..at + CHUNK].copy_from_slice(&src[at..at + CHUNK]);
        at += CHUNK;
    }
    if at < n {
        // The last whole chunk, overlapping what was already copied.
        dst[n - CHUNK..].copy_from_slice(&src[n - CHUNK..]);
    }
}

impl<T: GemmScalar> VirtualMatrix<T> for Im2Col<'_, T> {
    fn rows(&self) -> usize {
        self.channels * self.sampling.kernel_len()
    }

    fn cols(&self) -> usize {
        self.sampling.sweep_len()
    }

    fn fill(&self, rows: Range<usize>, cols: Range<usize>, out: &mut [T]) {
        let (kernel_len, plane_len) = (self.sampling.kernel_len(), self.sampling.plane_len());
        if cols.is_empty() {
            return;
        }
        for (r, row) in rows.zip(out.chunks_mut(cols.len())) {
            let plane = &self.x[(r / kernel_len) * plane_len..][..plane_len];
            self.sampling.gather_row(plane, r % kernel_len, &cols, row);
        }
    }

    /// 2-D only: each panel row is a few runs copied from the zero-padded, phase-split input
    /// ([`PaddedInput`]), one per output row the panel covers, written straight into the GEMM's
    /// panels. The copy costs one pass over the input; the runs then need no bounds checks
    /// (padding was 20% of a stride-2 conv's time, zeros and clamps computed per run).
    fn fill_panels(
        &self,
        rows: Range<usize>,
        cols: Range<usize>,
        width: usize,
        out: &mut [T],
    ) -> bool {
        let Some(padded) = &self.padded else {
            return false;
        };
        if width == 0 {
            return false;
        }
        let kernel_len = self.sampling.kernel_len();
        let (plane_len, out_width) = (padded.layout.plane_len(), padded.out_width);
        let kc = rows.len();
        // Each row's sample of output (0, 0).
        let bases: Vec<usize> = rows
            .map(|r| (r / kernel_len) * plane_len + padded.taps[r % kernel_len])
            .collect();
        // The runs of a panel are the same for all its rows, relative to the row's base:
        // (column in the panel, offset from the base, length).
        let mut runs = Vec::new();
        // Panel by panel, so that each panel's rows are written one after another (row by row
        // across all panels scattered the stores over the whole block: 2x slower on ResNet's
        // stem). The output position of the panel's first column is carried along.
        let (mut panel_y, mut panel_x) = (cols.start / out_width, cols.start % out_width);
        for (panel, first) in cols.clone().step_by(width).enumerate() {
            let end = (first + width).min(cols.end);
            runs.clear();
            let (mut oy, mut ox, mut j) = (panel_y, panel_x, first);
            while j < end {
                let len = (out_width - ox).min(end - j);
                runs.push((j - first, oy * padded.row_step + ox, len));
                (j, oy, ox) = (j + len, oy + 1, 0);
            }
            let panel_out = &mut out[panel * kc * width..][..kc * width];
            for (dst, &base) in panel_out.chunks_exact_mut(width).zip(&bases) {
                for &(at, from, len) in &runs {
                    copy_run(&mut dst[at..at + len], &padded.data[base + from..][..len]);
                }
                dst[end - first..].fill(T::ZERO);
            }
            // The next panel starts `width` columns on.
            panel_x += width;
            panel_y += panel_x / out_width;
            panel_x %= out_width;
        }
        true
    }
}

// ---------------------------------------------------------------------------------------------
// Conv

/// Checked dims of a conv: `x` is `[N, C, in...]`, `w` is `[M, C/group, k...]` (Conv) or
/// `[C, M/group, k...]` (ConvTranspose).
struct ConvDims {
    batch: usize,
    in_channels: usize,
    out_channels: usize,
    group: usize,
}

impl ConvDims {
    fn new(x: &[usize], w: &[usize], group: usize, transposed: bool) -> Result<ConvDims, OpError> {
        if x.len() < 3 {
            return Err(OpError::input(
                0,
                format!("expected [N, C, spatial...], got shape {x:?}"),
            ));
        }
        if w.len() != x.len() {
            return Err(OpError::input(
                1,
                format!("weights of shape {w:?} do not match input rank {}", x.len()),
            ));
        }
        let (in_channels, out_channels) = if transposed {
            (w[0], w[1] * group)
        } else {
            (w[1] * group, w[0])
        };
        if x[1] != in_channels {
            return Err(OpError::invalid(format!(
                "input has {} channels, weights {w:?} with group {group} expect {in_channels}",
                x[1]
            )));
        }
        if out_channels % group != 0 || in_channels % group != 0 {
            return Err(OpError::invalid(format!(
                "channels ({in_channels} in, {out_channels} out) are not divisible by group {group}"
            )));
        }
        Ok(ConvDims {
            batch: x[0],
            in_channels,
            out_channels,
            group,
        })
    }
}

fn parse_group(info: &NodeInfo) -> Result<usize, OpError> {
    positive_attr(info, "group")
}

/// A positive integer attribute defaulting to 1.
fn positive_attr(info: &NodeInfo, name: &str) -> Result<usize, OpError> {
    let value = info.attr_int(name, 1)?;
    usize::try_from(value)
        .ok()
        .filter(|&v| v >= 1)
        .ok_or_else(|| OpError::attribute(name, format!("must be >= 1, got {value}")))
}

/// What is applied to a conv's output while it is computed: `activation(Y + residual)`.
struct ConvPost<'a, T> {
    /// Elements in Y's layout (`[N, M, out...]`).
    residual: Option<&'a [T]>,
    activation: Activation<T>,
    /// A 2x2 stride-2 max pool follows the activation (there is then no residual). The
    /// algorithms that can apply it in the same pass (direct, Winograd) do and say so; the
    /// others leave it to the caller.
    pool_pairs: bool,
}

impl<T> ConvPost<'_, T> {
    fn none() -> Self {
        ConvPost {
            residual: None,
            activation: Activation::Identity,
            pool_pairs: false,
        }
    }
}

/// `Y = conv(X, W) + B` for `T` (f32, f64, or i32 for ConvInteger), then `post`; `x` is
/// `[N, C, in...]`, `w` `[M, C/group, k...]`, `bias` `[M]`. Returns `[N, M, out...]` in
/// row-major order.
/// `packed`, when given, is `w` packed per group ([`pack_filter`]).
fn conv_forward<T: GemmScalar>(
    x: &[T],
    w: &[T],
    packed: Option<&[T::PackedLhs]>,
    bias: Option<&[T]>,
    dims: &ConvDims,
    window: &Window,
    post: &ConvPost<'_, T>,
) -> Result<Vec<T>, OpError> {
    let sampling = window.forward();
    let (in_plane, out_plane, kernel_len) = (
        sampling.plane_len(),
        sampling.sweep_len(),
        sampling.kernel_len(),
    );
    let (cg, mg) = (
        dims.in_channels / dims.group,
        dims.out_channels / dims.group,
    );
    let k_dim = cg * kernel_len;
    let pointwise = kernel_len == 1
        && window.strides.iter().all(|&s| s == 1)
        && window
            .pads_begin
            .iter()
            .chain(&window.pads_end)
            .all(|&p| p == 0);
    // Written whole: by the depthwise sums or as a GEMM's write-only C.
    let mut y = T::output_buffer(dims.batch * dims.out_channels * out_plane);
    if y.is_empty() {
        return Ok(y);
    }
    let chunk = mg * out_plane;
    if post.residual.is_some_and(|z| z.len() != y.len()) {
        return Err(OpError::invalid(
            "conv: the residual does not have the output's size",
        ));
    }
    let task = |(task, y_g): (usize, &mut [T])| -> Result<(), OpError> {
        let (n, g) = (task / dims.group, task % dims.group);
        let x_g = &x[(n * dims.in_channels + g * cg) * in_plane..][..cg * in_plane];
        let w_g = MatRef::row_major(&w[g * mg * k_dim..][..mg * k_dim], mg, k_dim)?;
        let residual = post.residual.map(|z| &z[task * chunk..][..chunk]);
        let epilogue = Epilogue {
            bias: match bias {
                Some(b) => Bias::PerRow(&b[g * mg..][..mg]),
                None => Bias::None,
            },
            residual: residual.map(|data| Residual {
                data,
                row_stride: out_plane,
            }),
            activation: post.activation,
        };
        if cg == 1 && mg <= DEPTHWISE_MAX_OUTPUTS && !pointwise {
            // Depthwise: each output channel sums kernel_len shifted copies of one plane; an
            // im2col matrix and a one-row GEMM would cost more than the arithmetic. With many
            // outputs per input channel (a first conv on a 1-channel image) the GEMM wins.
            for (oc, out) in y_g.chunks_mut(out_plane).enumerate() {
                let m = g * mg + oc;
                out.fill(bias.map_or(T::ZERO, |b| b[m]));
                for k in 0..kernel_len {
                    sampling.accumulate_row(x_g, k, w[m * kernel_len + k], out);
                }
                if let Some(z) = residual {
                    for (v, &z) in out.iter_mut().zip(&z[oc * out_plane..][..out_plane]) {
                        *v = v.add(z);
                    }
                }
                apply_activation(post.activation, out);
            }
            return Ok(());
        }
        let out = MatMut::row_major(y_g, mg, out_plane)?;
        let w_g = match packed {
            Some(packed) => Lhs::Packed(&packed[g]),
            None => Lhs::Unpacked(w_g),
        };
        if pointwise {
            let x_g = MatRef::row_major(x_g, cg, in_plane)?;
            gemm(T::ONE, w_g, Rhs::Unpacked(x_g), T::ZERO, out, &epilogue)
        } else if kernel_len == 1 {
            // A strided or padded 1x1 conv (ResNet's downsamples): im2col is the input
            // subsampled, no larger than the input, so build it whole, once. Built by blocks,
            // each block would read a padded copy of the whole input (4x the samples at
            // stride 2), and at two threads that copy was built before either could start.
            let mut sub = T::output_buffer(cg * out_plane);
            let col = Im2Col {
                x: x_g,
                channels: cg,
                sampling: &sampling,
                padded: None,
            };
            col.fill(0..cg, 0..out_plane, &mut sub);
            let sub = MatRef::row_major(&sub, cg, out_plane)?;
            gemm(T::ONE, w_g, Rhs::Unpacked(sub), T::ZERO, out, &epilogue)
        } else {
            let col = Im2Col::new(x_g, cg, &sampling, window);
            gemm(T::ONE, w_g, Rhs::Virtual(&col), T::ZERO, out, &epilogue)
        }
    };
    if dims.batch * dims.group > 1 && y.len() * k_dim.max(1) >= PARALLEL_ELEMENTS {
        y.par_chunks_mut(chunk).enumerate().try_for_each(task)?;
    } else {
        y.chunks_mut(chunk).enumerate().try_for_each(task)?;
    }
    Ok(y)
}

/// ONNX `Conv`, opsets 1, 11 and 22 (bfloat16): N-D convolution with groups (depthwise
/// included), strides, dilations, explicit or automatic padding and an optional bias. float16
/// and bfloat16 compute in f32. A constant filter is converted to the compute type once, when
/// the session is built (where prepacking for the GEMM kernels will also happen).
struct Conv {
    window: WindowAttrs,
    group: usize,
    /// The filter in the compute type, when it is a constant.
    filter: Option<Tensor>,
    /// A constant f32 filter packed for the GEMM kernels, one matrix per group. Packed when the
    /// session is built, except for a Winograd filter, which needs it only on planes too small
    /// for Winograd: then on first use, so a ResNet does not hold and pack its 3x3 filters twice.
    packed: OnceLock<Option<Vec<<f32 as GemmScalar>::PackedLhs>>>,
    /// A constant f32 3x3 filter of a stride-1 undilated single-group conv, transformed for
    /// Winograd F(2x2, 3x3), used on output planes where that pays off.
    winograd: Option<Winograd3x3>,
    /// A constant f32 single-group filter `[M, C·k]` packed transposed, as the right operand of
    /// [`transposed_forward`]; packed on first use, since only small output planes need it.
    packed_transposed: OnceLock<Option<<f32 as GemmScalar>::PackedRhs>>,
    /// A constant f32 filter packed for [`direct_conv`], one per group; packed on first use,
    /// since the input's shape decides whether a conv goes that way.
    packed_direct: OnceLock<Option<Vec<Vec<f32>>>>,
}

impl Conv {
    fn new(info: &NodeInfo) -> Result<Conv, OpError> {
        let group = parse_group(info)?;
        let filter = prepare_filter(info.constant(1))?;
        let window = WindowAttrs::parse(info)?;
        let winograd = filter
            .as_ref()
            .filter(|_| group == 1 && window.suits_winograd())
            .and_then(winograd_filter);
        let packed = OnceLock::new();
        if winograd.is_none() {
            packed.get_or_init(|| filter.as_ref().and_then(|w| pack_filter(w, group)));
        }
        Ok(Conv {
            window,
            group,
            filter,
            packed,
            winograd,
            packed_transposed: OnceLock::new(),
            packed_direct: OnceLock::new(),
        })
    }
}

impl Conv {
    /// The packed constant f32 filter, packing it now if the session did not.
    fn packed_filter(&self) -> Option<&[<f32 as GemmScalar>::PackedLhs]> {
        self.packed
            .get_or_init(|| {
                self.filter
                    .as_ref()
                    .and_then(|w| pack_filter(w, self.group))
            })
            .as_deref()
    }
}

impl Conv {
    /// The constant f32 filter packed as `Wᵀ` (`[C·k, M]`), packing it now on first use; `None`
    /// for grouped convs and other types.
    fn transposed_filter(&self) -> Option<&<f32 as GemmScalar>::PackedRhs> {
        self.packed_transposed
            .get_or_init(|| {
                let w = self.filter.as_ref().filter(|_| self.group == 1)?;
                let data = w.as_slice::<f32>().ok()?;
                let (&m, rest) = w.shape().split_first()?;
                let k_dim: usize = rest.iter().product();
                if m == 0 || k_dim == 0 || data.len() != m * k_dim {
                    return None;
                }
                f32::pack_rhs(MatRef::new(data, k_dim, m, 1, k_dim).ok()?)
            })
            .as_ref()
    }
}

impl Conv {
    /// The constant f32 filter packed for [`direct_conv`], packing it now on first use.
    fn direct_filter(&self) -> Option<&[Vec<f32>]> {
        self.packed_direct
            .get_or_init(|| {
                let w = self.filter.as_ref()?;
                pack_direct_filter(w.as_slice::<f32>().ok()?, *w.shape().first()?, self.group)
            })
            .as_deref()
    }
}

/// An f32 filter `[M, C/group, k...]` (`m` = M) packed for [`direct_conv::conv2d`], one per
/// group.
fn pack_direct_filter(w: &[f32], m: usize, group: usize) -> Option<Vec<Vec<f32>>> {
    if m == 0 || group == 0 || !m.is_multiple_of(group) || !w.len().is_multiple_of(m) {
        return None;
    }
    let taps = w.len() / m;
    let mg = m / group;
    Some(
        w.chunks_exact(mg * taps)
            .map(|w_g| direct_conv::pack_filter(w_g, mg, taps))
            .collect(),
    )
}

/// The micro-kernel work of [`transposed_forward`] (`Yᵀ = im2colᵀ·Wᵀ` over the whole batch) as a
/// fraction of per-item im2col's (`Y = W·im2col` per batch item), when it applies: one group, a
/// whole im2col matrix of at most [`TRANSPOSED_MAX_IM2COL`] elements. Per item, an output plane
/// narrower than a tile is padded to whole tile widths (ResNet-18's 7x7 planes fill 49 of 64
/// columns, MNIST's 3x3 planes 9 of 32); transposed, the batch's planes are stacked into rows,
/// where a short last tile costs only its rows, and the channels fill the columns.
fn transposed_work_ratio(dims: &ConvDims, window: &Window) -> Option<f64> {
    let kernel = runnx_sgemm::kernel();
    let (mr, nr) = (kernel.mr, kernel.nr);
    let out_plane = shape_len(&window.output);
    let positions = dims.batch * out_plane;
    let im2col = dims.in_channels * shape_len(&window.kernel) * positions;
    // u32 plane indices in the gather.
    if dims.group != 1
        || im2col > TRANSPOSED_MAX_IM2COL
        || shape_len(&window.input) >= u32::MAX as usize
    {
        return None;
    }
    let per_item = dims.batch * out_plane.div_ceil(nr) * tile_rows_work(dims.out_channels, mr);
    let transposed = dims.out_channels.div_ceil(nr) * tile_rows_work(positions, mr);
    Some(transposed as f64 / per_item.max(1) as f64)
}

/// The work of `rows` rows of micro-kernel tiles `mr` high, in rows: a tile of fewer than four
/// rows waits on the FMA latency rather than the FMA units, so it costs as much as four rows.
fn tile_rows_work(rows: usize, mr: usize) -> usize {
    let rest = rows % mr;
    rows - rest + if rest > 0 { rest.max(4) } else { 0 }
}

/// Below this [`transposed_work_ratio`] the transposed form beats Winograd too, which pads tiny
/// planes to whole tiles as well (MNIST's 3x3 output, ratio 0.28: 15 -> 14 µs at batch 1, 110 ->
/// 95 µs at batch 8).
const TRANSPOSED_OVER_WINOGRAD: f64 = 0.5;

/// Below this [`transposed_work_ratio`] the transposed form beats per-item im2col. Measured on
/// ResNet-18's convs at batch 1, one thread: the 7x7-plane ones (ratio 0.81) 3.3 -> 2.5 ms (3x3)
/// and 1.63 -> 1.25 ms (3x3 stride 2), the 14x14 stride-2 one (0.875) 1.42 -> 1.22 ms; on 28x28
/// planes (0.98) it lost, 1.60 -> 1.68 ms.
const TRANSPOSED_OVER_IM2COL: f64 = 0.9;

/// The largest im2col matrix (elements) the transposed form builds whole; past it the per-item
/// form, which builds im2col a cache-sized block at a time, wins (ResNet's 14x14 stride-2 conv
/// at batch 8, 1.8M elements: 11.2 vs 10.7 ms at one thread, 5.9 vs 6.4 at two).
const TRANSPOSED_MAX_IM2COL: usize = 1 << 20;

/// Conv as one GEMM over the whole batch, `Yᵀ = im2colᵀ·Wᵀ`: a row per (batch item, output
/// position), a column per output channel, against the filter packed transposed once
/// (`filter_t`, `[C·k, M]`). The im2col matrix `[C·k, N·out]` is built whole and read as its
/// transpose (its columns are the GEMM's rows, which the kernel packs with plain copies); the
/// product is then transposed back to `[N, M, out...]` with the residual and activation.
fn transposed_forward(
    x: &[f32],
    filter_t: &<f32 as GemmScalar>::PackedRhs,
    bias: Option<&[f32]>,
    dims: &ConvDims,
    window: &Window,
    post: &ConvPost<'_, f32>,
) -> Result<Vec<f32>, OpError> {
    let sampling = window.forward();
    let (in_plane, out_plane, kernel_len) = (
        sampling.plane_len(),
        sampling.sweep_len(),
        sampling.kernel_len(),
    );
    let (channels, outputs) = (dims.in_channels, dims.out_channels);
    let k_dim = channels * kernel_len;
    let positions = dims.batch * out_plane;
    // All three buffers are written whole (im2col, GEMM output, transpose).
    let mut y = f32_buffer(positions * outputs);
    if y.is_empty() {
        return Ok(y);
    }
    if post.residual.is_some_and(|z| z.len() != y.len()) {
        return Err(OpError::invalid(
            "conv: the residual does not have the output's size",
        ));
    }
    // Where each (kernel offset, output position) samples a plane, as an index into the plane
    // with a zero appended (`in_plane` in the padding): building a row is then a plain gather,
    // without the per-run bookkeeping that dominated on planes of a few values.
    let mut indices = vec![in_plane as u32; kernel_len * out_plane];
    for (k, row) in indices.chunks_exact_mut(out_plane).enumerate() {
        sampling.for_each_run(k, &mut |r| {
            for (i, s) in row[r.sweep..r.sweep + r.len].iter_mut().enumerate() {
                *s = (r.plane + i * r.step) as u32;
            }
        });
    }
    let sources = GatherSources::new(indices, out_plane);
    let mut col = f32_buffer(k_dim * positions);
    let fill_channel = |(channel, rows): (usize, &mut [f32])| {
        let mut plane = vec![0f32; in_plane + 1];
        for n in 0..dims.batch {
            plane[..in_plane]
                .copy_from_slice(&x[(n * channels + channel) * in_plane..][..in_plane]);
            gather_rows(&plane, &sources, &mut rows[n * out_plane..], positions);
        }
    };
    if col.len() >= PARALLEL_ELEMENTS {
        col.par_chunks_mut(kernel_len * positions)
            .enumerate()
            .for_each(fill_channel);
    } else {
        col.chunks_mut(kernel_len * positions)
            .enumerate()
            .for_each(fill_channel);
    }
    let im2col_t = MatRef::new(&col, positions, k_dim, 1, positions)?;
    let mut z = f32_buffer(positions * outputs);
    // With a residual the activation must wait for it, after the transpose.
    let epilogue = Epilogue {
        bias: bias.map_or(Bias::None, Bias::PerColumn),
        residual: None,
        activation: match post.residual {
            Some(_) => Activation::Identity,
            None => post.activation,
        },
    };
    gemm(
        1.0,
        Lhs::Unpacked(im2col_t),
        Rhs::Packed(filter_t),
        0.0,
        MatMut::row_major(&mut z, positions, outputs)?,
        &epilogue,
    )?;
    recycle(col);
    let item = outputs * out_plane;
    for (n, y_n) in y.chunks_exact_mut(item).enumerate() {
        let z_n = &z[n * item..][..item];
        for (channel, y_c) in y_n.chunks_exact_mut(out_plane).enumerate() {
            for (p, v) in y_c.iter_mut().enumerate() {
                *v = z_n[p * outputs + channel];
            }
        }
        if let Some(residual) = post.residual {
            for (v, &r) in y_n.iter_mut().zip(&residual[n * item..][..item]) {
                *v += r;
            }
            apply_activation(post.activation, y_n);
        }
    }
    recycle(z);
    Ok(y)
}

/// Rows of plane indices to gather, with their largest index checked once.
struct GatherSources {
    indices: Vec<u32>,
    row_len: usize,
    largest: usize,
}

impl GatherSources {
    fn new(indices: Vec<u32>, row_len: usize) -> GatherSources {
        let largest = indices.iter().fold(0, |m, &i| m.max(i)) as usize;
        GatherSources {
            indices,
            row_len,
            largest,
        }
    }
}

/// Row `k` of `sources` gathered from `values` into `out[k·row_stride..][..row_len]`, every row
/// in one call: MNIST's 3x3-output conv gathers rows of 9, and one call (dispatch and index
/// check) per row took 29% of the conv at batch 8. Scalar on purpose: a vector gather's latency
/// stalls the store after it, and rows of a few values give it nothing to overlap with.
fn gather_rows(values: &[f32], sources: &GatherSources, out: &mut [f32], row_stride: usize) {
    let row_len = sources.row_len;
    if row_len == 0 {
        return;
    }
    assert!(
        sources.indices.is_empty() || sources.largest < values.len(),
        "gather: index out of range"
    );
    for (k, from) in sources.indices.chunks_exact(row_len).enumerate() {
        let row = &mut out[k * row_stride..][..row_len];
        for (o, &i) in row.iter_mut().zip(from) {
            // SAFETY: every index is at most `largest`, below values.len() (asserted above).
            *o = unsafe { *values.get_unchecked(i as usize) };
        }
    }
}

/// An f32 filter `[M, C/group, k...]` packed as `group` GEMM left operands `[M/group, C/group·k]`;
/// `None` for other types, a depthwise filter (which does not use GEMM) or a malformed shape
/// (reported when the node runs).
fn pack_filter(w: &Tensor, group: usize) -> Option<Vec<<f32 as GemmScalar>::PackedLhs>> {
    let data = w.as_slice::<f32>().ok()?;
    let (&m, rest) = w.shape().split_first()?;
    let k_dim: usize = rest.iter().product();
    if group == 0 || m % group != 0 || data.len() != m * k_dim || k_dim == 0 {
        return None;
    }
    let mg = m / group;
    if rest.first() == Some(&1) && mg <= DEPTHWISE_MAX_OUTPUTS {
        return None;
    }
    (0..group)
        .map(|g| {
            let w_g = MatRef::row_major(&data[g * mg * k_dim..][..mg * k_dim], mg, k_dim).ok()?;
            f32::pack_lhs(w_g)
        })
        .collect()
}

/// A `[M, C, 3, 3]` f32 filter transformed for Winograd F(2x2, 3x3); `None` for any other shape
/// or type, or for so few channels that the GEMMs would be slivers.
fn winograd_filter(w: &Tensor) -> Option<Winograd3x3> {
    let &[m, c, 3, 3] = w.shape() else {
        return None;
    };
    if c < WINOGRAD_MIN_CHANNELS || m < WINOGRAD_MIN_CHANNELS {
        return None;
    }
    Winograd3x3::new(w.as_slice::<f32>().ok()?, m, c)
}

/// A constant filter converted to the type the op computes in (f32 for float16/bfloat16).
fn prepare_filter(w: Option<&Tensor>) -> Result<Option<Tensor>, OpError> {
    let Some(w) = w else { return Ok(None) };
    Ok(Some(match FloatKind::of(w.dtype(), 1)? {
        FloatKind::F32 if w.dtype() != DataType::Float => {
            f32::to_tensor(f32::read(w, 1)?.into_owned(), DataType::Float, w.shape())?
        }
        _ => w.clone(),
    }))
}

fn build_conv(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(Conv::new(info)?))
}

impl Conv {
    /// `activation(conv(x, w) + b + z)`, then the max pool `pool` when given; `z` (FusedConv's
    /// residual) is added in the GEMM's epilogue when it has the output's shape, and broadcast
    /// afterwards when not.
    #[allow(clippy::too_many_arguments)]
    fn run_as<R: Real>(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        z: Option<&Tensor>,
        activation: FusedActivation,
        pool: Option<[usize; 2]>,
        forward: &ConvForward<'_, R>,
    ) -> Result<Tensor, OpError> {
        let dims = ConvDims::new(x.shape(), w.shape(), self.group, false)?;
        let kernel = self.window.kernel(Some(&w.shape()[2..]))?;
        let window = self.window.resolve(&x.shape()[2..], &kernel, false)?;
        let bias = b.map(|b| R::read(b, 2)).transpose()?;
        if let Some(bias) = &bias {
            if bias.len() != dims.out_channels {
                return Err(OpError::input(
                    2,
                    format!(
                        "{} biases for {} output channels",
                        bias.len(),
                        dims.out_channels
                    ),
                ));
            }
        }
        let mut shape = vec![dims.batch, dims.out_channels];
        shape.extend_from_slice(&window.output);
        let residual = z.map(|z| R::read(z, 3)).transpose()?;
        let fits = z.is_some_and(|z| z.shape() == shape.as_slice());
        let in_epilogue = activation.in_epilogue::<R>();
        if pool.is_some() && (z.is_some() || shape.len() != 4) {
            return Err(OpError::invalid(
                "a pooled conv takes no residual and has two spatial axes",
            ));
        }
        let post = ConvPost {
            residual: residual.as_deref().filter(|_| fits),
            activation: match in_epilogue {
                Some(a) if fits || z.is_none() => a,
                _ => Activation::Identity,
            },
            // Only an activation applied in the same pass can come before an in-pass pool.
            pool_pairs: pool == Some([2, 2]) && in_epilogue.is_some(),
        };
        let filter = self.filter.as_ref().unwrap_or(w);
        let (mut y, pooled) = forward(
            &R::read(x, 0)?,
            &R::read(filter, 1)?,
            bias.as_deref(),
            &dims,
            &window,
            &post,
        )?;
        if let (Some(z), Some(residual)) = (z.filter(|_| !fits), &residual) {
            let (out_shape, sum) =
                crate::kernels::broadcast::binary_map(&y, &shape, residual, z.shape(), |a, b| {
                    *a + *b
                })?;
            (y, shape) = (sum, out_shape.to_vec());
        }
        if post.activation == Activation::Identity && !pooled {
            activation.apply(&mut y);
        }
        if let Some(pool) = pool {
            let pooled_shape = [shape[0], shape[1], shape[2] / pool[0], shape[3] / pool[1]];
            if !pooled {
                y = max_pool_windows(&y, [shape[2], shape[3]], pool);
            }
            shape = pooled_shape.to_vec();
        }
        R::to_tensor(y, x.dtype(), &shape)
    }
}

/// MaxPool over the non-overlapping `pool` windows of each `[h, w]` plane of `y` (kernel =
/// strides, no padding, floor mode: a last partial window is dropped). As in MaxPool, a NaN
/// never wins.
fn max_pool_windows<R: Real>(y: &[R], [h, w]: [usize; 2], pool: [usize; 2]) -> Vec<R> {
    let (ph, pw) = (h / pool[0], w / pool[1]);
    let planes = y.len() / (h * w).max(1);
    let mut out = vec![R::neg_infinity(); planes * ph * pw];
    if out.is_empty() {
        return out;
    }
    for (plane, pooled) in y.chunks_exact(h * w).zip(out.chunks_exact_mut(ph * pw)) {
        for (row, values) in plane.chunks_exact(w).take(ph * pool[0]).enumerate() {
            let pooled_row = &mut pooled[row / pool[0] * pw..][..pw];
            for (best, window) in pooled_row.iter_mut().zip(values.chunks_exact(pool[1])) {
                for &v in window {
                    if v > *best {
                        *best = v;
                    }
                }
            }
        }
    }
    out
}

impl Kernel for Conv {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        run_conv(self, &inputs, None, FusedActivation::Identity, None)
    }
}

fn run_conv(
    conv: &Conv,
    inputs: &Inputs,
    z: Option<&Tensor>,
    activation: FusedActivation,
    pool: Option<[usize; 2]>,
) -> Result<Vec<Value>, OpError> {
    let (x, w, b) = (inputs.tensor(0)?, inputs.tensor(1)?, inputs.opt_tensor(2)?);
    for (index, t) in [(1, Some(w)), (3, z)] {
        if let Some(t) = t.filter(|t| t.dtype() != x.dtype()) {
            return Err(OpError::input(
                index,
                format!("expected {}, got {}", x.dtype(), t.dtype()),
            ));
        }
    }
    let y = match FloatKind::of(x.dtype(), 0)? {
        FloatKind::F32 => {
            let forward: &ConvForward<'_, f32> = &|x, w, bias, dims, window, post| {
                if let Some(geometry) = direct_geometry(dims, window) {
                    let packed;
                    let filter = match conv.direct_filter() {
                        Some(filter) => filter,
                        None => {
                            packed = pack_direct_filter(w, dims.out_channels, dims.group)
                                .ok_or_else(|| OpError::invalid("conv: malformed filter"))?;
                            &packed
                        }
                    };
                    return direct_forward(x, filter, bias, dims, &geometry, post)
                        .map(|y| (y, post.pool_pairs));
                }
                let transposed = transposed_work_ratio(dims, window);
                let transposed_below = |limit: f64| {
                    transposed
                        .filter(|&ratio| ratio < limit)
                        .and_then(|_| conv.transposed_filter())
                };
                let unpooled = |y: Vec<f32>| (y, false);
                if let Some(filter_t) = transposed_below(TRANSPOSED_OVER_WINOGRAD) {
                    return transposed_forward(x, filter_t, bias, dims, window, post).map(unpooled);
                }
                if let Some(wg) = conv.winograd.as_ref() {
                    if winograd_fits(wg, dims, window) {
                        let y = winograd_forward(wg, x, bias, dims, window, post);
                        return Ok((y, post.pool_pairs));
                    }
                }
                if let Some(filter_t) = transposed_below(TRANSPOSED_OVER_IM2COL) {
                    return transposed_forward(x, filter_t, bias, dims, window, post).map(unpooled);
                }
                conv_forward(x, w, conv.packed_filter(), bias, dims, window, post).map(unpooled)
            };
            conv.run_as::<f32>(x, w, b, z, activation, pool, forward)?
        }
        FloatKind::F64 => {
            let forward: &ConvForward<'_, f64> = &|x, w, bias, d, win, p| {
                conv_forward(x, w, None, bias, d, win, p).map(|y| (y, false))
            };
            conv.run_as::<f64>(x, w, b, z, activation, pool, forward)?
        }
    };
    Ok(vec![y.into()])
}

/// The geometry for [`direct_conv`] when a 2-D conv suits it: few taps per output or few input
/// channels, and at least a register block of output channels per group (fewer go the
/// depthwise way in [`conv_forward`]).
fn direct_geometry(dims: &ConvDims, window: &Window) -> Option<direct_conv::Geometry> {
    let channels = dims.in_channels / dims.group;
    let outputs = dims.out_channels / dims.group;
    let two = |v: &[usize]| -> Option<[usize; 2]> { v.try_into().ok() };
    let geometry = direct_conv::Geometry {
        channels,
        input: two(&window.input)?,
        output: two(&window.output)?,
        kernel: two(&window.kernel)?,
        strides: two(&window.strides)?,
        dilations: two(&window.dilations)?,
        pads_begin: two(&window.pads_begin)?,
    };
    let fits = direct_conv::available()
        && (geometry.taps() <= DIRECT_MAX_TAPS || channels <= DIRECT_MAX_CHANNELS)
        && outputs >= DIRECT_MIN_OUTPUTS
        && geometry.output.iter().all(|&d| d > 0);
    fits.then_some(geometry)
}

/// The fewest output channels per group [`direct_conv`] takes: one register block.
const DIRECT_MIN_OUTPUTS: usize = direct_conv::CHANNEL_BLOCK;

/// Convs with at most this many taps (channels x kernel) go the direct way: im2col's packing
/// and epilogue pass cost more than the short reduction (MNIST's 9-tap first conv: 14 -> 8-10
/// µs at batch 1).
const DIRECT_MAX_TAPS: usize = 32;

/// Convs with at most this many input channels per group (a first conv on an image) go the
/// direct way whatever the kernel: each im2col element would serve only the few dozen output
/// channels, so building it costs as much as the products (ResNet-18's 7x7 stride-2 stem, 147
/// taps: 2.5-2.9 -> 1.8-2.0 ms at one thread). With more channels the padded input outgrows L1
/// and the direct kernel loses to im2col + GEMM (ResNet's 3x3 convs: 1.5-2x slower).
const DIRECT_MAX_CHANNELS: usize = 4;

/// Conv by [`direct_conv::conv2d`], one task per (batch item, group); pooled when
/// `post.pool_pairs`.
fn direct_forward(
    x: &[f32],
    packed: &[Vec<f32>],
    bias: Option<&[f32]>,
    dims: &ConvDims,
    geometry: &direct_conv::Geometry,
    post: &ConvPost<'_, f32>,
) -> Result<Vec<f32>, OpError> {
    let (cg, mg) = (
        dims.in_channels / dims.group,
        dims.out_channels / dims.group,
    );
    let taps = geometry.taps();
    let in_plane = geometry.input[0] * geometry.input[1];
    let out_plane = if post.pool_pairs {
        (geometry.output[0] / 2) * (geometry.output[1] / 2)
    } else {
        geometry.output[0] * geometry.output[1]
    };
    let chunk = mg * out_plane;
    // Written whole by the direct kernel.
    let mut y = f32_buffer(dims.batch * dims.out_channels * out_plane);
    if post.residual.is_some_and(|z| z.len() != y.len()) {
        return Err(OpError::invalid(
            "conv: the residual does not have the output's size",
        ));
    }
    let worth_threads = y.len() * taps >= PARALLEL_ELEMENTS;
    // One task per (batch item, group); a single one splits its output channels instead.
    let tasks = dims.batch * dims.group;
    let task = |(task, y_g): (usize, &mut [f32])| {
        let (n, g) = (task / dims.group, task % dims.group);
        let x_g = &x[(n * dims.in_channels + g * cg) * in_plane..][..cg * in_plane];
        let residual = post.residual.map(|z| &z[task * chunk..][..chunk]);
        let bias = bias.map(|b| &b[g * mg..][..mg]);
        direct_conv::conv2d(
            x_g,
            &packed[g],
            bias,
            geometry,
            residual,
            post.activation,
            post.pool_pairs,
            y_g,
            worth_threads && tasks == 1,
        );
    };
    if tasks > 1 && worth_threads {
        y.par_chunks_mut(chunk).enumerate().for_each(task);
    } else {
        y.chunks_mut(chunk).enumerate().for_each(task);
    }
    Ok(y)
}

/// The algorithm behind [`Conv::run_as`]: `(x, filter, bias, dims, window, post) -> (y,
/// pooled)`, where `pooled` says the 2x2 pool `post.pool_pairs` asked for is applied.
type ConvForward<'a, R> = dyn Fn(
        &[R],
        &[R],
        Option<&[R]>,
        &ConvDims,
        &Window,
        &ConvPost<'_, R>,
    ) -> Result<(Vec<R>, bool), OpError>
    + 'a;

/// Below this many tiles in a run (batch times tiles per plane), a Winograd filter larger than
/// [`WINOGRAD_CACHED_FILTER`] loses to im2col: each of its 16/9 as many weights serves too few
/// tiles to pay for being read from memory. ResNet-18's 512-channel 7x7 convs (16 tiles, 16.8
/// MB filters) took 2.6 ms with Winograd and 2.2 ms with im2col at batch 1; at batch 8 (128
/// tiles) Winograd won, 13.3 against 16.0 ms, as on its 14x14 planes (49 tiles) at batch 1.
const WINOGRAD_MIN_TILES: usize = 32;

/// Winograd filters up to this size (bytes) stay in cache between runs, whatever the tiles.
const WINOGRAD_CACHED_FILTER: usize = 1 << 20;

/// Whether this run's geometry is the one `wg` was built for and its plane large enough.
fn winograd_fits(wg: &Winograd3x3, dims: &ConvDims, window: &Window) -> bool {
    let tiles = dims.batch * window.output[0].div_ceil(2) * window.output[1].div_ceil(2);
    dims.group == 1
        && dims.in_channels == wg.channels()
        && dims.out_channels == wg.outputs()
        && window.kernel == [3, 3]
        && window.strides == [1, 1]
        && window.dilations == [1, 1]
        && Winograd3x3::pays_off(window.output[0], window.output[1])
        && (tiles >= WINOGRAD_MIN_TILES || wg.filter_bytes() <= WINOGRAD_CACHED_FILTER)
}

fn winograd_forward(
    wg: &Winograd3x3,
    x: &[f32],
    bias: Option<&[f32]>,
    dims: &ConvDims,
    window: &Window,
    post: &ConvPost<'_, f32>,
) -> Vec<f32> {
    let geometry = winograd::Geometry {
        batch: dims.batch,
        in_height: window.input[0],
        in_width: window.input[1],
        out_height: window.output[0],
        out_width: window.output[1],
        pad_top: window.pads_begin[0],
        pad_left: window.pads_begin[1],
        pooled: post.pool_pairs,
    };
    let post = winograd::Post {
        bias,
        residual: post.residual,
        activation: post.activation,
    };
    wg.forward(x, &geometry, &post)
}

// ---------------------------------------------------------------------------------------------
// FusedConv (com.microsoft)

/// The `activation` of onnxruntime's FusedConv, with its `activation_params`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum FusedActivation {
    Identity,
    Relu,
    LeakyRelu { alpha: f32 },
    Clip { min: f32, max: f32 },
    Sigmoid,
    Tanh,
    HardSigmoid { alpha: f32, beta: f32 },
}

impl FusedActivation {
    fn parse(info: &NodeInfo) -> Result<FusedActivation, OpError> {
        let Some(name) = info.attr_string_opt("activation")? else {
            return Ok(FusedActivation::Identity);
        };
        let params = info
            .attr_floats_opt("activation_params")?
            .unwrap_or_default();
        let param = |i: usize| {
            params.get(i).copied().ok_or_else(|| {
                OpError::attribute(
                    "activation_params",
                    format!("{name} needs {} parameter(s), got {}", i + 1, params.len()),
                )
            })
        };
        Ok(match name.as_str() {
            "Relu" => FusedActivation::Relu,
            "LeakyRelu" => FusedActivation::LeakyRelu { alpha: param(0)? },
            "Clip" => FusedActivation::Clip {
                min: param(0)?,
                max: param(1)?,
            },
            "Sigmoid" => FusedActivation::Sigmoid,
            "Tanh" => FusedActivation::Tanh,
            "HardSigmoid" => FusedActivation::HardSigmoid {
                alpha: param(0)?,
                beta: param(1)?,
            },
            other => {
                return Err(OpError::attribute(
                    "activation",
                    format!("unsupported activation '{other}'"),
                ))
            }
        })
    }

    /// The same function as a GEMM epilogue activation, when there is one.
    fn in_epilogue<R: Real>(self) -> Option<Activation<R>> {
        match self {
            FusedActivation::Identity => Some(Activation::Identity),
            FusedActivation::Relu => Some(Activation::Relu),
            FusedActivation::LeakyRelu { alpha } => Some(Activation::LeakyRelu {
                alpha: R::of(alpha),
            }),
            FusedActivation::Clip { min, max } => Some(Activation::Clip {
                min: R::of(min),
                max: R::of(max),
            }),
            _ => None,
        }
    }

    fn apply<R: Real>(self, values: &mut [R]) {
        if let Some(a) = self.in_epilogue::<R>() {
            apply_activation(a, values);
            return;
        }
        let one = R::one();
        match self {
            FusedActivation::Sigmoid => values
                .iter_mut()
                .for_each(|v| *v = one / (one + (-*v).exp())),
            FusedActivation::Tanh => values.iter_mut().for_each(|v| *v = v.tanh()),
            FusedActivation::HardSigmoid { alpha, beta } => {
                let (alpha, beta) = (R::of(alpha), R::of(beta));
                values
                    .iter_mut()
                    .for_each(|v| *v = (alpha * *v + beta).max(R::zero()).min(one));
            }
            _ => unreachable!("handled by in_epilogue"),
        }
    }
}

/// onnxruntime's `com.microsoft.FusedConv`: `Y = activation(Conv(X, W, B) + Z)`, what the
/// graph optimizer makes of a Conv followed by a residual Add and/or an activation.
struct FusedConv {
    conv: Conv,
    activation: FusedActivation,
}

fn build_fused_conv(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(FusedConv {
        conv: Conv::new(info)?,
        activation: FusedActivation::parse(info)?,
    }))
}

impl Kernel for FusedConv {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let z = inputs.opt_tensor(3)?;
        run_conv(&self.conv, &inputs, z, self.activation, None)
    }
}

/// runnx's `FusedConvMaxPool`: FusedConv's `activation(Conv(X, W, B))` (no residual), then
/// MaxPool over non-overlapping `pool_shape` windows of the two spatial axes (kernel =
/// strides, no padding, floor mode). The session's optimizer makes it of a Conv or FusedConv
/// followed by such a MaxPool. A 2x2 pool after the direct or Winograd conv is applied in
/// the conv's own pass (only the conv outputs the pool reads are computed, and they never
/// reach memory); elsewhere the pool runs after the conv.
struct FusedConvMaxPool {
    conv: Conv,
    activation: FusedActivation,
    pool: [usize; 2],
}

fn build_fused_conv_max_pool(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let pool = info
        .attr_ints_opt("pool_shape")?
        .ok_or_else(|| OpError::attribute("pool_shape", "is required"))?;
    let pool = match pool[..] {
        [h, w] if h >= 1 && w >= 1 => [h as usize, w as usize],
        _ => {
            return Err(OpError::attribute(
                "pool_shape",
                format!("must be two positive sizes, got {pool:?}"),
            ))
        }
    };
    Ok(Box::new(FusedConvMaxPool {
        conv: Conv::new(info)?,
        activation: FusedActivation::parse(info)?,
        pool,
    }))
}

impl Kernel for FusedConvMaxPool {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        run_conv(&self.conv, &inputs, None, self.activation, Some(self.pool))
    }
}

// ---------------------------------------------------------------------------------------------
// DeformConv

/// The most spatial dims DeformConv supports (its interpolation keeps per-dim state on the
/// stack).
const DEFORM_MAX_RANK: usize = 4;

/// ONNX `DeformConv`, opsets 19 and 22 (bfloat16): Conv whose kernel samples the input at
/// positions moved by learned, per-output-position `offset`s (multilinear interpolation, zero
/// outside the input, as GridSample with `align_corners=1`), each sample weighted by the
/// optional `mask`. Input channels share offsets in `offset_group` groups. Lowered to GEMM
/// over a deformed im2col matrix, per (batch item, group).
struct DeformConv {
    window: WindowAttrs,
    group: usize,
    offset_group: usize,
}

fn build_deform_conv(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(DeformConv {
        window: WindowAttrs::parse(info)?,
        group: parse_group(info)?,
        offset_group: positive_attr(info, "offset_group")?,
    }))
}

/// Multilinear interpolation of `plane` (dims `dims`, row-major `strides`) at `pos`; corners
/// outside the plane count as zero.
fn interpolate<R: Real>(plane: &[R], dims: &[usize], strides: &[usize], pos: &[R]) -> R {
    let rank = dims.len();
    let mut floor = [0i64; DEFORM_MAX_RANK];
    let mut frac = [R::zero(); DEFORM_MAX_RANK];
    for d in 0..rank {
        let p = pos[d];
        if !(p > -R::one() && p < R::from_usize(dims[d]).unwrap_or_else(R::nan)) {
            return R::zero();
        }
        let f = p.floor();
        floor[d] = f.to_i64().unwrap_or(-1);
        frac[d] = p - f;
    }
    let mut sum = R::zero();
    for corner in 0..1usize << rank {
        let (mut weight, mut index, mut inside) = (R::one(), 0, true);
        for d in 0..rank {
            let up = corner >> d & 1 == 1;
            let i = floor[d] + i64::from(up);
            inside &= i >= 0 && (i as usize) < dims[d];
            weight = weight * if up { frac[d] } else { R::one() - frac[d] };
            index += i.max(0) as usize * strides[d];
        }
        if inside {
            sum = sum + weight * plane[index];
        }
    }
    sum
}

impl DeformConv {
    fn run_as<R: Real>(&self, inputs: &Inputs) -> Result<Tensor, OpError> {
        let (xt, wt, offset_t) = (inputs.tensor(0)?, inputs.tensor(1)?, inputs.tensor(2)?);
        let dims = ConvDims::new(xt.shape(), wt.shape(), self.group, false)?;
        let kernel = self.window.kernel(Some(&wt.shape()[2..]))?;
        let window = self.window.resolve(&xt.shape()[2..], &kernel, false)?;
        let rank = kernel.len();
        if rank > DEFORM_MAX_RANK {
            return Err(OpError::unsupported(format!(
                "DeformConv supports up to {DEFORM_MAX_RANK} spatial dims, got {rank}"
            )));
        }
        if dims.in_channels % self.offset_group != 0 {
            return Err(OpError::attribute(
                "offset_group",
                format!(
                    "{} does not divide {} channels",
                    self.offset_group, dims.in_channels
                ),
            ));
        }
        let kernel_len = shape_len(&kernel);
        let mut per_sample = vec![dims.batch, self.offset_group * kernel_len * rank];
        per_sample.extend_from_slice(&window.output);
        if offset_t.shape() != per_sample {
            return Err(OpError::input(
                2,
                format!(
                    "expected offsets of shape {per_sample:?}, got {:?}",
                    offset_t.shape()
                ),
            ));
        }
        per_sample[1] = self.offset_group * kernel_len;
        let mask = match inputs.opt_tensor(4)? {
            Some(t) if t.shape() != per_sample => {
                return Err(OpError::input(
                    4,
                    format!(
                        "expected a mask of shape {per_sample:?}, got {:?}",
                        t.shape()
                    ),
                ))
            }
            Some(t) => Some(R::read(t, 4)?),
            None => None,
        };
        let bias = inputs.opt_tensor(3)?.map(|b| R::read(b, 3)).transpose()?;
        if bias.as_ref().is_some_and(|b| b.len() != dims.out_channels) {
            return Err(OpError::input(
                3,
                format!("expected {} biases", dims.out_channels),
            ));
        }
        let (x, w, offset) = (R::read(xt, 0)?, R::read(wt, 1)?, R::read(offset_t, 2)?);

        let (in_plane, out_plane) = (shape_len(&window.input), shape_len(&window.output));
        let in_strides = runnx_ir::strides_of(&window.input);
        let sampling = window.forward();
        // Each output position's kernel origin, per dim: `o·stride - pad_begin`.
        let origin: Vec<R> = (0..out_plane)
            .flat_map(|mut o| {
                let mut coords = [R::zero(); DEFORM_MAX_RANK];
                for d in (0..rank).rev() {
                    let i = o % window.output[d];
                    o /= window.output[d];
                    coords[d] = R::from_usize(i * window.strides[d]).unwrap_or_else(R::nan)
                        - R::from_usize(window.pads_begin[d]).unwrap_or_else(R::nan);
                }
                coords.into_iter().take(rank)
            })
            .collect();
        let (cg, mg) = (
            dims.in_channels / dims.group,
            dims.out_channels / dims.group,
        );
        let per_offset_group = dims.in_channels / self.offset_group;
        let mut shape = vec![dims.batch, dims.out_channels];
        shape.extend_from_slice(&window.output);
        let mut y = vec![R::zero(); shape_len(&shape)];
        if y.is_empty() {
            return R::to_tensor(y, xt.dtype(), &shape);
        }
        let task = |(task, y_g): (usize, &mut [R])| -> Result<(), OpError> {
            let (n, g) = (task / dims.group, task % dims.group);
            let mut col = vec![R::zero(); cg * kernel_len * out_plane];
            let fill = |(row, out): (usize, &mut [R])| {
                let (c, k) = (g * cg + row / kernel_len, row % kernel_len);
                let og = c / per_offset_group;
                let plane = &x[(n * dims.in_channels + c) * in_plane..][..in_plane];
                let base = (n * self.offset_group + og) * kernel_len + k;
                let kpos = sampling.kernel_offset(k);
                let mut pos = [R::zero(); DEFORM_MAX_RANK];
                for (o, v) in out.iter_mut().enumerate() {
                    for d in 0..rank {
                        let shift =
                            R::from_usize(kpos[d] * window.dilations[d]).unwrap_or_else(R::nan);
                        pos[d] = origin[o * rank + d]
                            + shift
                            + offset[(base * rank + d) * out_plane + o];
                    }
                    let m = mask.as_ref().map_or(R::one(), |m| m[base * out_plane + o]);
                    *v = m * interpolate(plane, &window.input, &in_strides, &pos[..rank]);
                }
            };
            if col.len() >= PARALLEL_ELEMENTS {
                col.par_chunks_mut(out_plane).enumerate().for_each(fill);
            } else {
                col.chunks_mut(out_plane).enumerate().for_each(fill);
            }
            let k_dim = cg * kernel_len;
            let epilogue = Epilogue::with_bias(match &bias {
                Some(b) => Bias::PerRow(&b[g * mg..][..mg]),
                None => Bias::None,
            });
            gemm(
                R::ONE,
                Lhs::Unpacked(MatRef::row_major(
                    &w[g * mg * k_dim..][..mg * k_dim],
                    mg,
                    k_dim,
                )?),
                Rhs::Unpacked(MatRef::row_major(&col, k_dim, out_plane)?),
                R::ZERO,
                MatMut::row_major(y_g, mg, out_plane)?,
                &epilogue,
            )
        };
        y.par_chunks_mut(mg * out_plane)
            .enumerate()
            .try_for_each(task)?;
        let mut shape = vec![dims.batch, dims.out_channels];
        shape.extend_from_slice(&window.output);
        R::to_tensor(y, xt.dtype(), &shape)
    }
}

impl Kernel for DeformConv {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let y = match FloatKind::of(inputs.tensor(0)?.dtype(), 0)? {
            FloatKind::F32 => self.run_as::<f32>(&inputs)?,
            FloatKind::F64 => self.run_as::<f64>(&inputs)?,
        };
        Ok(vec![y.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// ConvInteger

/// The attributes of an integer convolution (ConvInteger, QLinearConv) and its forward pass on
/// inputs already widened and shifted by their zero points.
pub(super) struct IntegerConv {
    window: WindowAttrs,
    group: usize,
}

impl IntegerConv {
    pub(super) fn parse(info: &NodeInfo) -> Result<IntegerConv, OpError> {
        Ok(IntegerConv {
            window: WindowAttrs::parse(info)?,
            group: parse_group(info)?,
        })
    }

    /// The number of output channels of a filter of shape `w` (its first dim), checked
    /// against `x`.
    pub(super) fn out_channels(&self, x: &[usize], w: &[usize]) -> Result<usize, OpError> {
        Ok(ConvDims::new(x, w, self.group, false)?.out_channels)
    }

    /// `conv(x, w) + bias` over `x: [N, C, in...]` and `w: [M, C/group, k...]`; returns the
    /// output shape `[N, M, out...]` and its values.
    pub(super) fn forward<T: GemmScalar>(
        &self,
        x: &[T],
        x_shape: &[usize],
        w: &[T],
        w_shape: &[usize],
        bias: Option<&[T]>,
    ) -> Result<(Vec<usize>, Vec<T>), OpError> {
        let dims = ConvDims::new(x_shape, w_shape, self.group, false)?;
        if let Some(b) = bias {
            if b.len() != dims.out_channels {
                return Err(OpError::invalid(format!(
                    "{} biases for {} output channels",
                    b.len(),
                    dims.out_channels
                )));
            }
        }
        let kernel = self.window.kernel(Some(&w_shape[2..]))?;
        let window = self.window.resolve(&x_shape[2..], &kernel, false)?;
        let y = conv_forward(x, w, None, bias, &dims, &window, &ConvPost::none())?;
        let mut shape = vec![dims.batch, dims.out_channels];
        shape.extend_from_slice(&window.output);
        Ok((shape, y))
    }
}

/// ONNX `ConvInteger`, opset 10: Conv on int8/uint8 inputs minus their zero points (X's a
/// scalar, W's a scalar or one per output channel), accumulated in int32.
struct ConvInteger(IntegerConv);

fn build_conv_integer(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(ConvInteger(IntegerConv::parse(info)?)))
}

impl Kernel for ConvInteger {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (x, w) = (inputs.tensor(0)?, inputs.tensor(1)?);
        let out_channels = self.0.out_channels(x.shape(), w.shape())?;
        let mut x32 = widen_8bit(x, 0)?;
        let mut w32 = widen_8bit(w, 1)?;
        if let Some(zp) = inputs.opt_tensor(2)? {
            let zp = widen_8bit(zp, 2)?;
            let &[z] = zp.as_slice() else {
                return Err(OpError::input(2, "x_zero_point must be a scalar"));
            };
            x32.iter_mut().for_each(|v| *v -= z);
        }
        if let Some(zp) = inputs.opt_tensor(3)? {
            let zp = widen_8bit(zp, 3)?;
            if zp.len() != 1 && zp.len() != out_channels {
                return Err(OpError::input(
                    3,
                    format!(
                        "{} zero points for {out_channels} output channels",
                        zp.len()
                    ),
                ));
            }
            let per_channel = w32.len() / out_channels.max(1);
            for (m, filter) in w32.chunks_mut(per_channel.max(1)).enumerate() {
                let z = zp[m % zp.len()];
                filter.iter_mut().for_each(|v| *v -= z);
            }
        }
        let (shape, y) = self.0.forward(&x32, x.shape(), &w32, w.shape(), None)?;
        Ok(vec![Tensor::from_vec(shape, y)?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// ConvTranspose

/// ONNX `ConvTranspose`, opsets 1, 11 and 22 (bfloat16): the gradient of Conv with respect to
/// its input, N-D, with groups, strides, dilations, `output_padding`, and the output size
/// either from `pads` or from `output_shape`/`auto_pad` (which then determine the pads).
struct ConvTranspose {
    window: WindowAttrs,
    group: usize,
    output_padding: Option<Vec<usize>>,
    output_shape: Option<Vec<usize>>,
    filter: Option<Tensor>,
}

fn build_conv_transpose(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(ConvTranspose {
        window: WindowAttrs::parse(info)?,
        group: parse_group(info)?,
        output_padding: dims_attr(info, "output_padding", 0)?,
        output_shape: dims_attr(info, "output_shape", 0)?,
        filter: prepare_filter(info.constant(1))?,
    }))
}

impl ConvTranspose {
    /// The window of the equivalent forward conv (output and input swapped): `output` here is
    /// ConvTranspose's output size.
    fn resolve(&self, input: &[usize], kernel: &[usize]) -> Result<Window, OpError> {
        let rank = input.len();
        if kernel.len() != rank {
            return Err(OpError::invalid(format!(
                "kernel shape {kernel:?} does not match {rank} spatial dims"
            )));
        }
        let AxisParams {
            strides,
            dilations,
            mut pads_begin,
            mut pads_end,
        } = self.window.per_axis(rank)?;
        let output_padding = match &self.output_padding {
            None => vec![0; rank],
            Some(p) if p.len() == rank => p.clone(),
            // Some exporters write begin and end values; only the end ones matter.
            Some(p) if p.len() == 2 * rank => p[rank..].to_vec(),
            Some(p) => {
                return Err(OpError::attribute(
                    "output_padding",
                    format!("has {} values for {rank} spatial dims", p.len()),
                ))
            }
        };
        let requested = match &self.output_shape {
            Some(s) if s.len() == rank => Some(s.clone()),
            Some(s) if s.len() == rank + 2 => Some(s[2..].to_vec()),
            Some(s) => {
                return Err(OpError::attribute(
                    "output_shape",
                    format!("has {} values for {rank} spatial dims", s.len()),
                ))
            }
            None => None,
        };
        let same = matches!(
            self.window.auto_pad,
            AutoPad::SameUpper | AutoPad::SameLower
        );
        let mut output = Vec::with_capacity(rank);
        for d in 0..rank {
            let extent = (kernel[d] - 1) * dilations[d] + 1;
            let full = strides[d] * input[d].saturating_sub(1) + output_padding[d] + extent;
            if self.window.auto_pad == AutoPad::Valid {
                (pads_begin[d], pads_end[d]) = (0, 0);
            }
            let target = match &requested {
                Some(s) => Some(s[d]),
                None if same => Some(input[d] * strides[d]),
                None => None,
            };
            let o = match target {
                Some(o) => {
                    // Pads implied by the requested size (none when it is larger than `full`;
                    // the extra outputs then only get the bias).
                    let total = full.saturating_sub(o);
                    let small = total / 2;
                    (pads_begin[d], pads_end[d]) = if self.window.auto_pad == AutoPad::SameUpper {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                    o
                }
                None => full
                    .checked_sub(pads_begin[d] + pads_end[d])
                    .ok_or_else(|| {
                        OpError::invalid(format!(
                            "pads exceed the output size {full} on spatial axis {d}"
                        ))
                    })?,
            };
            output.push(o);
        }
        Ok(Window {
            input: output,
            output: input.to_vec(),
            kernel: kernel.to_vec(),
            strides,
            dilations,
            pads_begin,
            pads_end,
        })
    }

    fn run_as<R: Real>(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
    ) -> Result<Tensor, OpError> {
        let dims = ConvDims::new(x.shape(), w.shape(), self.group, true)?;
        let kernel = self.window.kernel(Some(&w.shape()[2..]))?;
        let window = self.resolve(&x.shape()[2..], &kernel)?;
        let bias = b.map(|b| R::read(b, 2)).transpose()?;
        if let Some(bias) = &bias {
            if bias.len() != dims.out_channels {
                return Err(OpError::input(
                    2,
                    format!(
                        "{} biases for {} output channels",
                        bias.len(),
                        dims.out_channels
                    ),
                ));
            }
        }
        let filter = self.filter.as_ref().unwrap_or(w);
        let y = conv_transpose(
            &R::read(x, 0)?,
            &R::read(filter, 1)?,
            bias.as_deref(),
            &dims,
            &window,
        )?;
        let mut shape = vec![dims.batch, dims.out_channels];
        shape.extend_from_slice(&window.input);
        R::to_tensor(y, x.dtype(), &shape)
    }
}

/// `Y = conv_transpose(X, W) + B`: `x` is `[N, C, in...]`, `w` `[C, M/group, k...]`; `window`
/// is the forward window from Y to X (its `input` is Y's spatial shape).
fn conv_transpose<T: GemmScalar>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    dims: &ConvDims,
    window: &Window,
) -> Result<Vec<T>, OpError> {
    // Sweep X's positions, scatter into Y's plane.
    let sampling = Sampling::new(&window.output, &window.input, window);
    let (in_plane, out_plane, kernel_len) = (
        sampling.sweep_len(),
        sampling.plane_len(),
        sampling.kernel_len(),
    );
    let (cg, mg) = (
        dims.in_channels / dims.group,
        dims.out_channels / dims.group,
    );
    let rows = mg * kernel_len;
    // Written whole: by the depthwise sums or as a GEMM's write-only C.
    let mut y = T::output_buffer(dims.batch * dims.out_channels * out_plane);
    if y.is_empty() {
        return Ok(y);
    }
    let task = |(task, y_g): (usize, &mut [T])| -> Result<(), OpError> {
        let (n, g) = (task / dims.group, task % dims.group);
        let x_g = MatRef::row_major(
            &x[(n * dims.in_channels + g * cg) * in_plane..][..cg * in_plane],
            cg,
            in_plane,
        )?;
        let w_g = MatRef::row_major(&w[g * cg * rows..][..cg * rows], cg, rows)?;
        let mut col = vec![T::ZERO; rows * in_plane];
        gemm(
            T::ONE,
            Lhs::Unpacked(w_g.t()),
            Rhs::Unpacked(x_g),
            T::ZERO,
            MatMut::row_major(&mut col, rows, in_plane)?,
            &Epilogue::none(),
        )?;
        let col2im = |(m, plane): (usize, &mut [T])| {
            for k in 0..kernel_len {
                let row = &col[(m * kernel_len + k) * in_plane..][..in_plane];
                sampling.scatter_add_row(row, k, plane);
            }
            if let Some(b) = bias {
                let b = b[g * mg + m];
                plane.iter_mut().for_each(|v| *v = v.add(b));
            }
        };
        if y_g.len() >= PARALLEL_ELEMENTS {
            y_g.par_chunks_mut(out_plane).enumerate().for_each(col2im);
        } else {
            y_g.chunks_mut(out_plane).enumerate().for_each(col2im);
        }
        Ok(())
    };
    let chunk = mg * out_plane;
    if dims.batch * dims.group > 1 && y.len() >= PARALLEL_ELEMENTS {
        y.par_chunks_mut(chunk).enumerate().try_for_each(task)?;
    } else {
        y.chunks_mut(chunk).enumerate().try_for_each(task)?;
    }
    Ok(y)
}

impl Kernel for ConvTranspose {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (x, w, b) = (inputs.tensor(0)?, inputs.tensor(1)?, inputs.opt_tensor(2)?);
        if w.dtype() != x.dtype() {
            return Err(OpError::input(
                1,
                format!("expected {}, got {}", x.dtype(), w.dtype()),
            ));
        }
        let y = match FloatKind::of(x.dtype(), 0)? {
            FloatKind::F32 => self.run_as::<f32>(x, w, b)?,
            FloatKind::F64 => self.run_as::<f64>(x, w, b)?,
        };
        Ok(vec![y.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(
        pads: Option<Vec<usize>>,
        strides: Option<Vec<usize>>,
        auto_pad: AutoPad,
    ) -> WindowAttrs {
        WindowAttrs {
            kernel_shape: None,
            strides,
            dilations: None,
            pads,
            auto_pad,
        }
    }

    /// Direct N-D convolution in f64, the definition.
    fn reference_conv(
        x: &[f64],
        xs: &[usize],
        w: &[f64],
        ws: &[usize],
        group: usize,
        win: &Window,
    ) -> Vec<f64> {
        let (n, c, m) = (xs[0], xs[1], ws[0]);
        let (cg, mg) = (c / group, m / group);
        let out_len: usize = win.output.iter().product();
        let k_len: usize = win.kernel.iter().product();
        let in_strides = runnx_ir::strides_of(&win.input);
        let mut y = vec![0.0; n * m * out_len];
        for b in 0..n {
            for oc in 0..m {
                let g = oc / mg;
                for o in 0..out_len {
                    let opos: Vec<usize> = unravel(o, &win.output);
                    let mut acc = 0.0;
                    for ic in 0..cg {
                        for k in 0..k_len {
                            let kpos = unravel(k, &win.kernel);
                            let mut idx = 0;
                            let mut inside = true;
                            for d in 0..opos.len() {
                                let i = (opos[d] * win.strides[d] + kpos[d] * win.dilations[d])
                                    as i64
                                    - win.pads_begin[d] as i64;
                                if i < 0 || i >= win.input[d] as i64 {
                                    inside = false;
                                }
                                idx += i.max(0) as usize * in_strides[d];
                            }
                            if inside {
                                let xv = x[(b * c + g * cg + ic)
                                    * win.input.iter().product::<usize>()
                                    + idx];
                                acc += xv * w[(oc * cg + ic) * k_len + k];
                            }
                        }
                    }
                    y[(b * m + oc) * out_len + o] = acc;
                }
            }
        }
        y
    }

    fn unravel(mut i: usize, dims: &[usize]) -> Vec<usize> {
        let mut p = vec![0; dims.len()];
        for d in (0..dims.len()).rev() {
            p[d] = i % dims[d];
            i /= dims[d];
        }
        p
    }

    fn seq(len: usize) -> Vec<f64> {
        (0..len).map(|i| ((i * 7919) % 23) as f64 - 11.0).collect()
    }

    #[test]
    fn output_sizes() {
        let a = attrs(Some(vec![1, 1, 1, 1]), Some(vec![2, 2]), AutoPad::NotSet);
        let w = a.resolve(&[5, 6], &[3, 3], false).unwrap();
        assert_eq!(w.output, vec![3, 3]);
        let a = attrs(None, Some(vec![2]), AutoPad::SameUpper);
        let w = a.resolve(&[5], &[4], false).unwrap();
        assert_eq!((w.output[0], w.pads_begin[0], w.pads_end[0]), (3, 1, 2));
        let a = attrs(None, Some(vec![2]), AutoPad::SameLower);
        let w = a.resolve(&[5], &[4], false).unwrap();
        assert_eq!((w.pads_begin[0], w.pads_end[0]), (2, 1));
        // ceil mode: 5 + 0 - 2 = 3 -> ceil(3/2) + 1 = 3.
        let a = attrs(None, Some(vec![2]), AutoPad::NotSet);
        assert_eq!(a.resolve(&[5], &[2], true).unwrap().output, vec![3]);
        assert_eq!(a.resolve(&[5], &[2], false).unwrap().output, vec![2]);
        assert!(a.resolve(&[1], &[2], false).is_err());
        let a = attrs(Some(vec![1, 1, 1]), None, AutoPad::NotSet);
        assert!(a.resolve(&[3, 3], &[2, 2], false).is_err());
    }

    #[test]
    fn conv_matches_definition() {
        // (x shape, w shape, group, pads, strides, dilations)
        type Case<'a> = (
            &'a [usize],
            &'a [usize],
            usize,
            &'a [usize],
            &'a [usize],
            &'a [usize],
        );
        let cases: &[Case] = &[
            (&[1, 1, 7], &[2, 1, 3], 1, &[1, 2], &[2], &[1]),
            (
                &[2, 3, 5, 6],
                &[4, 3, 3, 2],
                1,
                &[1, 0, 1, 1],
                &[1, 2],
                &[1, 1],
            ),
            (
                &[1, 4, 6, 6],
                &[4, 1, 3, 3],
                4,
                &[1, 1, 1, 1],
                &[2, 2],
                &[1, 1],
            ),
            (
                &[2, 2, 5, 5],
                &[4, 1, 3, 2],
                2,
                &[0, 1, 2, 0],
                &[2, 1],
                &[1, 2],
            ),
            (
                &[1, 4, 7, 5],
                &[6, 2, 2, 2],
                2,
                &[0, 2, 1, 0],
                &[1, 1],
                &[2, 2],
            ),
            (
                &[1, 3, 4, 4],
                &[5, 3, 1, 1],
                1,
                &[0, 0, 0, 0],
                &[1, 1],
                &[1, 1],
            ),
            (
                &[1, 2, 3, 4, 5],
                &[2, 2, 2, 3, 2],
                1,
                &[1, 0, 1, 0, 1, 1],
                &[1, 2, 1],
                &[1, 1, 2],
            ),
            // A tiny output plane (MNIST's third conv, batched).
            (
                &[3, 64, 5, 5],
                &[64, 64, 3, 3],
                1,
                &[0, 0, 0, 0],
                &[1, 1],
                &[1, 1],
            ),
            // Several im2col column blocks, split mid-row, on several threads.
            (
                &[2, 24, 41, 43],
                &[40, 12, 3, 3],
                2,
                &[1, 1, 1, 1],
                &[1, 1],
                &[1, 1],
            ),
        ];
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        for &(xs, ws, group, pads, strides, dilations) in cases {
            let x = seq(xs.iter().product());
            let w = seq(ws.iter().product());
            let a = WindowAttrs {
                kernel_shape: None,
                strides: Some(strides.to_vec()),
                dilations: Some(dilations.to_vec()),
                pads: Some(pads.to_vec()),
                auto_pad: AutoPad::NotSet,
            };
            let win = a.resolve(&xs[2..], &ws[2..], false).unwrap();
            let dims = ConvDims::new(xs, ws, group, false).unwrap();
            let got = pool
                .install(|| conv_forward(&x, &w, None, None, &dims, &win, &ConvPost::none()))
                .unwrap();
            let want = reference_conv(&x, xs, &w, ws, group, &win);
            assert_eq!(got, want, "{xs:?} {ws:?}");
            if group == 1 {
                pool.install(|| check_transposed(&x, xs, &w, ws, &win, &want));
            }
        }
    }

    /// [`transposed_forward`] on an f32 copy of a case, with a bias, a residual or not and a
    /// Relu, against the f64 reference `want`.
    fn check_transposed(
        x: &[f64],
        xs: &[usize],
        w: &[f64],
        ws: &[usize],
        win: &Window,
        want: &[f64],
    ) {
        let dims = ConvDims::new(xs, ws, 1, false).unwrap();
        let out_plane: usize = win.output.iter().product();
        let bias: Vec<f32> = (0..ws[0]).map(|m| m as f32 - 7.5).collect();
        let residual: Vec<f32> = (0..want.len()).map(|i| (i % 5) as f32 - 2.0).collect();
        let x: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let w: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let k_dim = w.len() / ws[0];
        let filter_t = f32::pack_rhs(MatRef::new(&w, k_dim, ws[0], 1, k_dim).unwrap()).unwrap();
        for with_residual in [false, true] {
            let post = ConvPost {
                residual: with_residual.then_some(residual.as_slice()),
                activation: Activation::Relu,
                pool_pairs: false,
            };
            let got = transposed_forward(&x, &filter_t, Some(&bias), &dims, win, &post).unwrap();
            assert_eq!(got.len(), want.len());
            for (i, (&g, &r)) in got.iter().zip(want).enumerate() {
                let mut v = r + bias[(i / out_plane) % ws[0]] as f64;
                if with_residual {
                    v += residual[i] as f64;
                }
                let v = v.max(0.0);
                assert!(
                    (g as f64 - v).abs() <= 1e-3 * v.abs().max(1.0),
                    "{xs:?} {ws:?} at {i}: {g} vs {v}"
                );
            }
        }
    }

    #[test]
    fn deform_conv_interpolates_offsets() {
        // 1x1x3x3 input, 2x2 kernel of ones: zero offsets give the plain conv; a +0.5 offset
        // along W averages neighbours (and reads zeros past the edge).
        let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let x = Tensor::from_vec([1, 1, 3, 3], x).unwrap();
        let w = Tensor::from_vec([1, 1, 2, 2], vec![1f32; 4]).unwrap();
        let op = DeformConv {
            window: WindowAttrs::for_tests(&[2, 2], &[1, 1], &[0, 0, 0, 0], AutoPad::NotSet),
            group: 1,
            offset_group: 1,
        };
        let run = |offsets: Vec<f32>, mask: Option<Vec<f32>>| {
            let mut values = vec![
                Some(Value::Tensor(x.clone())),
                Some(Value::Tensor(w.clone())),
                Some(Value::Tensor(
                    Tensor::from_vec([1, 8, 2, 2], offsets).unwrap(),
                )),
                None,
            ];
            values.push(mask.map(|m| Value::Tensor(Tensor::from_vec([1, 4, 2, 2], m).unwrap())));
            let y = op.run_as::<f32>(&Inputs::new(values)).unwrap();
            y.as_slice::<f32>().unwrap().to_vec()
        };
        assert_eq!(run(vec![0.0; 32], None), vec![8.0, 12.0, 20.0, 24.0]);
        // Offsets are laid out [kernel position][dim][output position]; shift W by 0.5.
        let mut shifted = vec![0f32; 32];
        for k in 0..4 {
            shifted[(k * 2 + 1) * 4..][..4].fill(0.5);
        }
        // Output (0,0) samples x at w = 0.5 and 1.5 on rows 0 and 1: 0.5+1.5+3.5+4.5 = 10.
        // Output (0,1) samples w = 1.5 and 2.5 (half zero): 1.5+1+4.5+2.5 = 9.5.
        assert_eq!(run(shifted, None)[..2], [10.0, 9.5]);
        let mut mask = vec![1f32; 16];
        mask[..4].fill(0.0);
        assert_eq!(run(vec![0.0; 32], Some(mask)), vec![8.0, 11.0, 17.0, 20.0]);
    }

    #[test]
    fn im2col_panels_match_the_row_major_fill() {
        // (input h, w; kernel h, w; strides; dilations; pads top, left, bottom, right)
        let cases = [
            ([5, 7], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
            ([9, 6], [2, 3], [2, 2], [1, 1], [0, 1, 1, 0]),
            ([8, 8], [3, 2], [1, 3], [2, 1], [2, 0, 0, 2]),
            ([4, 11], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
            ([3, 3], [3, 3], [1, 1], [1, 1], [2, 2, 2, 2]),
            ([11, 13], [7, 7], [2, 2], [1, 1], [3, 3, 3, 3]),
            ([6, 5], [1, 1], [2, 4], [1, 1], [0, 0, 0, 0]),
            ([7, 10], [3, 3], [2, 3], [2, 2], [1, 2, 3, 0]),
            // The last input column is never sampled.
            ([9, 12], [2, 2], [3, 3], [1, 1], [0, 0, 0, 0]),
        ];
        for (input, kernel, strides, dilations, pads) in cases {
            let attrs = WindowAttrs {
                kernel_shape: None,
                strides: Some(strides.to_vec()),
                dilations: Some(dilations.to_vec()),
                pads: Some(pads.to_vec()),
                auto_pad: AutoPad::NotSet,
            };
            let window = attrs.resolve(&input, &kernel, false).unwrap();
            let sampling = window.forward();
            let channels = 2;
            let x: Vec<f64> = (0..channels * sampling.plane_len())
                .map(|i| i as f64 + 1.0)
                .collect();
            let col = Im2Col::new(&x, channels, &sampling, &window);
            let (k, n) = (col.rows(), col.cols());
            let mut full = vec![0.0; k * n];
            col.fill(0..k, 0..n, &mut full);
            // Panels from the zero-padded, phase-split copy, against the row-major fill (which
            // reads the input as it is).
            for (rows, cols, width) in [
                (0..k, 0..n, 4),
                (1..k, 3..n, 5),
                (0..k.min(3), 2..n.min(9), 16),
                (k / 2..k, n / 3..n, 32),
            ] {
                let kc = rows.len();
                let mut panels = vec![f64::NAN; cols.len().div_ceil(width) * width * kc];
                assert!(col.fill_panels(rows.clone(), cols.clone(), width, &mut panels));
                for (p, r) in rows.clone().enumerate() {
                    for (t, c) in cols.clone().enumerate() {
                        let got = panels[(t / width * kc + p) * width + t % width];
                        assert_eq!(got, full[r * n + c], "{input:?} {kernel:?} row {r} col {c}");
                    }
                    for t in cols.len()..cols.len().div_ceil(width) * width {
                        assert_eq!(panels[(t / width * kc + p) * width + t % width], 0.0);
                    }
                }
            }
        }
    }

    #[test]
    fn conv_transpose_is_the_adjoint() {
        // <conv(x, w), y> == <x, conv_transpose(y, w)> for matching windows.
        let (xs, ws) = (vec![1, 2, 5, 4], vec![3, 2, 3, 2]);
        let a = WindowAttrs {
            kernel_shape: None,
            strides: Some(vec![2, 1]),
            dilations: Some(vec![1, 2]),
            pads: Some(vec![1, 0, 0, 1]),
            auto_pad: AutoPad::NotSet,
        };
        let win = a.resolve(&xs[2..], &ws[2..], false).unwrap();
        let x = seq(xs.iter().product());
        let w = seq(ws.iter().product());
        let y = conv_forward(
            &x,
            &w,
            None,
            None,
            &ConvDims::new(&xs, &ws, 1, false).unwrap(),
            &win,
            &ConvPost::none(),
        )
        .unwrap();
        let probe: Vec<f64> = (0..y.len()).map(|i| (i % 5) as f64 - 2.0).collect();
        // ConvTranspose's filter is [C_in_of_transpose = 3, C_out = 2, ...]: the same tensor.
        let ys = [1, 3, win.output[0], win.output[1]];
        let back = conv_transpose(
            &probe,
            &w,
            None,
            &ConvDims::new(&ys, &ws, 1, true).unwrap(),
            &win,
        )
        .unwrap();
        let lhs: f64 = y.iter().zip(&probe).map(|(a, b)| a * b).sum();
        let rhs: f64 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
        assert_eq!(lhs, rhs);
    }

    #[test]
    fn conv_transpose_output_shape_sets_pads() {
        let ct = ConvTranspose {
            window: attrs(None, Some(vec![3, 2]), AutoPad::NotSet),
            group: 1,
            output_padding: None,
            output_shape: Some(vec![10, 8]),
            filter: None,
        };
        // full = 3*(3-1) + 3 = 9 < 10: no pads, one extra output; 2*(3-1) + 3 = 7 < 8.
        let w = ct.resolve(&[3, 3], &[3, 3]).unwrap();
        assert_eq!(w.input, vec![10, 8]);
        let ct = ConvTranspose {
            output_shape: None,
            window: attrs(Some(vec![1, 2, 1, 2]), Some(vec![3, 2]), AutoPad::NotSet),
            ..ct
        };
        let w = ct.resolve(&[3, 3], &[3, 3]).unwrap();
        assert_eq!(w.input, vec![7, 3]);
    }
}
