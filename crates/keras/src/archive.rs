//! Reading Keras files: the model config (JSON) and the weights (HDF5).
//!
//! Two containers hold the same two things:
//! - legacy `.h5` (Keras 2 tf.keras and Keras 3): the root attribute `model_config` is the JSON,
//!   and `model_weights/<layer name>` holds each layer's weights, listed in order by the group's
//!   `weight_names` attribute (Keras 2 names end in `:0`). A nested model is one group whose list
//!   holds every weight of its layers.
//! - `.keras` (Keras 3): a zip of `config.json`, `metadata.json` and `model.weights.h5`; the
//!   weights of a layer sit in `layers/<name>/vars/0..n`, where `<name>` is not the user's layer
//!   name but the snake-cased class name made unique inside its list (`dense`, `dense_1`, ...),
//!   and a layer's sub-layers (an RNN's `cell`, attention's `query_dense`) are groups below it.

use std::io::Read;
use std::path::Path;

use hdf5_pure::{AttrValue, File as H5File, Group};
use serde_json::Value as Json;

use crate::array::Array;
use crate::KerasError;

/// Which writer produced a file: some defaults and formulas differ between Keras 2 and 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KerasMajor {
    Two,
    Three,
}

/// A Keras model as read from disk: its config and where its weights live.
pub struct KerasFile {
    /// The `{"class_name": ..., "config": ...}` object of the model.
    pub config: Json,
    pub keras_version: String,
    pub major: KerasMajor,
    pub weights: WeightStore,
}

/// Where a layer's weights are found, per container format.
pub enum WeightStore {
    /// Legacy `.h5`: `root` is the group holding one group per top-level layer.
    Legacy { file: H5File, root: String },
    /// `.keras`: `model.weights.h5` from the zip.
    V3 { file: H5File },
}

/// The address of one layer's weights in either format.
#[derive(Clone, Debug, Default)]
pub struct WeightPath {
    /// Layer names from the top-level model down to this layer (legacy `.h5`).
    pub legacy: Vec<String>,
    /// Group path of the layer in `model.weights.h5` (`.keras`), e.g. `layers/dense_1`.
    pub v3: String,
}

fn format_err(path: &str, message: impl Into<String>) -> KerasError {
    KerasError::Format {
        path: path.to_string(),
        message: message.into(),
    }
}

impl KerasFile {
    /// Opens a `.h5` or `.keras` file, telling them apart by content (zip or HDF5 signature).
    pub fn open(path: &Path) -> Result<KerasFile, KerasError> {
        let bytes = std::fs::read(path).map_err(|source| KerasError::Io {
            path: path.display().to_string(),
            source,
        })?;
        KerasFile::from_bytes(bytes, &path.display().to_string())
    }

    /// Reads a model from the bytes of a `.h5` or `.keras` file; `what` names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, what: &str) -> Result<KerasFile, KerasError> {
        if bytes.starts_with(b"PK\x03\x04") {
            KerasFile::from_keras_zip(bytes, what)
        } else if hdf5_pure::is_hdf5_bytes(&bytes) {
            KerasFile::from_legacy_h5(bytes, what)
        } else {
            Err(format_err(
                what,
                "neither a .keras zip nor an HDF5 (.h5) file",
            ))
        }
    }

    fn from_keras_zip(bytes: Vec<u8>, what: &str) -> Result<KerasFile, KerasError> {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|e| format_err(what, format!("not a readable zip: {e}")))?;
        let mut read = |name: &str| -> Result<Vec<u8>, KerasError> {
            let mut entry = zip
                .by_name(name)
                .map_err(|_| format_err(what, format!("the .keras archive has no {name}")))?;
            let mut out = Vec::new();
            entry
                .read_to_end(&mut out)
                .map_err(|e| format_err(what, format!("cannot read {name}: {e}")))?;
            Ok(out)
        };
        let config: Json = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| format_err(what, format!("config.json is not JSON: {e}")))?;
        let keras_version = read("metadata.json")
            .ok()
            .and_then(|m| serde_json::from_slice::<Json>(&m).ok())
            .and_then(|m| m["keras_version"].as_str().map(str::to_string))
            .unwrap_or_else(|| "3".to_string());
        let weights = read("model.weights.h5")?;
        let file = H5File::from_bytes(weights)
            .map_err(|e| format_err(what, format!("model.weights.h5: {e}")))?;
        Ok(KerasFile {
            config,
            major: major_of(&keras_version),
            keras_version,
            weights: WeightStore::V3 { file },
        })
    }

    fn from_legacy_h5(bytes: Vec<u8>, what: &str) -> Result<KerasFile, KerasError> {
        let file = H5File::from_bytes(bytes).map_err(|e| format_err(what, format!("{e}")))?;
        let attrs = file
            .root()
            .attrs()
            .map_err(|e| format_err(what, format!("{e}")))?;
        let config = attrs
            .get("model_config")
            .and_then(AttrValue::as_str)
            .ok_or_else(|| {
                format_err(
                    what,
                    "no `model_config` attribute: a weights-only file, not a saved model",
                )
            })?;
        let config: Json = serde_json::from_str(config)
            .map_err(|e| format_err(what, format!("model_config is not JSON: {e}")))?;
        let keras_version = attrs
            .get("keras_version")
            .and_then(AttrValue::as_str)
            .unwrap_or("2")
            .to_string();
        let root = if file.group("model_weights").is_ok() {
            "model_weights".to_string()
        } else {
            String::new()
        };
        Ok(KerasFile {
            config,
            major: major_of(&keras_version),
            keras_version,
            weights: WeightStore::Legacy { file, root },
        })
    }
}

