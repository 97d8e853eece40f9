//! PyTorch `torch.save` archives, read without Python.
//!
//! Since PyTorch 1.6, `torch.save(obj, f)` writes a zip: `<archive>/data.pkl` pickles `obj` (for
//! a state_dict, an `OrderedDict` of name to tensor) and each tensor storage is a raw
//! little-endian file `<archive>/data/<key>`. In the pickle a storage is a persistent id
//! `('storage', torch.FloatStorage, key, location, numel)` and a tensor is
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`.
//!
//! [`Unpickler`] runs the binary opcodes of protocols 2 to 5 (what `torch.save` writes) and
//! interprets only those globals; any other object is kept opaque and skipped. Nothing is ever
//! imported or called, so a hostile file can at worst fail to load.
//!
//! Why not a crate: candle-core's pickle reader comes with all of candle; `serde-pickle` has no
//! persistent ids (how torch refers to storages); `repugnant-pickle` is a 0.0.1 experiment.
//! The subset torch writes is small enough to read here.

use std::collections::HashMap;
use std::io::{Read, Seek};

use runnx_ir::{DataType, Tensor};
use runnx_onnx::proto;

/// A value on the pickle machine's stack.
#[derive(Clone, Debug)]
enum Value {
    None,
    Int(i64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global {
        module: String,
        name: String,
    },
    Storage {
        dtype: DataType,
        key: String,
    },
    Tensor(TensorRef),
    /// Any value this reader does not need (bools, floats, bytes) or object it does not
    /// interpret.
    Opaque,
    Mark,
}

/// A tensor as the pickle describes it: a strided view of a storage.
#[derive(Clone, Debug)]
struct TensorRef {
    dtype: DataType,
    storage: String,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u64, Value>,
}

fn err(msg: impl Into<String>) -> String {
    msg.into()
}

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8]) -> Self {
        Unpickler {
            data,
            pos: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| err("truncated pickle"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| err("unterminated line in pickle"))?;
        self.pos += end + 1;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }

    fn pop(&mut self) -> Result<Value, String> {
        self.stack
            .pop()
            .ok_or_else(|| err("pickle stack underflow"))
    }

    /// Pops everything above the topmost mark, and the mark.
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| err("pickle MARK missing"))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn top(&mut self) -> Result<&mut Value, String> {
        self.stack
            .last_mut()
            .ok_or_else(|| err("pickle stack underflow"))
    }

    fn string(&mut self, n: usize) -> Result<Value, String> {
        let b = self.take(n)?;
        Ok(Value::Str(String::from_utf8_lossy(b).into_owned()))
    }

    fn memo_get(&self, key: u64) -> Result<Value, String> {
        self.memo
            .get(&key)
            .cloned()
            .ok_or_else(|| err(format!("pickle memo key {key} missing")))
    }

    /// Runs the pickle to its STOP and returns the object it builds.
    fn run(mut self) -> Result<Value, String> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.le::<8>()?; // FRAME
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Value::Mark),
                b'N' => self.stack.push(Value::None),
                0x88 | 0x89 => self.stack.push(Value::Opaque), // NEWTRUE, NEWFALSE
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?);
                    self.stack.push(Value::Int(v.into()))
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v.into()))
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?);
                    self.stack.push(Value::Int(v.into()))
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.u8()? as usize
                    } else {
                        u32::from_le_bytes(self.le()?) as usize
                    };
                    let bytes = self.take(n)?;
                    if n > 8 {
                        return Err(err("pickled integer does not fit in 64 bits"));
                    }
                    let mut buf = if bytes.last().is_some_and(|&b| b & 0x80 != 0) {
                        [0xFF; 8]
                    } else {
                        [0; 8]
                    };
                    buf[..n].copy_from_slice(bytes);
                    self.stack.push(Value::Int(i64::from_le_bytes(buf)))
                }
                b'G' => {
                    self.le::<8>()?; // BINFLOAT
                    self.stack.push(Value::Opaque)
                }
                0x8c | b'U' => {
                    let n = self.u8()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v)
                }
                b'X' | b'T' => {
                    let n = u32::from_le_bytes(self.le()?) as usize;
                    let v = self.string(n)?;
                    self.stack.push(v)
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.le()?) as usize;
                    let v = self.string(n)?;
                    self.stack.push(v)
                }
                b'C' | b'B' | 0x8e => {
                    let n = match op {
                        b'C' => self.u8()? as usize,
                        b'B' => u32::from_le_bytes(self.le()?) as usize,
                        _ => u64::from_le_bytes(self.le()?) as usize,
                    };
                    self.take(n)?;
                    self.stack.push(Value::Opaque)
                }
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                0x8f => self.stack.push(Value::Opaque), // EMPTY_SET
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(err("pickle stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items))
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(items))
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Dict(pairs(items)))
                }
                0x91 => {
                    self.pop_mark()?; // FROZENSET
                    self.stack.push(Value::Opaque)
                }
                b'a' => {
                    let v = self.pop()?;
                    if let Value::List(l) = self.top()? {
                        l.push(v)
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    if let Value::List(l) = self.top()? {
                        l.extend(items)
                    }
                }
                0x90 => {
                    self.pop_mark()?; // ADDITEMS to a set
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    if let Value::Dict(d) = self.top()? {
                        d.push((k, v))
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if let Value::Dict(d) = self.top()? {
                        d.extend(pairs(items))
                    }
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global { module, name })
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(module), Value::Str(name)) => {
                            self.stack.push(Value::Global { module, name })
                        }
                        _ => return Err(err("STACK_GLOBAL needs two strings")),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(persistent_load(pid)?)
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.stack.push(reduce(callable, args)?)
                }
                0x81 => {
                    self.pop()?; // NEWOBJ: cls, args
                    self.pop()?;
                    self.stack.push(Value::Opaque)
                }
                0x92 => {
                    self.pop()?; // NEWOBJ_EX: cls, args, kwargs
                    self.pop()?;
                    self.pop()?;
                    self.stack.push(Value::Opaque)
                }
                b'b' => {
                    self.pop()?; // BUILD: state set on the object below; not needed
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v)
                }
                b'q' => {
                    let k = self.u8()? as u64;
                    let v = self.top()?.clone();
                    self.memo.insert(k, v);
                }
                b'r' => {
                    let k = u32::from_le_bytes(self.le()?) as u64;
                    let v = self.top()?.clone();
                    self.memo.insert(k, v);
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    let v = self.top()?.clone();
                    self.memo.insert(k, v);
                }
                b'h' => {
                    let k = self.u8()? as u64;
                    let v = self.memo_get(k)?;
                    self.stack.push(v)
                }
                b'j' => {
                    let k = u32::from_le_bytes(self.le()?) as u64;
                    let v = self.memo_get(k)?;
                    self.stack.push(v)
                }
                other => {
                    return Err(err(format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {}",
                        self.pos - 1
                    )))
                }
            }
        }
    }
}

fn pairs(items: Vec<Value>) -> Vec<(Value, Value)> {
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    out
}

/// The element type of a legacy typed storage class (`torch.FloatStorage`) or of a dtype
/// (`torch.float32`).
fn storage_dtype(name: &str) -> Option<DataType> {
    let name = name.strip_suffix("Storage").unwrap_or(name);
    Some(match name {
        "Float" | "float32" | "float" => DataType::Float,
        "Double" | "float64" | "double" => DataType::Double,
        "Half" | "float16" | "half" => DataType::Float16,
        "BFloat16" | "bfloat16" => DataType::Bfloat16,
        "Long" | "int64" | "long" => DataType::Int64,
        "Int" | "int32" | "int" => DataType::Int32,
        "Short" | "int16" | "short" => DataType::Int16,
        "Char" | "int8" => DataType::Int8,
        "Byte" | "uint8" => DataType::Uint8,
        "Bool" | "bool" => DataType::Bool,
        "ComplexFloat" | "complex64" => DataType::Complex64,
        "ComplexDouble" | "complex128" => DataType::Complex128,
        "Float8_e4m3fn" | "float8_e4m3fn" => DataType::Float8E4M3FN,
        "Float8_e5m2" | "float8_e5m2" => DataType::Float8E5M2,
        _ => return None,
    })
}

/// `('storage', storage_type, key, location, numel)` becomes a storage reference.
fn persistent_load(pid: Value) -> Result<Value, String> {
    let Value::Tuple(items) = pid else {
        return Ok(Value::Opaque);
    };
    match items.as_slice() {
        [Value::Str(kind), Value::Global { name, .. }, Value::Str(key), ..]
            if kind == "storage" =>
        {
            let dtype = storage_dtype(name)
                .ok_or_else(|| err(format!("unsupported storage type torch.{name}")))?;
            Ok(Value::Storage {
                dtype,
                key: key.clone(),
            })
        }
        _ => Ok(Value::Opaque),
    }
}

fn ints(v: &Value) -> Option<Vec<usize>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|i| match i {
                Value::Int(n) => usize::try_from(*n).ok(),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// Applies the few callables a state_dict uses; everything else becomes an opaque object.
fn reduce(callable: Value, args: Value) -> Result<Value, String> {
    let Value::Global { module, name } = callable else {
        return Ok(Value::Opaque);
    };
    let args = match args {
        Value::Tuple(a) => a,
        _ => return Ok(Value::Opaque),
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
            let bad = || err(format!("unexpected arguments to torch._utils.{name}"));
            let [Value::Storage { dtype, key }, Value::Int(offset), size, stride, ..] =
                args.as_slice()
            else {
                return Err(bad());
            };
            Ok(Value::Tensor(TensorRef {
                dtype: *dtype,
                storage: key.clone(),
                offset: usize::try_from(*offset).map_err(|_| bad())?,
                size: ints(size).ok_or_else(bad)?,
                stride: ints(stride).ok_or_else(bad)?,
            }))
        }
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            Ok(args.into_iter().next().unwrap_or(Value::Opaque))
        }
        _ => Ok(Value::Opaque),
    }
}

/// Every tensor reachable through dicts, lists and tuples, named by its path of keys joined with
/// dots: a state_dict gives `conv1.weight`, `{"model": state_dict}` gives `model.conv1.weight`.
fn collect_tensors(v: &Value, prefix: &str, out: &mut Vec<(String, TensorRef)>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Tensor(t) => out.push((prefix.to_string(), t.clone())),
        Value::Dict(entries) => {
            for (k, v) in entries {
                let key = match k {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                collect_tensors(v, &join(&key), out);
            }
        }
        Value::List(items) | Value::Tuple(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_tensors(v, &join(&i.to_string()), out);
            }
        }
        _ => {}
    }
}

/// True when `bytes` start like a zip archive holding a `data.pkl`: a `torch.save` file.
pub fn is_torch_archive<R: Read + Seek>(archive: &zip::ZipArchive<R>) -> bool {
    archive.file_names().any(|n| n.ends_with("data.pkl"))
}

/// Reads every tensor of a `torch.save` zip archive, in pickle order.
pub fn read_torch<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
) -> Result<Vec<(String, Tensor)>, String> {
    let pkl_name = archive
        .file_names()
        .filter(|n| n.ends_with("data.pkl"))
        .min_by_key(|n| n.len())
        .ok_or_else(|| err("no data.pkl in the archive (not a torch.save file)"))?
        .to_string();
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let read = |archive: &mut zip::ZipArchive<R>, name: &str| -> Result<Vec<u8>, String> {
        let mut f = archive
            .by_name(name)
            .map_err(|e| err(format!("archive entry {name}: {e}")))?;
        let mut buf = Vec::with_capacity(f.size() as usize);
        f.read_to_end(&mut buf)
            .map_err(|e| err(format!("archive entry {name}: {e}")))?;
        Ok(buf)
    };
    if let Ok(order) = read(archive, &format!("{prefix}byteorder")) {
        if order.trim_ascii() != b"little" {
            return Err(err("big-endian torch archives are not supported"));
        }
    }
    let pickle = read(archive, &pkl_name)?;
    let root = Unpickler::new(&pickle).run()?;
    let mut refs = Vec::new();
    collect_tensors(&root, "", &mut refs);
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = Vec::with_capacity(refs.len());
    for (name, t) in refs {
        if !storages.contains_key(&t.storage) {
            let bytes = read(archive, &format!("{prefix}data/{}", t.storage))?;
            storages.insert(t.storage.clone(), bytes);
        }
        let tensor = materialise(&t, &storages[&t.storage])
            .map_err(|e| err(format!("tensor '{name}': {e}")))?;
        out.push((name, tensor));
    }
    Ok(out)
}

/// Copies a strided view out of a storage into a contiguous tensor.
fn materialise(t: &TensorRef, storage: &[u8]) -> Result<Tensor, String> {
    let width = t.dtype.bit_width() / 8;
    if t.size.len() != t.stride.len() {
        return Err(err("size and stride differ in rank"));
    }
    let len: usize = t.size.iter().product();
    let mut raw = Vec::with_capacity(len * width);
    if len > 0 {
        let mut index = vec![0usize; t.size.len()];
        for _ in 0..len {
            let elem = t.offset
                + index
                    .iter()
                    .zip(&t.stride)
                    .map(|(i, s)| i * s)
                    .sum::<usize>();
            let bytes = storage
                .get(elem * width..(elem + 1) * width)
                .ok_or_else(|| err("view reaches past the end of its storage"))?;
            raw.extend_from_slice(bytes);
            for d in (0..index.len()).rev() {
                index[d] += 1;
                if index[d] < t.size[d] {
                    break;
                }
                index[d] = 0;
            }
        }
    }
    let p = proto::TensorProto {
        dims: t.size.iter().map(|&d| d as i64).collect(),
        data_type: Some(t.dtype.onnx_code()),
        raw_data: Some(raw.into()),
        ..Default::default()
    };
    runnx_ir::convert::tensor_from_proto(&p).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-assembled protocol-2 pickle of `{'w': _rebuild_tensor_v2(storage '0', 1, (2, 2),
    /// (1, 2), False, OrderedDict())}`: a transposed view starting at element 1.
    #[test]
    fn strided_view_of_a_storage() {
        let mut p = vec![0x80, 2, b'}', b'X', 1, 0, 0, 0, b'w'];
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.extend_from_slice(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x05tQ");
        p.extend_from_slice(
            b"K\x01K\x02K\x02\x86K\x01K\x02\x86\x89ccollections\nOrderedDict\n)RtRs.",
        );
        let root = Unpickler::new(&p).run().unwrap();
        let mut refs = Vec::new();
        collect_tensors(&root, "", &mut refs);
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].0, "w");
        let storage: Vec<u8> = [0f32, 1., 2., 3., 4.]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let t = materialise(&refs[0].1, &storage).unwrap();
        assert_eq!(t.shape(), &[2, 2]);
        // element (i, j) = storage[1 + i + 2j]
        assert_eq!(t.as_slice::<f32>().unwrap(), &[1., 3., 2., 4.]);
    }
}
