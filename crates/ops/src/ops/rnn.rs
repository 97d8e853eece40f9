//! Recurrent layers: RNN (opsets 1, 7, 14, 22), GRU (1, 3, 7, 14, 22) and LSTM (1, 7, 14, 22).
//!
//! One driver serves the three cells. Per direction, the input projection `X·Wᵀ + Wb (+ Rb)` of
//! every time step is one GEMM over all `seq_len · batch` rows; each step then multiplies the
//! previous hidden state by `Rᵀ` (one `batch x gates·hidden` GEMM) and applies the cell's gate
//! equations row by row. Rows whose sequence (`sequence_lens`) has ended stop updating: their
//! `Y` entries stay zero and their last state is what `Y_h`/`Y_c` report (the initial state
//! when the length is 0). Reverse directions walk each sequence from its own last step.
//!
//! Computed in f32 for float, float16 and bfloat16 and in f64 for double; outputs are rounded
//! to the input type.

use runnx_ir::Value;

use super::norm::{FloatKind, Real};
use super::shape::ints_input;
use crate::kernels::gemm::{gemm, Bias, Epilogue, Lhs, MatMut, MatRef, Rhs};
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "RNN", &[1, 7, 14, 22], build_rnn);
    reg.add_versions("", "GRU", &[1, 3, 7, 14, 22], build_gru);
    reg.add_versions("", "LSTM", &[1, 7, 14, 22], build_lstm);
}

/// The cell equations (spec notation: `f`, `g`, `h` are the direction's activations, `⊙` the
/// elementwise product, `x` and `r` the input and recurrent projections of a gate).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cell {
    /// `Ht = f(x + r)`.
    Rnn,
    /// Gates `z, r, h`: `zt = f(..)`, `rt = f(..)`, `ht = g(xh + (rt ⊙ Ht-1)·Rhᵀ + Rbh)`, or with
    /// `linear_before_reset` `ht = g(xh + rt ⊙ (Ht-1·Rhᵀ + Rbh))`; `Ht = (1 - zt) ⊙ ht + zt ⊙ Ht-1`.
    Gru { linear_before_reset: bool },
    /// Gates `i, o, f, c` with optional peepholes `P[i, o, f]`: `Ct = ft ⊙ Ct-1 + it ⊙ g(c)`,
    /// `Ht = ot ⊙ h(Ct)`; `input_forget` couples `ft = 1 - it`.
    Lstm { input_forget: bool },
}

impl Cell {
    fn name(self) -> &'static str {
        match self {
            Cell::Rnn => "RNN",
            Cell::Gru { .. } => "GRU",
            Cell::Lstm { .. } => "LSTM",
        }
    }

    /// Gates per direction: W and R have `gates · hidden_size` rows.
    fn gates(self) -> usize {
        match self {
            Cell::Rnn => 1,
            Cell::Gru { .. } => 3,
            Cell::Lstm { .. } => 4,
        }
    }

    fn default_activations(self) -> &'static [&'static str] {
        match self {
            Cell::Rnn => &["Tanh"],
            Cell::Gru { .. } => &["Sigmoid", "Tanh"],
            Cell::Lstm { .. } => &["Sigmoid", "Tanh", "Tanh"],
        }
    }
}

/// The activation functions the recurrent ops accept, with their parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Activation {
    Relu,
    Tanh,
    Sigmoid,
    /// `alpha·x + beta`.
    Affine {
        alpha: f32,
        beta: f32,
    },
    /// `x` if `x >= 0`, else `alpha·x`.
    LeakyRelu {
        alpha: f32,
    },
    /// `x` if `x >= alpha`, else 0.
    ThresholdedRelu {
        alpha: f32,
    },
    /// `alpha·tanh(beta·x)`.
    ScaledTanh {
        alpha: f32,
        beta: f32,
    },
    /// `min(max(alpha·x + beta, 0), 1)`.
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `x` if `x >= 0`, else `alpha·(eˣ - 1)`.
    Elu {
        alpha: f32,
    },
    /// `x / (1 + |x|)`.
    Softsign,
    /// `ln(1 + eˣ)`.
    Softplus,
}

