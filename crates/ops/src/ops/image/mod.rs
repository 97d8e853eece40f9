//! Image and detection ops: GridSample, AffineGrid, RoiAlign, NonMaxSuppression, Col2Im,
//! CenterCropPad and ImageDecoder. (Resize and Upsample live in `resize`.)

mod center_crop_pad;
mod col2im;
mod decoder;
mod grid_sample;
mod nms;
mod roi_align;

use runnx_ir::TensorData;

use super::shape::dispatch::Num;
use crate::Registry;

pub(crate) fn register(reg: &mut Registry) {
    grid_sample::register(reg);
    roi_align::register(reg);
    nms::register(reg);
    col2im::register(reg);
    center_crop_pad::register(reg);
    decoder::register(reg);
}

/// `v` in `T`: floats round to nearest, integers round half to even and saturate (numpy's
/// `round` then clip, as the onnx reference casts interpolated values back).
pub(crate) fn from_f64_rounded<T: Num>(v: f64) -> T {
    if T::DTYPE.is_integer() {
        T::from_f64(v.round_ties_even())
    } else {
        T::from_f64(v)
    }
}

/// `data` with one default element (zero, empty string, false) appended, and that element's
/// index: gathers of any element type point out-of-range reads there.
pub(crate) fn concat_default(data: &TensorData) -> (TensorData, usize) {
    let zero = TensorData::zeros(data.dtype(), 1);
    let joined = TensorData::concat(&[data, &zero]).unwrap_or(zero);
    (joined, data.len())
}
