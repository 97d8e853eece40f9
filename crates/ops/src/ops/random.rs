//! Random generators: RandomUniform, RandomNormal, RandomUniformLike, RandomNormalLike
//! (opsets 1 and 22), Bernoulli (15, 22) and Multinomial (7, 22).
//!
//! Every run draws from a fresh MT19937 stream seeded with the `seed` attribute (truncated to an
//! integer and taken modulo 2³², as a C cast does; a new seed per run when absent), and samples
//! the way numpy's legacy `RandomState` does, so that a seeded node reproduces the ONNX reference
//! implementation for the seeds numpy accepts (0 to 2³² - 1): uniforms are 53-bit doubles,
//! normals come from Marsaglia's polar method, Bernoulli draws one uniform per element. The
//! spec itself leaves the values implementation-defined even when seeded.
//!
//! Samples are computed in f64 and rounded to the output type.

use std::sync::atomic::{AtomicU64, Ordering};

use runnx_ir::{DataType, Shape, Tensor, Value};

use super::norm::Real;
use super::shape::dims_from_i64;
use super::shape::dispatch::{to_f64_vec, with_num_type, Num, NumFn};
use super::shape::dropout::Mt19937;
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "RandomUniform", &[1, 22], build_uniform);
    reg.add_versions("", "RandomNormal", &[1, 22], build_normal);
    reg.add_versions("", "RandomUniformLike", &[1, 22], build_uniform_like);
    reg.add_versions("", "RandomNormalLike", &[1, 22], build_normal_like);
    reg.add_versions("", "Bernoulli", &[15, 22], build_bernoulli);
    reg.add_versions("", "Multinomial", &[7, 22], build_multinomial);
}

/// The `seed` attribute as an MT19937 seed, `None` when absent (or NaN).
fn seed_attr(info: &NodeInfo) -> Result<Option<u32>, OpError> {
    Ok(info
        .attr_float_opt("seed")?
        .filter(|s| !s.is_nan())
        .map(|s| s.trunc() as i64 as u32))
}

/// A seed for an unseeded run: the clock mixed with a process-wide counter, so that runs
/// started within the same clock tick still get different streams.
fn fresh_seed() -> u32 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // splitmix64's finaliser spreads the bits of both.
    let mut z = nanos ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as u32
}

/// numpy `RandomState`-compatible draws.
struct Sampler {
    rng: Mt19937,
    /// The polar method makes normals in pairs; the second waits here for the next draw.
    spare_normal: Option<f64>,
}

impl Sampler {
    fn new(seed: Option<u32>) -> Sampler {
        Sampler {
            rng: Mt19937::new(seed.unwrap_or_else(fresh_seed)),
            spare_normal: None,
        }
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        self.rng.next_f64()
    }

    /// Standard normal: Marsaglia's polar method on a point drawn uniformly in the unit disc.
    fn normal(&mut self) -> f64 {
        if let Some(v) = self.spare_normal.take() {
            return v;
        }
        loop {
            let x1 = 2.0 * self.uniform() - 1.0;
            let x2 = 2.0 * self.uniform() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 < 1.0 && r2 != 0.0 {
                let f = (-2.0 * r2.ln() / r2).sqrt();
                self.spare_normal = Some(f * x1);
                return f * x2;
            }
        }
    }

    /// 1 with probability `p`: numpy's inversion sampler for one trial, which tests the
    /// uniform against the smaller of `p` and `1 - p`.
    fn bernoulli(&mut self, p: f64) -> bool {
        let u = self.uniform();
        if p <= 0.5 {
            u > 1.0 - p
        } else {
            u <= p
        }
    }
}

fn is_float_type(dtype: DataType) -> bool {
    matches!(
        dtype,
        DataType::Float | DataType::Double | DataType::Float16 | DataType::Bfloat16
    )
}

/// The `dtype` attribute, if present, as a type `accept` allows.
fn dtype_attr(
    info: &NodeInfo,
    accept: fn(DataType) -> bool,
    allowed: &str,
) -> Result<Option<DataType>, OpError> {
    match info.attr_int_opt("dtype")? {
        None => Ok(None),
        Some(code) => match i32::try_from(code).ok().and_then(DataType::from_onnx) {
            Some(d) if accept(d) => Ok(Some(d)),
            _ => Err(OpError::attribute(
                "dtype",
                format!("{code} is not one of {allowed}"),
            )),
        },
    }
}

const FLOAT_TYPES: &str = "float16, float, double or bfloat16";

/// What a generator draws.
#[derive(Clone, Copy, Debug)]
enum Distribution {
    /// `low + (high - low)·U[0, 1)`.
    Uniform { low: f64, high: f64 },
    /// `mean + scale·N(0, 1)`.
    Normal { mean: f64, scale: f64 },
}