impl Activation {
    /// Parses one name (case-insensitively). The functions that take an alpha or a beta consume
    /// the next value of `alphas`/`betas`, in the order the functions are listed; once a list
    /// runs out, the standalone op's default applies.
    fn parse(
        name: &str,
        alphas: &mut impl Iterator<Item = f32>,
        betas: &mut impl Iterator<Item = f32>,
    ) -> Result<Activation, OpError> {
        let mut alpha = |default: f32| alphas.next().unwrap_or(default);
        let mut beta = |default: f32| betas.next().unwrap_or(default);
        Ok(match name.to_ascii_lowercase().as_str() {
            "relu" => Activation::Relu,
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            "affine" => Activation::Affine {
                alpha: alpha(1.0),
                beta: beta(0.0),
            },
            "leakyrelu" => Activation::LeakyRelu { alpha: alpha(0.01) },
            "thresholdedrelu" => Activation::ThresholdedRelu { alpha: alpha(1.0) },
            "scaledtanh" => Activation::ScaledTanh {
                alpha: alpha(1.0),
                beta: beta(1.0),
            },
            "hardsigmoid" => Activation::HardSigmoid {
                alpha: alpha(0.2),
                beta: beta(0.5),
            },
            "elu" => Activation::Elu { alpha: alpha(1.0) },
            "softsign" => Activation::Softsign,
            "softplus" => Activation::Softplus,
            _ => {
                return Err(OpError::attribute(
                    "activations",
                    format!("unknown activation function '{name}'"),
                ))
            }
        })
    }

    #[inline]
    fn apply<R: Real>(self, x: R) -> R {
        let zero = R::zero();
        let one = R::one();
        match self {
            Activation::Relu => x.max(zero),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => one / (one + (-x).exp()),
            Activation::Affine { alpha, beta } => R::of(alpha) * x + R::of(beta),
            Activation::LeakyRelu { alpha } => {
                if x >= zero {
                    x
                } else {
                    R::of(alpha) * x
                }
            }
            Activation::ThresholdedRelu { alpha } => {
                if x >= R::of(alpha) {
                    x
                } else {
                    zero
                }
            }
            Activation::ScaledTanh { alpha, beta } => R::of(alpha) * (R::of(beta) * x).tanh(),
            Activation::HardSigmoid { alpha, beta } => {
                (R::of(alpha) * x + R::of(beta)).max(zero).min(one)
            }
            Activation::Elu { alpha } => {
                if x >= zero {
                    x
                } else {
                    R::of(alpha) * x.exp_m1()
                }
            }
            Activation::Softsign => x / (one + x.abs()),
            // ln(1 + eˣ) = max(x, 0) + ln(1 + e^-|x|): never overflows.
            Activation::Softplus => x.max(zero) + (-x.abs()).exp().ln_1p(),
        }
    }
}

/// One RNN, GRU or LSTM node.
///
/// Inputs: `X` `[seq, batch, input]` (`[batch, seq, input]` with `layout = 1`), `W`
/// `[dirs, gates·hidden, input]`, `R` `[dirs, gates·hidden, hidden]`, optional `B`
/// `[dirs, 2·gates·hidden]` (`Wb` then `Rb`), `sequence_lens` `[batch]`, `initial_h` (and for
/// LSTM `initial_c`) `[dirs, batch, hidden]` (`[batch, dirs, hidden]` with `layout = 1`) and
/// LSTM peepholes `P` `[dirs, 3·hidden]`. Outputs: `Y` `[seq, dirs, batch, hidden]`
/// (`[batch, seq, dirs, hidden]`), `Y_h` and LSTM's `Y_c` shaped like `initial_h`. Opsets 1's
/// `output_sequence` is not needed: `Y` is produced whenever the node names it.
struct Recurrent {
    cell: Cell,
    hidden_size: Option<usize>,
    /// One entry per direction: whether it runs backwards in time.
    reverse: Vec<bool>,
    /// Each direction's activations (`f`, then `g`, then `h`, as many as the cell uses).
    activations: Vec<Vec<Activation>>,
    clip: Option<f32>,
    batch_major: bool,
    outputs: usize,
}

