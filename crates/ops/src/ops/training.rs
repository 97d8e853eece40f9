//! Optimizer steps of the `ai.onnx.preview.training` domain (opset 1): Adagrad, Adam and
//! Momentum (standard and Nesterov).
//!
//! Each takes a learning rate `R` (float or double scalar), an update count `T` (int64 scalar)
//! and then, for `n` optimised tensors, the `n` values `X`, the `n` gradients `G` and `n` of
//! each per-tensor state (`H` for Adagrad; `V` then `H` for Adam; `V` for Momentum). It outputs
//! the `n` new values and then the `n` new values of each state, each in its input's type.
//! Updates are elementwise, computed in f64 and rounded once.
//!
//! `Gradient` (same domain) is not implemented: it differentiates the graph its node sits in,
//! which a kernel cannot see.

use runnx_ir::{DataType, Tensor, Value};

use super::norm::Real;
use super::shape::dispatch::to_f64_vec;
use super::shape::int_scalar_input;
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

const TRAINING: &str = "ai.onnx.preview.training";

pub(crate) fn register(reg: &mut Registry) {
    reg.add(TRAINING, "Adagrad", 1, build_adagrad);
    reg.add(TRAINING, "Adam", 1, build_adam);
    reg.add(TRAINING, "Momentum", 1, build_momentum);
}

/// One optimizer's update rule and its attributes.
#[derive(Clone, Copy, Debug)]
enum Rule {
    /// `r = R / (1 + T·decay_factor)`, `g = norm_coefficient·X + G`, `H' = H + g²`,
    /// `X' = X - r·g / (√H' + epsilon)`.
    Adagrad {
        norm_coefficient: f64,
        decay_factor: f64,
        epsilon: f64,
    },
    /// `g = norm_coefficient·X + G`, `V' = alpha·V + (1 - alpha)·g`,
    /// `H' = beta·H + (1 - beta)·g²`, `r = R·√(1 - betaᵀ) / (1 - alphaᵀ)` when `T > 0` (else
    /// `R`), `X' = (1 - norm_coefficient_post)·(X - r·V' / (√H' + epsilon))`.
    Adam {
        alpha: f64,
        beta: f64,
        epsilon: f64,
        norm_coefficient: f64,
        norm_coefficient_post: f64,
    },
    /// `g = norm_coefficient·X + G`, `V' = alpha·V + b·g` with `b = beta` when `T > 0` and 1 on
    /// the first step; `X' = X - R·V'`, or with Nesterov `X' = X - R·(g + alpha·V')`.
    Momentum {
        alpha: f64,
        beta: f64,
        norm_coefficient: f64,
        nesterov: bool,
    },
}

