//! Classification losses: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.
//!
//! Both pick, for every sample position `(n, d1..dk)`, the log-probability of its target class
//! out of `[N, C, d1..dk]` scores, negate it, weight it, and optionally reduce. Computed in f32
//! for float, float16 and bfloat16 and in f64 for double, rounded to the input type at the end.

use runnx_ir::{DataType, Tensor, Value};

use super::norm::{FloatKind, Real};
use super::shape::ints_input;
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "NegativeLogLikelihoodLoss", &[12, 13, 22], build_nll);
    reg.add_versions("", "SoftmaxCrossEntropyLoss", &[12, 13], build_sce);
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Reduction {
    None,
    Sum,
    /// `sum(loss) / sum(weight of each counted sample)`; without weights, the mean over the
    /// samples whose target is not `ignore_index`.
    Mean,
}

/// The attributes both losses share.
struct LossAttrs {
    reduction: Reduction,
    ignore_index: Option<i64>,
}

fn loss_attrs(info: &NodeInfo) -> Result<LossAttrs, OpError> {
    let reduction = match info.attr_string("reduction", "mean")?.as_str() {
        "none" => Reduction::None,
        "sum" => Reduction::Sum,
        "mean" => Reduction::Mean,
        other => {
            return Err(OpError::attribute(
                "reduction",
                format!("expected 'none', 'sum' or 'mean', got '{other}'"),
            ))
        }
    };
    Ok(LossAttrs {
        reduction,
        ignore_index: info.attr_int_opt("ignore_index")?,
    })
}

/// ONNX `NegativeLogLikelihoodLoss`, opsets 12, 13 and 22 (22 adds bfloat16): input 0 holds
/// log-probabilities `[N, C, d1..dk]`, input 1 the targets `[N, d1..dk]` (int32 or int64),
/// optional input 2 per-class weights `[C]`.
struct NllLoss(LossAttrs);

fn build_nll(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(NllLoss(loss_attrs(info)?)))
}

impl Kernel for NllLoss {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        match FloatKind::of(inputs.tensor(0)?.dtype(), 0)? {
            FloatKind::F32 => nll::<f32>(&self.0, &inputs),
            FloatKind::F64 => nll::<f64>(&self.0, &inputs),
        }
    }
}

fn nll<R: Real>(attrs: &LossAttrs, inputs: &Inputs) -> Result<Vec<Value>, OpError> {
    let x = inputs.tensor(0)?;
    let log_prob = R::read(x, 0)?;
    let loss = pick_and_reduce(attrs, &log_prob, x.shape(), inputs)?;
    Ok(vec![loss.into_tensor(x.dtype())?.into()])
}

/// ONNX `SoftmaxCrossEntropyLoss`, opsets 12 and 13 (13 adds bfloat16): the negative log
/// likelihood of `log_softmax(scores, axis=1)`. A second output, when the node names one, is
/// that log-softmax (shape of the scores).
struct SceLoss {
    attrs: LossAttrs,
    want_log_prob: bool,
}

fn build_sce(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(SceLoss {
        attrs: loss_attrs(info)?,
        want_log_prob: info.node.outputs.len() > 1,
    }))
}

impl Kernel for SceLoss {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        match FloatKind::of(inputs.tensor(0)?.dtype(), 0)? {
            FloatKind::F32 => sce::<f32>(self, &inputs),
            FloatKind::F64 => sce::<f64>(self, &inputs),
        }
    }
}

fn sce<R: Real>(op: &SceLoss, inputs: &Inputs) -> Result<Vec<Value>, OpError> {
    let x = inputs.tensor(0)?;
    let (_, c, d) = ncd(x.shape())?;
    let log_prob = log_softmax_axis1(&R::read(x, 0)?, c, d);
    let loss = pick_and_reduce(&op.attrs, &log_prob, x.shape(), inputs)?;
    let mut out = vec![loss.into_tensor(x.dtype())?.into()];
    if op.want_log_prob {
        out.push(R::to_tensor(log_prob, x.dtype(), x.shape())?.into());
    }
    Ok(out)
}

/// `[N, C, D]`: the batch, the classes and the product of the trailing dims.
fn ncd(shape: &[usize]) -> Result<(usize, usize, usize), OpError> {
    match shape {
        [n, c, rest @ ..] => Ok((*n, *c, rest.iter().product())),
        _ => Err(OpError::input(
            0,
            format!("expected shape [N, C, d1..dk], got {shape:?}"),
        )),
    }
}

/// `x - max - ln(Σ exp(x - max))` along the classes of `[N, C, D]` data: subtracting the max
/// first keeps `exp` from overflowing, and the result is exact to a few ulps.
fn log_softmax_axis1<R: Real>(x: &[R], c: usize, d: usize) -> Vec<R> {
    let mut y = vec![R::zero(); x.len()];
    if c == 0 || d == 0 {
        return y;
    }
    for (xb, yb) in x.chunks(c * d).zip(y.chunks_mut(c * d)) {
        for j in 0..d {
            let column = (0..c).map(|k| xb[k * d + j]);
            let max = column.clone().fold(R::neg_infinity(), R::max);
            let log_sum = column.map(|v| (v - max).exp()).sum::<R>().ln();
            for k in 0..c {
                yb[k * d + j] = xb[k * d + j] - max - log_sum;
            }
        }
    }
    y
}

/// A loss before its conversion to the output type: per sample, or one reduced value.
struct Loss<R> {
    values: Vec<R>,
    shape: Vec<usize>,
}

impl<R: Real> Loss<R> {
    fn into_tensor(self, dtype: DataType) -> Result<Tensor, OpError> {
        R::to_tensor(self.values, dtype, &self.shape)
    }
}