fn build_rnn(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    build(info, Cell::Rnn)
}

fn build_gru(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let linear_before_reset = info.attr_int("linear_before_reset", 0)? != 0;
    build(
        info,
        Cell::Gru {
            linear_before_reset,
        },
    )
}

fn build_lstm(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let input_forget = info.attr_int("input_forget", 0)? != 0;
    build(info, Cell::Lstm { input_forget })
}

fn build(info: &NodeInfo, cell: Cell) -> Result<Box<dyn Kernel>, OpError> {
    let reverse = match info.attr_string("direction", "forward")?.as_str() {
        // GRU-1's schema spells its default "foward".
        "forward" | "foward" => vec![false],
        "reverse" => vec![true],
        "bidirectional" => vec![false, true],
        other => {
            return Err(OpError::attribute(
                "direction",
                format!("expected 'forward', 'reverse' or 'bidirectional', got '{other}'"),
            ))
        }
    };
    let hidden_size = match info.attr_int_opt("hidden_size")? {
        Some(h) => Some(usize::try_from(h).map_err(|_| {
            OpError::attribute("hidden_size", format!("must be positive, got {h}"))
        })?),
        None => None,
    };
    let clip = info.attr_float_opt("clip")?;
    if let Some(c) = clip {
        if c.is_nan() || c < 0.0 {
            return Err(OpError::attribute(
                "clip",
                format!("must be a non-negative threshold, got {c}"),
            ));
        }
    }
    let batch_major = match info.attr_int("layout", 0)? {
        0 => false,
        1 => true,
        other => {
            return Err(OpError::attribute(
                "layout",
                format!("expected 0 or 1, got {other}"),
            ))
        }
    };
    let activations = parse_activations(info, cell, reverse.len())?;
    Ok(Box::new(Recurrent {
        cell,
        hidden_size,
        reverse,
        activations,
        clip,
        batch_major,
        outputs: info.node.outputs.len(),
    }))
}

/// The activations of every direction. A list of one direction's worth serves both directions
/// of a bidirectional node.
fn parse_activations(
    info: &NodeInfo,
    cell: Cell,
    directions: usize,
) -> Result<Vec<Vec<Activation>>, OpError> {
    let per_direction = cell.default_activations().len();
    let names = info.attr_strings_opt("activations")?.unwrap_or_else(|| {
        let defaults = cell.default_activations().iter().map(|s| s.to_string());
        defaults.cycle().take(per_direction * directions).collect()
    });
    let alphas = info
        .attr_floats_opt("activation_alpha")?
        .unwrap_or_default();
    let betas = info.attr_floats_opt("activation_beta")?.unwrap_or_default();
    let (mut alphas, mut betas) = (alphas.into_iter(), betas.into_iter());
    let parsed = names
        .iter()
        .map(|n| Activation::parse(n, &mut alphas, &mut betas))
        .collect::<Result<Vec<_>, _>>()?;
    if parsed.len() == per_direction {
        Ok(vec![parsed; directions])
    } else if parsed.len() == per_direction * directions {
        Ok(parsed.chunks(per_direction).map(<[_]>::to_vec).collect())
    } else {
        Err(OpError::attribute(
            "activations",
            format!(
                "{} expects {per_direction} activation(s) per direction ({directions} direction(s)), got {}",
                cell.name(),
                parsed.len()
            ),
        ))
    }
}

impl Kernel for Recurrent {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        match FloatKind::of(inputs.tensor(0)?.dtype(), 0)? {
            FloatKind::F32 => self.run_typed::<f32>(&inputs),
            FloatKind::F64 => self.run_typed::<f64>(&inputs),
        }
    }
}

/// Checks that input `index` has `shape`.
fn expect_shape(
    t: &runnx_ir::Tensor,
    index: usize,
    what: &str,
    shape: &[usize],
) -> Result<(), OpError> {
    if t.shape() != shape {
        return Err(OpError::input(
            index,
            format!("{what} has shape {:?}, expected {shape:?}", t.shape()),
        ));
    }
    Ok(())
}

