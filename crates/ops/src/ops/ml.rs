//! Traditional machine-learning ops of the `ai.onnx.ml` domain: LabelEncoder, TreeEnsemble,
//! Binarizer, ArrayFeatureExtractor, Normalizer, Scaler, OneHotEncoder, Imputer and
//! FeatureVectorizer. (ZipMap, DictVectorizer and CastMap work on maps and sequences of maps,
//! and are not here.)
//!
//! Tables (label maps, trees) are decoded once when the node is built.

use std::collections::HashMap;

use runnx_ir::{DataType, Tensor, TensorData, Value};

use super::norm::{FloatKind, Real};
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

const ML: &str = "ai.onnx.ml";

pub(crate) fn register(reg: &mut Registry) {
    reg.add(ML, "LabelEncoder", 1, build_label_encoder_v1);
    reg.add_versions(ML, "LabelEncoder", &[2, 4], build_label_encoder);
    reg.add(ML, "TreeEnsemble", 5, build_tree_ensemble);
    reg.add(ML, "Binarizer", 1, build_binarizer);
    reg.add(ML, "ArrayFeatureExtractor", 1, |_| {
        Ok(Box::new(ArrayFeatureExtractor))
    });
    reg.add(ML, "Normalizer", 1, build_normalizer);
    reg.add(ML, "Scaler", 1, build_scaler);
    reg.add(ML, "OneHotEncoder", 1, build_one_hot_encoder);
    reg.add(ML, "Imputer", 1, build_imputer);
    reg.add(ML, "FeatureVectorizer", 1, build_feature_vectorizer);
}

