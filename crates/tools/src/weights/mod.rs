//! Named tensors outside the model: export a model's initializers, diff them against the
//! weights of the source framework, patch the model with those weights.
//!
//! Weights files are `.npz` (NumPy), `.safetensors`, or a PyTorch state_dict written by
//! `torch.save` (see [`torch`]); the format is told by the file's contents, not its name.
//! A weight `conv1.weight` matches the initializer of the same name; failing that, leading
//! dotted components are dropped (`model.conv1.weight`, `module.conv1.weight` from wrapped or
//! checkpointed models) until a name matches.

mod safetensors;
mod torch;

use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;

use runnx_ir::{DataType, Model, Tensor, TensorData};

use crate::numeric::{tensor_closeness, to_f64, Closeness, Tolerance};
use crate::ToolError;

pub use safetensors::{read_safetensors, write_safetensors};

/// Named tensors in file order.
pub type NamedTensors = Vec<(String, Tensor)>;

/// The formats a weights file can be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsFormat {
    Npz,
    Safetensors,
    /// A `torch.save` zip archive.
    Torch,
}

impl WeightsFormat {
    /// The format to write for a file name: `.npz` or `.safetensors`.
    pub fn for_output(path: &Path) -> Result<WeightsFormat, ToolError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("npz") => Ok(WeightsFormat::Npz),
            Some("safetensors") => Ok(WeightsFormat::Safetensors),
            _ => Err(ToolError::in_file(
                path,
                "cannot tell the format to write: name the file .npz or .safetensors",
            )),
        }
    }
}

/// Reads a weights file, telling its format by its contents.
pub fn read_weights(path: &Path) -> Result<(WeightsFormat, NamedTensors), ToolError> {
    let bytes = std::fs::read(path).map_err(ToolError::io(path))?;
    read_weights_bytes(&bytes).map_err(|e| ToolError::in_file(path, e))
}

/// Reads weights held in memory (see [`read_weights`]).
pub fn read_weights_bytes(bytes: &[u8]) -> Result<(WeightsFormat, NamedTensors), String> {
    if bytes.starts_with(b"PK") {
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| format!("not a valid zip archive: {e}"))?;
        if torch::is_torch_archive(&archive) {
            return Ok((WeightsFormat::Torch, torch::read_torch(&mut archive)?));
        }
        let tensors = runnx_ir::npy::read_npz(Cursor::new(bytes)).map_err(|e| e.to_string())?;
        return Ok((WeightsFormat::Npz, tensors));
    }
    if safetensors::looks_like_safetensors(bytes) {
        return Ok((WeightsFormat::Safetensors, read_safetensors(bytes)?));
    }
    if bytes.first() == Some(&0x80) {
        return Err(
            "a legacy (pre-1.6, non-zip) torch.save file: re-save it with a current \
                    PyTorch"
                .into(),
        );
    }
    Err("not a weights file: expected .npz, .safetensors or a torch.save archive".into())
}

/// Writes named tensors as `.npz` or `.safetensors`, chosen by the file name.
pub fn write_weights(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), ToolError> {
    let bytes = match WeightsFormat::for_output(path)? {
        WeightsFormat::Safetensors => {
            write_safetensors(tensors).map_err(|e| ToolError::in_file(path, e))?
        }
        _ => {
            let mut buf = Cursor::new(Vec::new());
            runnx_ir::npy::write_npz(&mut buf, tensors).map_err(|e| ToolError::in_file(path, e))?;
            buf.into_inner()
        }
    };
    std::fs::write(path, bytes).map_err(ToolError::io(path))
}

/// The model's initializers, main graph only, in file order.
pub fn export_weights(model: &Model) -> NamedTensors {
    model.graph.initializers.clone()
}

/// Pairs each weight with the initializer it stands for (see the module doc for the rule).
fn match_names<'a>(model: &Model, weights: &'a [(String, Tensor)]) -> Vec<(usize, &'a str)> {
    let index: HashMap<&str, usize> = model
        .graph
        .initializers
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect();
    let mut taken = vec![false; model.graph.initializers.len()];
    let mut pairs = Vec::new();
    // Exact names first, so a stripped name never steals an initializer another weight names.
    for exact in [true, false] {
        for (name, _) in weights {
            let mut candidate: &str = name;
            let found = loop {
                if let Some(&i) = index.get(candidate) {
                    break Some(i);
                }
                match candidate.split_once('.') {
                    Some((_, rest)) if !exact => candidate = rest,
                    _ => break None,
                }
            };
            if let Some(i) = found {
                if !taken[i] && (exact || !pairs.iter().any(|(_, n)| *n == name.as_str())) {
                    taken[i] = true;
                    pairs.push((i, name.as_str()));
                }
            }
        }
    }
    pairs.sort_by_key(|(i, _)| *i);
    pairs
}

