//! ONNX `Attention`, opsets 23, 24 and 25: scaled dot-product attention over 4D
//! `(batch, heads, seq, head_size)` or 3D packed `(batch, seq, heads·head_size)` inputs.
//!
//! Per query head `h` (GQA: key/value head `h / (q_heads / kv_heads)`):
//! `Y = softmax(softcap(Q·Kᵀ·scale) + bias) · V`, where Q and K are each scaled by `√scale`
//! first (as the spec's diagram and the reference do, to keep the product in range), and the
//! additive bias composes the attention mask (boolean: `false` → `-inf`; numeric: added), the
//! bottom-right-aligned causal mask, the sliding window (opset 25) and the padding that
//! `nonpad_kv_seqlen` (opset 24) implies. A query row every key of which is masked by the bias
//! produces zeros. `past_key`/`past_value` are concatenated in front of K and V and returned as
//! `present_key`/`present_value`; the optional fourth output is the logits at the stage
//! `qk_matmul_output_mode` selects.
//!
//! Each (batch, query head) pair is one rayon task running two GEMMs (`Q·Kᵀ`, `P·V`) with the
//! masking and softmax in between, so only one `q_len x kv_len` score block per task is live.

use std::borrow::Cow;

use rayon::prelude::*;
use runnx_ir::{DataType, Tensor, TensorData, Value};

use super::{
    heads_attr, output_named, pv_product, qk_product, round_to, softmax_precision, softmax_row,
    split_even, swap_middle, unnamed_output,
};
use crate::ops::norm::{FloatKind, Real};
use crate::{Inputs, Kernel, NodeInfo, OpError};

/// What the optional `qk_matmul_output` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QkOutput {
    /// Mode 0: `Q·Kᵀ·scale`.
    Raw,
    /// Mode 1: after the soft cap.
    Softcapped,
    /// Mode 2: after the soft cap and the bias.
    Biased,
    /// Mode 3: the probabilities (fully-masked rows zeroed).
    Probabilities,
}

pub(super) struct Attention {
    opset: i64,
    scale: Option<f32>,
    is_causal: bool,
    q_num_heads: Option<usize>,
    kv_num_heads: Option<usize>,
    /// Applied as `softcap·tanh(x/softcap)` when positive.
    softcap: f32,
    softmax_precision: Option<DataType>,
    qk_mode: QkOutput,
    /// Window bounds (opset 25); `None` leaves that side unbounded.
    left_window: Option<i64>,
    right_window: Option<i64>,
    /// Which of the outputs `present_key`, `present_value`, `qk_matmul_output` the node names.
    want_present: [bool; 2],
    want_qk: bool,
}

pub(super) fn build(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let qk_mode = match info.attr_int("qk_matmul_output_mode", 0)? {
        0 => QkOutput::Raw,
        1 => QkOutput::Softcapped,
        2 => QkOutput::Biased,
        3 => QkOutput::Probabilities,
        m => {
            return Err(OpError::attribute(
                "qk_matmul_output_mode",
                format!("must be 0, 1, 2 or 3, got {m}"),
            ))
        }
    };
    let window = |name: &str| -> Result<Option<i64>, OpError> {
        match info.attr_int(name, -1)? {
            -1 => Ok(None),
            w if w >= 0 => Ok(Some(w)),
            w => Err(OpError::attribute(
                name,
                format!("must be -1 or nonnegative, got {w}"),
            )),
        }
    };
    Ok(Box::new(Attention {
        opset: info.opset,
        scale: info.attr_float_opt("scale")?,
        is_causal: info.attr_int("is_causal", 0)? != 0,
        q_num_heads: heads_attr(info.attr_int_opt("q_num_heads")?, "q_num_heads")?,
        kv_num_heads: heads_attr(info.attr_int_opt("kv_num_heads")?, "kv_num_heads")?,
        softcap: info.attr_float("softcap", 0.0)?,
        softmax_precision: softmax_precision(info.attr_int_opt("softmax_precision")?)?,
        qk_mode,
        left_window: window("left_window_size")?,
        right_window: window("right_window_size")?,
        want_present: [output_named(info.node, 1), output_named(info.node, 2)],
        want_qk: output_named(info.node, 3),
    }))
}

