//! Reading input tensors from files, and making random ones for benchmarks.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use runnx_ir::{DataType, Dim, Tensor, TensorData, Value, ValueInfo, ValueType};

/// `NAME=FILE` or a bare `.npz` FILE whose keys are input names.
#[derive(Clone, Debug)]
pub struct InputArg {
    pub name: Option<String>,
    pub path: PathBuf,
}

pub fn parse_input_arg(s: &str) -> Result<InputArg, String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok(InputArg {
            name: Some(name.to_string()),
            path: PathBuf::from(path),
        }),
        Some(_) => Err(format!("expected NAME=FILE, got '{s}'")),
        None => Ok(InputArg {
            name: None,
            path: PathBuf::from(s),
        }),
    }
}

/// Loads every `--input` into named values. `declared` gives the input types (for `.pb` files
/// holding sequences, and to name the input of a single-input model given a bare `.npy`).
pub fn load_inputs(args: &[InputArg], declared: &[ValueInfo]) -> Result<HashMap<String, Value>> {
    let mut values = HashMap::new();
    for arg in args {
        let ext = arg
            .path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let read = || {
            std::fs::read(&arg.path)
                .with_context(|| format!("cannot read input file {}", arg.path.display()))
        };
        match (ext.as_str(), &arg.name) {
            ("npz", None) => {
                let file = std::fs::File::open(&arg.path)
                    .with_context(|| format!("cannot read input file {}", arg.path.display()))?;
                for (name, tensor) in runnx_ir::npy::read_npz(std::io::BufReader::new(file))
                    .with_context(|| arg.path.display().to_string())?
                {
                    values.insert(name, Value::Tensor(tensor));
                }
            }
            ("npz", Some(name)) => {
                let file = std::fs::File::open(&arg.path)
                    .with_context(|| format!("cannot read input file {}", arg.path.display()))?;
                let arrays = runnx_ir::npy::read_npz(std::io::BufReader::new(file))
                    .with_context(|| arg.path.display().to_string())?;
                let tensor = match arrays.iter().find(|(k, _)| k == name) {
                    Some((_, t)) => t.clone(),
                    None if arrays.len() == 1 => arrays[0].1.clone(),
                    None => bail!("{} has no array named '{name}'", arg.path.display()),
                };
                values.insert(name.clone(), Value::Tensor(tensor));
            }
            (ext, name) => {
                let name = match name {
                    Some(n) => n.clone(),
                    None if declared.len() == 1 => declared[0].name.clone(),
                    None => bail!(
                        "{}: give the input name as NAME={} (the model has {} inputs)",
                        arg.path.display(),
                        arg.path.display(),
                        declared.len()
                    ),
                };
                let bytes = read()?;
                let value = match ext {
                    "npy" => Value::Tensor(
                        runnx_ir::npy::read_npy(&bytes)
                            .with_context(|| arg.path.display().to_string())?,
                    ),
                    "pb" => {
                        let ty = declared
                            .iter()
                            .find(|v| v.name == name)
                            .map(|v| v.ty.clone())
                            .unwrap_or(ValueType::Unknown);
                        runnx_ir::convert::value_from_pb(&bytes, &ty)
                            .with_context(|| arg.path.display().to_string())?
                    }
                    other => bail!(
                        "{}: unsupported input file type '.{other}' (use .npy, .npz or .pb)",
                        arg.path.display()
                    ),
                };
                values.insert(name, value);
            }
        }
    }
    Ok(values)
}

/// `NAME=VALUE` for --dim.
pub fn parse_dim(s: &str) -> Result<(String, usize), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got '{s}'"))?;
    let value = value
        .parse()
        .map_err(|_| format!("'{value}' is not a dimension size"))?;
    Ok((name.to_string(), value))
}

/// `NAME=LO:HI` for --range.
pub fn parse_range(s: &str) -> Result<(String, (f64, f64)), String> {
    let (name, range) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=LO:HI, got '{s}'"))?;
    let (lo, hi) = range
        .split_once(':')
        .ok_or_else(|| format!("expected LO:HI, got '{range}'"))?;
    let lo: f64 = lo.parse().map_err(|_| format!("'{lo}' is not a number"))?;
    let hi: f64 = hi.parse().map_err(|_| format!("'{hi}' is not a number"))?;
    if hi <= lo {
        return Err(format!("empty range {lo}:{hi}"));
    }
    Ok((name.to_string(), (lo, hi)))
}