/// A numeric tensor's elements as f64 (exact for every type the ml ops accept but 64-bit
/// integers beyond 2^53, which no feature value reaches).
fn numbers_f64(t: &Tensor, index: usize) -> Result<Vec<f64>, OpError> {
    Ok(match t.data() {
        TensorData::Float(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::Double(v) => v.clone(),
        TensorData::Float16(v) => v.iter().map(|x| x.to_f64()).collect(),
        TensorData::Int64(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::Int32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        other => {
            return Err(OpError::input(
                index,
                format!("expected a float or integer tensor, got {}", other.dtype()),
            ))
        }
    })
}

/// `[N, C]` view of a `[C]` (one row) or `[N, C]` input.
fn rows_cols(shape: &[usize], op: &str) -> Result<(usize, usize), OpError> {
    match *shape {
        [c] => Ok((1, c)),
        [n, c] => Ok((n, c)),
        _ => Err(OpError::input(
            0,
            format!("{op} expects a [C] or [N, C] input, got shape {shape:?}"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// LabelEncoder

/// A key table: each key's position in the values.
enum Keys {
    Strings(HashMap<String, usize>),
    Ints(HashMap<i64, usize>),
    /// By [`float_key`].
    Floats(HashMap<u64, usize>),
}

/// Float keys compare by value, except that every NaN matches every NaN (and so -0 matches 0).
fn float_key(v: f64) -> u64 {
    if v.is_nan() {
        f64::NAN.to_bits()
    } else if v == 0.0 {
        0
    } else {
        v.to_bits()
    }
}

impl Keys {
    /// Later duplicates win, as the spec asks.
    fn strings(keys: Vec<String>) -> Keys {
        Keys::Strings(keys.into_iter().enumerate().map(|(i, k)| (k, i)).collect())
    }
    fn ints(keys: Vec<i64>) -> Keys {
        Keys::Ints(keys.into_iter().enumerate().map(|(i, k)| (k, i)).collect())
    }
    fn floats(keys: impl IntoIterator<Item = f64>) -> Keys {
        Keys::Floats(
            keys.into_iter()
                .enumerate()
                .map(|(i, k)| (float_key(k), i))
                .collect(),
        )
    }

    fn from_tensor(t: &Tensor) -> Result<Keys, OpError> {
        Ok(match t.data() {
            TensorData::String(v) => Keys::strings(v.clone()),
            TensorData::Float(_) | TensorData::Double(_) => Keys::floats(numbers_f64(t, 0)?),
            TensorData::Int64(_) | TensorData::Int32(_) | TensorData::Int16(_) => {
                Keys::ints(t.to_i64_vec()?)
            }
            other => {
                return Err(OpError::attribute(
                    "keys_tensor",
                    format!("unsupported key type {}", other.dtype()),
                ))
            }
        })
    }

    /// For each element of `x`, its key's position, or `missing` when it is not a key.
    fn positions(&self, x: &Tensor, missing: usize) -> Result<Vec<usize>, OpError> {
        let mismatch = || {
            OpError::input(
                0,
                format!("{} input does not match the type of the keys", x.dtype()),
            )
        };
        Ok(match (self, x.data()) {
            (Keys::Strings(m), TensorData::String(v)) => v
                .iter()
                .map(|k| m.get(k.as_str()).copied().unwrap_or(missing))
                .collect(),
            (Keys::Ints(m), TensorData::Int64(_) | TensorData::Int32(_) | TensorData::Int16(_)) => {
                x.to_i64_vec()?
                    .iter()
                    .map(|k| m.get(k).copied().unwrap_or(missing))
                    .collect()
            }
            (Keys::Floats(m), TensorData::Float(_) | TensorData::Double(_)) => numbers_f64(x, 0)?
                .into_iter()
                .map(|k| m.get(&float_key(k)).copied().unwrap_or(missing))
                .collect(),
            _ => return Err(mismatch()),
        })
    }
}

/// A key table and its values, with the default appended as the last value.
struct Encoding {
    keys: Keys,
    values_and_default: TensorData,
}

impl Encoding {
    fn new(keys: Keys, values: TensorData, default: TensorData) -> Result<Encoding, OpError> {
        let values_and_default = TensorData::concat(&[&values, &default]).ok_or_else(|| {
            OpError::invalid(format!(
                "the default ({}) does not have the values' type ({})",
                default.dtype(),
                values.dtype()
            ))
        })?;
        Ok(Encoding {
            keys,
            values_and_default,
        })
    }

    fn encode(&self, x: &Tensor) -> Result<Tensor, OpError> {
        let missing = self.values_and_default.len() - 1;
        let positions = self.keys.positions(x, missing)?;
        Ok(Tensor::new(
            x.shape(),
            self.values_and_default.gather(&positions),
        )?)
    }
}

/// ONNX-ML `LabelEncoder` opset 1: strings to their position in `classes_strings` (else
/// `default_int64`), or int64 positions to the class at that position (else `default_string`),
/// depending on the input type.
struct LabelEncoderV1 {
    to_ints: Encoding,
    to_strings: Encoding,
}

fn build_label_encoder_v1(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let classes = info
        .attr_strings_opt("classes_strings")?
        .unwrap_or_default();
    let default_int = info.attr_int("default_int64", -1)?;
    let default_string = info.attr_string("default_string", "_Unused")?;
    // The first occurrence of a repeated class gives its position.
    let mut index = HashMap::new();
    for (i, c) in classes.iter().enumerate() {
        index.entry(c.clone()).or_insert(i);
    }
    let positions: Vec<i64> = (0..classes.len() as i64).collect();
    Ok(Box::new(LabelEncoderV1 {
        to_ints: Encoding::new(
            Keys::Strings(index),
            TensorData::Int64(positions.clone()),
            TensorData::Int64(vec![default_int]),
        )?,
        to_strings: Encoding::new(
            Keys::ints(positions),
            TensorData::String(classes),
            TensorData::String(vec![default_string]),
        )?,
    }))
}

impl Kernel for LabelEncoderV1 {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let encoding = match x.dtype() {
            DataType::String => &self.to_ints,
            DataType::Int64 => &self.to_strings,
            other => {
                return Err(OpError::input(
                    0,
                    format!("expected string or int64, got {other}"),
                ))
            }
        };
        Ok(vec![encoding.encode(x)?.into()])
    }
}

/// ONNX-ML `LabelEncoder` opsets 2 and 4: maps each element through `keys_*` → `values_*`
/// (strings, int64s or floats; from opset 4 also 1-D tensors of any listed type), and keys not
/// found to the `default_*` of the values' type.
struct LabelEncoder {
    encoding: Encoding,
}

fn build_label_encoder(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let tensors = info.opset >= 4;
    let keys_tensor = if tensors {
        info.attr_tensor_opt("keys_tensor")?
    } else {
        None
    };
    let values_tensor = if tensors {
        info.attr_tensor_opt("values_tensor")?
    } else {
        None
    };
    // Each key table with the number of keys listed (repeated keys collapse in the table).
    let mut keys = Vec::new();
    if let Some(k) = info.attr_strings_opt("keys_strings")? {
        keys.push((k.len(), Keys::strings(k)));
    }
    if let Some(k) = info.attr_ints_opt("keys_int64s")? {
        keys.push((k.len(), Keys::ints(k)));
    }
    if let Some(k) = info.attr_floats_opt("keys_floats")? {
        keys.push((k.len(), Keys::floats(k.into_iter().map(f64::from))));
    }
    if let Some(t) = keys_tensor {
        keys.push((t.len(), Keys::from_tensor(t)?));
    }
    let mut values = Vec::new();
    if let Some(v) = info.attr_strings_opt("values_strings")? {
        values.push(TensorData::String(v));
    }
    if let Some(v) = info.attr_ints_opt("values_int64s")? {
        values.push(TensorData::Int64(v));
    }
    if let Some(v) = info.attr_floats_opt("values_floats")? {
        values.push(TensorData::Float(v));
    }
    if let Some(t) = values_tensor {
        values.push(t.data().clone());
    }
    let ((key_count, keys), values) = match (keys.len(), values.len()) {
        (1, 1) => (keys.remove(0), values.remove(0)),
        _ => {
            return Err(OpError::invalid(
                "exactly one keys_* and one values_* attribute must be set",
            ))
        }
    };
    if key_count != values.len() {
        return Err(OpError::invalid(format!(
            "{key_count} keys but {} values",
            values.len()
        )));
    }
    let default = match if tensors {
        info.attr_tensor_opt("default_tensor")?
    } else {
        None
    } {
        Some(t) if t.len() == 1 => t.data().clone(),
        Some(t) => {
            return Err(OpError::attribute(
                "default_tensor",
                format!("expected one value, got {}", t.len()),
            ))
        }
        None => match values.dtype() {
            DataType::String => {
                TensorData::String(vec![info.attr_string("default_string", "_Unused")?])
            }
            DataType::Float => TensorData::Float(vec![info.attr_float("default_float", -0.0)?]),
            DataType::Double => {
                TensorData::Double(vec![f64::from(info.attr_float("default_float", -0.0)?)])
            }
            DataType::Int64 => TensorData::Int64(vec![info.attr_int("default_int64", -1)?]),
            // Narrower integer values default to -1 too.
            DataType::Int32 => TensorData::Int32(vec![-1]),
            DataType::Int16 => TensorData::Int16(vec![-1]),
            other => {
                return Err(OpError::attribute(
                    "values_tensor",
                    format!("unsupported value type {other}"),
                ))
            }
        },
    };
    Ok(Box::new(LabelEncoder {
        encoding: Encoding::new(keys, values, default)?,
    }))
}

impl Kernel for LabelEncoder {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        Ok(vec![self.encoding.encode(inputs.tensor(0)?)?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// TreeEnsemble

/// Where a branch leads.
#[derive(Clone, Copy, Debug)]
enum Child {
    Branch(usize),
    Leaf(usize),
}

#[derive(Clone, Debug)]
enum Comparison {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    /// The feature is one of `members[range]`.
    Member(std::ops::Range<usize>),
}

#[derive(Clone, Debug)]
struct Branch {
    feature: usize,
    comparison: Comparison,
    threshold: f64,
    /// A NaN feature takes the true branch (otherwise it compares as IEEE NaN does).
    missing_tracks_true: bool,
    on_true: Child,
    on_false: Child,
}

#[derive(Clone, Copy, PartialEq)]
enum Aggregate {
    Average,
    Sum,
    Min,
    Max,
}

/// Score transforms shared by the tree and linear ml ops.
#[derive(Clone, Copy, PartialEq)]
enum PostTransform {
    None,
    Softmax,
    Logistic,
    /// Softmax over the non-zero scores; zeros stay zero.
    SoftmaxZero,
    /// The standard normal quantile of each score.
    Probit,
}

impl PostTransform {
    fn apply(self, row: &mut [f64]) {
        match self {
            PostTransform::None => {}
            PostTransform::Logistic => row.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
            PostTransform::Probit => row.iter_mut().for_each(|v| *v = probit(*v)),
            PostTransform::Softmax | PostTransform::SoftmaxZero => {
                let skip_zeros = self == PostTransform::SoftmaxZero;
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut sum = 0.0;
                for v in row.iter_mut() {
                    *v = if skip_zeros && *v == 0.0 {
                        0.0
                    } else {
                        (*v - max).exp()
                    };
                    sum += *v;
                }
                if sum > 0.0 {
                    row.iter_mut().for_each(|v| *v /= sum);
                }
            }
        }
    }
}

/// `sqrt(2) · erfinv(2p - 1)`: the standard normal quantile of `p`. erfinv starts from Giles'
/// single-precision approximation ("Approximating the erfinv function", 2010, relative error
/// below 4e-7) and takes two Newton steps on `erf(y) = x`, leaving it within a few ulps in f64.
fn probit(p: f64) -> f64 {
    let x = 2.0 * p - 1.0;
    if x <= -1.0 || x >= 1.0 || x.is_nan() {
        return if x.is_nan() || x.abs() > 1.0 {
            f64::NAN
        } else {
            x * f64::INFINITY
        };
    }
    let w = -((1.0 - x) * (1.0 + x)).ln();
    let mut y = if w < 5.0 {
        let w = w - 2.5;
        let mut q = 2.810_226_36e-08;
        for c in [
            3.432_739_39e-07,
            -3.523_387_7e-06,
            -4.391_506_54e-06,
            0.000_218_580_87,
            -0.001_253_725_03,
            -0.004_177_681_64,
            0.246_640_727,
            1.501_409_41,
        ] {
            q = c + q * w;
        }
        q * x
    } else {
        let w = w.sqrt() - 3.0;
        let mut q = -0.000_200_214_257;
        for c in [
            0.000_100_950_558,
            0.001_349_343_22,
            -0.003_673_428_44,
            0.005_739_507_73,
            -0.007_622_461_3,
            0.009_438_870_47,
            1.001_674_06,
            2.832_976_82,
        ] {
            q = c + q * w;
        }
        q * x
    };
    // d/dy erf(y) = 2/sqrt(pi) · exp(-y²).
    for _ in 0..2 {
        let err = libm::erf(y) - x;
        y -= err / (std::f64::consts::FRAC_2_SQRT_PI * (-y * y).exp());
    }
    std::f64::consts::SQRT_2 * y
}

/// ONNX-ML `TreeEnsemble`, opset 5: the leaves each tree of an ensemble reaches for each row of
/// an `[N, F]` input, aggregated per target (sum, average over the trees, min or max) into an
/// `[N, n_targets]` output, then post-transformed.
///
/// Comparisons run in the input's precision (thresholds and set members are rounded to it).
/// Aggregation is in f64. A target no leaf reaches scores 0 (as in onnxruntime).
struct TreeEnsemble {
    branches: Vec<Branch>,
    /// `(target, weight)` per leaf.
    leaves: Vec<(usize, f64)>,
    roots: Vec<Child>,
    members: Vec<f64>,
    n_targets: usize,
    aggregate: Aggregate,
    post_transform: PostTransform,
    /// One past the largest feature index any branch reads.
    min_features: usize,
}

/// A float tensor attribute as f64 values.
fn float_tensor_attr(info: &NodeInfo, name: &str) -> Result<Option<Vec<f64>>, OpError> {
    info.attr_tensor_opt(name)?
        .map(|t| {
            numbers_f64(t, 0).map_err(|_| {
                OpError::attribute(name, format!("expected a float tensor, got {}", t.dtype()))
            })
        })
        .transpose()
}

fn build_tree_ensemble(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let ints = |name: &str| -> Result<Vec<i64>, OpError> {
        info.attr_ints_opt(name)?
            .ok_or_else(|| OpError::attribute(name, "is required"))
    };
    let indices = |name: &str| -> Result<Vec<usize>, OpError> {
        ints(name)?
            .into_iter()
            .map(|v| {
                usize::try_from(v)
                    .map_err(|_| OpError::attribute(name, format!("negative index {v}")))
            })
            .collect()
    };
    let features = indices("nodes_featureids")?;
    let true_ids = indices("nodes_truenodeids")?;
    let false_ids = indices("nodes_falsenodeids")?;
    let true_leafs = ints("nodes_trueleafs")?;
    let false_leafs = ints("nodes_falseleafs")?;
    let splits = float_tensor_attr(info, "nodes_splits")?
        .ok_or_else(|| OpError::attribute("nodes_splits", "is required"))?;
    let modes = info
        .attr_tensor_opt("nodes_modes")?
        .ok_or_else(|| OpError::attribute("nodes_modes", "is required"))?
        .to_i64_vec()?;
    let missing = info
        .attr_ints_opt("nodes_missing_value_tracks_true")?
        .unwrap_or_else(|| vec![0; features.len()]);
    let n = features.len();
    for (name, len) in [
        ("nodes_truenodeids", true_ids.len()),
        ("nodes_falsenodeids", false_ids.len()),
        ("nodes_trueleafs", true_leafs.len()),
        ("nodes_falseleafs", false_leafs.len()),
        ("nodes_splits", splits.len()),
        ("nodes_modes", modes.len()),
        ("nodes_missing_value_tracks_true", missing.len()),
    ] {
        if len != n {
            return Err(OpError::attribute(
                name,
                format!("has {len} entries for {n} nodes"),
            ));
        }
    }

    let leaf_targets = indices("leaf_targetids")?;
    let leaf_weights = float_tensor_attr(info, "leaf_weights")?
        .ok_or_else(|| OpError::attribute("leaf_weights", "is required"))?;
    if leaf_targets.len() != leaf_weights.len() {
        return Err(OpError::invalid(format!(
            "{} leaf_targetids but {} leaf_weights",
            leaf_targets.len(),
            leaf_weights.len()
        )));
    }
    let n_targets = usize::try_from(info.attr_int("n_targets", 0)?)
        .ok()
        .filter(|&t| t > 0)
        .ok_or_else(|| OpError::attribute("n_targets", "must be positive"))?;
    if let Some(t) = leaf_targets.iter().find(|&&t| t >= n_targets) {
        return Err(OpError::attribute(
            "leaf_targetids",
            format!("target {t} is not below n_targets {n_targets}"),
        ));
    }

    // Set members: one NaN-terminated run per BRANCH_MEMBER node, in node order.
    let members = float_tensor_attr(info, "membership_values")?.unwrap_or_default();
    let mut sets = Vec::new();
    let mut start = 0;
    for (i, v) in members.iter().enumerate() {
        if v.is_nan() {
            sets.push(start..i);
            start = i + 1;
        }
    }
    if start < members.len() {
        sets.push(start..members.len());
    }
    let mut sets = sets.into_iter();

    let child = |id: usize, leaf: i64, what: &str| -> Result<Child, OpError> {
        let (bound, c) = if leaf != 0 {
            (leaf_targets.len(), Child::Leaf(id))
        } else {
            (n, Child::Branch(id))
        };
        if id >= bound {
            return Err(OpError::attribute(
                what,
                format!("index {id} is out of range"),
            ));
        }
        Ok(c)
    };
    let mut branches = Vec::with_capacity(n);
    for i in 0..n {
        let comparison = match modes[i] {
            0 => Comparison::Leq,
            1 => Comparison::Lt,
            2 => Comparison::Gte,
            3 => Comparison::Gt,
            4 => Comparison::Eq,
            5 => Comparison::Neq,
            6 => Comparison::Member(sets.next().ok_or_else(|| {
                OpError::attribute(
                    "membership_values",
                    "has fewer sets than BRANCH_MEMBER nodes",
                )
            })?),
            m => {
                return Err(OpError::attribute(
                    "nodes_modes",
                    format!("unknown mode {m}"),
                ))
            }
        };
        branches.push(Branch {
            feature: features[i],
            comparison,
            threshold: splits[i],
            missing_tracks_true: missing[i] != 0,
            on_true: child(true_ids[i], true_leafs[i], "nodes_truenodeids")?,
            on_false: child(false_ids[i], false_leafs[i], "nodes_falsenodeids")?,
        });
    }
    if sets.next().is_some() {
        return Err(OpError::attribute(
            "membership_values",
            "has more sets than BRANCH_MEMBER nodes",
        ));
    }
    let roots = indices("tree_roots")?
        .into_iter()
        .map(|r| {
            let b = branches.get(r).ok_or_else(|| {
                OpError::attribute("tree_roots", format!("node {r} is out of range"))
            })?;
            // A one-leaf tree is a node whose branches both name the same leaf.
            Ok(match (b.on_true, b.on_false) {
                (Child::Leaf(a), Child::Leaf(b)) if a == b => Child::Leaf(a),
                _ => Child::Branch(r),
            })
        })
        .collect::<Result<Vec<_>, OpError>>()?;
    let aggregate = match info.attr_int("aggregate_function", 1)? {
        0 => Aggregate::Average,
        1 => Aggregate::Sum,
        2 => Aggregate::Min,
        3 => Aggregate::Max,
        other => {
            return Err(OpError::attribute(
                "aggregate_function",
                format!("unknown value {other}"),
            ))
        }
    };
    let post_transform = match info.attr_int("post_transform", 0)? {
        0 => PostTransform::None,
        1 => PostTransform::Softmax,
        2 => PostTransform::Logistic,
        3 => PostTransform::SoftmaxZero,
        4 => PostTransform::Probit,
        other => {
            return Err(OpError::attribute(
                "post_transform",
                format!("unknown value {other}"),
            ))
        }
    };
    let min_features = branches.iter().map(|b| b.feature + 1).max().unwrap_or(0);
    Ok(Box::new(TreeEnsemble {
        branches,
        leaves: leaf_targets.into_iter().zip(leaf_weights).collect(),
        roots,
        members,
        n_targets,
        aggregate,
        post_transform,
        min_features,
    }))
}

impl TreeEnsemble {
    /// The leaf `root`'s tree reaches for feature row `x`.
    fn leaf<R: Real>(&self, root: Child, x: &[R]) -> Result<usize, OpError> {
        let round = |v: f64| R::from_f64(v).unwrap_or_else(R::nan);
        let mut at = root;
        // A path visits each branch at most once unless the "tree" has a cycle.
        for _ in 0..=self.branches.len() {
            let b = match at {
                Child::Leaf(l) => return Ok(l),
                Child::Branch(i) => &self.branches[i],
            };
            let v = x[b.feature];
            let t = round(b.threshold);
            let go_true = (b.missing_tracks_true && v.is_nan())
                || match &b.comparison {
                    Comparison::Leq => v <= t,
                    Comparison::Lt => v < t,
                    Comparison::Gte => v >= t,
                    Comparison::Gt => v > t,
                    Comparison::Eq => v == t,
                    Comparison::Neq => v != t,
                    Comparison::Member(range) => {
                        self.members[range.clone()].iter().any(|&m| round(m) == v)
                    }
                };
            at = if go_true { b.on_true } else { b.on_false };
        }
        Err(OpError::invalid("the tree structure has a cycle"))
    }

    fn predict<R: Real>(&self, x: &Tensor) -> Result<Vec<f64>, OpError> {
        let (n, f) = match *x.shape() {
            [n, f] => (n, f),
            [f] => (1, f),
            ref s => {
                return Err(OpError::input(
                    0,
                    format!("expected an [N, F] input, got shape {s:?}"),
                ))
            }
        };
        if f < self.min_features {
            return Err(OpError::input(
                0,
                format!("has {f} features, the trees read {}", self.min_features),
            ));
        }
        let x = R::read(x, 0)?;
        let mut out = vec![0.0; n * self.n_targets];
        let mut reached = vec![false; self.n_targets];
        for (row, scores) in x.chunks(f.max(1)).zip(out.chunks_mut(self.n_targets)) {
            reached.fill(false);
            for &root in &self.roots {
                let (target, w) = self.leaves[self.leaf(root, row)?];
                let s = &mut scores[target];
                *s = match (self.aggregate, reached[target]) {
                    (Aggregate::Sum | Aggregate::Average, _) => *s + w,
                    (Aggregate::Min | Aggregate::Max, false) => w,
                    (Aggregate::Min, true) => s.min(w),
                    (Aggregate::Max, true) => s.max(w),
                };
                reached[target] = true;
            }
            if self.aggregate == Aggregate::Average && !self.roots.is_empty() {
                let trees = self.roots.len() as f64;
                scores.iter_mut().for_each(|s| *s /= trees);
            }
            self.post_transform.apply(scores);
        }
        Ok(out)
    }
}

impl Kernel for TreeEnsemble {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let scores = match FloatKind::of(x.dtype(), 0)? {
            FloatKind::F32 => self.predict::<f32>(x)?,
            FloatKind::F64 => self.predict::<f64>(x)?,
        };
        let rows = scores.len() / self.n_targets;
        Ok(vec![f64::to_tensor(
            scores,
            x.dtype(),
            &[rows, self.n_targets],
        )?
        .into()])
    }
}

// ---------------------------------------------------------------------------------------------
// Binarizer

/// ONNX-ML `Binarizer`: 1 where an element exceeds `threshold`, else 0, in the input's type.
struct Binarizer {
    threshold: f64,
}

fn build_binarizer(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(Binarizer {
        threshold: f64::from(info.attr_float("threshold", 0.0)?),
    }))
}

impl Kernel for Binarizer {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let t = self.threshold;
        let data = match x.data() {
            TensorData::Float(v) => TensorData::Float(
                v.iter()
                    .map(|&e| if f64::from(e) > t { 1.0 } else { 0.0 })
                    .collect(),
            ),
            TensorData::Double(v) => {
                TensorData::Double(v.iter().map(|&e| if e > t { 1.0 } else { 0.0 }).collect())
            }
            TensorData::Int64(v) => {
                TensorData::Int64(v.iter().map(|&e| i64::from(e as f64 > t)).collect())
            }
            TensorData::Int32(v) => {
                TensorData::Int32(v.iter().map(|&e| i32::from(f64::from(e) > t)).collect())
            }
            other => {
                return Err(OpError::input(
                    0,
                    format!(
                        "expected float, double, int64 or int32, got {}",
                        other.dtype()
                    ),
                ))
            }
        };
        Ok(vec![Tensor::new(x.shape(), data)?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// ArrayFeatureExtractor

/// ONNX-ML `ArrayFeatureExtractor`: selects, along the last axis of `X`, the elements at the
/// (flattened) indices `Y`. A 1-D `X` gives a `[1, k]` output, as in onnxruntime.
struct ArrayFeatureExtractor;

impl Kernel for ArrayFeatureExtractor {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let indices = inputs.slice::<i64>(1)?;
        let Some((&d, outer_dims)) = x.shape().split_last() else {
            return Err(OpError::input(0, "expected at least one dimension"));
        };
        let picks: Vec<usize> = indices
            .iter()
            .map(|&i| {
                usize::try_from(i).ok().filter(|&i| i < d).ok_or_else(|| {
                    OpError::input(1, format!("index {i} is out of range for {d} features"))
                })
            })
            .collect::<Result<_, _>>()?;
        let outer: usize = outer_dims.iter().product();
        let gather: Vec<usize> = (0..outer)
            .flat_map(|o| picks.iter().map(move |&p| o * d + p))
            .collect();
        let mut shape = if outer_dims.is_empty() {
            vec![1]
        } else {
            outer_dims.to_vec()
        };
        shape.push(picks.len());
        Ok(vec![Tensor::new(shape, x.data().gather(&gather))?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// Normalizer

#[derive(Clone, Copy)]
enum Norm {
    Max,
    L1,
    L2,
}

/// ONNX-ML `Normalizer`: divides each row of a `[C]` or `[N, C]` input by its max (MAX), the
/// sum of its absolute values (L1) or its Euclidean norm (L2); a zero divisor leaves the row
/// as it is. Output is float.
struct Normalizer {
    norm: Norm,
}

fn build_normalizer(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let norm = match info.attr_string("norm", "MAX")?.as_str() {
        "MAX" => Norm::Max,
        "L1" => Norm::L1,
        "L2" => Norm::L2,
        other => {
            return Err(OpError::attribute(
                "norm",
                format!("expected MAX, L1 or L2, got {other:?}"),
            ))
        }
    };
    Ok(Box::new(Normalizer { norm }))
}

impl Kernel for Normalizer {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let (_, c) = rows_cols(x.shape(), "Normalizer")?;
        let mut v = numbers_f64(x, 0)?;
        for row in v.chunks_mut(c.max(1)) {
            let divisor = match self.norm {
                Norm::Max => row.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                Norm::L1 => row.iter().map(|e| e.abs()).sum(),
                Norm::L2 => row.iter().map(|e| e * e).sum::<f64>().sqrt(),
            };
            if divisor != 0.0 {
                row.iter_mut().for_each(|e| *e /= divisor);
            }
        }
        let y: Vec<f32> = v.into_iter().map(|e| e as f32).collect();
        Ok(vec![Tensor::from_vec(x.shape(), y)?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// Scaler

/// ONNX-ML `Scaler`: `(X - offset) · scale` per feature (last axis), or with one offset and
/// scale for all. Output is float.
struct Scaler {
    offset: Vec<f64>,
    scale: Vec<f64>,
}

fn build_scaler(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let get = |name| -> Result<Vec<f64>, OpError> {
        Ok(info
            .attr_floats_opt(name)?
            .unwrap_or_default()
            .into_iter()
            .map(f64::from)
            .collect())
    };
    let (offset, scale) = (get("offset")?, get("scale")?);
    Ok(Box::new(Scaler { offset, scale }))
}

/// `values[i % len]`-style per-feature lookup: a one-value list applies to every feature.
fn per_feature(values: &[f64], c: usize, name: &str, default: f64) -> Result<Vec<f64>, OpError> {
    match values.len() {
        0 => Ok(vec![default; c]),
        1 => Ok(vec![values[0]; c]),
        n if n == c => Ok(values.to_vec()),
        n => Err(OpError::attribute(
            name,
            format!("has {n} values for {c} features"),
        )),
    }
}

impl Kernel for Scaler {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let c = x.shape().last().copied().unwrap_or(1);
        let offset = per_feature(&self.offset, c, "offset", 0.0)?;
        let scale = per_feature(&self.scale, c, "scale", 1.0)?;
        let v = numbers_f64(x, 0)?;
        let y: Vec<f32> = v
            .iter()
            .enumerate()
            .map(|(i, &e)| ((e - offset[i % c.max(1)]) * scale[i % c.max(1)]) as f32)
            .collect();
        Ok(vec![Tensor::from_vec(x.shape(), y)?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// OneHotEncoder

/// ONNX-ML `OneHotEncoder`: each element becomes a one-hot float vector over the categories (a
/// new last axis). Numeric inputs are truncated to integers and looked up in `cats_int64s`,
/// strings in `cats_strings`. An unknown category gives all zeros if `zeros` is set, else an
/// error.
struct OneHotEncoder {
    keys: Keys,
    count: usize,
    zeros: bool,
}

fn build_one_hot_encoder(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let (count, keys) = match (
        info.attr_ints_opt("cats_int64s")?,
        info.attr_strings_opt("cats_strings")?,
    ) {
        (Some(c), None) => (c.len(), Keys::ints(c)),
        (None, Some(c)) => (c.len(), Keys::strings(c)),
        _ => {
            return Err(OpError::invalid(
                "exactly one of cats_int64s and cats_strings must be set",
            ))
        }
    };
    Ok(Box::new(OneHotEncoder {
        keys,
        count,
        zeros: info.attr_int("zeros", 1)? != 0,
    }))
}

impl Kernel for OneHotEncoder {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let as_ints;
        let keyed = match x.data() {
            TensorData::Float(_) | TensorData::Double(_) => {
                let v: Vec<i64> = numbers_f64(x, 0)?.into_iter().map(|e| e as i64).collect();
                as_ints = Tensor::from_vec(x.shape(), v)?;
                &as_ints
            }
            _ => x,
        };
        let positions = self.keys.positions(keyed, usize::MAX)?;
        let mut y = vec![0f32; positions.len() * self.count];
        for (i, &p) in positions.iter().enumerate() {
            if p == usize::MAX {
                if !self.zeros {
                    return Err(OpError::input(
                        0,
                        format!("element {i} is not a known category"),
                    ));
                }
            } else {
                y[i * self.count + p] = 1.0;
            }
        }
        let mut shape = x.shape().to_vec();
        shape.push(self.count);
        Ok(vec![Tensor::from_vec(shape, y)?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// Imputer

/// ONNX-ML `Imputer`: replaces elements equal to the replaced value (a NaN replaced value
/// matches NaNs) with the imputed value of their feature (last axis), or the single imputed
/// value. Floats use the `*_float*` attributes, integers the `*_int64*` ones.
struct Imputer {
    floats: Vec<f32>,
    replaced_float: f32,
    ints: Vec<i64>,
    replaced_int: i64,
}

fn build_imputer(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(Imputer {
        floats: info
            .attr_floats_opt("imputed_value_floats")?
            .unwrap_or_default(),
        replaced_float: info.attr_float("replaced_value_float", 0.0)?,
        ints: info
            .attr_ints_opt("imputed_value_int64s")?
            .unwrap_or_default(),
        replaced_int: info.attr_int("replaced_value_int64", 0)?,
    }))
}

fn impute<T: Copy>(
    x: &[T],
    c: usize,
    imputed: &[T],
    is_replaced: impl Fn(T) -> bool,
) -> Result<Vec<T>, OpError> {
    if imputed.len() != 1 && imputed.len() != c {
        return Err(OpError::invalid(format!(
            "{} imputed values for {c} features",
            imputed.len()
        )));
    }
    Ok(x.iter()
        .enumerate()
        .map(|(i, &e)| {
            if is_replaced(e) {
                imputed[(i % c.max(1)).min(imputed.len() - 1)]
            } else {
                e
            }
        })
        .collect())
}

impl Kernel for Imputer {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let c = x.shape().last().copied().unwrap_or(1);
        let r = self.replaced_float;
        let float_match = |e: f64| {
            if r.is_nan() {
                e.is_nan()
            } else {
                e == f64::from(r)
            }
        };
        let data = match x.data() {
            TensorData::Float(v) => {
                TensorData::Float(impute(v, c, &self.floats, |e| float_match(f64::from(e)))?)
            }
            TensorData::Double(v) => {
                let imputed: Vec<f64> = self.floats.iter().map(|&f| f64::from(f)).collect();
                TensorData::Double(impute(v, c, &imputed, float_match)?)
            }
            TensorData::Int64(v) => {
                TensorData::Int64(impute(v, c, &self.ints, |e| e == self.replaced_int)?)
            }
            TensorData::Int32(v) => {
                let imputed = self
                    .ints
                    .iter()
                    .map(|&i| i32::try_from(i))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| {
                        OpError::attribute("imputed_value_int64s", "values must fit in int32")
                    })?;
                TensorData::Int32(impute(v, c, &imputed, |e| {
                    i64::from(e) == self.replaced_int
                })?)
            }
            other => {
                return Err(OpError::input(
                    0,
                    format!(
                        "expected float, double, int64 or int32, got {}",
                        other.dtype()
                    ),
                ))
            }
        };
        Ok(vec![Tensor::new(x.shape(), data)?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// FeatureVectorizer

/// ONNX-ML `FeatureVectorizer`: concatenates its inputs' rows into one float row per batch
/// element. Input `i` contributes `inputdimensions[i]` columns: its first ones, zero-padded when
/// it has fewer. A 1-D input is one row; inputs of rank > 2 are flattened to `[N, rest]`.
struct FeatureVectorizer {
    dims: Vec<usize>,
}

fn build_feature_vectorizer(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let dims = info
        .attr_ints_opt("inputdimensions")?
        .unwrap_or_default()
        .into_iter()
        .map(usize::try_from)
        .collect::<Result<_, _>>()
        .map_err(|_| OpError::attribute("inputdimensions", "must be non-negative"))?;
    Ok(Box::new(FeatureVectorizer { dims }))
}

impl Kernel for FeatureVectorizer {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        if inputs.len() != self.dims.len() {
            return Err(OpError::invalid(format!(
                "{} inputs but {} inputdimensions",
                inputs.len(),
                self.dims.len()
            )));
        }
        let mut parts = Vec::with_capacity(inputs.len());
        let mut rows = None;
        for (i, &dim) in self.dims.iter().enumerate() {
            let t = inputs.tensor(i)?;
            let (n, c) = match t.shape() {
                [] => (1, 1),
                [c] => (1, *c),
                [n, rest @ ..] => (*n, rest.iter().product()),
            };
            if rows.is_some_and(|r| r != n) {
                return Err(OpError::input(
                    i,
                    format!("has {n} rows, input 0 has {}", rows.unwrap_or(0)),
                ));
            }
            rows = Some(n);
            parts.push((numbers_f64(t, i)?, c, dim));
        }
        let rows = rows.unwrap_or(0);
        let width: usize = self.dims.iter().sum();
        let mut y = vec![0f32; rows * width];
        for (r, out) in y.chunks_mut(width.max(1)).enumerate().take(rows) {
            let mut at = 0;
            for (v, c, dim) in &parts {
                let take = (*c).min(*dim);
                for (o, &e) in out[at..at + take].iter_mut().zip(&v[r * c..r * c + take]) {
                    *o = e as f32;
                }
                at += dim;
            }
        }
        Ok(vec![Tensor::from_vec([rows, width], y)?.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kernel: &dyn Kernel, inputs: Vec<Tensor>) -> Tensor {
        let inputs = Inputs::new(inputs.into_iter().map(|t| Some(Value::Tensor(t))).collect());
        kernel.run(inputs).unwrap().remove(0).into_tensor().unwrap()
    }

    fn floats(t: &Tensor) -> Vec<f32> {
        t.as_slice::<f32>().unwrap().to_vec()
    }

    #[test]
    fn normalizer_modes() {
        let x = Tensor::from_vec([2, 2], vec![3i64, 4, 0, 0]).unwrap();
        let l2 = run(&Normalizer { norm: Norm::L2 }, vec![x.clone()]);
        assert_eq!(floats(&l2), vec![0.6, 0.8, 0.0, 0.0]);
        let l1 = run(&Normalizer { norm: Norm::L1 }, vec![x.clone()]);
        assert_eq!(floats(&l1), vec![3.0 / 7.0, 4.0 / 7.0, 0.0, 0.0]);
        let max = run(&Normalizer { norm: Norm::Max }, vec![x]);
        assert_eq!(floats(&max), vec![0.75, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn scaler_per_feature_and_broadcast() {
        let x = Tensor::from_vec([2, 2], vec![1.0f64, 2.0, 3.0, 4.0]).unwrap();
        let op = Scaler {
            offset: vec![1.0, 2.0],
            scale: vec![2.0],
        };
        assert_eq!(floats(&run(&op, vec![x])), vec![0.0, 0.0, 4.0, 4.0]);
    }

    #[test]
    fn one_hot_encoder_strings_and_truncated_floats() {
        let op = OneHotEncoder {
            keys: Keys::strings(vec!["a".into(), "b".into()]),
            count: 2,
            zeros: true,
        };
        let x = Tensor::from_vec([3], vec!["b".to_string(), "z".into(), "a".into()]).unwrap();
        let y = run(&op, vec![x]);
        assert_eq!(y.shape(), &[3, 2]);
        assert_eq!(floats(&y), vec![0.0, 1.0, 0.0, 0.0, 1.0, 0.0]);
        let op = OneHotEncoder {
            keys: Keys::ints(vec![1, 2]),
            count: 2,
            zeros: false,
        };
        let y = run(&op, vec![Tensor::from_vec([1], vec![2.7f32]).unwrap()]);
        assert_eq!(floats(&y), vec![0.0, 1.0]);
        let inputs = Inputs::new(vec![Some(
            Tensor::from_vec([1], vec![5.0f32]).unwrap().into(),
        )]);
        assert!(op.run(inputs).is_err());
    }

    #[test]
    fn imputer_replaces_nan_per_feature() {
        let op = Imputer {
            floats: vec![10.0, 20.0],
            replaced_float: f32::NAN,
            ints: vec![],
            replaced_int: 0,
        };
        let x = Tensor::from_vec([2, 2], vec![f32::NAN, 1.0, 2.0, f32::NAN]).unwrap();
        assert_eq!(floats(&run(&op, vec![x])), vec![10.0, 1.0, 2.0, 20.0]);
        let op = Imputer {
            floats: vec![],
            replaced_float: 0.0,
            ints: vec![7],
            replaced_int: -1,
        };
        let x = Tensor::from_vec([3], vec![-1i32, 4, -1]).unwrap();
        assert_eq!(run(&op, vec![x]).as_slice::<i32>().unwrap(), &[7, 4, 7]);
    }

    #[test]
    fn feature_vectorizer_pads_and_truncates() {
        let op = FeatureVectorizer { dims: vec![1, 3] };
        let a = Tensor::from_vec([2, 2], vec![1i64, 2, 3, 4]).unwrap();
        let b = Tensor::from_vec([2, 1], vec![5.0f64, 6.0]).unwrap();
        let y = run(&op, vec![a, b]);
        assert_eq!(y.shape(), &[2, 4]);
        assert_eq!(floats(&y), vec![1.0, 5.0, 0.0, 0.0, 3.0, 6.0, 0.0, 0.0]);
    }

    #[test]
    fn post_transforms() {
        let mut row = vec![0.0, 2.0f64.ln()];
        PostTransform::Softmax.apply(&mut row);
        assert!((row[0] - 1.0 / 3.0).abs() < 1e-12 && (row[1] - 2.0 / 3.0).abs() < 1e-12);
        let mut row = vec![0.0, 1.0, 1.0];
        PostTransform::SoftmaxZero.apply(&mut row);
        assert_eq!(row, vec![0.0, 0.5, 0.5]);
        let mut row = vec![0.0];
        PostTransform::Logistic.apply(&mut row);
        assert_eq!(row, vec![0.5]);
    }

    #[test]
    fn probit_is_the_normal_quantile() {
        assert!(probit(0.5).abs() < 1e-15);
        assert!((probit(0.975) - 1.959_963_984_540_054).abs() < 1e-12);
        assert!((probit(0.001) + 3.090_232_306_167_813_5).abs() < 1e-12);
    }

    #[test]
    fn float_keys_match_any_nan_and_signed_zero() {
        assert_eq!(float_key(f64::NAN), float_key(-f64::NAN));
        assert_eq!(float_key(0.0), float_key(-0.0));
        assert_ne!(float_key(1.0), float_key(2.0));
    }
}