impl Distribution {
    fn uniform(info: &NodeInfo) -> Result<Distribution, OpError> {
        Ok(Distribution::Uniform {
            low: info.attr_float("low", 0.0)?.into(),
            high: info.attr_float("high", 1.0)?.into(),
        })
    }

    fn normal(info: &NodeInfo) -> Result<Distribution, OpError> {
        Ok(Distribution::Normal {
            mean: info.attr_float("mean", 0.0)?.into(),
            scale: info.attr_float("scale", 1.0)?.into(),
        })
    }

    fn draw(self, s: &mut Sampler) -> f64 {
        match self {
            Distribution::Uniform { low, high } => low + (high - low) * s.uniform(),
            Distribution::Normal { mean, scale } => mean + scale * s.normal(),
        }
    }
}

/// RandomUniform / RandomNormal (shape and type from attributes) and their `Like` forms (shape
/// from input 0, type from `dtype` or else input 0's type).
struct Generate {
    distribution: Distribution,
    seed: Option<u32>,
    dtype: Option<DataType>,
    /// `None`: the shape of input 0.
    shape: Option<Shape>,
}

fn build_fixed(info: &NodeInfo, distribution: Distribution) -> Result<Box<dyn Kernel>, OpError> {
    let shape = info
        .attr_ints_opt("shape")?
        .ok_or_else(|| OpError::attribute("shape", "is required"))?;
    Ok(Box::new(Generate {
        distribution,
        seed: seed_attr(info)?,
        dtype: Some(dtype_attr(info, is_float_type, FLOAT_TYPES)?.unwrap_or(DataType::Float)),
        shape: Some(dims_from_i64(&shape, "shape")?),
    }))
}

fn build_like(info: &NodeInfo, distribution: Distribution) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(Generate {
        distribution,
        seed: seed_attr(info)?,
        dtype: dtype_attr(info, is_float_type, FLOAT_TYPES)?,
        shape: None,
    }))
}

fn build_uniform(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    build_fixed(info, Distribution::uniform(info)?)
}

fn build_normal(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    build_fixed(info, Distribution::normal(info)?)
}

fn build_uniform_like(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    build_like(info, Distribution::uniform(info)?)
}

fn build_normal_like(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    build_like(info, Distribution::normal(info)?)
}

impl Kernel for Generate {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (shape, dtype) = match &self.shape {
            Some(shape) => (shape.clone(), self.dtype.unwrap_or(DataType::Float)),
            None => {
                let like = inputs.tensor(0)?;
                let dtype = self.dtype.unwrap_or(like.dtype());
                if !is_float_type(dtype) {
                    return Err(OpError::input(
                        0,
                        format!(
                            "the output type defaults to the input's, {dtype}, which is not a float type: set dtype"
                        ),
                    ));
                }
                (Shape::from_slice(like.shape()), dtype)
            }
        };
        let mut sampler = Sampler::new(self.seed);
        let len = shape.iter().product();
        let values: Vec<f64> = (0..len)
            .map(|_| self.distribution.draw(&mut sampler))
            .collect();
        Ok(vec![
            Tensor::new(shape, f64::to_data(values, dtype)?)?.into()
        ])
    }
}

/// ONNX `Bernoulli`: each output element is 1 with the probability in the matching input
/// element (float types), else 0, in `dtype` (any numeric type or bool; default: the input's).
struct Bernoulli {
    seed: Option<u32>,
    dtype: Option<DataType>,
}

fn build_bernoulli(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let numeric = |d: DataType| {
        is_float_type(d)
            || d == DataType::Bool
            || matches!(
                d,
                DataType::Uint8
                    | DataType::Uint16
                    | DataType::Uint32
                    | DataType::Uint64
                    | DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
            )
    };
    Ok(Box::new(Bernoulli {
        seed: seed_attr(info)?,
        dtype: dtype_attr(info, numeric, "a numeric type or bool")?,
    }))
}

/// Builds a tensor of `T` from 0/1 flags.
struct FromFlags<'a>(&'a [bool], &'a [usize]);

impl NumFn for FromFlags<'_> {
    type Out = Result<Tensor, OpError>;
    fn call<T: Num>(self) -> Self::Out {
        let values: Vec<T> = self
            .0
            .iter()
            .map(|&b| if b { T::ONE } else { T::ZERO })
            .collect();
        Ok(Tensor::from_vec(self.1, values)?)
    }
}

