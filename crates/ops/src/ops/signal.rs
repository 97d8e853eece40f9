//! Signal-processing ops: DFT, STFT, the Hann, Hamming and Blackman windows, and
//! MelWeightMatrix.
//!
//! Transforms run in f64 whatever the input's float type, rounding once to it at the end: in
//! f32, the rounding error (O(ε·log n) relative to the signal's norm, with ε = 6e-8) shows as
//! bins of order 1e-6 where the exact value is 0, far outside the 1e-7 absolute tolerance
//! results are held to. They run on `rustfft`'s plans, which handle every length (mixed radix,
//! Rader and Bluestein for primes) in O(n log n). Complex values are stored interleaved along a last axis of
//! size 2; real ones have a last axis of size 1. Windows and mel matrices are computed in f64
//! and converted once to the requested type.

use num_complex::Complex;
use runnx_ir::{DataType, Tensor, Value};
use rustfft::{Fft, FftNum, FftPlanner};

use super::cast::{cast_tensor, CastOptions};
use super::norm::{FloatKind, Real};
use super::shape::{int_scalar_input, normalize_axis};
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "DFT", &[17, 20], build_dft);
    reg.add("", "STFT", 17, build_stft);
    reg.add("", "HannWindow", 17, |i| build_window(i, Window::Hann));
    reg.add("", "HammingWindow", 17, |i| {
        build_window(i, Window::Hamming)
    });
    reg.add("", "BlackmanWindow", 17, |i| {
        build_window(i, Window::Blackman)
    });
    reg.add("", "MelWeightMatrix", 17, build_mel_weight_matrix);
}

/// A non-negative scalar integer input.
fn size_input(inputs: &Inputs, index: usize, what: &str) -> Result<usize, OpError> {
    let v = int_scalar_input(inputs.tensor(index)?, index)?;
    usize::try_from(v).map_err(|_| OpError::input(index, format!("{what} must be >= 0, got {v}")))
}

/// The float types transforms can run in (see the module docs for why it is f64).
trait FftReal: Real + FftNum {}
impl FftReal for f64 {}

/// Runs one transform plan over a buffer in place, reusing a scratch buffer.
struct Transform<R: FftReal> {
    fft: std::sync::Arc<dyn Fft<R>>,
    scratch: Vec<Complex<R>>,
}

impl<R: FftReal> Transform<R> {
    fn new(n: usize, inverse: bool) -> Transform<R> {
        let mut planner = FftPlanner::new();
        let fft = if inverse {
            planner.plan_fft_inverse(n)
        } else {
            planner.plan_fft_forward(n)
        };
        let scratch = vec![Complex::new(R::zero(), R::zero()); fft.get_inplace_scratch_len()];
        Transform { fft, scratch }
    }

