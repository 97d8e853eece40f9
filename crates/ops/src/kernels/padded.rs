//! Zero-padded, phase-split copies of 2-D planes, read by the direct conv and by im2col.
//!
//! A conv's output column `o` of kernel column `kx` samples padded input column `o·stride +
//! kx·dilation`. With each padded row's columns grouped by phase (column mod stride), the
//! samples of one kernel column along an output row are one contiguous run; with the padding
//! stored as zeros, no run needs a bounds check. Building the copy is one pass over the input,
//! against the `kernel_h x kernel_w` passes of the reads it serves.

/// Where a plane's zero-padded copy lies: `rows` rows, each `stride` phases of `phase_width`
/// values. Padded column `j` is at phase `j % stride`, index `j / stride` of that phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaddedLayout {
    pub rows: usize,
    pub stride: usize,
    pub phase_width: usize,
}

impl PaddedLayout {
    pub fn row_len(&self) -> usize {
        self.stride * self.phase_width
    }

    pub fn plane_len(&self) -> usize {
        self.rows * self.row_len()
    }

    /// Where padded column `column` lies within a row.
    pub fn position(&self, column: usize) -> usize {
        (column % self.stride) * self.phase_width + column / self.stride
    }

    /// Writes every element of `out` (whole planes of this layout): the planes of `x`, each
    /// `input` (height, width), placed `pads` (top, left) into the padded plane, and zeros
    /// around them. Input rows and columns that have no place in the layout are left out.
    pub fn fill<T: Copy>(
        &self,
        x: &[T],
        input: [usize; 2],
        pads: [usize; 2],
        zero: T,
        out: &mut [T],
    ) {
        let [in_h, in_w] = input;
        let [pad_top, pad_left] = pads;
        let (row_len, plane_len) = (self.row_len(), self.plane_len());
        if row_len == 0 || plane_len == 0 {
            return;
        }
        let columns = in_w.min(row_len.saturating_sub(pad_left));
        for (c, plane) in out.chunks_exact_mut(plane_len).enumerate() {
            for (py, row) in plane.chunks_exact_mut(row_len).enumerate() {
                // Zero the row, then copy its samples over it: the row is in L1 by then, unlike
                // a zeroing pass over the whole copy first.
                row.fill(zero);
                let Some(iy) = py.checked_sub(pad_top).filter(|&iy| iy < in_h) else {
                    continue;
                };
                let Some(src) = x
                    .get((c * in_h + iy) * in_w..)
                    .and_then(|s| s.get(..columns))
                else {
                    continue;
                };
                self.place_row(src, pad_left, row);
            }
        }
    }

    /// Copies input row `src` into padded row `row`, its column `i` at padded column
    /// `i + pad_left`.
    fn place_row<T: Copy>(&self, src: &[T], pad_left: usize, row: &mut [T]) {
        let (stride, width) = (self.stride, self.phase_width);
        match stride {
            1 => row[pad_left..pad_left + src.len()].copy_from_slice(src),
            2 => {
                // Pairs: input columns 2i and 2i+1 go to phases pad_left % 2 and the other,
                // at indices i + pad_left / 2 and i + (pad_left + 1) / 2. Vectorises.
                let (evens, odds) = row.split_at_mut(width);
                let (first, second) = if pad_left.is_multiple_of(2) {
                    (&mut evens[pad_left / 2..], &mut odds[pad_left / 2..])
                } else {
                    (
                        &mut odds[pad_left / 2..],
                        &mut evens[pad_left.div_ceil(2)..],
                    )
                };
                let pairs = src.chunks_exact(2);
                let last = pairs.remainder().first().copied();
                let count = pairs.len();
                for ((pair, a), b) in pairs.zip(first.iter_mut()).zip(second.iter_mut()) {
                    (*a, *b) = (pair[0], pair[1]);
                }
                if let Some(v) = last {
                    first[count] = v;
                }
            }
            _ => {
                for (i, &v) in src.iter().enumerate() {
                    row[self.position(i + pad_left)] = v;
                }
            }
        }
    }
}

/// Writes `row`'s elements `p, p + stride, ...` to `out[p·w..]` for each phase `p < stride`,
/// where `w = out.len() / stride` is at least `row.len().div_ceil(stride)`; the tails of the
/// shorter phases are left as they are.
pub fn split_phases<T: Copy>(row: &[T], stride: usize, out: &mut [T]) {
    let phase_width = out.len() / stride.max(1);
    debug_assert!(phase_width >= row.len().div_ceil(stride.max(1)));
    if stride == 2 {
        // The common case, in a form that vectorises (pairs to evens and odds).
        let (evens, odds) = out.split_at_mut(phase_width);
        for ((pair, e), o) in row
            .chunks_exact(2)
            .zip(evens.iter_mut())
            .zip(odds.iter_mut())
        {
            (*e, *o) = (pair[0], pair[1]);
        }
        if row.len() % 2 == 1 {
            evens[row.len() / 2] = row[row.len() - 1];
        }
        return;
    }
    for (phase, dst) in out.chunks_exact_mut(phase_width).enumerate() {
        for (d, &v) in dst.iter_mut().zip(row.iter().skip(phase).step_by(stride)) {
            *d = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_places_every_sample_once_and_zeros_the_rest() {
        // (input, pads, layout rows, stride, phase width): strides 1-3, odd and even left
        // pads, a layout too small for the last rows and columns.
        let cases = [
            ([3, 5], [1, 1], 5, 1, 7),
            ([4, 7], [1, 1], 6, 2, 5),
            ([4, 7], [2, 3], 8, 2, 6),
            ([5, 8], [0, 0], 5, 2, 4),
            ([3, 7], [1, 2], 5, 3, 3),
            ([6, 9], [1, 1], 4, 2, 3),
        ];
        for (input, pads, rows, stride, phase_width) in cases {
            let layout = PaddedLayout {
                rows,
                stride,
                phase_width,
            };
            let channels = 2;
            let x: Vec<i32> = (1..=(channels * input[0] * input[1]) as i32).collect();
            let mut out = vec![-1; channels * layout.plane_len()];
            layout.fill(&x, input, pads, 0, &mut out);
            let mut expected = vec![0; out.len()];
            for c in 0..channels {
                for iy in 0..input[0] {
                    for ix in 0..input[1] {
                        let (py, px) = (iy + pads[0], ix + pads[1]);
                        if py < rows && px < layout.row_len() {
                            let at = c * layout.plane_len()
                                + py * layout.row_len()
                                + layout.position(px);
                            expected[at] = x[(c * input[0] + iy) * input[1] + ix];
                        }
                    }
                }
            }
            assert_eq!(out, expected, "{input:?} {pads:?} {layout:?}");
        }
    }
}