impl Rule {
    fn name(self) -> &'static str {
        match self {
            Rule::Adagrad { .. } => "Adagrad",
            Rule::Adam { .. } => "Adam",
            Rule::Momentum { .. } => "Momentum",
        }
    }

    /// The states each optimised tensor carries.
    fn states(self) -> usize {
        match self {
            Rule::Adagrad { .. } | Rule::Momentum { .. } => 1,
            Rule::Adam { .. } => 2,
        }
    }

    /// The step size this call applies, from `R` and `T`.
    fn rate(self, r: f64, t: i64) -> f64 {
        match self {
            Rule::Adagrad { decay_factor, .. } => r / (1.0 + t as f64 * decay_factor),
            Rule::Adam { alpha, beta, .. } if t > 0 => {
                // Integer powers up to i32::MAX; beyond that alphaᵀ has long been 0.
                let t = t.min(i64::from(i32::MAX)) as i32;
                r * (1.0 - beta.powi(t)).sqrt() / (1.0 - alpha.powi(t))
            }
            Rule::Adam { .. } | Rule::Momentum { .. } => r,
        }
    }

    /// Updates one element: returns `X'` and overwrites `state` with its new values.
    #[inline]
    fn update(self, rate: f64, t: i64, x: f64, g: f64, state: &mut [f64]) -> f64 {
        match self {
            Rule::Adagrad {
                norm_coefficient,
                epsilon,
                ..
            } => {
                let g = norm_coefficient * x + g;
                state[0] += g * g;
                x - rate * g / (state[0].sqrt() + epsilon)
            }
            Rule::Adam {
                alpha,
                beta,
                epsilon,
                norm_coefficient,
                norm_coefficient_post,
            } => {
                let g = norm_coefficient * x + g;
                state[0] = alpha * state[0] + (1.0 - alpha) * g;
                state[1] = beta * state[1] + (1.0 - beta) * g * g;
                let x_new = x - rate * state[0] / (state[1].sqrt() + epsilon);
                (1.0 - norm_coefficient_post) * x_new
            }
            Rule::Momentum {
                alpha,
                beta,
                norm_coefficient,
                nesterov,
            } => {
                let g = norm_coefficient * x + g;
                let beta = if t > 0 { beta } else { 1.0 };
                state[0] = alpha * state[0] + beta * g;
                if nesterov {
                    x - rate * (g + alpha * state[0])
                } else {
                    x - rate * state[0]
                }
            }
        }
    }
}

struct Optimizer(Rule);

fn build_adagrad(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(Optimizer(Rule::Adagrad {
        norm_coefficient: info.attr_float("norm_coefficient", 0.0)?.into(),
        decay_factor: info.attr_float("decay_factor", 0.0)?.into(),
        epsilon: info.attr_float("epsilon", 1e-6)?.into(),
    })))
}

fn build_adam(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(Optimizer(Rule::Adam {
        alpha: info.attr_float("alpha", 0.9)?.into(),
        beta: info.attr_float("beta", 0.999)?.into(),
        epsilon: info.attr_float("epsilon", 1e-6)?.into(),
        norm_coefficient: info.attr_float("norm_coefficient", 0.0)?.into(),
        norm_coefficient_post: info.attr_float("norm_coefficient_post", 0.0)?.into(),
    })))
}

fn build_momentum(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let required = |name: &str| {
        info.attr_float_opt(name)?
            .map(f64::from)
            .ok_or_else(|| OpError::attribute(name, "is required"))
    };
    let nesterov = match info.attr_string_opt("mode")?.as_deref() {
        Some("standard") => false,
        Some("nesterov") => true,
        Some(other) => {
            return Err(OpError::attribute(
                "mode",
                format!("expected 'standard' or 'nesterov', got '{other}'"),
            ))
        }
        None => return Err(OpError::attribute("mode", "is required")),
    };
    Ok(Box::new(Optimizer(Rule::Momentum {
        alpha: required("alpha")?,
        beta: required("beta")?,
        norm_coefficient: required("norm_coefficient")?,
        nesterov,
    })))
}

/// A float or double tensor's elements as f64.
fn float_input(t: &Tensor, index: usize) -> Result<Vec<f64>, OpError> {
    match t.dtype() {
        DataType::Float | DataType::Double => Ok(f64::read(t, index)?.into_owned()),
        other => Err(OpError::input(
            index,
            format!("expected float or double, got {other}"),
        )),
    }
}

impl Kernel for Optimizer {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let rule = self.0;
        let rt = inputs.tensor(0)?;
        if !matches!(rt.dtype(), DataType::Float | DataType::Double) {
            return Err(OpError::input(
                0,
                format!("R must be float or double, got {}", rt.dtype()),
            ));
        }
        let r = match to_f64_vec(rt)?.as_slice() {
            [r] => *r,
            other => {
                return Err(OpError::input(
                    0,
                    format!("R must be a scalar, got {} values", other.len()),
                ))
            }
        };
        let tt = inputs.tensor(1)?;
        if tt.dtype() != DataType::Int64 {
            return Err(OpError::input(
                1,
                format!("T must be int64, got {}", tt.dtype()),
            ));
        }
        let t = int_scalar_input(tt, 1)?;

