//! ONNX `Dropout`, with the random generator numpy's legacy `RandomState` uses so that seeded
//! training-mode runs reproduce the ONNX reference outputs.

use runnx_ir::{DataType, Shape, Tensor, Value};

use super::copy::filled;
use super::dispatch::{scalar_from_f64, to_f64_vec, with_num_type, Num, NumFn};
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "Dropout", &[1, 6, 7, 10, 12, 13, 22], build);
}

/// ONNX `Dropout`, opsets 1-22.
///
/// In inference (every opset before 12, whose test mode the runtime decides, and from 12 unless
/// input 2 `training_mode` is true) the output is the input, unchanged and shared, and the
/// optional mask is all true (all ones of the input type before opset 10, where the mask had the
/// input's type). From opset 12, with `training_mode` true and `ratio` (input 1, default 0.5)
/// above 0, each element is kept with probability `1 - ratio` and scaled by `1 / (1 - ratio)`,
/// drawing uniforms from MT19937 seeded with the `seed` attribute, as numpy's
/// `RandomState(seed).uniform` does (a random seed when absent).
struct Dropout {
    inputs_control: bool,
    bool_mask: bool,
    want_mask: bool,
    seed: Option<i64>,
}

fn build(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let ratio = info.attr_float("ratio", 0.5)?;
    if !(0.0..1.0).contains(&ratio) {
        return Err(OpError::attribute(
            "ratio",
            format!("must be in [0, 1), got {ratio}"),
        ));
    }
    Ok(Box::new(Dropout {
        inputs_control: info.opset >= 12,
        bool_mask: info.opset >= 10,
        want_mask: info.node.outputs.get(1).is_some_and(|n| !n.is_empty()),
        seed: info.attr_int_opt("seed")?,
    }))
}

impl Kernel for Dropout {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (ratio, training) = if self.inputs_control {
            let ratio = match inputs.opt_tensor(1)? {
                Some(t) => *to_f64_vec(t)?
                    .first()
                    .ok_or_else(|| OpError::input(1, "ratio is empty"))?,
                None => 0.5,
            };
            let training = inputs.has(2)
                && *inputs
                    .slice::<bool>(2)?
                    .first()
                    .ok_or_else(|| OpError::input(2, "is empty"))?;
            (ratio, training)
        } else {
            (0.0, false)
        };
        let x = inputs.take_tensor(0)?;
        if !training || ratio == 0.0 {
            let mut out = vec![Value::from(x.clone())];
            if self.want_mask {
                let mask = if self.bool_mask {
                    Tensor::scalar(true)
                } else {
                    scalar_from_f64(x.dtype(), 1.0)?
                };
                out.push(filled(&mask, x.shape())?.into());
            }
            return Ok(out);
        }
        if !(0.0..1.0).contains(&ratio) {
            return Err(OpError::input(
                1,
                format!("ratio must be in [0, 1), got {ratio}"),
            ));
        }
        let seed = self.seed.unwrap_or_else(random_seed);
        let mut rng = Mt19937::new(seed as u32);
        let keep: Vec<bool> = (0..x.len()).map(|_| rng.next_f64() >= ratio).collect();
        let y = with_num_type(
            x.dtype(),
            Drop {
                x: &x,
                keep: &keep,
                ratio,
            },
        )??;
        let mut out = vec![Value::from(y)];
        if self.want_mask {
            out.push(Tensor::from_vec(Shape::from_slice(x.shape()), keep)?.into());
        }
        Ok(out)
    }
}

/// `y = x * keep / (1 - ratio)`, with the scale rounded to the element type first as numpy does.
struct Drop<'a> {
    x: &'a Tensor,
    keep: &'a [bool],
    ratio: f64,
}

impl NumFn for Drop<'_> {
    type Out = Result<Tensor, OpError>;
    fn call<T: Num>(self) -> Self::Out {
        if !self.x.dtype().is_float() || self.x.dtype() == DataType::Bool {
            return Err(OpError::unsupported(format!(
                "training-mode Dropout of {}",
                self.x.dtype()
            )));
        }
        let scale = T::from_f64(1.0 / (1.0 - self.ratio)).to_f64();
        let y: Vec<T> = self
            .x
            .as_slice::<T>()?
            .iter()
            .zip(self.keep)
            .map(|(&v, &k)| {
                if k {
                    T::from_f64(v.to_f64() * scale)
                } else {
                    T::ZERO
                }
            })
            .collect();
        Ok(Tensor::from_vec(Shape::from_slice(self.x.shape()), y)?)
    }
}

fn random_seed() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The Mersenne Twister MT19937 (Matsumoto & Nishimura, 1998) with numpy's 53-bit doubles.
pub(crate) struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    pub(crate) fn new(seed: u32) -> Mt19937 {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, index: 624 }
    }

    fn twist(&mut self) {
        for i in 0..624 {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
            let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.state[i] = v;
        }
        self.index = 0;
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// A uniform double in [0, 1) from two draws, as numpy's `random_sample`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        let a = f64::from(self.next_u32() >> 5);
        let b = f64::from(self.next_u32() >> 6);
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_numpy() {
        // numpy.random.RandomState(0).random_sample(3)
        let mut rng = Mt19937::new(0);
        let expected = [0.5488135039273248, 0.7151893663724195, 0.6027633760716439];
        for e in expected {
            assert_eq!(rng.next_f64(), e);
        }
        // The reference implementation's first output for its default seed.
        assert_eq!(Mt19937::new(5489).next_u32(), 3_499_211_612);
    }
}
