//! Keras's built-in activation functions (`keras.activations`) as ONNX nodes.
//!
//! Where Keras 2 and 3 differ the file's version decides: `hard_sigmoid` is
//! `clip(0.2x + 0.5, 0, 1)` in Keras 2 and `relu6(x + 3) / 6` in Keras 3.

use serde_json::Value as Json;

use crate::archive::KerasMajor;
use crate::builder::{attr_f, attr_i, Tensor};
use crate::model::{Cx, Layer};
use crate::KerasError;

/// The activation's name from a config value: a string, or a serialised function object.
pub fn activation_name(spec: Option<&Json>) -> Option<String> {
    match spec? {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o
            .get("config")
            .and_then(Json::as_str)
            .or_else(|| o.get("class_name").and_then(Json::as_str))
            .map(str::to_string),
        Json::Null => None,
        _ => None,
    }
}

/// Slope and offset of `hard_sigmoid` for the file's Keras version.
pub fn hard_sigmoid_params(major: KerasMajor) -> (f32, f32) {
    match major {
        KerasMajor::Two => (0.2, 0.5),
        KerasMajor::Three => (1.0 / 6.0, 0.5),
    }
}

/// Applies the activation named by `spec` (a config's `activation` value) to `x`.
pub fn activation(
    cx: &mut Cx,
    l: &Layer,
    x: Tensor,
    spec: Option<&Json>,
) -> Result<Tensor, KerasError> {
    let Some(name) = activation_name(spec) else {
        return Ok(x);
    };
    let base = l.base(&name);
    let xv = x.value.clone();
    let major = cx.major;
    let b = &mut cx.b;
    let unary = |b: &mut crate::builder::Builder, op: &str| b.op(op, &base, &[&xv], vec![]);
    let last_axis = x.perm[x.rank() - 1] as i64;
    let value = match name.as_str() {
        "linear" => return Ok(x),
        "relu" => unary(b, "Relu"),
        "sigmoid" => unary(b, "Sigmoid"),
        "tanh" => unary(b, "Tanh"),
        "softplus" => unary(b, "Softplus"),
        "softsign" => unary(b, "Softsign"),
        "exponential" => unary(b, "Exp"),
        "selu" => unary(b, "Selu"),
        "elu" => b.op("Elu", &base, &[&xv], vec![attr_f("alpha", 1.0)]),
        "celu" => b.op("Celu", &base, &[&xv], vec![attr_f("alpha", 1.0)]),
        "leaky_relu" => b.op("LeakyRelu", &base, &[&xv], vec![attr_f("alpha", 0.2)]),
        "relu6" => {
            let (lo, hi) = (b.scalar(0.0), b.scalar(6.0));
            b.op("Clip", &base, &[&xv, &lo, &hi], vec![])
        }
        "hard_tanh" => {
            let (lo, hi) = (b.scalar(-1.0), b.scalar(1.0));
            b.op("Clip", &base, &[&xv, &lo, &hi], vec![])
        }
        "softmax" => b.op("Softmax", &base, &[&xv], vec![attr_i("axis", last_axis)]),
        "log_softmax" => b.op("LogSoftmax", &base, &[&xv], vec![attr_i("axis", last_axis)]),
        "hard_sigmoid" => {
            let (alpha, beta) = hard_sigmoid_params(major);
            b.op(
                "HardSigmoid",
                &base,
                &[&xv],
                vec![attr_f("alpha", alpha), attr_f("beta", beta)],
            )
        }
        "sparse_sigmoid" => b.op(
            "HardSigmoid",
            &base,
            &[&xv],
            vec![attr_f("alpha", 0.5), attr_f("beta", 0.5)],
        ),
        "silu" | "swish" => {
            let s = b.op("Sigmoid", &l.base("sigmoid"), &[&xv], vec![]);
            b.op("Mul", &base, &[&xv, &s], vec![])
        }
        "hard_silu" | "hard_swish" => {
            if b.opset >= 14 {
                unary(b, "HardSwish")
            } else {
                let s = b.op(
                    "HardSigmoid",
                    &l.base("hard_sigmoid"),
                    &[&xv],
                    vec![attr_f("alpha", 1.0 / 6.0), attr_f("beta", 0.5)],
                );
                b.op("Mul", &base, &[&xv, &s], vec![])
            }
        }
        "gelu" => {
            // Keras's default is the exact form: x * (1 + erf(x / sqrt(2))) / 2.
            if b.opset >= 20 {
                b.op("Gelu", &base, &[&xv], vec![])
            } else {
                let k = b.scalar(std::f32::consts::FRAC_1_SQRT_2);
                let s = b.op("Mul", &l.base("gelu_scaled"), &[&xv, &k], vec![]);
                let e = b.op("Erf", &l.base("gelu_erf"), &[&s], vec![]);
                let one = b.scalar(1.0);
                let p = b.op("Add", &l.base("gelu_1p"), &[&e, &one], vec![]);
                let half = b.scalar(0.5);
                let h = b.op("Mul", &l.base("gelu_half"), &[&xv, &half], vec![]);
                b.op("Mul", &base, &[&h, &p], vec![])
            }
        }
        "mish" => {
            if b.opset >= 18 {
                unary(b, "Mish")
            } else {
                let sp = b.op("Softplus", &l.base("mish_softplus"), &[&xv], vec![]);
                let t = b.op("Tanh", &l.base("mish_tanh"), &[&sp], vec![]);
                b.op("Mul", &base, &[&xv, &t], vec![])
            }
        }
        "log_sigmoid" => {
            let n = b.op("Neg", &l.base("neg"), &[&xv], vec![]);
            let sp = b.op("Softplus", &l.base("softplus"), &[&n], vec![]);
            b.op("Neg", &base, &[&sp], vec![])
        }
        "tanh_shrink" => {
            let t = b.op("Tanh", &l.base("tanh"), &[&xv], vec![]);
            b.op("Sub", &base, &[&xv, &t], vec![])
        }
        "soft_shrink" => b.op(
            "Shrink",
            &base,
            &[&xv],
            vec![attr_f("lambd", 0.5), attr_f("bias", 0.5)],
        ),
        "hard_shrink" => b.op(
            "Shrink",
            &base,
            &[&xv],
            vec![attr_f("lambd", 0.5), attr_f("bias", 0.0)],
        ),
        "squareplus" => {
            // (x + sqrt(x² + 4)) / 2
            let sq = b.op("Mul", &l.base("sq"), &[&xv, &xv], vec![]);
            let four = b.scalar(4.0);
            let s = b.op("Add", &l.base("sq_b"), &[&sq, &four], vec![]);
            let r = b.op("Sqrt", &l.base("sqrt"), &[&s], vec![]);
            let a = b.op("Add", &l.base("sum"), &[&xv, &r], vec![]);
            let half = b.scalar(0.5);
            b.op("Mul", &base, &[&a, &half], vec![])
        }
        "sparse_plus" => {
            // max(x, (clip(x, -1, 1) + 1)² / 4): 0 below -1, x above 1, the parabola between.
            let (lo, hi) = (b.scalar(-1.0), b.scalar(1.0));
            let c = b.op("Clip", &l.base("clip"), &[&xv, &lo, &hi], vec![]);
            let p = b.op("Add", &l.base("p1"), &[&c, &hi], vec![]);
            let q = b.op("Mul", &l.base("sq"), &[&p, &p], vec![]);
            let quarter = b.scalar(0.25);
            let m = b.op("Mul", &l.base("quarter"), &[&q, &quarter], vec![]);
            b.op("Max", &base, &[&xv, &m], vec![])
        }
        "glu" => {
            // a * sigmoid(b) with a, b the halves of the last axis.
            let r = x.rank();
            let n = x.shape[r - 1]
                .ok_or_else(|| l.err("activation 'glu' needs a known last dimension"))?;
            let axis = b.ints(&[last_axis]);
            let (z, h, e) = (b.ints(&[0]), b.ints(&[(n / 2) as i64]), b.ints(&[n as i64]));
            let a = b.op("Slice", &l.base("glu_a"), &[&xv, &z, &h, &axis], vec![]);
            let g = b.op("Slice", &l.base("glu_b"), &[&xv, &h, &e, &axis], vec![]);
            let s = b.op("Sigmoid", &l.base("glu_sigmoid"), &[&g], vec![]);
            let v = b.op("Mul", &base, &[&a, &s], vec![]);
            let mut shape = x.shape.clone();
            shape[r - 1] = Some(n / 2);
            return Ok(Tensor {
                value: v,
                shape,
                ..x
            });
        }
        other => {
            return Err(l.err(format!("activation='{other}' is not supported")));
        }
    };
    Ok(x.with_value(value))
}

/// An activation inside an ONNX RNN/GRU/LSTM: the op's name and its alpha/beta, if any.
pub fn rnn_activation(
    l: &Layer,
    spec: Option<&Json>,
    major: KerasMajor,
) -> Result<(&'static str, Vec<f32>, Vec<f32>), KerasError> {
    let name = activation_name(spec).unwrap_or_else(|| "linear".into());
    Ok(match name.as_str() {
        "tanh" => ("Tanh", vec![], vec![]),
        "sigmoid" => ("Sigmoid", vec![], vec![]),
        "relu" => ("Relu", vec![], vec![]),
        "softsign" => ("Softsign", vec![], vec![]),
        "softplus" => ("Softplus", vec![], vec![]),
        "elu" => ("Elu", vec![1.0], vec![]),
        "linear" => ("Affine", vec![1.0], vec![0.0]),
        "hard_sigmoid" => {
            let (a, b) = hard_sigmoid_params(major);
            ("HardSigmoid", vec![a], vec![b])
        }
        other => {
            return Err(l.err(format!(
                "activation '{other}' inside a recurrent layer is not supported"
            )))
        }
    })
}