/// Sizes of one Attention call, in the per-head 4D view.
#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    q_heads: usize,
    kv_heads: usize,
    q_len: usize,
    /// Keys in the K input (excluding the past).
    new_len: usize,
    past_len: usize,
    head_size: usize,
    v_head_size: usize,
    /// Inputs (and Y) are packed 3D.
    packed: bool,
}

impl Dims {
    fn total_len(&self) -> usize {
        self.past_len + self.new_len
    }
}

impl Attention {
    fn dims(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Dims, OpError> {
        let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
        if qs.len() != ks.len() || qs.len() != vs.len() {
            return Err(OpError::invalid(format!(
                "Q, K and V must have the same rank, got {qs:?}, {ks:?} and {vs:?}"
            )));
        }
        let d = match qs.len() {
            4 => {
                if self.opset >= 25 && (self.q_num_heads.is_some() || self.kv_num_heads.is_some()) {
                    return Err(OpError::invalid(
                        "q_num_heads and kv_num_heads must not be given for 4D inputs",
                    ));
                }
                Dims {
                    batch: qs[0],
                    q_heads: qs[1],
                    kv_heads: ks[1],
                    q_len: qs[2],
                    new_len: ks[2],
                    past_len: 0,
                    head_size: qs[3],
                    v_head_size: vs[3],
                    packed: false,
                }
            }
            3 => {
                let (Some(qh), Some(kvh)) = (self.q_num_heads, self.kv_num_heads) else {
                    return Err(OpError::invalid(
                        "3D inputs need the q_num_heads and kv_num_heads attributes",
                    ));
                };
                Dims {
                    batch: qs[0],
                    q_heads: qh,
                    kv_heads: kvh,
                    q_len: qs[1],
                    new_len: ks[1],
                    past_len: 0,
                    head_size: split_even(qs[2], qh, "Q hidden size")?,
                    v_head_size: split_even(vs[2], kvh, "V hidden size")?,
                    packed: true,
                }
            }
            r => {
                return Err(OpError::input(
                    0,
                    format!("Q must be 3D or 4D, got rank {r}"),
                ))
            }
        };
        let k_head = if d.packed {
            split_even(ks[2], d.kv_heads, "K hidden size")?
        } else {
            ks[3]
        };
        let v_heads = if d.packed { d.kv_heads } else { vs[1] };
        let v_len = if d.packed { vs[1] } else { vs[2] };
        if ks[0] != d.batch || vs[0] != d.batch {
            return Err(OpError::invalid(format!(
                "Q, K and V batch sizes differ: {qs:?}, {ks:?}, {vs:?}"
            )));
        }
        if k_head != d.head_size {
            return Err(OpError::invalid(format!(
                "Q head size {} differs from K head size {k_head}",
                d.head_size
            )));
        }
        if v_heads != d.kv_heads || v_len != d.new_len {
            return Err(OpError::invalid(format!(
                "K {ks:?} and V {vs:?} disagree on heads or sequence length"
            )));
        }
        if d.kv_heads == 0 || d.q_heads % d.kv_heads != 0 {
            return Err(OpError::invalid(format!(
                "{} query heads are not a multiple of {} key/value heads",
                d.q_heads, d.kv_heads
            )));
        }
        Ok(d)
    }

    fn typed<R: Real>(&self, inputs: &Inputs) -> Result<Vec<Value>, OpError> {
        let (q, k, v) = (inputs.tensor(0)?, inputs.tensor(1)?, inputs.tensor(2)?);
        let mut d = self.dims(q, k, v)?;
        let past = match (inputs.opt_tensor(4)?, inputs.opt_tensor(5)?) {
            (Some(pk), Some(pv)) => Some((pk, pv)),
            (None, None) => None,
            _ => {
                return Err(OpError::invalid(
                    "past_key and past_value must be given together",
                ))
            }
        };
        let nonpad = match inputs.opt_tensor(6)? {
            Some(_) if past.is_some() => {
                return Err(OpError::invalid(
                    "nonpad_kv_seqlen cannot be combined with past_key/past_value",
                ))
            }
            Some(t) => {
                let n = t
                    .as_slice::<i64>()
                    .map_err(|_| OpError::input(6, format!("expected int64, got {}", t.dtype())))?;
                if n.len() != d.batch {
                    return Err(OpError::input(
                        6,
                        format!(
                            "expected {} lengths (one per batch), got {}",
                            d.batch,
                            n.len()
                        ),
                    ));
                }
                Some(n)
            }
            None => None,
        };
        if let Some((pk, pv)) = past {
            let (ps, pvs) = (pk.shape(), pv.shape());
            let ok = ps.len() == 4
                && pvs.len() == 4
                && ps[..2] == [d.batch, d.kv_heads]
                && pvs[..2] == [d.batch, d.kv_heads]
                && ps[2] == pvs[2]
                && ps[3] == d.head_size
                && pvs[3] == d.v_head_size;
            if !ok {
                return Err(OpError::invalid(format!(
                    "past_key {ps:?} / past_value {pvs:?} do not match ({}, {}, past, {}/{})",
                    d.batch, d.kv_heads, d.head_size, d.v_head_size
                )));
            }
            d.past_len = ps[2];
        }
        let t1 = q.dtype();
        let total = d.total_len();

        // Per-head 4D views: Q (B, Hq, L, D); K and V with the past in front (B, Hkv, T, ·).
        let q4 = per_head(R::read(q, 0)?, &d, d.q_heads, d.q_len, d.head_size);
        let k4 = per_head(R::read(k, 1)?, &d, d.kv_heads, d.new_len, d.head_size);
        let v4 = per_head(R::read(v, 2)?, &d, d.kv_heads, d.new_len, d.v_head_size);
        let (k_all, v_all) = match past {
            Some((pk, pv)) => (
                prepend(
                    &R::read(pk, 4)?,
                    &k4,
                    d.batch * d.kv_heads,
                    d.past_len,
                    d.new_len,
                    d.head_size,
                ),
                prepend(
                    &R::read(pv, 5)?,
                    &v4,
                    d.batch * d.kv_heads,
                    d.past_len,
                    d.new_len,
                    d.v_head_size,
                ),
            ),
            None => (k4, v4),
        };
        let present = |data: &[R], dtype: DataType, size: usize, want: bool| {
            if want {
                Ok(Value::Tensor(R::to_tensor(
                    data.to_vec(),
                    dtype,
                    &[d.batch, d.kv_heads, total, size],
                )?))
            } else {
                Ok::<_, OpError>(unnamed_output(dtype))
            }
        };
        let present_key = present(&k_all, k.dtype(), d.head_size, self.want_present[0])?;
        let present_value = present(&v_all, v.dtype(), d.v_head_size, self.want_present[1])?;

        // Scale Q and K by √scale each, in the input precision (the reference casts √scale to
        // T1 and multiplies there).
        let scale = self
            .scale
            .map_or(1.0 / (d.head_size as f64).sqrt(), f64::from);
        let mut root = [R::from(scale.sqrt()).unwrap_or_else(R::nan)];
        round_to(&mut root, t1);
        let scaled = |x: &[R]| {
            let mut s: Vec<R> = x.iter().map(|&x| x * root[0]).collect();
            round_to(&mut s, t1);
            s
        };
        let qs = scaled(&q4);
        let ks = scaled(&k_all);

        let bias = Bias::new(self, inputs.opt_tensor(3)?, &d, nonpad)?;
        let group = d.q_heads / d.kv_heads;
        let (l, dk, dv) = (d.q_len, d.head_size, d.v_head_size);
        let precision = self.softmax_precision.unwrap_or(t1);

        let head = |task: usize| -> Result<(Vec<R>, Option<Vec<R>>), OpError> {
            let (b, h) = (task / d.q_heads, task % d.q_heads);
            let kv = b * d.kv_heads + h / group;
            let qm = &qs[task * l * dk..][..l * dk];
            let km = &ks[kv * total * dk..][..total * dk];
            let vm = &v_all[kv * total * dv..][..total * dv];

            let mut scores = qk_product(qm, km, l, total, dk)?;
            round_to(&mut scores, t1);
            let mut qk_out = None;
            let mut capture = |stage: QkOutput, s: &[R]| {
                if self.want_qk && self.qk_mode == stage {
                    qk_out = Some(s.to_vec());
                }
            };
            capture(QkOutput::Raw, &scores);
            if self.softcap > 0.0 {
                let cap = R::of(self.softcap);
                scores.iter_mut().for_each(|x| *x = cap * (*x / cap).tanh());
                round_to(&mut scores, t1);
            }
            capture(QkOutput::Softcapped, &scores);
            let mut masked_rows = vec![false; l];
            let mut bias_row = vec![R::zero(); total];
            for (i, row) in scores.chunks_mut(total.max(1)).enumerate().take(l) {
                masked_rows[i] = bias.row(b, h, i, &mut bias_row);
                row.iter_mut()
                    .zip(&bias_row)
                    .for_each(|(x, &m)| *x = *x + m);
            }
            round_to(&mut scores, t1);
            capture(QkOutput::Biased, &scores);
            for (row, &masked) in scores.chunks_mut(total.max(1)).zip(&masked_rows) {
                if masked {
                    row.fill(R::zero());
                } else {
                    softmax_row(row, precision);
                }
            }
            round_to(&mut scores, t1);
            capture(QkOutput::Probabilities, &scores);
            Ok((pv_product(&scores, vm, l, total, dv)?, qk_out))
        };
        let per_task: Vec<_> = (0..d.batch * d.q_heads)
            .into_par_iter()
            .map(head)
            .collect::<Result<_, _>>()?;

        let mut y4 = Vec::with_capacity(d.batch * d.q_heads * l * dv);
        let mut qk = Vec::new();
        for (y, s) in per_task {
            y4.extend_from_slice(&y);
            if let Some(s) = s {
                qk.extend_from_slice(&s);
            }
        }
        let y = if d.packed {
            let y = swap_middle(&y4, d.batch, d.q_heads, l, dv);
            R::to_tensor(y, t1, &[d.batch, l, d.q_heads * dv])?
        } else {
            R::to_tensor(y4, t1, &[d.batch, d.q_heads, l, dv])?
        };
        let qk = if self.want_qk {
            Value::Tensor(R::to_tensor(qk, t1, &[d.batch, d.q_heads, l, total])?)
        } else {
            unnamed_output(t1)
        };
        Ok(vec![Value::Tensor(y), present_key, present_value, qk])
    }
}

/// `x` in the per-head layout `(batch, heads, len, size)`, transposed when packed 3D.
fn per_head<'a, R: Copy>(
    x: Cow<'a, [R]>,
    d: &Dims,
    heads: usize,
    len: usize,
    size: usize,
) -> Cow<'a, [R]> {
    if d.packed {
        Cow::Owned(swap_middle(&x, d.batch, len, heads, size))
    } else {
        x
    }
}

