//! One function per Keras layer class: read its config and weights, emit ONNX nodes.

use serde_json::Value as Json;

use crate::activations::activation;
use crate::array::Array;
use crate::builder::{
    attr_f, attr_i, attr_ints, attr_s, channels_first_order, channels_first_perm, identity,
    inverse, Tensor, FLOAT, INT64,
};
use crate::model::{ints_of, Cx, Kwargs, Layer};
use crate::{attention, recurrent, KerasError};

type Result<T> = std::result::Result<T, KerasError>;

pub const SUPPORTED: &[&str] = &[
    "InputLayer",
    "Dense",
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
    "DepthwiseConv1D",
    "DepthwiseConv2D",
    "SeparableConv1D",
    "SeparableConv2D",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "BatchNormalization",
    "LayerNormalization",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
    "Identity",
    "Flatten",
    "Reshape",
    "Permute",
    "RepeatVector",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "PReLU",
    "ELU",
    "Softmax",
    "Add",
    "Subtract",
    "Multiply",
    "Average",
    "Maximum",
    "Minimum",
    "Concatenate",
    "Dot",
    "Embedding",
    "SimpleRNN",
    "LSTM",
    "GRU",
    "Bidirectional",
    "MultiHeadAttention",
    "Rescaling",
    "Normalization",
    "Sequential",
    "Functional",
];

/// Older Keras names of the same layers.
fn canonical(class: &str) -> &str {
    match class {
        "Convolution1D" => "Conv1D",
        "Convolution2D" => "Conv2D",
        "Convolution3D" => "Conv3D",
        "Deconvolution2D" | "Convolution2DTranspose" => "Conv2DTranspose",
        "Deconvolution3D" | "Convolution3DTranspose" => "Conv3DTranspose",
        "SeparableConvolution1D" => "SeparableConv1D",
        "SeparableConvolution2D" => "SeparableConv2D",
        "MaxPool1D" => "MaxPooling1D",
        "MaxPool2D" => "MaxPooling2D",
        "MaxPool3D" => "MaxPooling3D",
        "AvgPool1D" => "AveragePooling1D",
        "AvgPool2D" => "AveragePooling2D",
        "AvgPool3D" => "AveragePooling3D",
        "GlobalMaxPool1D" => "GlobalMaxPooling1D",
        "GlobalMaxPool2D" => "GlobalMaxPooling2D",
        "GlobalMaxPool3D" => "GlobalMaxPooling3D",
        "GlobalAvgPool1D" => "GlobalAveragePooling1D",
        "GlobalAvgPool2D" => "GlobalAveragePooling2D",
        "GlobalAvgPool3D" => "GlobalAveragePooling3D",
        other => other,
    }
}

/// The number of spatial dimensions a class name ends with (`Conv2D` -> 2).
fn spatial_rank(class: &str) -> usize {
    if class.contains("1D") {
        1
    } else if class.contains("3D") {
        3
    } else {
        2
    }
}

pub fn convert_layer(
    cx: &mut Cx,
    l: &Layer,
    inputs: Vec<Tensor>,
    kwargs: &Kwargs,
) -> Result<Vec<Tensor>> {
    check_dtype(l)?;
    let class = canonical(&l.class);
    let one = |inputs: &[Tensor]| -> Result<Tensor> {
        match inputs {
            [x] => Ok(x.clone()),
            _ => Err(l.err(format!("expects one input, got {}", inputs.len()))),
        }
    };
    let out = match class {
        "Dense" => dense(cx, l, one(&inputs)?)?,
        "Conv1D" | "Conv2D" | "Conv3D" => conv(cx, l, one(&inputs)?, ConvKind::Regular)?,
        "Conv1DTranspose" | "Conv2DTranspose" | "Conv3DTranspose" => {
            conv(cx, l, one(&inputs)?, ConvKind::Transpose)?
        }
        "DepthwiseConv1D" | "DepthwiseConv2D" => conv(cx, l, one(&inputs)?, ConvKind::Depthwise)?,
        "SeparableConv1D" | "SeparableConv2D" => conv(cx, l, one(&inputs)?, ConvKind::Separable)?,
        "MaxPooling1D" | "MaxPooling2D" | "MaxPooling3D" => pool(cx, l, one(&inputs)?, "MaxPool")?,
        "AveragePooling1D" | "AveragePooling2D" | "AveragePooling3D" => {
            pool(cx, l, one(&inputs)?, "AveragePool")?
        }
        "GlobalMaxPooling1D" | "GlobalMaxPooling2D" | "GlobalMaxPooling3D" => {
            global_pool(cx, l, one(&inputs)?, "ReduceMax")?
        }
        "GlobalAveragePooling1D" | "GlobalAveragePooling2D" | "GlobalAveragePooling3D" => {
            global_pool(cx, l, one(&inputs)?, "ReduceMean")?
        }
        "BatchNormalization" => batch_norm(cx, l, one(&inputs)?)?,
        "LayerNormalization" => layer_norm(cx, l, one(&inputs)?)?,
        "Dropout"
        | "SpatialDropout1D"
        | "SpatialDropout2D"
        | "SpatialDropout3D"
        | "GaussianNoise"
        | "GaussianDropout"
        | "AlphaDropout"
        | "ActivityRegularization"
        | "Identity" => one(&inputs)?,
        "Flatten" => flatten(cx, l, one(&inputs)?)?,
        "Reshape" => reshape(cx, l, one(&inputs)?)?,
        "Permute" => permute(l, one(&inputs)?)?,
        "RepeatVector" => repeat_vector(cx, l, one(&inputs)?)?,
        "Cropping1D" | "Cropping2D" | "Cropping3D" => crop(cx, l, one(&inputs)?)?,
        "ZeroPadding1D" | "ZeroPadding2D" | "ZeroPadding3D" => zero_pad(cx, l, one(&inputs)?)?,
        "UpSampling1D" | "UpSampling2D" | "UpSampling3D" => upsample(cx, l, one(&inputs)?)?,
        "Activation" => activation(cx, l, one(&inputs)?, l.get("activation"))?,
        "ReLU" => relu_layer(cx, l, one(&inputs)?)?,
        "LeakyReLU" => {
            let x = one(&inputs)?;
            // Keras 3 names it negative_slope, Keras 2 alpha; both default to 0.3.
            let slope = l
                .get("negative_slope")
                .or_else(|| l.get("alpha"))
                .and_then(Json::as_f64)
                .unwrap_or(0.3) as f32;
            let v = cx.b.op(
                "LeakyRelu",
                &l.base(""),
                &[&x.value],
                vec![attr_f("alpha", slope)],
            );
            x.with_value(v)
        }
        "PReLU" => prelu(cx, l, one(&inputs)?)?,
        "ELU" => {
            let x = one(&inputs)?;
            let alpha = l.f32("alpha", 1.0);
            let v = cx.b.op(
                "Elu",
                &l.base(""),
                &[&x.value],
                vec![attr_f("alpha", alpha)],
            );
            x.with_value(v)
        }
        "Softmax" => softmax_layer(cx, l, one(&inputs)?, kwargs)?,
        "Add" | "Subtract" | "Multiply" | "Average" | "Maximum" | "Minimum" => {
            merge(cx, l, class, inputs)?
        }
        "Concatenate" => concatenate(cx, l, inputs)?,
        "Dot" => dot(cx, l, inputs)?,
        "Embedding" => embedding(cx, l, one(&inputs)?)?,
        "SimpleRNN" | "LSTM" | "GRU" => return recurrent::rnn(cx, l, one(&inputs)?, kwargs),
        "Bidirectional" => return recurrent::bidirectional(cx, l, one(&inputs)?, kwargs),
        "MultiHeadAttention" => attention::multi_head_attention(cx, l, inputs, kwargs)?,
        "Rescaling" => rescaling(cx, l, one(&inputs)?)?,
        "Normalization" => normalization(cx, l, one(&inputs)?)?,
        _ => {
            return Err(l.err(
                "this layer class is not supported (see runnx_keras::SUPPORTED_LAYERS)".to_string(),
            ))
        }
    };
    Ok(vec![out])
}