    fn process(&mut self, buf: &mut [Complex<R>]) {
        if !buf.is_empty() {
            self.fft.process_with_scratch(buf, &mut self.scratch);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// DFT

/// ONNX `DFT`, opsets 17 and 20: the discrete Fourier transform along one signal axis of a
/// `[..., 1]` (real) or `[..., 2]` (complex) input, zero-padded or truncated to `dft_length`.
/// `inverse` scales by 1/n. `onesided` keeps the `n/2 + 1` non-redundant bins of a forward
/// transform (RFFT), or, inverse, rebuilds the full Hermitian spectrum from them and returns
/// the real signal (IRFFT, default length `2·(bins - 1)`). The axis is an attribute (default 1)
/// in opset 17 and an optional input (default -2) from opset 20; it may not be the last axis.
struct Dft {
    /// Opset 17's axis attribute; `None` from opset 20 on.
    axis_attr: Option<i64>,
    inverse: bool,
    onesided: bool,
}

fn build_dft(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let axis_attr = if info.opset < 20 {
        Some(info.attr_int("axis", 1)?)
    } else {
        None
    };
    Ok(Box::new(Dft {
        axis_attr,
        inverse: info.attr_int("inverse", 0)? != 0,
        onesided: info.attr_int("onesided", 0)? != 0,
    }))
}

impl Kernel for Dft {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let shape = x.shape();
        let rank = shape.len();
        let components = shape.last().copied().unwrap_or(0);
        if rank < 2 || !(1..=2).contains(&components) {
            return Err(OpError::input(
                0,
                format!("expected [..., 1] (real) or [..., 2] (complex), got shape {shape:?}"),
            ));
        }
        let axis = match self.axis_attr {
            Some(a) => a,
            None => match inputs.opt_tensor(2)? {
                Some(t) => int_scalar_input(t, 2)?,
                None => -2,
            },
        };
        // The last axis holds the components, so it cannot be transformed.
        let axis = normalize_axis(axis, rank)
            .ok()
            .filter(|&a| a < rank - 1)
            .ok_or_else(|| OpError::invalid(format!("axis {axis} is invalid for rank {rank}")))?;
        let len = shape[axis];
        let irfft = self.inverse && self.onesided;
        let n = match inputs.opt_tensor(1)? {
            Some(t) => {
                let v = int_scalar_input(t, 1)?;
                usize::try_from(v).ok().filter(|&n| n > 0).ok_or_else(|| {
                    OpError::input(1, format!("dft_length must be positive, got {v}"))
                })?
            }
            None if irfft => 2 * len.saturating_sub(1),
            None => len,
        };
        if n == 0 {
            return Err(OpError::input(0, "the signal axis is empty"));
        }
        FloatKind::of(x.dtype(), 0)?;
        self.transform::<f64>(x, axis, n)
    }
}

impl Dft {
    /// The transform of `x` along `axis` at length `n`, computed in `R`.
    fn transform<R: FftReal>(
        &self,
        x: &Tensor,
        axis: usize,
        n: usize,
    ) -> Result<Vec<Value>, OpError> {
        let shape = x.shape();
        let (rank, len, components) = (shape.len(), shape[axis], shape[shape.len() - 1]);
        let irfft = self.inverse && self.onesided;
        let (out_len, out_components) = match (self.inverse, self.onesided) {
            (false, true) => (n / 2 + 1, 2),
            (true, true) => (n, 1),
            _ => (n, 2),
        };

        let data = R::read(x, 0)?;
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..rank - 1].iter().product();
        let zero = Complex::new(R::zero(), R::zero());
        let mut out = vec![R::zero(); outer * out_len * inner * out_components];
        let mut transform = Transform::<R>::new(n, self.inverse);
        let mut buf = vec![zero; n];
        let scale = if self.inverse {
            R::one() / R::from_usize(n).unwrap_or_else(R::nan)
        } else {
            R::one()
        };
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| ((o * len + k) * inner + i) * components;
                buf.fill(zero);
                // An IRFFT input holds bins 0..=n/2 only; the rest are their conjugates.
                let taken = if irfft {
                    len.min(n / 2 + 1)
                } else {
                    len.min(n)
                };
                for (k, b) in buf.iter_mut().enumerate().take(taken) {
                    let p = at(k);
                    let im = if components == 2 {
                        data[p + 1]
                    } else {
                        R::zero()
                    };
                    *b = Complex::new(data[p], im);
                }
                if irfft {
                    for k in n / 2 + 1..n {
                        buf[k] = buf[n - k].conj();
                    }
                }
                transform.process(&mut buf);
                for (k, v) in buf.iter().take(out_len).enumerate() {
                    let p = ((o * out_len + k) * inner + i) * out_components;
                    out[p] = v.re * scale;
                    if out_components == 2 {
                        out[p + 1] = v.im * scale;
                    }
                }
            }
        }
        let mut out_shape = shape.to_vec();
        out_shape[axis] = out_len;
        out_shape[rank - 1] = out_components;
        Ok(vec![R::to_tensor(out, x.dtype(), &out_shape)?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// STFT

/// ONNX `STFT`, opset 17: the DFT of each `frame_length`-sample frame of a `[B, L, 1|2]` signal,
/// frames `frame_step` apart (`(L - frame_length) / frame_step + 1` of them), each multiplied by
/// `window` (rectangular when absent) first. Output `[B, frames, bins, 2]`, with `bins` the
/// `frame_length / 2 + 1` non-redundant bins when `onesided` (the default), else all of them.
struct Stft {
    onesided: bool,
}

fn build_stft(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(Stft {
        onesided: info.attr_int("onesided", 1)? != 0,
    }))
}

impl Kernel for Stft {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let (batch, len, components) = match *x.shape() {
            [b, l, c @ (1 | 2)] => (b, l, c),
            ref s => {
                return Err(OpError::input(
                    0,
                    format!("expected a [batch, length, 1 or 2] signal, got shape {s:?}"),
                ))
            }
        };
        let step = size_input(&inputs, 1, "frame_step")?;
        if step == 0 {
            return Err(OpError::input(1, "frame_step must be positive"));
        }
        let window = inputs.opt_tensor(2)?;
        if let Some(w) = window {
            FloatKind::of(w.dtype(), 2)?;
        }
        let frame_length = match inputs.opt_tensor(3)? {
            Some(_) => size_input(&inputs, 3, "frame_length")?,
            None => window.map_or(len, Tensor::len),
        };
        if let Some(w) = window {
            if w.len() != frame_length {
                return Err(OpError::input(
                    2,
                    format!(
                        "window has {} samples, frame_length is {frame_length}",
                        w.len()
                    ),
                ));
            }
        }
        if frame_length == 0 || frame_length > len {
            return Err(OpError::invalid(format!(
                "frame_length {frame_length} must be in 1..={len} (the signal length)"
            )));
        }
        let frames = (len - frame_length) / step + 1;
        let bins = if self.onesided {
            frame_length / 2 + 1
        } else {
            frame_length
        };

        let frames = Frames {
            batch,
            len,
            components,
            step,
            frame_length,
            frames,
            bins,
        };
        FloatKind::of(x.dtype(), 0)?;
        self.transform::<f64>(x, window, &frames)
    }
}

/// The framing of one STFT.
struct Frames {
    batch: usize,
    len: usize,
    components: usize,
    step: usize,
    frame_length: usize,
    frames: usize,
    bins: usize,
}

impl Stft {
    fn transform<R: FftReal>(
        &self,
        x: &Tensor,
        window: Option<&Tensor>,
        f: &Frames,
    ) -> Result<Vec<Value>, OpError> {
        let Frames {
            batch,
            len,
            components,
            step,
            frame_length,
            frames,
            bins,
        } = *f;
        let data = R::read(x, 0)?;
        let window = window.map(|w| R::read(w, 2)).transpose()?;
        let mut out = vec![R::zero(); batch * frames * bins * 2];
        let mut transform = Transform::<R>::new(frame_length, false);
        let mut buf = vec![Complex::new(R::zero(), R::zero()); frame_length];
        for b in 0..batch {
            for f in 0..frames {
                for (k, v) in buf.iter_mut().enumerate() {
                    let p = (b * len + f * step + k) * components;
                    let w = window.as_ref().map_or(R::one(), |w| w[k]);
                    let im = if components == 2 {
                        data[p + 1]
                    } else {
                        R::zero()
                    };
                    *v = Complex::new(data[p] * w, im * w);
                }
                transform.process(&mut buf);
                let base = (b * frames + f) * bins * 2;
                for (k, v) in buf.iter().take(bins).enumerate() {
                    out[base + 2 * k] = v.re;
                    out[base + 2 * k + 1] = v.im;
                }
            }
        }
        Ok(vec![R::to_tensor(
            out,
            x.dtype(),
            &[batch, frames, bins, 2],
        )?
        .into()])
    }
}

// ---------------------------------------------------------------------------------------------
// Windows

#[derive(Clone, Copy)]
enum Window {
    Hann,
    Hamming,
    Blackman,
}

impl Window {
    /// The window's value at `n` of a period of `period` samples.
    fn at(self, n: usize, period: usize) -> f64 {
        let phase = 2.0 * std::f64::consts::PI * n as f64 / period as f64;
        match self {
            Window::Hann => 0.5 - 0.5 * phase.cos(),
            // alpha = 25/46, the value that cancels the first sidelobe (torch and ONNX use it).
            Window::Hamming => 25.0 / 46.0 - 21.0 / 46.0 * phase.cos(),
            Window::Blackman => 0.42 - 0.5 * phase.cos() + 0.08 * (2.0 * phase).cos(),
        }
    }
}

/// Reads `output_datatype` (default float) and checks it is one the window-like ops produce.
fn output_datatype(info: &NodeInfo) -> Result<DataType, OpError> {
    let code = info.attr_int("output_datatype", DataType::Float as i64)?;
    let dtype = i32::try_from(code)
        .ok()
        .and_then(DataType::from_onnx)
        .ok_or_else(|| OpError::attribute("output_datatype", format!("unknown type {code}")))?;
    use DataType::*;
    match dtype {
        Uint8 | Uint16 | Uint32 | Uint64 | Int8 | Int16 | Int32 | Int64 | Float16 | Float
        | Double | Bfloat16 => Ok(dtype),
        other => Err(OpError::attribute(
            "output_datatype",
            format!("{other} is not a numeric type these ops produce"),
        )),
    }
}

/// f64 values as a tensor of `dtype` (integer types truncate, as a Cast does).
fn to_output(values: Vec<f64>, shape: &[usize], dtype: DataType) -> Result<Tensor, OpError> {
    cast_tensor(
        &Tensor::from_vec(shape, values)?,
        dtype,
        CastOptions::default(),
    )
}

/// ONNX `HannWindow`, `HammingWindow` and `BlackmanWindow`, opset 17: a window of `size`
/// samples, periodic (one period of `size` samples: the first `size` of a `size + 1` symmetric
/// window) or symmetric (`periodic=0`).
struct WindowOp {
    window: Window,
    periodic: bool,
    dtype: DataType,
}

fn build_window(info: &NodeInfo, window: Window) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(WindowOp {
        window,
        periodic: info.attr_int("periodic", 1)? != 0,
        dtype: output_datatype(info)?,
    }))
}