impl Kernel for Bernoulli {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let pt = inputs.tensor(0)?;
        if !is_float_type(pt.dtype()) {
            return Err(OpError::input(
                0,
                format!("expected {FLOAT_TYPES} probabilities, got {}", pt.dtype()),
            ));
        }
        let mut sampler = Sampler::new(self.seed);
        let flags = to_f64_vec(pt)?
            .into_iter()
            .map(|p| {
                if (0.0..=1.0).contains(&p) {
                    Ok(sampler.bernoulli(p))
                } else {
                    Err(OpError::input(
                        0,
                        format!("probability {p} is outside [0, 1]"),
                    ))
                }
            })
            .collect::<Result<Vec<bool>, _>>()?;
        let dtype = self.dtype.unwrap_or(pt.dtype());
        Ok(vec![
            with_num_type(dtype, FromFlags(&flags, pt.shape()))??.into()
        ])
    }
}

/// ONNX `Multinomial`: input `[batch, classes]` holds unnormalised log-probabilities; the
/// output `[batch, sample_size]` (int32 or int64) holds class indices drawn independently from
/// each row's distribution, by inverting its cumulative sum with one uniform per sample.
struct Multinomial {
    seed: Option<u32>,
    dtype: DataType,
    sample_size: usize,
}

fn build_multinomial(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let dtype = dtype_attr(
        info,
        |d| matches!(d, DataType::Int32 | DataType::Int64),
        "int32 or int64",
    )?
    .unwrap_or(DataType::Int32);
    let sample_size = info.attr_int("sample_size", 1)?;
    Ok(Box::new(Multinomial {
        seed: seed_attr(info)?,
        dtype,
        sample_size: usize::try_from(sample_size).map_err(|_| {
            OpError::attribute("sample_size", format!("must be >= 0, got {sample_size}"))
        })?,
    }))
}

impl Kernel for Multinomial {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let xt = inputs.tensor(0)?;
        let &[batch, classes] = xt.shape() else {
            return Err(OpError::input(
                0,
                format!("expected [batch, classes], got shape {:?}", xt.shape()),
            ));
        };
        if !is_float_type(xt.dtype()) {
            return Err(OpError::input(
                0,
                format!("expected {FLOAT_TYPES}, got {}", xt.dtype()),
            ));
        }
        let x = f64::read(xt, 0)?;
        let mut sampler = Sampler::new(self.seed);
        let mut out = Vec::with_capacity(batch * self.sample_size);
        for row in x.chunks(classes.max(1)).take(batch) {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = row.iter().map(|&v| (v - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            let last_possible = weights.iter().rposition(|&w| w > 0.0);
            let (Some(last_possible), true) = (last_possible, total.is_finite()) else {
                return Err(OpError::input(
                    0,
                    "a row has no class of finite, positive probability",
                ));
            };
            for _ in 0..self.sample_size {
                let target = sampler.uniform() * total;
                let mut cumulative = 0.0;
                // Rounding can leave `target` past the last partial sum: take the last class
                // that can occur.
                let class = weights
                    .iter()
                    .position(|&w| {
                        cumulative += w;
                        target < cumulative
                    })
                    .unwrap_or(last_possible);
                out.push(class as i64);
            }
        }
        let shape = [batch, self.sample_size];
        let tensor = match self.dtype {
            DataType::Int32 => {
                Tensor::from_vec(shape, out.into_iter().map(|c| c as i32).collect())?
            }
            _ => Tensor::from_vec(shape, out)?,
        };
        Ok(vec![tensor.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_draws_match_numpy_random_state() {
        // numpy.random.RandomState(0).randn(3)
        let mut s = Sampler::new(Some(0));
        let normals = [1.764052345967664, 0.4001572083672233, 0.9787379841057392];
        for want in normals {
            assert!((s.normal() - want).abs() < 1e-15);
        }
        // numpy.random.RandomState(0).binomial(1, p=[0.3, 0.7, 0.5, 0.6]) is [0, 0, 1, 1]
        // (its uniforms are 0.5488, 0.7152, 0.6028, 0.5449).
        let mut s = Sampler::new(Some(0));
        let flags: Vec<bool> = [0.3, 0.7, 0.5, 0.6].map(|p| s.bernoulli(p)).to_vec();
        assert_eq!(flags, [false, false, true, true]);
    }

    #[test]
    fn multinomial_only_draws_possible_classes() {
        let op = Multinomial {
            seed: Some(7),
            dtype: DataType::Int64,
            sample_size: 200,
        };
        let x =
            Tensor::from_vec([2, 3], vec![0f32, f32::NEG_INFINITY, 0.0, 5.0, 5.0, 5.0]).unwrap();
        let out = op.run(Inputs::new(vec![Some(x.into())])).unwrap();
        let Value::Tensor(t) = &out[0] else { panic!() };
        let v = t.as_slice::<i64>().unwrap();
        assert!(v[..200].iter().all(|&c| c == 0 || c == 2));
        assert!(v[200..].iter().all(|&c| (0..3).contains(&c)));
        assert!(v[200..].contains(&1));
    }
}