/// The concrete shape of `input`: fixed dims as declared, symbolic dims from `dims` by name,
/// otherwise a leading dynamic dim from `batch` and other dynamic dims from `default_dim`.
pub fn concrete_shape(
    input: &ValueInfo,
    batch: usize,
    dims: &HashMap<String, usize>,
    default_dim: usize,
) -> Result<Vec<usize>> {
    let tt = input.ty.as_tensor().ok_or_else(|| {
        anyhow!(
            "input '{}' is a {}, not a tensor; give it with --input",
            input.name,
            input.ty.type_string()
        )
    })?;
    let declared = tt.shape.as_ref().ok_or_else(|| {
        anyhow!(
            "input '{}' has no declared shape; give it with --input",
            input.name
        )
    })?;
    Ok(declared
        .iter()
        .enumerate()
        .map(|(axis, d)| match d {
            Dim::Fixed(n) => *n,
            Dim::Symbol(s) if dims.contains_key(s) => dims[s],
            _ if axis == 0 => batch,
            _ => default_dim,
        })
        .collect())
}

/// A small deterministic generator (SplitMix64): benchmark inputs need to be reproducible, not
/// cryptographic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A random tensor: integers uniform in [lo, hi), floats uniform in [lo, hi), bools fair coins.
pub fn random_tensor(
    dtype: DataType,
    shape: &[usize],
    (lo, hi): (f64, f64),
    rng: &mut Rng,
) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let mut draw = || lo + (hi - lo) * rng.unit();
    let data = match dtype {
        DataType::Float => TensorData::Float((0..n).map(|_| draw() as f32).collect()),
        DataType::Double => TensorData::Double((0..n).map(|_| draw()).collect()),
        DataType::Float16 => {
            TensorData::Float16((0..n).map(|_| half::f16::from_f64(draw())).collect())
        }
        DataType::Bfloat16 => {
            TensorData::Bfloat16((0..n).map(|_| half::bf16::from_f64(draw())).collect())
        }
        DataType::Int64 => TensorData::Int64((0..n).map(|_| draw().floor() as i64).collect()),
        DataType::Int32 => TensorData::Int32((0..n).map(|_| draw().floor() as i32).collect()),
        DataType::Int16 => TensorData::Int16((0..n).map(|_| draw().floor() as i16).collect()),
        DataType::Int8 => TensorData::Int8((0..n).map(|_| draw().floor() as i8).collect()),
        DataType::Uint8 => TensorData::Uint8((0..n).map(|_| draw().floor() as u8).collect()),
        DataType::Uint16 => TensorData::Uint16((0..n).map(|_| draw().floor() as u16).collect()),
        DataType::Uint32 => TensorData::Uint32((0..n).map(|_| draw().floor() as u32).collect()),
        DataType::Uint64 => TensorData::Uint64((0..n).map(|_| draw().floor() as u64).collect()),
        DataType::Bool => TensorData::Bool((0..n).map(|_| draw() >= (lo + hi) / 2.0).collect()),
        other => bail!("cannot make random inputs of type {other}; give the input with --input"),
    };
    Ok(Tensor::new(shape, data)?)
}

/// Random values for a declared tensor input: its shape from [`concrete_shape`], values from
/// [`random_tensor`] in the input's range from `ranges` (floats default to [-1, 1), integers to
/// [0, 100)).
pub fn random_input(
    input: &ValueInfo,
    shape: &[usize],
    ranges: &HashMap<String, (f64, f64)>,
    rng: &mut Rng,
) -> Result<Tensor> {
    let dtype = input.ty.as_tensor().map(|t| t.dtype).ok_or_else(|| {
        anyhow!(
            "input '{}' is not a tensor; give it with --input",
            input.name
        )
    })?;
    let default = if dtype.is_float() {
        (-1.0, 1.0)
    } else {
        (0.0, 100.0)
    };
    let range = ranges.get(&input.name).copied().unwrap_or(default);
    random_tensor(dtype, shape, range, rng)
}

/// Repeats a tensor along axis 0 until it has `batch` rows (a batch-1 file for a batch-8 run).
pub fn repeat_batch(t: &Tensor, batch: usize) -> Result<Tensor> {
    if t.rank() == 0 || t.shape()[0] == batch {
        return Ok(t.clone());
    }
    if t.shape()[0] != 1 {
        bail!("cannot repeat a batch of {} to {batch}", t.shape()[0]);
    }
    let parts: Vec<&TensorData> = (0..batch).map(|_| t.data()).collect();
    let data = TensorData::concat(&parts).expect("same type");
    let mut shape = t.shape().to_vec();
    shape[0] = batch;
    Ok(Tensor::new(shape, data)?)
}