        let per_tensor = 2 + rule.states();
        let variadic = inputs.len().saturating_sub(2);
        let n = variadic / per_tensor;
        if n == 0 || n * per_tensor != variadic {
            return Err(OpError::invalid(format!(
                "{} expects R, T and then {per_tensor} groups of n tensors, got {variadic} tensors after T",
                rule.name()
            )));
        }
        let rate = rule.rate(r, t);
        // Outputs grouped as the inputs are: every X', then every state' in order.
        let mut x_out = Vec::with_capacity(n);
        let mut state_out: Vec<Vec<Value>> = vec![Vec::with_capacity(n); rule.states()];
        for i in 0..n {
            let index = |group: usize| 2 + group * n + i;
            let xt = inputs.tensor(index(0))?;
            let mut x = float_input(xt, index(0))?;
            let shaped_like_x = |group: usize| -> Result<&Tensor, OpError> {
                let t = inputs.tensor(index(group))?;
                if t.shape() != xt.shape() {
                    return Err(OpError::input(
                        index(group),
                        format!(
                            "shape {:?} differs from its tensor's shape {:?}",
                            t.shape(),
                            xt.shape()
                        ),
                    ));
                }
                Ok(t)
            };
            let g = float_input(shaped_like_x(1)?, index(1))?;
            let state_tensors = (0..rule.states())
                .map(|s| shaped_like_x(2 + s))
                .collect::<Result<Vec<_>, _>>()?;
            let mut states = state_tensors
                .iter()
                .enumerate()
                .map(|(s, st)| float_input(st, index(2 + s)))
                .collect::<Result<Vec<_>, _>>()?;
            let mut scratch = vec![0.0; rule.states()];
            for (e, (xe, &ge)) in x.iter_mut().zip(&g).enumerate() {
                for (slot, s) in scratch.iter_mut().zip(&states) {
                    *slot = s[e];
                }
                *xe = rule.update(rate, t, *xe, ge, &mut scratch);
                for (s, &slot) in states.iter_mut().zip(&scratch) {
                    s[e] = slot;
                }
            }
            x_out.push(f64::to_tensor(x, xt.dtype(), xt.shape())?.into());
            for ((out, values), st) in state_out.iter_mut().zip(states).zip(&state_tensors) {
                out.push(f64::to_tensor(values, st.dtype(), st.shape())?.into());
            }
        }
        x_out.extend(state_out.into_iter().flatten());
        Ok(x_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adagrad_matches_its_definition() {
        let rule = Rule::Adagrad {
            norm_coefficient: 0.001,
            decay_factor: 0.1,
            epsilon: 1e-5,
        };
        let (r, t, x, g, h) = (0.1, 0, 1.0, -1.0, 2.0);
        let rate = rule.rate(r, t);
        let mut state = [h];
        let x_new = rule.update(rate, t, x, g, &mut state);
        let g_reg: f64 = 0.001 * x + g;
        let h_new = h + g_reg * g_reg;
        assert_eq!(state[0], h_new);
        assert_eq!(x_new, x - r * g_reg / (h_new.sqrt() + 1e-5));
    }

    #[test]
    fn momentum_uses_beta_one_on_the_first_step() {
        let rule = Rule::Momentum {
            alpha: 0.9,
            beta: 0.1,
            norm_coefficient: 0.0,
            nesterov: false,
        };
        let mut v = [1.0];
        assert_eq!(
            rule.update(0.5, 0, 2.0, 3.0, &mut v),
            2.0 - 0.5 * (0.9 + 3.0)
        );
        let mut v = [1.0];
        assert_eq!(
            rule.update(0.5, 1, 2.0, 3.0, &mut v),
            2.0 - 0.5 * (0.9 * 1.0 + 0.1 * 3.0)
        );
    }
}