/// `[past; new]` along the sequence axis for each of `heads` (batch·head) blocks.
fn prepend<'a, R: Copy>(
    past: &[R],
    new: &[R],
    heads: usize,
    past_len: usize,
    new_len: usize,
    size: usize,
) -> Cow<'a, [R]> {
    let mut out = Vec::with_capacity(heads * (past_len + new_len) * size);
    for h in 0..heads {
        out.extend_from_slice(&past[h * past_len * size..][..past_len * size]);
        out.extend_from_slice(&new[h * new_len * size..][..new_len * size]);
    }
    Cow::Owned(out)
}

/// The attention mask input, right-aligned against `(batch, q_heads, q_len, total_len)`.
enum MaskValues<R> {
    Bool(Vec<bool>),
    Additive(Vec<R>),
}

struct Mask<R> {
    values: MaskValues<R>,
    /// Element strides of the four dims (0 where the mask broadcasts).
    strides: [usize; 4],
    /// Length of the mask's last dim; keys past it are masked (the spec pads with `-inf`).
    keys: usize,
}

/// The additive bias of every (batch, head, query) row: the mask plus the structural limits.
struct Bias<'a, R> {
    mask: Option<Mask<R>>,
    causal: bool,
    left: Option<i64>,
    right: Option<i64>,
    /// Per batch: how many valid keys precede the query block.
    offsets: Vec<i64>,
    nonpad: Option<&'a [i64]>,
}

