//! MultiHeadAttention over rank-3 inputs (`[batch, time, features]`, attention over time).
//!
//! Keras projects with EinsumDense kernels `[dim, heads, head_dim]`; here each projection is one
//! MatMul against the kernel flattened to `[dim, heads·head_dim]`, then a Reshape to heads. The
//! `1/sqrt(key_dim)` query scaling is folded into the query weights. Masks are added to the
//! scores as `(1 - mask)·(-1e9)`, as Keras's Softmax does.

use serde_json::Value as Json;

use crate::array::Array;
use crate::builder::{attr_i, Tensor, FLOAT};
use crate::model::{Cx, Kwargs, Layer};
use crate::KerasError;

type Result<T> = std::result::Result<T, KerasError>;

pub fn multi_head_attention(
    cx: &mut Cx,
    l: &Layer,
    inputs: Vec<Tensor>,
    kwargs: &Kwargs,
) -> Result<Tensor> {
    let mut positional = inputs.into_iter();
    let mut arg = |name: &str| {
        positional
            .next()
            .or_else(|| kwargs.tensors.get(name).cloned())
    };
    let query = arg("query").ok_or_else(|| l.err("called without a query"))?;
    let value = arg("value").ok_or_else(|| l.err("called without a value"))?;
    let key = arg("key").unwrap_or_else(|| value.clone());
    if kwargs
        .get("return_attention_scores")
        .and_then(Json::as_bool)
        == Some(true)
    {
        return Err(l.err("return_attention_scores=true is not supported"));
    }
    for t in [&query, &value, &key] {
        if t.rank() != 3 {
            return Err(l.err(format!(
                "inputs of rank {} are not supported (rank 3 only)",
                t.rank()
            )));
        }
    }
    l.require("attention_axes", |v| {
        v.as_array()
            .is_some_and(|a| a.len() == 1 && matches!(a[0].as_i64(), Some(1 | -2)))
            || v.as_i64().is_some_and(|a| a == 1 || a == -2)
    })?;
    l.require("use_gate", |v| v.as_bool() == Some(false))?;
    l.require("sliding_window", |_| false)?;
    let heads = l.i64("num_heads")? as usize;
    let key_dim = l.i64("key_dim")? as usize;
    let value_dim = l
        .get("value_dim")
        .and_then(Json::as_u64)
        .map_or(key_dim, |v| v as usize);
    let use_bias = l.bool("use_bias", true);
    let w = cx.weights(
        l,
        &["query_dense", "key_dense", "value_dense", "output_dense"],
        if use_bias { &[8] } else { &[4] },
    )?;
    let step = 1 + use_bias as usize;
    let (wq, wk, wv, wo) = (&w[0], &w[step], &w[2 * step], &w[3 * step]);
    let bias = |i: usize| use_bias.then(|| w[i * step + 1].clone());
    let out_dim: usize = wo.shape[2..].iter().product();
    if wo.shape.len() != 3 {
        return Err(l.err(format!(
            "output_shape giving kernel {:?} is not supported",
            wo.shape
        )));
    }
    let scale = 1.0 / (key_dim as f32).sqrt();

    let project =
        |cx: &mut Cx, x: &Tensor, tag: &str, k: &Array, b: Option<Array>, dim: usize, s: f32| {
            let xv = cx.b.logical(x);
            let rows = k.shape[0];
            let kf = cx.init(l, &format!("{tag}/kernel"), || {
                k.clone().reshape(&[rows, heads * dim]).map(|v| v * s)
            });
            let mut y = cx.b.op(
                "MatMul",
                &l.base(&format!("{tag}/matmul")),
                &[&xv, &kf],
                vec![],
            );
            if let Some(b) = b {
                let bf = cx.init(l, &format!("{tag}/bias"), || {
                    b.reshape(&[heads * dim]).map(|v| v * s)
                });
                y =
                    cx.b.op("Add", &l.base(&format!("{tag}/add")), &[&y, &bf], vec![]);
            }
            cx.b.reshape(
                &l.base(&format!("{tag}/heads")),
                &y,
                &[0, 0, heads as i64, dim as i64],
            )
        };
    let q = project(cx, &query, "query", wq, bias(0), key_dim, scale);
    let k = project(cx, &key, "key", wk, bias(1), key_dim, 1.0);
    let v = project(cx, &value, "value", wv, bias(2), value_dim, 1.0);
    let q = cx.b.transpose(&q, &[0, 2, 1, 3]); // [B, h, T, kd]
    let k = cx.b.transpose(&k, &[0, 2, 3, 1]); // [B, h, kd, S]
    let v = cx.b.transpose(&v, &[0, 2, 1, 3]); // [B, h, S, vd]
    let mut scores = cx.b.op("MatMul", &l.base("scores"), &[&q, &k], vec![]);

    // Masks: attention_mask [B, T, S] and/or the causal mask (i >= j).
    let causal = kwargs.get("use_causal_mask").and_then(Json::as_bool) == Some(true);
    let mask = kwargs.tensors.get("attention_mask").cloned();
    if causal || mask.is_some() {
        let causal_mask = if causal {
            let (t, s) = match (query.shape[1], value.shape[1]) {
                (Some(t), Some(s)) => (t, s),
                _ => return Err(l.err("use_causal_mask=true needs known sequence lengths")),
            };
            let data = (0..t * s)
                .map(|i| ((i / s) >= (i % s)) as u8 as f32)
                .collect();
            Some(Array::new(vec![t, s], data).expect("sized"))
        } else {
            None
        };
        let adder = match (mask, causal_mask) {
            (None, Some(c)) => {
                cx.b.weight(&l.base("causal_adder"), c.map(|m| (1.0 - m) * -1e9))
            }
            (Some(m), c) => {
                let mv = cx.b.logical(&m);
                let mf = cx.b.op(
                    "Cast",
                    &l.base("mask_float"),
                    &[&mv],
                    vec![attr_i("to", FLOAT as i64)],
                );
                let mf = match c {
                    Some(c) => {
                        let cv = cx.b.weight(&l.base("causal_mask"), c);
                        cx.b.op("Mul", &l.base("mask_and_causal"), &[&mf, &cv], vec![])
                    }
                    None => mf,
                };
                let mu = cx.b.unsqueeze(&l.base("mask_heads"), &mf, &[1]);
                let one = cx.b.scalar(1.0);
                let inv =
                    cx.b.op("Sub", &l.base("mask_inverted"), &[&one, &mu], vec![]);
                let big = cx.b.scalar(-1e9);
                cx.b.op("Mul", &l.base("mask_adder"), &[&inv, &big], vec![])
            }
            (None, None) => unreachable!(),
        };
        scores =
            cx.b.op("Add", &l.base("masked_scores"), &[&scores, &adder], vec![]);
    }
    let probs = cx.b.op(
        "Softmax",
        &l.base("softmax"),
        &[&scores],
        vec![attr_i("axis", 3)],
    );
    let ctx = cx.b.op("MatMul", &l.base("context"), &[&probs, &v], vec![]);
    let ctx = cx.b.transpose(&ctx, &[0, 2, 1, 3]); // [B, T, h, vd]
    let ctx = cx.b.reshape(
        &l.base("merge_heads"),
        &ctx,
        &[0, 0, (heads * value_dim) as i64],
    );
    let wo_flat = cx.init(l, "attention_output/kernel", || {
        wo.clone().reshape(&[heads * value_dim, out_dim])
    });
    let mut y = cx.b.op(
        "MatMul",
        &l.base("output/matmul"),
        &[&ctx, &wo_flat],
        vec![],
    );
    if let Some(b) = bias(3) {
        let bo = cx.init(l, "attention_output/bias", || b.reshape(&[out_dim]));
        y = cx.b.op("Add", &l.base(""), &[&y, &bo], vec![]);
    }
    Ok(Tensor {
        value: y,
        perm: vec![0, 1, 2],
        shape: vec![None, query.shape[1], Some(out_dim)],
        dtype: FLOAT,
    })
}