/// Where the sizes of one run put things.
#[derive(Clone, Copy)]
struct Dims {
    seq: usize,
    batch: usize,
    hidden: usize,
    directions: usize,
    batch_major: bool,
}

impl Dims {
    /// The row of `X` (and of the input projection) holding step `t` of sequence `b`.
    fn x_row(&self, t: usize, b: usize) -> usize {
        if self.batch_major {
            b * self.seq + t
        } else {
            t * self.batch + b
        }
    }

    /// Where `Y[t, d, b, :]` starts.
    fn y_offset(&self, t: usize, d: usize, b: usize) -> usize {
        let row = if self.batch_major {
            (b * self.seq + t) * self.directions + d
        } else {
            (t * self.directions + d) * self.batch + b
        };
        row * self.hidden
    }

    /// Where the state of direction `d`, sequence `b` starts in `initial_h`, `Y_h`...
    fn state_offset(&self, d: usize, b: usize) -> usize {
        let row = if self.batch_major {
            b * self.directions + d
        } else {
            d * self.batch + b
        };
        row * self.hidden
    }

    fn state_shape(&self) -> [usize; 3] {
        if self.batch_major {
            [self.batch, self.directions, self.hidden]
        } else {
            [self.directions, self.batch, self.hidden]
        }
    }

    fn y_shape(&self) -> [usize; 4] {
        if self.batch_major {
            [self.batch, self.seq, self.directions, self.hidden]
        } else {
            [self.seq, self.directions, self.batch, self.hidden]
        }
    }
}