/// Only float32 computation is converted; other dtype policies are refused rather than narrowed.
fn check_dtype(l: &Layer) -> Result<()> {
    let Some(d) = l.get("dtype") else {
        return Ok(());
    };
    let name = d
        .as_str()
        .or_else(|| d["config"]["name"].as_str())
        .unwrap_or("float32");
    if name == "float32" || l.class == "InputLayer" {
        Ok(())
    } else {
        Err(l.err(format!(
            "dtype policy '{name}' is not supported (float32 only)"
        )))
    }
}

fn data_format_first(l: &Layer) -> Result<bool> {
    match l.str("data_format", "channels_last") {
        "channels_last" => Ok(false),
        "channels_first" => Ok(true),
        other => Err(l.err(format!("data_format='{other}' is not supported"))),
    }
}

/// A logical-layout constant of the tensor's rank, laid out like `t`'s ONNX value.
fn to_physical(a: Array, t: &Tensor) -> Array {
    a.transpose(&inverse(&t.perm))
}

/// A per-channel vector shaped to broadcast along logical axis `axis` of `t`.
fn along_axis(v: Array, t: &Tensor, axis: usize) -> Array {
    let mut shape = vec![1; t.rank()];
    shape[axis] = v.len();
    to_physical(v.reshape(&shape), t)
}

fn dense(cx: &mut Cx, l: &Layer, x: Tensor) -> Result<Tensor> {
    l.require("quantization_config", |_| false)?;
    l.require("lora_rank", |_| false)?;
    let units = l.i64("units")? as usize;
    let use_bias = l.bool("use_bias", true);
    let w = cx.weights(l, &[""], if use_bias { &[2] } else { &[1] })?;
    let kernel = &w[0];
    let r = x.rank();
    if kernel.shape.len() != 2 || kernel.shape[1] != units {
        return Err(l.err(format!("kernel has shape {:?}", kernel.shape)));
    }
    // The features must be the last physical axis; a sequence stored time-major is fine.
    let x = if x.perm[r - 1] == r - 1 {
        x
    } else {
        cx.b.logical_tensor(&x)
    };
    let k = cx.init(l, "kernel", || w[0].clone());
    let mut shape = x.shape.clone();
    shape[r - 1] = Some(units);
    let v = if r == 2 && use_bias {
        let b = cx.init(l, "bias", || w[1].clone());
        cx.b.op("Gemm", &l.base(""), &[&x.value, &k, &b], vec![])
    } else {
        let m =
            cx.b.op("MatMul", &l.base("matmul"), &[&x.value, &k], vec![]);
        if use_bias {
            let b = cx.init(l, "bias", || w[1].clone());
            cx.b.op("Add", &l.base(""), &[&m, &b], vec![])
        } else {
            m
        }
    };
    let y = Tensor {
        value: v,
        shape,
        ..x
    };
    activation(cx, l, y, l.get("activation"))
}

#[derive(Clone, Copy, PartialEq)]
enum ConvKind {
    Regular,
    Transpose,
    Depthwise,
    Separable,
}

/// Padding attributes and output sizes of a convolution or pooling window.
fn window_padding(
    l: &Layer,
    padding: &str,
    sizes: &[Option<usize>],
    kernel: &[usize],
    strides: &[usize],
) -> Result<(Vec<runnx_onnx::proto::AttributeProto>, Vec<Option<usize>>)> {
    let n = sizes.len();
    let mut begins = vec![0i64; n];
    let mut ends = vec![0i64; n];
    let mut out = vec![None; n];
    match padding {
        "valid" => {
            for i in 0..n {
                out[i] = sizes[i].map(|s| (s.saturating_sub(kernel[i])) / strides[i] + 1);
            }
        }
        "same" => {
            for i in 0..n {
                match sizes[i] {
                    Some(s) => {
                        let o = s.div_ceil(strides[i]);
                        let total = ((o - 1) * strides[i] + kernel[i]).saturating_sub(s);
                        begins[i] = (total / 2) as i64;
                        ends[i] = (total - total / 2) as i64;
                        out[i] = Some(o);
                    }
                    None if strides[i] == 1 => {
                        let total = kernel[i] - 1;
                        begins[i] = (total / 2) as i64;
                        ends[i] = (total - total / 2) as i64;
                    }
                    None => {
                        // The split depends on the runtime size: let the op compute it.
                        return Ok((vec![attr_s("auto_pad", "SAME_UPPER")], vec![None; n]));
                    }
                }
            }
        }
        "causal" if n == 1 => {
            begins[0] = kernel[0] as i64 - 1;
            out[0] = sizes[0].map(|s| s.div_ceil(strides[0]));
        }
        other => return Err(l.err(format!("padding='{other}' is not supported"))),
    }
    let mut pads = begins;
    pads.extend(ends);
    Ok((vec![attr_ints("pads", &pads)], out))
}