impl<'a, R: Real> Bias<'a, R> {
    fn new(
        op: &Attention,
        mask: Option<&Tensor>,
        d: &Dims,
        nonpad: Option<&'a [i64]>,
    ) -> Result<Self, OpError> {
        let mask = mask.map(|m| Self::mask(m, d)).transpose()?;
        let offsets = (0..d.batch)
            .map(|b| match nonpad {
                Some(n) => n[b] - d.q_len as i64,
                None => d.past_len as i64,
            })
            .collect();
        Ok(Bias {
            mask,
            causal: op.is_causal,
            left: op.left_window,
            right: op.right_window,
            offsets,
            nonpad,
        })
    }

    fn mask(m: &Tensor, d: &Dims) -> Result<Mask<R>, OpError> {
        let shape = m.shape();
        if shape.is_empty() || shape.len() > 4 {
            return Err(OpError::input(
                3,
                format!("attn_mask must have rank 1 to 4, got shape {shape:?}"),
            ));
        }
        let mut dims = [1usize; 4];
        dims[4 - shape.len()..].copy_from_slice(shape);
        let target = [d.batch, d.q_heads, d.q_len];
        for axis in 0..3 {
            if dims[axis] != 1 && dims[axis] != target[axis] {
                return Err(OpError::input(
                    3,
                    format!(
                        "attn_mask {shape:?} does not broadcast to ({}, {}, {}, {})",
                        d.batch,
                        d.q_heads,
                        d.q_len,
                        d.total_len()
                    ),
                ));
            }
        }
        if dims[3] > d.total_len() {
            return Err(OpError::input(
                3,
                format!(
                    "attn_mask has {} keys, more than the {} keys attended",
                    dims[3],
                    d.total_len()
                ),
            ));
        }
        let mut strides = [0usize; 4];
        let mut step = 1;
        for axis in (0..4).rev() {
            strides[axis] = if dims[axis] == 1 && axis < 3 { 0 } else { step };
            step *= dims[axis];
        }
        let values = match m.data() {
            TensorData::Bool(v) => MaskValues::Bool(v.clone()),
            _ if m.dtype().is_float() => MaskValues::Additive(R::read(m, 3)?.into_owned()),
            _ => MaskValues::Additive(
                m.to_i64_vec()
                    .map_err(|_| OpError::input(3, format!("unsupported mask type {}", m.dtype())))?
                    .into_iter()
                    .map(|x| R::from(x).unwrap_or_else(R::nan))
                    .collect(),
            ),
        };
        Ok(Mask {
            values,
            strides,
            keys: dims[3],
        })
    }