fn major_of(version: &str) -> KerasMajor {
    if version.starts_with('2') || version.starts_with('1') {
        KerasMajor::Two
    } else {
        KerasMajor::Three
    }
}

fn h5_err(e: hdf5_pure::Error) -> String {
    e.to_string()
}

fn read_array(group: &Group, name: &str) -> Result<Array, String> {
    let ds = group.dataset(name).map_err(h5_err)?;
    let shape: Vec<usize> = ds
        .shape()
        .map_err(h5_err)?
        .into_iter()
        .map(|d| d as usize)
        .collect();
    match ds.dtype().map_err(h5_err)? {
        hdf5_pure::DType::F32 | hdf5_pure::DType::F64 => {}
        other => {
            return Err(format!(
                "weight '{name}' has element type {other:?}, not float32"
            ))
        }
    }
    let data = ds.read_f32().map_err(h5_err)?;
    Array::new(shape, data).map_err(|e| format!("weight '{name}': {e}"))
}

/// A weight name as a list of path components, without Keras 2's `:0` suffix.
fn components(name: &str) -> Vec<&str> {
    let name = name.strip_suffix(":0").unwrap_or(name);
    name.split('/').collect()
}

impl WeightStore {
    /// The weights of one layer in Keras's order (`layer.weights`), the sub-layers listed in
    /// `v3_children` concatenated in that order for `.keras` files (`""` is the layer itself).
    pub fn layer_weights(
        &self,
        path: &WeightPath,
        v3_children: &[&str],
    ) -> Result<Vec<Array>, String> {
        match self {
            WeightStore::Legacy { file, root } => {
                let Some(top) = path.legacy.first() else {
                    return Ok(Vec::new());
                };
                let group_path = if root.is_empty() {
                    top.clone()
                } else {
                    format!("{root}/{top}")
                };
                let Ok(group) = file.group(&group_path) else {
                    return Ok(Vec::new());
                };
                let attrs = group.attrs().map_err(h5_err)?;
                let names: Vec<String> = attrs
                    .get("weight_names")
                    .and_then(AttrValue::as_strings)
                    .map(<[String]>::to_vec)
                    .unwrap_or_default();
                let mut out = Vec::new();
                for name in &names {
                    // Inside a nested model, keep the weights whose path names every nested layer.
                    let comps = components(name);
                    if !path.legacy[1..]
                        .iter()
                        .all(|l| comps.iter().any(|c| c == l))
                    {
                        continue;
                    }
                    out.push(read_array(&group, name)?);
                }
                Ok(out)
            }
            WeightStore::V3 { file } => {
                let mut out = Vec::new();
                for child in v3_children {
                    let group_path = if child.is_empty() {
                        format!("{}/vars", path.v3)
                    } else {
                        format!("{}/{child}/vars", path.v3)
                    };
                    let Ok(group) = file.group(&group_path) else {
                        continue;
                    };
                    let mut names = group.datasets().map_err(h5_err)?;
                    names.sort_by_key(|n| n.parse::<usize>().unwrap_or(usize::MAX));
                    for name in names {
                        out.push(read_array(&group, &name)?);
                    }
                }
                Ok(out)
            }
        }
    }
}

/// Keras's `naming.to_snake_case`: the name a `.keras` file gives a layer's weight group.
pub fn to_snake_case(name: &str) -> String {
    let chars: Vec<char> = name
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    // re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    let mut first = String::new();
    let mut i = 0;
    while i < chars.len() {
        let run_end = {
            let mut j = i + 2;
            while j < chars.len() && chars[j].is_ascii_lowercase() {
                j += 1;
            }
            j
        };
        if i + 2 < chars.len()
            && chars[i + 1].is_ascii_uppercase()
            && chars[i + 2].is_ascii_lowercase()
        {
            first.push(chars[i]);
            first.push('_');
            first.extend(&chars[i + 1..run_end]);
            i = run_end;
        } else {
            first.push(chars[i]);
            i += 1;
        }
    }
    // re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    let chars: Vec<char> = first.chars().collect();
    let mut out = String::new();
    for (k, &c) in chars.iter().enumerate() {
        out.push(c.to_ascii_lowercase());
        if c.is_ascii_lowercase() && chars.get(k + 1).is_some_and(|n| n.is_ascii_uppercase()) {
            out.push('_');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_matches_keras() {
        for (class, name) in [
            ("Dense", "dense"),
            ("Conv2D", "conv2d"),
            ("Conv2DTranspose", "conv2d_transpose"),
            ("LeakyReLU", "leaky_re_lu"),
            ("ReLU", "re_lu"),
            ("PReLU", "p_re_lu"),
            ("SimpleRNN", "simple_rnn"),
            ("GRU", "gru"),
            ("UpSampling2D", "up_sampling2d"),
            ("MultiHeadAttention", "multi_head_attention"),
            ("GlobalMaxPooling2D", "global_max_pooling2d"),
            ("InputLayer", "input_layer"),
            ("BatchNormalization", "batch_normalization"),
        ] {
            assert_eq!(to_snake_case(class), name, "{class}");
        }
    }
}