fn to_i64(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

fn conv(cx: &mut Cx, l: &Layer, x: Tensor, kind: ConvKind) -> Result<Tensor> {
    let n = spatial_rank(&l.class);
    let r = x.rank();
    if r != n + 2 {
        return Err(l.err(format!("expects a rank-{} input, got rank {r}", n + 2)));
    }
    let first = data_format_first(l)?;
    let ksize = l.ints("kernel_size", n)?;
    let strides = l.ints("strides", n)?;
    let dilations = match l.get("dilation_rate") {
        Some(v) => ints_of(v, n).ok_or_else(|| l.err(format!("dilation_rate={v}")))?,
        None => vec![1; n],
    };
    let groups = l.get("groups").and_then(Json::as_u64).unwrap_or(1) as usize;
    let use_bias = l.bool("use_bias", true);
    let padding = l.str("padding", "valid").to_lowercase();
    let order = if first {
        identity(r)
    } else {
        channels_first_order(r)
    };
    let in_c = x.shape[order[1]].ok_or_else(|| l.err("the channel dimension is unknown"))?;
    let sizes: Vec<Option<usize>> = order[2..].iter().map(|&a| x.shape[a]).collect();
    let xin = cx.b.in_order(&x, &order);
    let eff: Vec<usize> = (0..n).map(|i| (ksize[i] - 1) * dilations[i] + 1).collect();
    let mut attrs = vec![
        attr_ints("kernel_shape", &to_i64(&ksize)),
        attr_ints("strides", &to_i64(&strides)),
        attr_ints("dilations", &to_i64(&dilations)),
    ];
    // Keras kernels are [*k, in, out]; ONNX wants [out, in, *k].
    let to_onnx = |k: &Array| -> Array {
        let mut p = vec![n + 1, n];
        p.extend(0..n);
        k.transpose(&p)
    };
    let (value, out_c, out_sizes) = match kind {
        ConvKind::Regular => {
            let w = cx.weights(l, &[""], if use_bias { &[2] } else { &[1] })?;
            let out_c = l.i64("filters")? as usize;
            let (pads, out_sizes) = window_padding(l, &padding, &sizes, &eff, &strides)?;
            attrs.extend(pads);
            attrs.push(attr_i("group", groups as i64));
            let wk = cx.init(l, "kernel", || to_onnx(&w[0]));
            let mut ins = vec![xin.clone(), wk];
            if use_bias {
                ins.push(cx.init(l, "bias", || w[1].clone()));
            }
            let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
            (cx.b.op("Conv", &l.base(""), &ins, attrs), out_c, out_sizes)
        }
        ConvKind::Depthwise | ConvKind::Separable => {
            let mult = l
                .get("depth_multiplier")
                .and_then(Json::as_u64)
                .unwrap_or(1) as usize;
            let count: &[usize] = match (kind, use_bias) {
                (ConvKind::Depthwise, true) | (ConvKind::Separable, false) => &[2],
                (ConvKind::Depthwise, false) => &[1],
                _ => &[3],
            };
            let w = cx.weights(l, &[""], count)?;
            // [*k, in, mult] -> [in * mult, 1, *k]: output channel c * mult + m.
            let depthwise = |k: &Array| -> Array {
                let mut shape = k.shape[..n].to_vec();
                shape.push(1);
                shape.push(in_c * mult);
                to_onnx(&k.clone().reshape(&shape))
            };
            let (pads, out_sizes) = window_padding(l, &padding, &sizes, &eff, &strides)?;
            let mut dw_attrs = attrs.clone();
            dw_attrs.extend(pads);
            dw_attrs.push(attr_i("group", in_c as i64));
            let wk = cx.init(l, "depthwise_kernel", || depthwise(&w[0]));
            if kind == ConvKind::Depthwise {
                let mut ins = vec![xin.clone(), wk];
                if use_bias {
                    ins.push(cx.init(l, "bias", || w[1].clone()));
                }
                let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
                (
                    cx.b.op("Conv", &l.base(""), &ins, dw_attrs),
                    in_c * mult,
                    out_sizes,
                )
            } else {
                let out_c = l.i64("filters")? as usize;
                let dw =
                    cx.b.op("Conv", &l.base("depthwise"), &[&xin, &wk], dw_attrs);
                let pk = cx.init(l, "pointwise_kernel", || to_onnx(&w[1]));
                let mut ins = vec![dw, pk];
                if use_bias {
                    ins.push(cx.init(l, "bias", || w[2].clone()));
                }
                let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
                let ones = vec![1i64; n];
                let pw_attrs = vec![attr_ints("kernel_shape", &ones)];
                (
                    cx.b.op("Conv", &l.base(""), &ins, pw_attrs),
                    out_c,
                    out_sizes,
                )
            }
        }
        ConvKind::Transpose => {
            if groups != 1 {
                return Err(l.err(format!("groups={groups} is not supported")));
            }
            let w = cx.weights(l, &[""], if use_bias { &[2] } else { &[1] })?;
            let out_c = l.i64("filters")? as usize;
            let out_pad = match l.get("output_padding") {
                Some(v) => Some(ints_of(v, n).ok_or_else(|| l.err(format!("output_padding={v}")))?),
                None => None,
            };
            // Keras's deconv_output_length, expressed as ONNX pads and output_padding.
            let mut begins = vec![0i64; n];
            let mut ends = vec![0i64; n];
            let mut extra = vec![0i64; n];
            let mut out_sizes = vec![None; n];
            for i in 0..n {
                let (k, s) = (eff[i] as i64, strides[i] as i64);
                let pad = match (padding.as_str(), &out_pad) {
                    ("valid", _) => 0,
                    ("same", _) => k / 2,
                    (other, _) => return Err(l.err(format!("padding='{other}' is not supported"))),
                };
                let len = |input: i64| -> i64 {
                    match &out_pad {
                        Some(op) => (input - 1) * s + k - 2 * pad + op[i] as i64,
                        None if padding == "valid" => input * s + (k - s).max(0),
                        None => input * s,
                    }
                };
                // ONNX: out = s * (in - 1) + output_padding + k - begin - end.
                match &out_pad {
                    Some(op) => {
                        begins[i] = pad;
                        ends[i] = pad;
                        extra[i] = op[i] as i64;
                    }
                    None => {
                        let full = |input: i64| s * (input - 1) + k;
                        // Cropping `full - len` (independent of the input size): begin gets half.
                        let crop = full(1) - len(1);
                        if crop >= 0 {
                            begins[i] = crop / 2;
                            ends[i] = crop - crop / 2;
                        } else {
                            extra[i] = -crop;
                        }
                    }
                }
                out_sizes[i] = sizes[i].map(|v| len(v as i64) as usize);
            }
            let mut pads = begins;
            pads.extend(ends);
            attrs.push(attr_ints("pads", &pads));
            if extra.iter().any(|&e| e != 0) {
                attrs.push(attr_ints("output_padding", &extra));
            }
            // Keras transposed kernels are [*k, out, in]; ONNX wants [in, out, *k].
            let wk = cx.init(l, "kernel", || to_onnx(&w[0]));
            let mut ins = vec![xin.clone(), wk];
            if use_bias {
                ins.push(cx.init(l, "bias", || w[1].clone()));
            }
            let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
            (
                cx.b.op("ConvTranspose", &l.base(""), &ins, attrs),
                out_c,
                out_sizes,
            )
        }
    };
    // The result is channels-first; as a Keras tensor it keeps the layer's data_format.
    let mut shape = vec![None; r];
    shape[order[1]] = Some(out_c);
    for i in 0..n {
        shape[order[2 + i]] = out_sizes[i];
    }
    let y = Tensor {
        value,
        perm: if first {
            identity(r)
        } else {
            channels_first_perm(r)
        },
        shape,
        dtype: FLOAT,
    };
    activation(cx, l, y, l.get("activation"))
}

fn pool(cx: &mut Cx, l: &Layer, x: Tensor, op: &str) -> Result<Tensor> {
    let n = spatial_rank(&l.class);
    let r = x.rank();
    if r != n + 2 {
        return Err(l.err(format!("expects a rank-{} input, got rank {r}", n + 2)));
    }
    let first = data_format_first(l)?;
    let ksize = l.ints("pool_size", n)?;
    let strides = match l.get("strides") {
        Some(v) => ints_of(v, n).ok_or_else(|| l.err(format!("strides={v}")))?,
        None => ksize.clone(),
    };
    let padding = l.str("padding", "valid").to_lowercase();
    let order = if first {
        identity(r)
    } else {
        channels_first_order(r)
    };
    let sizes: Vec<Option<usize>> = order[2..].iter().map(|&a| x.shape[a]).collect();
    let xin = cx.b.in_order(&x, &order);
    let (pads, out_sizes) = window_padding(l, &padding, &sizes, &ksize, &strides)?;
    let mut attrs = vec![
        attr_ints("kernel_shape", &to_i64(&ksize)),
        attr_ints("strides", &to_i64(&strides)),
    ];
    attrs.extend(pads);
    let value = cx.b.op(op, &l.base(""), &[&xin], attrs);
    let mut shape = x.shape.clone();
    for i in 0..n {
        shape[order[2 + i]] = out_sizes[i];
    }
    Ok(Tensor {
        value,
        perm: if first {
            identity(r)
        } else {
            channels_first_perm(r)
        },
        shape,
        dtype: FLOAT,
    })
}

/// Reduces logical `axes` of `t` with `op`; the result keeps the remaining axes' layout.
fn reduce_logical(
    cx: &mut Cx,
    base: &str,
    op: &str,
    t: &Tensor,
    axes: &[usize],
    keepdims: bool,
) -> Tensor {
    let phys: Vec<usize> = axes.iter().map(|&a| t.perm[a]).collect();
    let value = cx.b.reduce(op, base, &t.value, &phys, keepdims);
    if keepdims {
        let mut shape = t.shape.clone();
        for &a in axes {
            shape[a] = Some(1);
        }
        return Tensor {
            value,
            shape,
            ..t.clone()
        };
    }
    let kept: Vec<usize> = (0..t.rank()).filter(|a| !axes.contains(a)).collect();
    let kept_phys: Vec<usize> = kept.iter().map(|&a| t.perm[a]).collect();
    let perm = kept_phys
        .iter()
        .map(|&p| kept_phys.iter().filter(|&&q| q < p).count())
        .collect();
    Tensor {
        value,
        perm,
        shape: kept.iter().map(|&a| t.shape[a]).collect(),
        dtype: t.dtype,
    }
}

fn global_pool(cx: &mut Cx, l: &Layer, x: Tensor, op: &str) -> Result<Tensor> {
    let first = data_format_first(l)?;
    let r = x.rank();
    let axes: Vec<usize> = if first {
        (2..r).collect()
    } else {
        (1..r - 1).collect()
    };
    let keep = l.bool("keepdims", false);
    Ok(reduce_logical(cx, &l.base(""), op, &x, &axes, keep))
}

fn batch_norm(cx: &mut Cx, l: &Layer, x: Tensor) -> Result<Tensor> {
    let axis = match l.get("axis") {
        Some(Json::Array(a)) if a.len() == 1 => a[0].as_i64(),
        Some(v) => v.as_i64(),
        None => Some(-1),
    }
    .and_then(|a| x.axis(a))
    .ok_or_else(|| l.err(format!("axis={:?} is not supported", l.get("axis"))))?;
    let center = l.bool("center", true);
    let scale = l.bool("scale", true);
    let eps = l.f32("epsilon", 1e-3) as f64;
    let w = cx.weights(l, &[""], &[2 + center as usize + scale as usize])?;
    let mut it = w.into_iter();
    let gamma = if scale { it.next() } else { None };
    let beta = if center { it.next() } else { None };
    let mean = it.next().expect("counted");
    let var = it.next().expect("counted");
    let c = mean.len();
    // y = x * s + t with s = gamma / sqrt(var + eps), t = beta - mean * s.
    let s: Vec<f32> = (0..c)
        .map(|i| {
            let g = gamma.as_ref().map_or(1.0, |g| g.data[i] as f64);
            (g / (var.data[i] as f64 + eps).sqrt()) as f32
        })
        .collect();
    let t: Vec<f32> = (0..c)
        .map(|i| {
            let b = beta.as_ref().map_or(0.0, |b| b.data[i] as f64);
            (b - mean.data[i] as f64 * s[i] as f64) as f32
        })
        .collect();
    let sv = cx.init(l, "scale", || along_axis(Array::vector(s), &x, axis));
    let tv = cx.init(l, "shift", || along_axis(Array::vector(t), &x, axis));
    let m = cx.b.op("Mul", &l.base("mul"), &[&x.value, &sv], vec![]);
    let v = cx.b.op("Add", &l.base(""), &[&m, &tv], vec![]);
    Ok(x.with_value(v))
}

fn layer_norm(cx: &mut Cx, l: &Layer, x: Tensor) -> Result<Tensor> {
    if l.bool("rms_scaling", false) {
        return Err(l.err("rms_scaling=true is not supported"));
    }
    let r = x.rank();
    let mut axes: Vec<usize> = match l.get("axis") {
        Some(Json::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_i64())
            .filter_map(|a| x.axis(a))
            .collect(),
        Some(v) => v.as_i64().and_then(|a| x.axis(a)).into_iter().collect(),
        None => vec![r - 1],
    };
    axes.sort_unstable();
    let k = axes[0];
    if axes != (k..r).collect::<Vec<_>>() {
        return Err(l.err(format!(
            "axis={:?}: only trailing axes are supported",
            l.get("axis")
        )));
    }
    let center = l.bool("center", true);
    let scale = l.bool("scale", true);
    let eps = l.f32("epsilon", 1e-3);
    let w = cx.weights(l, &[""], &[center as usize + scale as usize])?;
    let norm_shape: Vec<usize> = (k..r)
        .map(|a| x.shape[a].ok_or_else(|| l.err("a normalised dimension is unknown")))
        .collect::<Result<_>>()?;
    let len: usize = norm_shape.iter().product();
    let mut it = w.into_iter();
    let gamma = if scale { it.next() } else { None }
        .unwrap_or_else(|| Array::new(vec![len], vec![1.0; len]).expect("sized"))
        .reshape(&norm_shape);
    let beta = if center {
        it.next().map(|b| b.reshape(&norm_shape))
    } else {
        None
    };
    // The normalised axes must be the trailing physical axes, in order.
    let x = if (k..r).all(|a| x.perm[a] == a) {
        x
    } else {
        cx.b.logical_tensor(&x)
    };
    let g = cx.init(l, "gamma", || gamma);
    let b = beta.map(|beta| cx.init(l, "beta", || beta));
    let v = if cx.b.opset >= 17 {
        let mut ins = vec![x.value.as_str(), g.as_str()];
        if let Some(b) = &b {
            ins.push(b);
        }
        cx.b.op(
            "LayerNormalization",
            &l.base(""),
            &ins,
            vec![attr_i("axis", k as i64), attr_f("epsilon", eps)],
        )
    } else {
        let axes: Vec<usize> = (k..r).collect();
        let mean =
            cx.b.reduce("ReduceMean", &l.base("mean"), &x.value, &axes, true);
        let d =
            cx.b.op("Sub", &l.base("centered"), &[&x.value, &mean], vec![]);
        let sq = cx.b.op("Mul", &l.base("squared"), &[&d, &d], vec![]);
        let var =
            cx.b.reduce("ReduceMean", &l.base("variance"), &sq, &axes, true);
        let e = cx.b.scalar(eps);
        let ve = cx.b.op("Add", &l.base("var_eps"), &[&var, &e], vec![]);
        let sd = cx.b.op("Sqrt", &l.base("std"), &[&ve], vec![]);
        let n = cx.b.op("Div", &l.base("normalized"), &[&d, &sd], vec![]);
        let y = cx.b.op("Mul", &l.base("scaled"), &[&n, &g], vec![]);
        match &b {
            Some(b) => cx.b.op("Add", &l.base(""), &[&y, b], vec![]),
            None => y,
        }
    };
    Ok(x.with_value(v))
}

fn flatten(cx: &mut Cx, l: &Layer, x: Tensor) -> Result<Tensor> {
    let r = x.rank();
    // channels_first: Keras moves the channels last before flattening.
    let order = if data_format_first(l)? && r > 2 {
        let mut o = vec![0];
        o.extend(2..r);
        o.push(1);
        o
    } else {
        identity(r)
    };
    let xin = cx.b.in_order(&x, &order);
    let size = x.shape[1..]
        .iter()
        .try_fold(1usize, |acc, d| d.map(|d| acc * d));
    let value = if r == 2 {
        xin
    } else {
        cx.b.reshape(&l.base(""), &xin, &[0, -1])
    };
    Ok(Tensor {
        value,
        perm: identity(2),
        shape: vec![None, size],
        dtype: x.dtype,
    })
}

fn reshape(cx: &mut Cx, l: &Layer, x: Tensor) -> Result<Tensor> {
    let target: Vec<i64> = l
        .get("target_shape")
        .and_then(Json::as_array)
        .and_then(|a| a.iter().map(Json::as_i64).collect())
        .ok_or_else(|| l.err("target_shape is not a list of integers"))?;
    let xin = cx.b.logical(&x);
    let total = x.shape[1..]
        .iter()
        .try_fold(1usize, |acc, d| d.map(|d| acc * d));
    let known: i64 = target.iter().filter(|&&d| d >= 0).product();
    let shape: Vec<Option<usize>> = std::iter::once(None)
        .chain(target.iter().map(|&d| {
            if d >= 0 {
                Some(d as usize)
            } else {
                total.map(|t| t / known.max(1) as usize)
            }
        }))
        .collect();
    let mut spec = vec![0];
    spec.extend(&target);
    let value = cx.b.reshape(&l.base(""), &xin, &spec);
    Ok(Tensor {
        value,
        perm: identity(shape.len()),
        shape,
        dtype: x.dtype,
    })
}

/// Permute is free: it only changes which ONNX axis each Keras axis is.
fn permute(l: &Layer, x: Tensor) -> Result<Tensor> {
    let dims: Vec<usize> = l
        .get("dims")
        .and_then(Json::as_array)
        .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
        .ok_or_else(|| l.err("dims is not a list of integers"))?;
    let mut p = vec![0];
    p.extend(&dims);
    let mut sorted = p.clone();
    sorted.sort_unstable();
    if sorted != identity(x.rank()) {
        return Err(l.err(format!(
            "dims={dims:?} is not a permutation of the non-batch axes"
        )));
    }
    Ok(Tensor {
        perm: p.iter().map(|&a| x.perm[a]).collect(),
        shape: p.iter().map(|&a| x.shape[a]).collect(),
        ..x
    })
}

fn repeat_vector(cx: &mut Cx, l: &Layer, x: Tensor) -> Result<Tensor> {
    let n = l.i64("n")?;
    if x.rank() != 2 {
        return Err(l.err(format!("expects a rank-2 input, got rank {}", x.rank())));
    }
    let xin = cx.b.logical(&x);
    let u = cx.b.unsqueeze(&l.base("unsqueeze"), &xin, &[1]);
    let s = cx.b.ints(&[1, n, 1]);
    let value = cx.b.op("Expand", &l.base(""), &[&u, &s], vec![]);
    Ok(Tensor {
        value,
        perm: identity(3),
        shape: vec![None, Some(n as usize), x.shape[1]],
        dtype: x.dtype,
    })
}

/// `(begin, end)` per spatial axis from Keras's int / pair / pair-of-pairs forms.
fn pairs(l: &Layer, key: &str, n: usize) -> Result<Vec<(usize, usize)>> {
    let v = l
        .get(key)
        .ok_or_else(|| l.err(format!("config has no '{key}'")))?;
    let bad = || l.err(format!("{key}={v} is not understood"));
    let pair = |v: &Json| -> Option<(usize, usize)> {
        match v {
            Json::Number(x) => Some((x.as_u64()? as usize, x.as_u64()? as usize)),
            Json::Array(a) if a.len() == 2 => {
                Some((a[0].as_u64()? as usize, a[1].as_u64()? as usize))
            }
            _ => None,
        }
    };
    if n == 1 {
        return pair(v).map(|p| vec![p]).ok_or_else(bad);
    }
    match v {
        Json::Number(_) => Ok(vec![pair(v).ok_or_else(bad)?; n]),
        Json::Array(a) if a.len() == n => a.iter().map(|p| pair(p).ok_or_else(bad)).collect(),
        _ => Err(bad()),
    }
}

fn spatial_axes(l: &Layer, r: usize) -> Result<Vec<usize>> {
    Ok(if data_format_first(l)? {
        (2..r).collect()
    } else {
        (1..r - 1).collect()
    })
}

fn crop(cx: &mut Cx, l: &Layer, x: Tensor) -> Result<Tensor> {
    let n = spatial_rank(&l.class);
    let axes = spatial_axes(l, x.rank())?;
    let p = pairs(l, "cropping", n)?;
    let starts: Vec<i64> = p.iter().map(|&(b, _)| b as i64).collect();
    let ends: Vec<i64> = p
        .iter()
        .map(|&(_, e)| if e == 0 { i64::MAX } else { -(e as i64) })
        .collect();
    let phys: Vec<i64> = axes.iter().map(|&a| x.perm[a] as i64).collect();
    let (s, e, a) = (cx.b.ints(&starts), cx.b.ints(&ends), cx.b.ints(&phys));
    let value =
        cx.b.op("Slice", &l.base(""), &[&x.value, &s, &e, &a], vec![]);
    let mut shape = x.shape.clone();
    for (i, &ax) in axes.iter().enumerate() {
        shape[ax] = shape[ax].map(|d| d.saturating_sub(p[i].0 + p[i].1));
    }
    Ok(Tensor { value, shape, ..x })
}

fn zero_pad(cx: &mut Cx, l: &Layer, x: Tensor) -> Result<Tensor> {
    let n = spatial_rank(&l.class);
    let r = x.rank();
    let axes = spatial_axes(l, r)?;
    let p = pairs(l, "padding", n)?;
    let mut pads = vec![0i64; 2 * r];
    let mut shape = x.shape.clone();
    for (i, &a) in axes.iter().enumerate() {
        pads[x.perm[a]] = p[i].0 as i64;
        pads[r + x.perm[a]] = p[i].1 as i64;
        shape[a] = shape[a].map(|d| d + p[i].0 + p[i].1);
    }
    let pv = cx.b.ints(&pads);
    let value = cx.b.op("Pad", &l.base(""), &[&x.value, &pv], vec![]);
    Ok(Tensor { value, shape, ..x })
}

fn upsample(cx: &mut Cx, l: &Layer, x: Tensor) -> Result<Tensor> {
    let n = spatial_rank(&l.class);
    let r = x.rank();
    let axes = spatial_axes(l, r)?;
    let size = l.ints("size", n)?;
    let mode = match l.str("interpolation", "nearest") {
        "nearest" => vec![
            attr_s("mode", "nearest"),
            attr_s("coordinate_transformation_mode", "asymmetric"),
            attr_s("nearest_mode", "floor"),
        ],
        "bilinear" => vec![
            attr_s("mode", "linear"),
            attr_s("coordinate_transformation_mode", "half_pixel"),
        ],
        other => return Err(l.err(format!("interpolation='{other}' is not supported"))),
    };
    let mut scales = vec![1.0f32; r];
    let mut shape = x.shape.clone();
    for (i, &a) in axes.iter().enumerate() {
        scales[x.perm[a]] = size[i] as f32;
        shape[a] = shape[a].map(|d| d * size[i]);
    }
    let sv = cx.b.weight(&l.base("scales"), Array::vector(scales));
    let value = cx.b.op("Resize", &l.base(""), &[&x.value, "", &sv], mode);
    Ok(Tensor { value, shape, ..x })
}

fn relu_layer(cx: &mut Cx, l: &Layer, x: Tensor) -> Result<Tensor> {
    let max = l.get("max_value").and_then(Json::as_f64).map(|v| v as f32);
    let slope = l.f32("negative_slope", 0.0);
    let threshold = l.f32("threshold", 0.0);
    let base = l.base("");
    let v = if threshold == 0.0 {
        let v = if slope == 0.0 {
            cx.b.op("Relu", &l.base("relu"), &[&x.value], vec![])
        } else {
            cx.b.op(
                "LeakyRelu",
                &l.base("relu"),
                &[&x.value],
                vec![attr_f("alpha", slope)],
            )
        };
        match max {
            Some(m) => {
                let mv = cx.b.scalar(m);
                cx.b.op("Min", &base, &[&v, &mv], vec![])
            }
            None => v,
        }
    } else {
        // x >= threshold ? min(x, max) : slope * (x - threshold)
        let t = cx.b.scalar(threshold);
        let cond =
            cx.b.op("GreaterOrEqual", &l.base("above"), &[&x.value, &t], vec![]);
        let hi = match max {
            Some(m) => {
                let mv = cx.b.scalar(m);
                cx.b.op("Min", &l.base("capped"), &[&x.value, &mv], vec![])
            }
            None => x.value.clone(),
        };
        let d = cx.b.op("Sub", &l.base("shifted"), &[&x.value, &t], vec![]);
        let s = cx.b.scalar(slope);
        let lo = cx.b.op("Mul", &l.base("below"), &[&d, &s], vec![]);
        cx.b.op("Where", &base, &[&cond, &hi, &lo], vec![])
    };
    Ok(x.with_value(v))
}

fn prelu(cx: &mut Cx, l: &Layer, x: Tensor) -> Result<Tensor> {
    let w = cx.weights(l, &[""], &[1])?;
    let alpha = &w[0];
    let mut shape = vec![1];
    shape.extend(&alpha.shape);
    if shape.len() != x.rank() {
        return Err(l.err(format!("alpha has shape {:?}", alpha.shape)));
    }
    let slope = cx.init(l, "alpha", || {
        to_physical(alpha.clone().reshape(&shape), &x)
    });
    let v = cx.b.op("PRelu", &l.base(""), &[&x.value, &slope], vec![]);
    Ok(x.with_value(v))
}

fn softmax_layer(cx: &mut Cx, l: &Layer, x: Tensor, kwargs: &Kwargs) -> Result<Tensor> {
    if kwargs.tensors.contains_key("mask") {
        return Err(l.err("a mask argument is not supported"));
    }
    let axis = match l.get("axis") {
        Some(Json::Array(a)) if a.len() == 1 => a[0].as_i64(),
        Some(v) => v.as_i64(),
        None => Some(-1),
    }
    .and_then(|a| x.axis(a))
    .ok_or_else(|| l.err(format!("axis={:?} is not supported", l.get("axis"))))?;
    let v = cx.b.op(
        "Softmax",
        &l.base(""),
        &[&x.value],
        vec![attr_i("axis", x.perm[axis] as i64)],
    );
    Ok(x.with_value(v))
}

/// Brings every input to the first one's layout (ranks must agree).
fn align(cx: &mut Cx, l: &Layer, inputs: &[Tensor]) -> Result<Vec<String>> {
    let first = inputs
        .first()
        .ok_or_else(|| l.err("called without inputs"))?;
    if inputs.iter().any(|t| t.rank() != first.rank()) {
        return Err(l.err("inputs of different ranks are not supported"));
    }
    Ok(inputs
        .iter()
        .map(|t| cx.b.as_perm(t, &first.perm))
        .collect())
}

fn merged_shape(inputs: &[Tensor]) -> Vec<Option<usize>> {
    let mut shape = inputs[0].shape.clone();
    for t in &inputs[1..] {
        for (d, o) in shape.iter_mut().zip(&t.shape) {
            *d = match (*d, *o) {
                (Some(1), o) => o,
                (Some(a), _) => Some(a),
                (None, o) => o.filter(|&o| o != 1),
            };
        }
    }
    shape
}

fn merge(cx: &mut Cx, l: &Layer, class: &str, inputs: Vec<Tensor>) -> Result<Tensor> {
    if inputs.len() < 2 {
        return Err(l.err(format!("needs at least 2 inputs, got {}", inputs.len())));
    }
    let vals = align(cx, l, &inputs)?;
    let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
    let base = l.base("");
    let chain = |cx: &mut Cx, op: &str, base: &str| -> String {
        let mut acc = refs[0].to_string();
        for (i, v) in refs[1..].iter().enumerate() {
            let name = if i + 2 == refs.len() {
                base.to_string()
            } else {
                format!("{base}/{i}")
            };
            acc = cx.b.op(op, &name, &[&acc, v], vec![]);
        }
        acc
    };
    let value = match class {
        "Add" => chain(cx, "Add", &base),
        "Multiply" => chain(cx, "Mul", &base),
        "Subtract" => {
            if refs.len() != 2 {
                return Err(l.err(format!("needs exactly 2 inputs, got {}", refs.len())));
            }
            cx.b.op("Sub", &base, &refs, vec![])
        }
        "Maximum" => cx.b.op("Max", &base, &refs, vec![]),
        "Minimum" => cx.b.op("Min", &base, &refs, vec![]),
        _ => {
            let s = chain(cx, "Add", &l.base("sum"));
            let k = cx.b.scalar(1.0 / refs.len() as f32);
            cx.b.op("Mul", &base, &[&s, &k], vec![])
        }
    };
    Ok(Tensor {
        value,
        shape: merged_shape(&inputs),
        ..inputs[0].clone()
    })
}

fn concatenate(cx: &mut Cx, l: &Layer, inputs: Vec<Tensor>) -> Result<Tensor> {
    let vals = align(cx, l, &inputs)?;
    let first = &inputs[0];
    let axis = first
        .axis(l.get("axis").and_then(Json::as_i64).unwrap_or(-1))
        .ok_or_else(|| l.err(format!("axis={:?}", l.get("axis"))))?;
    let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
    let value = cx.b.op(
        "Concat",
        &l.base(""),
        &refs,
        vec![attr_i("axis", first.perm[axis] as i64)],
    );
    let mut shape = first.shape.clone();
    shape[axis] = inputs
        .iter()
        .try_fold(0usize, |acc, t| t.shape[axis].map(|d| acc + d));
    Ok(Tensor {
        value,
        shape,
        ..first.clone()
    })
}

fn dot(cx: &mut Cx, l: &Layer, inputs: Vec<Tensor>) -> Result<Tensor> {
    let [x, y] = inputs.as_slice() else {
        return Err(l.err(format!("needs 2 inputs, got {}", inputs.len())));
    };
    let axes = l.get("axes").ok_or_else(|| l.err("config has no 'axes'"))?;
    let (ax, ay) = match axes {
        Json::Number(n) => (n.as_i64().unwrap_or(0), n.as_i64().unwrap_or(0)),
        Json::Array(a) if a.len() == 2 => (a[0].as_i64().unwrap_or(0), a[1].as_i64().unwrap_or(0)),
        _ => return Err(l.err(format!("axes={axes} is not understood"))),
    };
    let (ax, ay) = match (x.axis(ax), y.axis(ay)) {
        (Some(a), Some(b)) if a > 0 && b > 0 => (a, b),
        _ => return Err(l.err(format!("axes={axes} is not supported"))),
    };
    let mut xv = cx.b.logical(x);
    let mut yv = cx.b.logical(y);
    if l.bool("normalize", false) {
        xv = l2_normalize(cx, l, &xv, ax, "x");
        yv = l2_normalize(cx, l, &yv, ay, "y");
    }
    match (x.rank(), y.rank()) {
        (2, 2) => {
            let m = cx.b.op("Mul", &l.base("mul"), &[&xv, &yv], vec![]);
            let value = cx.b.reduce("ReduceSum", &l.base(""), &m, &[1], true);
            Ok(Tensor {
                value,
                perm: identity(2),
                shape: vec![None, Some(1)],
                dtype: FLOAT,
            })
        }
        (3, 3) => {
            // [B, other, contracted] @ [B, contracted, other]
            let xm = if ax == 2 {
                xv
            } else {
                cx.b.transpose(&xv, &[0, 2, 1])
            };
            let ym = if ay == 1 {
                yv
            } else {
                cx.b.transpose(&yv, &[0, 2, 1])
            };
            let value = cx.b.op("MatMul", &l.base(""), &[&xm, &ym], vec![]);
            Ok(Tensor {
                value,
                perm: identity(3),
                shape: vec![None, x.shape[3 - ax], y.shape[3 - ay]],
                dtype: FLOAT,
            })
        }
        (a, b) => Err(l.err(format!("inputs of ranks {a} and {b} are not supported"))),
    }
}

/// `x / sqrt(max(sum(x², axis), 1e-12))`, Keras's l2_normalize.
fn l2_normalize(cx: &mut Cx, l: &Layer, x: &str, axis: usize, tag: &str) -> String {
    let sq =
        cx.b.op("Mul", &l.base(&format!("{tag}_sq")), &[x, x], vec![]);
    let s = cx.b.reduce(
        "ReduceSum",
        &l.base(&format!("{tag}_sumsq")),
        &sq,
        &[axis],
        true,
    );
    let e = cx.b.scalar(1e-12);
    let m =
        cx.b.op("Max", &l.base(&format!("{tag}_clamped")), &[&s, &e], vec![]);
    let n =
        cx.b.op("Sqrt", &l.base(&format!("{tag}_norm")), &[&m], vec![]);
    cx.b.op(
        "Div",
        &l.base(&format!("{tag}_normalized")),
        &[x, &n],
        vec![],
    )
}

fn embedding(cx: &mut Cx, l: &Layer, x: Tensor) -> Result<Tensor> {
    if l.bool("mask_zero", false) {
        return Err(l.err("mask_zero=true is not supported (masks are not converted)"));
    }
    l.require("quantization_config", |_| false)?;
    l.require("lora_rank", |_| false)?;
    let w = cx.weights(l, &[""], &[1])?;
    let dim = w[0].shape[1];
    let table = cx.init(l, "embeddings", || w[0].clone());
    let idx = if matches!(x.dtype, 6 | 7) {
        x.value.clone()
    } else {
        cx.b.op(
            "Cast",
            &l.base("indices"),
            &[&x.value],
            vec![attr_i("to", INT64 as i64)],
        )
    };
    let value = cx.b.op(
        "Gather",
        &l.base(""),
        &[&table, &idx],
        vec![attr_i("axis", 0)],
    );
    let mut perm = x.perm.clone();
    perm.push(x.rank());
    let mut shape = x.shape.clone();
    shape.push(Some(dim));
    Ok(Tensor {
        value,
        perm,
        shape,
        dtype: FLOAT,
    })
}

/// A float, or a list of floats along the last axis, from a config value.
fn floats(v: &Json) -> Option<Vec<f32>> {
    match v {
        Json::Number(n) => Some(vec![n.as_f64()? as f32]),
        Json::Array(a) => a.iter().map(|x| x.as_f64().map(|x| x as f32)).collect(),
        _ => None,
    }
}

/// A constant from a Keras broadcastable value (scalar or along the last logical axis).
fn last_axis_const(cx: &mut Cx, l: &Layer, key: &str, values: Vec<f32>, x: &Tensor) -> String {
    if values.len() == 1 {
        return cx.b.scalar(values[0]);
    }
    let r = x.rank();
    cx.init(l, key, || along_axis(Array::vector(values), x, r - 1))
}

fn rescaling(cx: &mut Cx, l: &Layer, x: Tensor) -> Result<Tensor> {
    let scale = floats(l.get("scale").unwrap_or(&Json::from(1.0)))
        .ok_or_else(|| l.err("scale is not a number or list"))?;
    let offset = floats(l.get("offset").unwrap_or(&Json::from(0.0)))
        .ok_or_else(|| l.err("offset is not a number or list"))?;
    let xv = if x.dtype == FLOAT {
        x.value.clone()
    } else {
        cx.b.op(
            "Cast",
            &l.base("float"),
            &[&x.value],
            vec![attr_i("to", FLOAT as i64)],
        )
    };
    let s = last_axis_const(cx, l, "scale", scale, &x);
    let o = last_axis_const(cx, l, "offset", offset, &x);
    let m = cx.b.op("Mul", &l.base("mul"), &[&xv, &s], vec![]);
    let v = cx.b.op("Add", &l.base(""), &[&m, &o], vec![]);
    Ok(Tensor {
        value: v,
        dtype: FLOAT,
        ..x
    })
}

fn normalization(cx: &mut Cx, l: &Layer, x: Tensor) -> Result<Tensor> {
    let r = x.rank();
    let axes: Vec<usize> = match l.get("axis") {
        None => vec![],
        Some(Json::Array(a)) => a
            .iter()
            .filter_map(Json::as_i64)
            .filter_map(|a| x.axis(a))
            .collect(),
        Some(v) => v.as_i64().and_then(|a| x.axis(a)).into_iter().collect(),
    };
    let (mean, var) = match (l.get("mean"), l.get("variance")) {
        (Some(m), Some(v)) => (
            Array::vector(floats(m).ok_or_else(|| l.err("mean is not numeric"))?),
            Array::vector(floats(v).ok_or_else(|| l.err("variance is not numeric"))?),
        ),
        _ => {
            let w = cx.weights(l, &[""], &[2, 3])?;
            (w[0].clone(), w[1].clone())
        }
    };
    let mut bshape = vec![1usize; r];
    for &a in &axes {
        bshape[a] = x.shape[a].ok_or_else(|| l.err("a normalised dimension is unknown"))?;
    }
    let fit = |a: Array| -> Result<Array> {
        if a.len() == 1 {
            Ok(a.reshape(&vec![1; r]))
        } else if a.len() == bshape.iter().product::<usize>() {
            Ok(a.reshape(&bshape))
        } else {
            Err(l.err(format!(
                "mean/variance of {} values do not fit the input",
                a.len()
            )))
        }
    };
    let mean = to_physical(fit(mean)?, &x);
    // Keras divides by max(sqrt(variance), epsilon) with epsilon 1e-7.
    let std = to_physical(fit(var)?.map(|v| v.sqrt().max(1e-7)), &x);
    let m = cx.init(l, "mean", || mean);
    let s = cx.init(l, "std", || std);
    let v = if l.bool("invert", false) {
        let t = cx.b.op("Mul", &l.base("scaled"), &[&x.value, &s], vec![]);
        cx.b.op("Add", &l.base(""), &[&t, &m], vec![])
    } else {
        let t = cx.b.op("Sub", &l.base("centered"), &[&x.value, &m], vec![]);
        cx.b.op("Div", &l.base(""), &[&t, &s], vec![])
    };
    Ok(x.with_value(v))
}