    /// Fills the bias of query `i` of batch `b`, head `h`; returns whether every key is masked
    /// (the whole row is `-inf`).
    fn row(&self, b: usize, h: usize, i: usize, out: &mut [R]) -> bool {
        let neg_inf = R::neg_infinity();
        match &self.mask {
            None => out.fill(R::zero()),
            Some(m) => {
                let base = b * m.strides[0] + h * m.strides[1] + i * m.strides[2];
                for (j, o) in out.iter_mut().enumerate() {
                    *o = if j >= m.keys {
                        neg_inf
                    } else {
                        match &m.values {
                            MaskValues::Bool(v) => {
                                if v[base + j * m.strides[3]] {
                                    R::zero()
                                } else {
                                    neg_inf
                                }
                            }
                            MaskValues::Additive(v) => v[base + j * m.strides[3]],
                        }
                    };
                }
            }
        }
        // Absolute position of this query among the keys.
        let p = i as i64 + self.offsets[b];
        let limit = self.nonpad.map(|n| n[b]);
        for (j, o) in out.iter_mut().enumerate() {
            let j = j as i64;
            let allowed = (!self.causal || j <= p)
                && self.left.is_none_or(|w| p - j <= w)
                && self.right.is_none_or(|w| j - p <= w)
                && limit.is_none_or(|n| j < n);
            if !allowed {
                *o = *o + neg_inf;
            }
        }
        out.iter().all(|&x| x == neg_inf)
    }
}