/// One initializer compared with its weight.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorDiff {
    /// The initializer's name.
    pub name: String,
    /// The weight's name in the weights file (differs when a prefix was dropped).
    pub weight: String,
    pub status: TensorStatus,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TensorStatus {
    /// Same shape; how close the values are.
    Compared {
        closeness: Closeness,
        /// Set when the element types differ (values are compared as numbers all the same).
        dtypes: Option<(DataType, DataType)>,
    },
    ShapeMismatch {
        model: Vec<usize>,
        weights: Vec<usize>,
    },
    /// Element types that cannot be compared as numbers (string against float...).
    TypeMismatch { model: DataType, weights: DataType },
}

impl TensorDiff {
    pub fn differs(&self) -> bool {
        !matches!(&self.status, TensorStatus::Compared { closeness, .. } if closeness.passes())
    }
}

/// A model's initializers against a set of weights.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WeightsDiff {
    /// Every matched pair, in initializer order.
    pub tensors: Vec<TensorDiff>,
    /// Weights with no initializer of that name in the model.
    pub missing_in_model: Vec<String>,
    /// Initializers with no weight (constants the exporter added, folded parameters...).
    pub missing_in_weights: Vec<String>,
}

impl WeightsDiff {
    /// The matched tensors that differ beyond the tolerance, or in shape or type.
    pub fn differing(&self) -> impl Iterator<Item = &TensorDiff> {
        self.tensors.iter().filter(|t| t.differs())
    }
}

/// Compares every initializer that has a weight of the same name (the weights are the reference
/// in `|model - weights| <= atol + rtol * |weights|`).
pub fn diff_weights(model: &Model, weights: &[(String, Tensor)], tol: Tolerance) -> WeightsDiff {
    let pairs = match_names(model, weights);
    let by_name: HashMap<&str, &Tensor> = weights.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut diff = WeightsDiff::default();
    for &(i, weight) in &pairs {
        let (name, init) = &model.graph.initializers[i];
        let w = by_name[weight];
        let status = if init.shape() != w.shape() {
            TensorStatus::ShapeMismatch {
                model: init.shape().to_vec(),
                weights: w.shape().to_vec(),
            }
        } else {
            match tensor_closeness(init, w, tol) {
                Some(closeness) => TensorStatus::Compared {
                    closeness,
                    dtypes: (init.dtype() != w.dtype()).then_some((init.dtype(), w.dtype())),
                },
                None => TensorStatus::TypeMismatch {
                    model: init.dtype(),
                    weights: w.dtype(),
                },
            }
        };
        diff.tensors.push(TensorDiff {
            name: name.clone(),
            weight: weight.to_string(),
            status,
        });
    }
    diff.missing_in_model = weights
        .iter()
        .filter(|(n, _)| !pairs.iter().any(|(_, w)| *w == n.as_str()))
        .map(|(n, _)| n.clone())
        .collect();
    diff.missing_in_weights = model
        .graph
        .initializers
        .iter()
        .enumerate()
        .filter(|(i, _)| !pairs.iter().any(|(j, _)| j == i))
        .map(|(_, (n, _))| n.clone())
        .collect();
    diff
}

/// What [`patch_weights`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PatchReport {
    /// Initializers replaced (their values differed).
    pub replaced: Vec<String>,
    /// Initializers whose weight was already bit-identical.
    pub unchanged: Vec<String>,
    pub missing_in_model: Vec<String>,
    pub missing_in_weights: Vec<String>,
}

/// Replaces every initializer that has a weight of the same name (names are kept). Shapes must
/// match; a weight of another real type is converted to the initializer's type, so the model's
/// types never change. Nothing is changed when any matched weight does not fit.
pub fn patch_weights(
    model: &mut Model,
    weights: &[(String, Tensor)],
) -> Result<PatchReport, ToolError> {
    let pairs = match_names(model, weights);
    let by_name: HashMap<&str, &Tensor> = weights.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut replacements = Vec::with_capacity(pairs.len());
    let mut report = PatchReport::default();
    for &(i, weight) in &pairs {
        let (name, init) = &model.graph.initializers[i];
        let w = by_name[weight];
        if init.shape() != w.shape() {
            return Err(ToolError::Invalid(format!(
                "initializer '{name}' has shape {:?} but weight '{weight}' has {:?}",
                init.shape(),
                w.shape()
            )));
        }
        let new = cast_like(w, init.dtype()).ok_or_else(|| {
            ToolError::Invalid(format!(
                "initializer '{name}' is {} but weight '{weight}' is {}, which does not convert",
                init.dtype(),
                w.dtype()
            ))
        })?;
        if new == *init {
            report.unchanged.push(name.clone());
        } else {
            report.replaced.push(name.clone());
            replacements.push((i, new));
        }
    }
    for (i, t) in replacements {
        model.graph.initializers[i].1 = t;
    }
    let diff = diff_weights(model, weights, Tolerance::default());
    report.missing_in_model = diff.missing_in_model;
    report.missing_in_weights = diff.missing_in_weights;
    Ok(report)
}