/// Gathers `-log_prob[n, target, d] · weight[target]` for every sample (0 where the target is
/// `ignore_index`) and applies the reduction. Inputs 1 (targets) and 2 (weights) are read here.
fn pick_and_reduce<R: Real>(
    attrs: &LossAttrs,
    log_prob: &[R],
    x_shape: &[usize],
    inputs: &Inputs,
) -> Result<Loss<R>, OpError> {
    let (n, c, d) = ncd(x_shape)?;
    let target_t = inputs.tensor(1)?;
    let expected: Vec<usize> = [n]
        .into_iter()
        .chain(x_shape[2..].iter().copied())
        .collect();
    if target_t.shape() != expected.as_slice() {
        return Err(OpError::input(
            1,
            format!(
                "target shape {:?} does not match input shape {x_shape:?} (expected {expected:?})",
                target_t.shape()
            ),
        ));
    }
    if !matches!(target_t.dtype(), DataType::Int32 | DataType::Int64) {
        return Err(OpError::input(
            1,
            format!("expected int32 or int64 targets, got {}", target_t.dtype()),
        ));
    }
    let target = ints_input(target_t, 1)?;
    let weights = match inputs.opt_tensor(2)? {
        Some(w) => {
            let w = R::read(w, 2)?.into_owned();
            if w.len() != c {
                return Err(OpError::input(
                    2,
                    format!("expected {c} class weights, got {}", w.len()),
                ));
            }
            Some(w)
        }
        None => None,
    };

    let mut loss = vec![R::zero(); n * d];
    // The weight each sample carries: its class weight, 1 without weights, 0 when ignored.
    let mut weight = vec![R::zero(); n * d];
    for (i, &t) in target.iter().enumerate() {
        if Some(t) == attrs.ignore_index {
            continue;
        }
        let class = usize::try_from(t).ok().filter(|&k| k < c).ok_or_else(|| {
            OpError::input(
                1,
                format!("target {t} is outside [0, {c}) and is not ignore_index"),
            )
        })?;
        let w = weights.as_ref().map_or(R::one(), |w| w[class]);
        let (b, j) = (i / d, i % d);
        loss[i] = -log_prob[(b * c + class) * d + j] * w;
        weight[i] = w;
    }

    Ok(match attrs.reduction {
        Reduction::None => Loss {
            values: loss,
            shape: expected,
        },
        Reduction::Sum => Loss {
            values: vec![loss.into_iter().sum()],
            shape: Vec::new(),
        },
        Reduction::Mean => {
            let total = loss.into_iter().sum::<R>();
            Loss {
                values: vec![total / weight.into_iter().sum::<R>()],
                shape: Vec::new(),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(tensors: Vec<Option<Tensor>>) -> Inputs {
        Inputs::new(tensors.into_iter().map(|t| t.map(Value::Tensor)).collect())
    }

    fn attrs(reduction: Reduction, ignore_index: Option<i64>) -> LossAttrs {
        LossAttrs {
            reduction,
            ignore_index,
        }
    }

    #[test]
    fn nll_matches_the_spec_examples() {
        // The three examples of the operator's documentation: N=2, C=3, d1=2.
        let x = Tensor::from_vec(
            [2, 3, 2],
            vec![1f32, 2.0, 2.0, 2.0, 3.0, 2.0, 0.0, 1.0, 2.0, 2.0, 1.0, 2.0],
        )
        .unwrap();
        let target = Tensor::from_vec([2, 2], vec![2i64, 1, 0, 2]).unwrap();
        let weight = Tensor::from_vec([3], vec![0.2f32, 0.3, 0.1]).unwrap();
        let run = |a: LossAttrs, w: Option<Tensor>| {
            let out =
                nll::<f32>(&a, &inputs(vec![Some(x.clone()), Some(target.clone()), w])).unwrap();
            match &out[0] {
                Value::Tensor(t) => t.as_slice::<f32>().unwrap().to_vec(),
                _ => unreachable!(),
            }
        };
        assert_eq!(
            run(attrs(Reduction::None, None), None),
            [-3.0, -2.0, -0.0, -2.0]
        );
        let sum = run(attrs(Reduction::Sum, None), Some(weight.clone()))[0];
        assert!((sum + 1.1).abs() < 1e-6, "{sum}");
        let mean = run(attrs(Reduction::Mean, None), Some(weight))[0];
        assert!((mean + 1.1 / 0.7).abs() < 1e-6, "{mean}");
        // Ignoring class 2 leaves two samples: (-2 + 0) / 2.
        assert_eq!(run(attrs(Reduction::Mean, Some(2)), None), [-1.0]);
    }

    #[test]
    fn out_of_range_targets_are_errors() {
        let x = Tensor::from_vec([1, 2], vec![0f64, 0.0]).unwrap();
        let target = Tensor::from_vec([1], vec![-1i32]).unwrap();
        let i = inputs(vec![Some(x.clone()), Some(target.clone())]);
        assert!(nll::<f64>(&attrs(Reduction::Sum, None), &i).is_err());
        let i = inputs(vec![Some(x), Some(target)]);
        let out = nll::<f64>(&attrs(Reduction::Sum, Some(-1)), &i).unwrap();
        assert!(matches!(&out[0], Value::Tensor(t) if t.as_slice::<f64>().unwrap() == [0.0]));
    }

    #[test]
    fn log_softmax_is_stable() {
        // Two classes of equal score in each column, one column at 1000 (exp overflows f32).
        let y = log_softmax_axis1(&[1000f32, 0.0, 1000.0, 0.0], 2, 2);
        assert_eq!(y, [0.5f32.ln(); 4]);
    }
}