impl Kernel for Attention {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        match FloatKind::of(inputs.tensor(0)?.dtype(), 0)? {
            FloatKind::F32 => self.typed::<f32>(&inputs),
            FloatKind::F64 => self.typed::<f64>(&inputs),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use runnx_ir::{Attribute, AttributeValue, Graph, Node, Tensor, Value};

    use crate::{Inputs, NodeInfo, OpError, Subgraph, SubgraphCompiler};

    struct NoSubgraphs;
    impl SubgraphCompiler for NoSubgraphs {
        fn compile(&self, _: &Arc<Graph>) -> Result<Arc<dyn Subgraph>, OpError> {
            Err(OpError::unsupported("no subgraphs here"))
        }
    }

    /// Runs Attention-24 on inputs some of which are absent; returns Y.
    fn attention(attrs: &[(&str, AttributeValue)], inputs: Vec<Option<Tensor>>) -> Tensor {
        let node = Node {
            name: String::new(),
            op_type: "Attention".into(),
            domain: String::new(),
            inputs: inputs
                .iter()
                .enumerate()
                .map(|(i, x)| x.as_ref().map_or(String::new(), |_| format!("in{i}")))
                .collect(),
            outputs: vec!["Y".into()],
            attributes: attrs
                .iter()
                .map(|(name, value)| Attribute {
                    name: name.to_string(),
                    value: value.clone(),
                    ref_attr_name: None,
                })
                .collect(),
            doc_string: String::new(),
        };
        let info = NodeInfo {
            node: &node,
            opset: 24,
            constants: vec![None; inputs.len()],
            input_types: vec![None; inputs.len()],
            subgraphs: &NoSubgraphs,
        };
        let kernel = super::build(&info).unwrap();
        let values = inputs.into_iter().map(|x| x.map(Value::Tensor)).collect();
        let mut out = kernel.run(Inputs::new(values)).unwrap();
        out.remove(0).into_tensor().unwrap()
    }

    fn tensor(shape: &[usize], data: Vec<f32>) -> Option<Tensor> {
        Some(Tensor::from_vec(shape.to_vec(), data).unwrap())
    }

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Sizes: batch, query heads, kv heads, queries, keys, head size, value head size.
    type Sizes = (usize, usize, usize, usize, usize, usize, usize);