impl Kernel for WindowOp {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let size = size_input(&inputs, 0, "size")?;
        let period = if self.periodic {
            size
        } else {
            size.saturating_sub(1)
        };
        let values = (0..size)
            .map(|n| {
                if period == 0 {
                    1.0
                } else {
                    self.window.at(n, period)
                }
            })
            .collect();
        Ok(vec![to_output(values, &[size], self.dtype)?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// MelWeightMatrix

/// ONNX `MelWeightMatrix`, opset 17: a `[dft_length/2 + 1, num_mel_bins]` matrix of triangular
/// filters, peak 1, whose edges are `num_mel_bins + 2` points spaced evenly on the mel scale
/// (`mel(f) = 2595·log10(1 + f/700)`) over `[lower_edge_hertz, upper_edge_hertz]`, each placed at
/// spectrogram bin `floor((dft_length + 1)·f / sample_rate)`.
struct MelWeightMatrix {
    dtype: DataType,
}

fn build_mel_weight_matrix(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(MelWeightMatrix {
        dtype: output_datatype(info)?,
    }))
}

/// A float scalar input as f64.
fn float_scalar(inputs: &Inputs, index: usize) -> Result<f64, OpError> {
    match f64::read(inputs.tensor(index)?, index)?.as_ref() {
        [v] => Ok(*v),
        other => Err(OpError::input(
            index,
            format!("expected one value, got {}", other.len()),
        )),
    }
}

impl Kernel for MelWeightMatrix {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let mel_bins = size_input(&inputs, 0, "num_mel_bins")?;
        let dft_length = size_input(&inputs, 1, "dft_length")?;
        let sample_rate = size_input(&inputs, 2, "sample_rate")?;
        let (lower, upper) = (float_scalar(&inputs, 3)?, float_scalar(&inputs, 4)?);
        if sample_rate == 0 {
            return Err(OpError::input(2, "sample_rate must be positive"));
        }
        let spectrogram_bins = dft_length / 2 + 1;
        let mel = |hz: f64| 2595.0 * (hz / 700.0).ln_1p() / std::f64::consts::LN_10;
        let (low_mel, high_mel) = (mel(lower), mel(upper));
        let points = mel_bins + 2;
        let step = (high_mel - low_mel) / points as f64;
        let edges = (0..points)
            .map(|i| {
                let hz = 700.0
                    * ((i as f64 * step + low_mel) / 2595.0 * std::f64::consts::LN_10).exp_m1();
                let bin = python_floor_div((dft_length + 1) as f64 * hz, sample_rate as f64);
                if bin.is_finite() && bin >= 0.0 {
                    Ok(bin as usize)
                } else {
                    Err(OpError::invalid(format!(
                        "the mel band edge {hz} Hz is not a valid frequency"
                    )))
                }
            })
            .collect::<Result<Vec<usize>, _>>()?;

        let mut out = vec![0f64; spectrogram_bins * mel_bins];
        for m in 0..mel_bins {
            let (left, center, right) = (edges[m], edges[m + 1], edges[m + 2]);
            // The triangle covers bins left..=center rising and center..right falling.
            if center >= spectrogram_bins || right > spectrogram_bins {
                return Err(OpError::invalid(format!(
                    "mel band {m} reaches past the {spectrogram_bins} spectrogram bins (upper_edge_hertz above the Nyquist frequency?)"
                )));
            }
            if center == left {
                out[center * mel_bins + m] = 1.0;
            } else if center > left {
                for j in left..=center {
                    out[j * mel_bins + m] = (j - left) as f64 / (center - left) as f64;
                }
            }
            if right > center {
                for j in center..right {
                    out[j * mel_bins + m] = (right - j) as f64 / (right - center) as f64;
                }
            }
        }
        Ok(vec![to_output(
            out,
            &[spectrogram_bins, mel_bins],
            self.dtype,
        )?
        .into()])
    }
}

/// `floor(a / b)` the way Python (and numpy) compute it for floats: from `fmod`, so that a
/// quotient that rounds up to an integer in `a / b` is not floored past the true value.
fn python_floor_div(a: f64, b: f64) -> f64 {
    let m = a % b;
    let mut div = (a - m) / b;
    if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
        div -= 1.0;
    }
    if div == 0.0 {
        return 0.0f64.copysign(a / b);
    }
    let floor = div.floor();
    if div - floor > 0.5 {
        floor + 1.0
    } else {
        floor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type C64 = Complex<f64>;

    fn naive_dft(x: &[C64]) -> Vec<C64> {
        let n = x.len();
        (0..n)
            .map(|k| {
                x.iter()
                    .enumerate()
                    .map(|(t, &v)| {
                        v * C64::from_polar(
                            1.0,
                            -2.0 * std::f64::consts::PI * (k * t) as f64 / n as f64,
                        )
                    })
                    .sum()
            })
            .collect()
    }

    #[test]
    fn transform_matches_naive_dft_at_awkward_lengths() {
        for n in [1, 7, 17, 100] {
            let x: Vec<C64> = (0..n)
                .map(|i| C64::new((i as f64).sin(), (i as f64 * 0.3).cos()))
                .collect();
            let mut buf = x.clone();
            Transform::new(n, false).process(&mut buf);
            for (a, b) in buf.iter().zip(naive_dft(&x)) {
                assert!((a - b).norm() < 1e-9, "n = {n}");
            }
        }
    }

    #[test]
    fn floor_div_like_python() {
        assert_eq!(python_floor_div(7.0, 2.0), 3.0);
        assert_eq!(python_floor_div(-7.0, 2.0), -4.0);
        assert_eq!(python_floor_div(0.0, 5.0), 0.0);
    }
}