/// `t` with elements of `dtype`: itself when the types agree, else converted through f64 for
/// the float and integer types.
fn cast_like(t: &Tensor, dtype: DataType) -> Option<Tensor> {
    if t.dtype() == dtype {
        return Some(t.clone());
    }
    let v = to_f64(t)?;
    let data = match dtype {
        DataType::Float => TensorData::Float(v.iter().map(|&x| x as f32).collect()),
        DataType::Double => TensorData::Double(v),
        DataType::Float16 => {
            TensorData::Float16(v.iter().map(|&x| half::f16::from_f64(x)).collect())
        }
        DataType::Bfloat16 => {
            TensorData::Bfloat16(v.iter().map(|&x| half::bf16::from_f64(x)).collect())
        }
        DataType::Int64 => TensorData::Int64(v.iter().map(|&x| x as i64).collect()),
        DataType::Int32 => TensorData::Int32(v.iter().map(|&x| x as i32).collect()),
        _ => return None,
    };
    Tensor::new(t.shape(), data).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(inits: &[(&str, Vec<f32>)]) -> Model {
        let mut m = Model::default();
        m.graph.initializers = inits
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    Tensor::from_vec([v.len()], v.clone()).unwrap(),
                )
            })
            .collect();
        m
    }

    fn named(items: &[(&str, Tensor)]) -> NamedTensors {
        items
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect()
    }

    #[test]
    fn diff_reports_values_shapes_and_names() {
        let m = model(&[
            ("a", vec![1.0, 2.0]),
            ("b", vec![0.0]),
            ("c", vec![3.0]),
            ("k", vec![]),
        ]);
        let w = named(&[
            (
                "module.a",
                Tensor::from_vec([2], vec![1.0f64, 2.5]).unwrap(),
            ),
            ("b", Tensor::from_vec([2], vec![0.0f32, 0.0]).unwrap()),
            ("c", Tensor::from_vec([1], vec![3.0f32]).unwrap()),
            ("extra", Tensor::scalar(1.0f32)),
        ]);
        let d = diff_weights(
            &m,
            &w,
            Tolerance {
                rtol: 0.0,
                atol: 1e-6,
            },
        );
        let differing: Vec<&str> = d.differing().map(|t| t.name.as_str()).collect();
        assert_eq!(differing, ["a", "b"]);
        assert_eq!(d.tensors[0].weight, "module.a");
        let TensorStatus::Compared { closeness, dtypes } = &d.tensors[0].status else {
            panic!("{:?}", d.tensors[0]);
        };
        assert_eq!(closeness.max_abs_diff, 0.5);
        assert_eq!(*dtypes, Some((DataType::Float, DataType::Double)));
        assert!(matches!(
            d.tensors[1].status,
            TensorStatus::ShapeMismatch { .. }
        ));
        assert_eq!(d.missing_in_model, ["extra"]);
        assert_eq!(d.missing_in_weights, ["k"]);
    }

    #[test]
    fn patch_replaces_converts_and_refuses_bad_shapes() {
        let mut m = model(&[("a", vec![1.0, 2.0]), ("c", vec![3.0])]);
        let w = named(&[
            ("a", Tensor::from_vec([2], vec![5.0f64, 6.0]).unwrap()),
            ("c", Tensor::from_vec([1], vec![3.0f32]).unwrap()),
        ]);
        let r = patch_weights(&mut m, &w).unwrap();
        assert_eq!(
            (r.replaced, r.unchanged),
            (vec!["a".to_string()], vec!["c".to_string()])
        );
        assert_eq!(
            m.graph.initializers[0].1.as_slice::<f32>().unwrap(),
            &[5.0, 6.0]
        );

        let bad = named(&[("a", Tensor::from_vec([1], vec![0.0f32]).unwrap())]);
        let before = m.clone();
        assert!(patch_weights(&mut m, &bad).is_err());
        assert_eq!(m, before);
    }
}