    /// The definition, one dot product at a time in f64: GQA, bottom-right causal mask
    /// (offset `s - l`), an additive mask broadcast over heads, softcap.
    fn naive(q: &[f32], k: &[f32], v: &[f32], mask: &[f32], n: Sizes, softcap: f64) -> Vec<f32> {
        let (b, hq, hkv, l, s, d, dv) = n;
        let scale = 1.0 / (d as f64).sqrt();
        let mut y = vec![0.0f32; b * hq * l * dv];
        for bi in 0..b {
            for h in 0..hq {
                let kv = bi * hkv + h / (hq / hkv);
                for i in 0..l {
                    let logits: Vec<f64> = (0..s)
                        .map(|j| {
                            if j > i + (s - l) {
                                return f64::NEG_INFINITY;
                            }
                            let dot: f64 = (0..d)
                                .map(|x| {
                                    f64::from(q[((bi * hq + h) * l + i) * d + x])
                                        * f64::from(k[(kv * s + j) * d + x])
                                })
                                .sum();
                            let mut z = dot * scale;
                            if softcap > 0.0 {
                                z = softcap * (z / softcap).tanh();
                            }
                            z + f64::from(mask[(bi * l + i) * s + j])
                        })
                        .collect();
                    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let sum: f64 = logits.iter().map(|z| (z - max).exp()).sum();
                    for e in 0..dv {
                        let acc: f64 = (0..s)
                            .map(|j| {
                                (logits[j] - max).exp() / sum * f64::from(v[(kv * s + j) * dv + e])
                            })
                            .sum();
                        y[((bi * hq + h) * l + i) * dv + e] = acc as f32;
                    }
                }
            }
        }
        y
    }

    /// `[B, H, S, D]` split along S at `at`.
    fn split(x: &[f32], bh: usize, s: usize, d: usize, at: usize) -> (Vec<f32>, Vec<f32>) {
        let (mut head, mut tail) = (Vec::new(), Vec::new());
        for block in x.chunks(s * d).take(bh) {
            head.extend_from_slice(&block[..at * d]);
            tail.extend_from_slice(&block[at * d..]);
        }
        (head, tail)
    }

    #[test]
    fn matches_the_definition_on_awkward_sizes() {
        let sizes: [Sizes; 3] = [
            (1, 1, 1, 1, 1, 1, 1),
            (2, 6, 3, 7, 17, 5, 3),
            (1, 4, 1, 17, 17, 8, 7),
        ];
        for n in sizes {
            let (b, hq, hkv, l, s, d, dv) = n;
            let q = values(b * hq * l * d, 1);
            let k = values(b * hkv * s * d, 2);
            let v = values(b * hkv * s * dv, 3);
            let mask = values(b * l * s, 4);
            for softcap in [0.0f32, 1.5] {
                let want = naive(&q, &k, &v, &mask, n, f64::from(softcap));
                let attrs = [
                    ("is_causal", AttributeValue::Int(1)),
                    ("softcap", AttributeValue::Float(softcap)),
                ];
                let check = |got: Tensor| {
                    assert_eq!(got.shape(), [b, hq, l, dv]);
                    for (g, w) in got.as_slice::<f32>().unwrap().iter().zip(&want) {
                        assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{n:?}: {g} vs {w}");
                    }
                };
                // External cache: every key valid, the causal offset s - l from nonpad_kv_seqlen.
                check(attention(
                    &attrs,
                    vec![
                        tensor(&[b, hq, l, d], q.clone()),
                        tensor(&[b, hkv, s, d], k.clone()),
                        tensor(&[b, hkv, s, dv], v.clone()),
                        tensor(&[b, 1, l, s], mask.clone()),
                        None,
                        None,
                        Some(Tensor::from_vec([b], vec![s as i64; b]).unwrap()),
                    ],
                ));
                // Internal cache: the first s - l keys come as the past.
                let (pk, nk) = split(&k, b * hkv, s, d, s - l);
                let (pv, nv) = split(&v, b * hkv, s, dv, s - l);
                check(attention(
                    &attrs,
                    vec![
                        tensor(&[b, hq, l, d], q.clone()),
                        tensor(&[b, hkv, l, d], nk),
                        tensor(&[b, hkv, l, dv], nv),
                        tensor(&[b, 1, l, s], mask.clone()),
                        tensor(&[b, hkv, s - l, d], pk),
                        tensor(&[b, hkv, s - l, dv], pv),
                    ],
                ));
            }
        }
    }
}