impl Recurrent {
    fn run_typed<R: Real>(&self, inputs: &Inputs) -> Result<Vec<Value>, OpError> {
        let xt = inputs.tensor(0)?;
        let &[d0, d1, input_size] = xt.shape() else {
            return Err(OpError::input(
                0,
                format!("X must have rank 3, got shape {:?}", xt.shape()),
            ));
        };
        let (seq, batch) = if self.batch_major { (d1, d0) } else { (d0, d1) };
        let directions = self.reverse.len();
        let gates = self.cell.gates();
        let rt = inputs.tensor(2)?;
        let hidden = match (self.hidden_size, rt.shape()) {
            (Some(h), _) => h,
            (None, &[_, _, h]) => h,
            (None, other) => {
                return Err(OpError::input(
                    2,
                    format!("R must have rank 3, got shape {other:?}"),
                ))
            }
        };
        let gh = gates * hidden;
        let wt = inputs.tensor(1)?;
        expect_shape(wt, 1, "W", &[directions, gh, input_size])?;
        expect_shape(rt, 2, "R", &[directions, gh, hidden])?;
        let dims = Dims {
            seq,
            batch,
            hidden,
            directions,
            batch_major: self.batch_major,
        };

        let x = R::read(xt, 0)?;
        let w = R::read(wt, 1)?;
        let r = R::read(rt, 2)?;
        let bias = match inputs.opt_tensor(3)? {
            Some(t) => {
                expect_shape(t, 3, "B", &[directions, 2 * gh])?;
                Some(R::read(t, 3)?)
            }
            None => None,
        };
        let lens = match inputs.opt_tensor(4)? {
            Some(t) => {
                expect_shape(t, 4, "sequence_lens", &[batch])?;
                ints_input(t, 4)?
                    .into_iter()
                    .map(|l| {
                        usize::try_from(l)
                            .ok()
                            .filter(|&l| l <= seq)
                            .ok_or_else(|| {
                                OpError::input(
                                    4,
                                    format!("sequence length {l} is outside [0, {seq}]"),
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            None => vec![seq; batch],
        };
        let state_input = |index: usize, what: &str| -> Result<Option<Vec<R>>, OpError> {
            match inputs.opt_tensor(index)? {
                Some(t) => {
                    expect_shape(t, index, what, &dims.state_shape())?;
                    Ok(Some(R::read(t, index)?.into_owned()))
                }
                None => Ok(None),
            }
        };
        let is_lstm = matches!(self.cell, Cell::Lstm { .. });
        let initial_h = state_input(5, "initial_h")?;
        let initial_c = if is_lstm {
            state_input(6, "initial_c")?
        } else {
            None
        };
        let peepholes = match inputs.opt_tensor(7)? {
            Some(t) if is_lstm => {
                expect_shape(t, 7, "P", &[directions, 3 * hidden])?;
                Some(R::read(t, 7)?)
            }
            _ => None,
        };

        let mut y = vec![R::zero(); seq * directions * batch * hidden];
        let mut y_h = vec![R::zero(); directions * batch * hidden];
        let mut y_c = vec![R::zero(); if is_lstm { y_h.len() } else { 0 }];
        for (d, &reverse) in self.reverse.iter().enumerate() {
            // Each direction's state, `[batch, hidden]`.
            let gather = |state: &Option<Vec<R>>| -> Vec<R> {
                let mut out = vec![R::zero(); batch * hidden];
                if let Some(s) = state {
                    for (b, row) in out.chunks_mut(hidden.max(1)).enumerate().take(batch) {
                        let at = dims.state_offset(d, b);
                        row.copy_from_slice(&s[at..at + hidden]);
                    }
                }
                out
            };
            let mut h = gather(&initial_h);
            let mut c = gather(&initial_c);
            let layer = Layer {
                cell: self.cell,
                dims,
                d,
                reverse,
                lens: &lens,
                activations: &self.activations[d],
                clip: self.clip.map(R::of),
                r: &r[d * gh * hidden..(d + 1) * gh * hidden],
                bias: bias.as_ref().map(|b| &b[d * 2 * gh..(d + 1) * 2 * gh]),
                peepholes: peepholes
                    .as_ref()
                    .map(|p| &p[d * 3 * hidden..(d + 1) * 3 * hidden]),
            };
            let w_d = &w[d * gh * input_size..(d + 1) * gh * input_size];
            let projection = layer.project(&x, w_d, input_size)?;
            layer.run(&projection, &mut h, &mut c, &mut y)?;
            for b in 0..batch {
                let at = dims.state_offset(d, b);
                y_h[at..at + hidden].copy_from_slice(&h[b * hidden..(b + 1) * hidden]);
                if is_lstm {
                    y_c[at..at + hidden].copy_from_slice(&c[b * hidden..(b + 1) * hidden]);
                }
            }
        }

        let dtype = xt.dtype();
        let mut out = vec![
            Value::from(R::to_tensor(y, dtype, &dims.y_shape())?),
            R::to_tensor(y_h, dtype, &dims.state_shape())?.into(),
        ];
        if is_lstm {
            out.push(R::to_tensor(y_c, dtype, &dims.state_shape())?.into());
        }
        out.truncate(self.outputs.max(1));
        Ok(out)
    }
}

/// One direction of one run.
struct Layer<'a, R> {
    cell: Cell,
    dims: Dims,
    /// This direction's index.
    d: usize,
    reverse: bool,
    lens: &'a [usize],
    activations: &'a [Activation],
    clip: Option<R>,
    /// `R` of this direction, `gates·hidden x hidden`.
    r: &'a [R],
    /// `Wb` then `Rb` of this direction.
    bias: Option<&'a [R]>,
    /// `P[i, o, f]` of this direction.
    peepholes: Option<&'a [R]>,
}

impl<R: Real> Layer<'_, R> {
    fn gh(&self) -> usize {
        self.cell.gates() * self.dims.hidden
    }

    /// GRU's recurrent bias of the `h` gate with `linear_before_reset`, which sits inside the
    /// reset product and so cannot be folded into the input projection.
    fn unfolded_rb_h(&self) -> Option<&[R]> {
        let h = self.dims.hidden;
        match (self.cell, self.bias) {
            (
                Cell::Gru {
                    linear_before_reset: true,
                },
                Some(b),
            ) => Some(&b[self.gh() + 2 * h..self.gh() + 3 * h]),
            _ => None,
        }
    }

    /// `X·Wᵀ + Wb + Rb` for every row of `X` at once, `[rows, gates·hidden]` (without the
    /// unfoldable GRU bias).
    fn project(&self, x: &[R], w: &[R], input_size: usize) -> Result<Vec<R>, OpError> {
        let gh = self.gh();
        let rows = self.dims.seq * self.dims.batch;
        let mut out = vec![R::zero(); rows * gh];
        let folded: Option<Vec<R>> = self.bias.map(|b| {
            let (wb, rb) = b.split_at(gh);
            let mut sum: Vec<R> = wb.iter().zip(rb).map(|(&a, &b)| a + b).collect();
            if self.unfolded_rb_h().is_some() {
                let h = self.dims.hidden;
                sum[2 * h..].copy_from_slice(&wb[2 * h..]);
            }
            sum
        });
        let epilogue = match &folded {
            Some(b) => Epilogue::with_bias(Bias::PerColumn(b)),
            None => Epilogue::none(),
        };
        gemm(
            R::one(),
            Lhs::Unpacked(MatRef::row_major(x, rows, input_size)?),
            Rhs::Unpacked(MatRef::row_major(w, gh, input_size)?.t()),
            R::zero(),
            MatMut::row_major(&mut out, rows, gh)?,
            &epilogue,
        )?;
        Ok(out)
    }

    /// `out[:, ..gates·hidden] = h · R[gate rows]ᵀ` for the `gates` first gates (rows of `out`
    /// are `gh` apart), or from gate `first` when `first > 0`.
    fn recur(&self, h: &[R], first: usize, count: usize, out: &mut [R]) -> Result<(), OpError> {
        let (batch, hidden) = (self.dims.batch, self.dims.hidden);
        let gh = self.gh();
        let rows = &self.r[first * hidden * hidden..(first + count) * hidden * hidden];
        gemm(
            R::one(),
            Lhs::Unpacked(MatRef::row_major(h, batch, hidden)?),
            Rhs::Unpacked(MatRef::row_major(rows, count * hidden, hidden)?.t()),
            R::zero(),
            MatMut::new(&mut out[first * hidden..], batch, count * hidden, gh)?,
            &Epilogue::none(),
        )
    }

    #[inline]
    fn clip(&self, v: R) -> R {
        match self.clip {
            Some(c) => v.max(-c).min(c),
            None => v,
        }
    }

    /// Runs every step, updating `h` (and `c`) `[batch, hidden]` and writing this direction's
    /// slots of `y`.
    fn run(&self, proj: &[R], h: &mut [R], c: &mut [R], y: &mut [R]) -> Result<(), OpError> {
        let Dims { batch, hidden, .. } = self.dims;
        let gh = self.gh();
        let steps = self.lens.iter().copied().max().unwrap_or(0);
        let mut rec = vec![R::zero(); batch * gh];
        // GRU without linear_before_reset: `rt ⊙ Ht-1`, then its product with `Rhᵀ` lands in
        // `rec`'s `h` columns; `z` is kept for the final blend.
        let two_pass = matches!(
            self.cell,
            Cell::Gru {
                linear_before_reset: false
            }
        );
        let mut reset_h = vec![R::zero(); if two_pass { batch * hidden } else { 0 }];
        let mut z_gate = vec![R::zero(); if two_pass { batch * hidden } else { 0 }];
        let rb_h = self.unfolded_rb_h();
        let act = self.activations;

        for k in 0..steps {
            let first_pass_gates = if two_pass { 2 } else { self.cell.gates() };
            self.recur(h, 0, first_pass_gates, &mut rec)?;
            let active = (0..batch).filter(|&b| k < self.lens[b]);
            let time = |b: usize| {
                if self.reverse {
                    self.lens[b] - 1 - k
                } else {
                    k
                }
            };
            for b in active.clone() {
                let t = time(b);
                let p = &proj[self.dims.x_row(t, b) * gh..][..gh];
                let q = &rec[b * gh..][..gh];
                let hb = &mut h[b * hidden..(b + 1) * hidden];
                match self.cell {
                    Cell::Rnn => {
                        for j in 0..hidden {
                            hb[j] = act[0].apply(self.clip(p[j] + q[j]));
                        }
                    }
                    Cell::Gru {
                        linear_before_reset,
                    } => {
                        for j in 0..hidden {
                            let z = act[0].apply(self.clip(p[j] + q[j]));
                            let r = act[0].apply(self.clip(p[hidden + j] + q[hidden + j]));
                            if linear_before_reset {
                                let rb = rb_h.map_or(R::zero(), |rb| rb[j]);
                                let pre = p[2 * hidden + j] + r * (q[2 * hidden + j] + rb);
                                let candidate = act[1].apply(self.clip(pre));
                                hb[j] = (R::one() - z) * candidate + z * hb[j];
                            } else {
                                reset_h[b * hidden + j] = r * hb[j];
                                z_gate[b * hidden + j] = z;
                            }
                        }
                    }
                    Cell::Lstm { input_forget } => {
                        let cb = &mut c[b * hidden..(b + 1) * hidden];
                        let peep = |gate: usize, j: usize| {
                            self.peepholes.map_or(R::zero(), |p| p[gate * hidden + j])
                        };
                        for j in 0..hidden {
                            let c_prev = cb[j];
                            let i = act[0].apply(self.clip(p[j] + q[j] + peep(0, j) * c_prev));
                            let f = if input_forget {
                                R::one() - i
                            } else {
                                let pre = p[2 * hidden + j] + q[2 * hidden + j];
                                act[0].apply(self.clip(pre + peep(2, j) * c_prev))
                            };
                            let candidate =
                                act[1].apply(self.clip(p[3 * hidden + j] + q[3 * hidden + j]));
                            let c_new = f * c_prev + i * candidate;
                            let pre_o = p[hidden + j] + q[hidden + j] + peep(1, j) * c_new;
                            let o = act[0].apply(self.clip(pre_o));
                            cb[j] = c_new;
                            hb[j] = o * act[2].apply(c_new);
                        }
                    }
                }
            }
            if two_pass {
                self.recur(&reset_h, 2, 1, &mut rec)?;
                for b in active.clone() {
                    let p = &proj[self.dims.x_row(time(b), b) * gh..][..gh];
                    let q = &rec[b * gh..][..gh];
                    for j in 0..hidden {
                        let candidate =
                            act[1].apply(self.clip(p[2 * hidden + j] + q[2 * hidden + j]));
                        let z = z_gate[b * hidden + j];
                        let hj = &mut h[b * hidden + j];
                        *hj = (R::one() - z) * candidate + z * *hj;
                    }
                }
            }
            for b in active {
                let at = self.dims.y_offset(time(b), self.d, b);
                y[at..at + hidden].copy_from_slice(&h[b * hidden..(b + 1) * hidden]);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations_consume_parameters_in_order() {
        let mut alphas = [0.5f32, 2.0].into_iter();
        let mut betas = [3.0f32].into_iter();
        let names = ["Sigmoid", "LeakyRelu", "ScaledTanh", "HardSigmoid"];
        let parsed: Vec<_> = names
            .iter()
            .map(|n| Activation::parse(n, &mut alphas, &mut betas).unwrap())
            .collect();
        assert_eq!(
            parsed,
            [
                Activation::Sigmoid,
                Activation::LeakyRelu { alpha: 0.5 },
                Activation::ScaledTanh {
                    alpha: 2.0,
                    beta: 3.0
                },
                Activation::HardSigmoid {
                    alpha: 0.2,
                    beta: 0.5
                },
            ]
        );
        assert!(Activation::parse("Swish", &mut alphas, &mut betas).is_err());
    }

    #[test]
    fn activations_are_stable_at_the_extremes() {
        assert_eq!(Activation::Sigmoid.apply(-1000f32), 0.0);
        assert_eq!(Activation::Sigmoid.apply(1000f32), 1.0);
        assert_eq!(Activation::Softplus.apply(1000f32), 1000.0);
        assert_eq!(Activation::Softplus.apply(-1000f32), 0.0);
        assert!((Activation::Softplus.apply(0f64) - 2f64.ln()).abs() < 1e-15);
        assert_eq!(
            Activation::ThresholdedRelu { alpha: 1.0 }.apply(0.5f32),
            0.0
        );
        assert_eq!(
            Activation::Elu { alpha: 2.0 }.apply(-1f64),
            2.0 * (-1f64).exp_m1()
        );
    }
}
