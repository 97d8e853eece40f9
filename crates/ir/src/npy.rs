//! NumPy `.npy` and `.npz` files: how users hand tensors to the CLI and get results back.
//!
//! Supports the numeric dtypes, bool, complex and fixed-width unicode (`<U`) arrays, C or
//! Fortran order, format versions 1 to 3. Pickled object arrays cannot be read without Python and
//! are refused with a message saying so.

use std::io::{Read, Seek, Write};

use half::f16;
use num_complex::Complex;

use crate::dtype::DataType;
use crate::tensor::{shape_len, strides_of, Shape, Tensor, TensorData};
use crate::IrError;

const MAGIC: &[u8] = b"\x93NUMPY";

fn invalid(msg: impl Into<String>) -> IrError {
    IrError::Invalid(msg.into())
}

/// Parses one `.npy` file.
pub fn read_npy(bytes: &[u8]) -> Result<Tensor, IrError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(invalid("not a .npy file (bad magic)"));
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
        _ => return Err(invalid(format!("unsupported .npy version {major}"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or_else(|| invalid("truncated .npy header"))?;
    let header = std::str::from_utf8(header).map_err(|_| invalid("the .npy header is not text"))?;
    let descr =
        dict_value(header, "descr").ok_or_else(|| invalid("the .npy header has no descr"))?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran = dict_value(header, "fortran_order")
        .map(|v| v.starts_with("True"))
        .unwrap_or(false);
    let shape_text =
        dict_value(header, "shape").ok_or_else(|| invalid("the .npy header has no shape"))?;
    let shape: Shape = shape_text
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| invalid(format!("bad .npy shape {shape_text}")))
        })
        .collect::<Result<_, _>>()?;
    let body = &bytes[start + header_len..];
    let len = shape_len(&shape);
    let data = decode_body(descr, body, len)?;
    let data = if fortran && shape.len() > 1 {
        // Fortran order: element (i, j, k) sits at i + j*d0 + k*d0*d1. Gather into C order.
        let reversed: Vec<usize> = shape.iter().rev().copied().collect();
        let f_strides = strides_of(&reversed);
        let rank = shape.len();
        let c_strides = strides_of(&shape);
        let map: Vec<usize> = (0..len)
            .map(|flat| {
                (0..rank)
                    .map(|d| (flat / c_strides[d]) % shape[d] * f_strides[rank - 1 - d])
                    .sum()
            })
            .collect();
        data.gather(&map)
    } else {
        data
    };
    Tensor::new(shape, data)
}

/// Finds `'key': value` in the header dict; returns the value text up to the next top-level comma.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pos = header.find(&format!("'{key}'"))?;
    let rest = header[pos + key.len() + 2..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let mut depth = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&rest[..=i]);
                }
            }
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

fn decode_body(descr: &str, body: &[u8], len: usize) -> Result<TensorData, IrError> {
    if descr.contains('O') {
        return Err(invalid(
            "object arrays (pickled Python objects) are not supported in .npy files",
        ));
    }
    let (order, code) = descr.split_at(1);
    let big_endian = order == ">";
    if !matches!(order, "<" | ">" | "|" | "=") {
        return Err(invalid(format!("unsupported .npy dtype '{descr}'")));
    }
    fn take<const N: usize, T>(
        body: &[u8],
        len: usize,
        big: bool,
        f: impl Fn([u8; N]) -> T,
    ) -> Result<Vec<T>, IrError> {
        if body.len() < len * N {
            return Err(invalid(format!(
                "truncated .npy data: {} bytes for {len} elements of {N}",
                body.len()
            )));
        }
        Ok(body[..len * N]
            .chunks_exact(N)
            .map(|c| {
                let mut b: [u8; N] = c.try_into().unwrap();
                if big {
                    b.reverse();
                }
                f(b)
            })
            .collect())
    }
    let b = big_endian;
    Ok(match code {
        "f4" => TensorData::Float(take(body, len, b, f32::from_le_bytes)?),
        "f8" => TensorData::Double(take(body, len, b, f64::from_le_bytes)?),
        "f2" => TensorData::Float16(take(body, len, b, |x| {
            f16::from_bits(u16::from_le_bytes(x))
        })?),
        "i1" => TensorData::Int8(take(body, len, b, i8::from_le_bytes)?),
        "i2" => TensorData::Int16(take(body, len, b, i16::from_le_bytes)?),
        "i4" => TensorData::Int32(take(body, len, b, i32::from_le_bytes)?),
        "i8" => TensorData::Int64(take(body, len, b, i64::from_le_bytes)?),
        "u1" => TensorData::Uint8(take(body, len, b, u8::from_le_bytes)?),
        "u2" => TensorData::Uint16(take(body, len, b, u16::from_le_bytes)?),
        "u4" => TensorData::Uint32(take(body, len, b, u32::from_le_bytes)?),
        "u8" => TensorData::Uint64(take(body, len, b, u64::from_le_bytes)?),
        "b1" => TensorData::Bool(take(body, len, b, |[x]: [u8; 1]| x != 0)?),
        "c8" => TensorData::Complex64(take(body, len, false, |x: [u8; 8]| {
            let mut re: [u8; 4] = x[..4].try_into().unwrap();
            let mut im: [u8; 4] = x[4..].try_into().unwrap();
            if b {
                re.reverse();
                im.reverse();
            }
            Complex::new(f32::from_le_bytes(re), f32::from_le_bytes(im))
        })?),
        "c16" => TensorData::Complex128(take(body, len, false, |x: [u8; 16]| {
            let mut re: [u8; 8] = x[..8].try_into().unwrap();
            let mut im: [u8; 8] = x[8..].try_into().unwrap();
            if b {
                re.reverse();
                im.reverse();
            }
            Complex::new(f64::from_le_bytes(re), f64::from_le_bytes(im))
        })?),
        c if c.starts_with('U') => {
            let width: usize = c[1..]
                .parse()
                .map_err(|_| invalid(format!("bad .npy dtype '{descr}'")))?;
            let chars = take(body, len * width, b, u32::from_le_bytes)?;
            let strings = if width == 0 {
                vec![String::new(); len]
            } else {
                chars
                    .chunks_exact(width)
                    .map(|c| {
                        c.iter()
                            .take_while(|&&u| u != 0)
                            .filter_map(|&u| char::from_u32(u))
                            .collect()
                    })
                    .collect()
            };
            TensorData::String(strings)
        }
        _ => return Err(invalid(format!("unsupported .npy dtype '{descr}'"))),
    })
}

/// Serialises a tensor as `.npy` (format 1.0, C order). Types NumPy has no dtype for (bfloat16,
/// float8, 4-bit and 2-bit types) are refused.
pub fn write_npy(tensor: &Tensor) -> Result<Vec<u8>, IrError> {
    fn le<T, const N: usize>(v: &[T], f: impl Fn(&T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(f).collect()
    }
    let (descr, body): (String, Vec<u8>) = match tensor.data() {
        TensorData::Float(v) => ("<f4".into(), le(v, |x| x.to_le_bytes())),
        TensorData::Double(v) => ("<f8".into(), le(v, |x| x.to_le_bytes())),
        TensorData::Float16(v) => ("<f2".into(), le(v, |x| x.to_bits().to_le_bytes())),
        TensorData::Int8(v) => ("|i1".into(), le(v, |x| x.to_le_bytes())),
        TensorData::Int16(v) => ("<i2".into(), le(v, |x| x.to_le_bytes())),
        TensorData::Int32(v) => ("<i4".into(), le(v, |x| x.to_le_bytes())),
        TensorData::Int64(v) => ("<i8".into(), le(v, |x| x.to_le_bytes())),
        TensorData::Uint8(v) => ("|u1".into(), v.clone()),
        TensorData::Uint16(v) => ("<u2".into(), le(v, |x| x.to_le_bytes())),
        TensorData::Uint32(v) => ("<u4".into(), le(v, |x| x.to_le_bytes())),
        TensorData::Uint64(v) => ("<u8".into(), le(v, |x| x.to_le_bytes())),
        TensorData::Bool(v) => ("|b1".into(), v.iter().map(|&x| x as u8).collect()),
        TensorData::Complex64(v) => (
            "<c8".into(),
            le(v, |c| {
                let mut b = [0u8; 8];
                b[..4].copy_from_slice(&c.re.to_le_bytes());
                b[4..].copy_from_slice(&c.im.to_le_bytes());
                b
            }),
        ),
        TensorData::Complex128(v) => (
            "<c16".into(),
            le(v, |c| {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&c.re.to_le_bytes());
                b[8..].copy_from_slice(&c.im.to_le_bytes());
                b
            }),
        ),
        TensorData::String(v) => {
            let width = v
                .iter()
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
                .max(1);
            let mut body = Vec::with_capacity(v.len() * width * 4);
            for s in v {
                let mut n = 0;
                for c in s.chars() {
                    body.extend_from_slice(&(c as u32).to_le_bytes());
                    n += 1;
                }
                body.resize(body.len() + (width - n) * 4, 0);
            }
            (format!("<U{width}"), body)
        }
        other => {
            return Err(invalid(format!(
                "NumPy's .npy format has no dtype for {}; cast the tensor first",
                other.dtype()
            )))
        }
    };
    let shape = match tensor.shape() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so that the data starts on a 64-byte boundary, ending the header with a newline.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reads every array of an `.npz` archive, in archive order, keyed by name (without `.npy`).
pub fn read_npz(reader: impl Read + Seek) -> Result<Vec<(String, Tensor)>, IrError> {
    let mut archive = zip::ZipArchive::new(reader)
        .map_err(|e| invalid(format!("not a valid .npz archive: {e}")))?;
    let mut out = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut file = archive
            .by_index(i)
            .map_err(|e| invalid(format!("bad .npz entry: {e}")))?;
        let name = file.name().trim_end_matches(".npy").to_string();
        let mut bytes = Vec::with_capacity(file.size() as usize);
        file.read_to_end(&mut bytes)
            .map_err(|e| invalid(format!("cannot read .npz entry '{name}': {e}")))?;
        let tensor = read_npy(&bytes).map_err(|e| invalid(format!("array '{name}': {e}")))?;
        out.push((name, tensor));
    }
    Ok(out)
}

/// Writes named tensors as an uncompressed `.npz` archive (what `numpy.savez` writes).
pub fn write_npz(writer: impl Write + Seek, tensors: &[(String, Tensor)]) -> Result<(), IrError> {
    let mut zip = zip::ZipWriter::new(writer);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(false);
    for (name, tensor) in tensors {
        let bytes = write_npy(tensor).map_err(|e| invalid(format!("array '{name}': {e}")))?;
        let io = |e: std::io::Error| invalid(format!("cannot write .npz: {e}"));
        zip.start_file(format!("{name}.npy"), options)
            .map_err(|e| invalid(format!("cannot write .npz: {e}")))?;
        zip.write_all(&bytes).map_err(io)?;
    }
    zip.finish()
        .map_err(|e| invalid(format!("cannot write .npz: {e}")))?;
    Ok(())
}

/// The NumPy dtype name of an element type, when NumPy has one.
pub fn numpy_name(dtype: DataType) -> Option<&'static str> {
    use DataType::*;
    Some(match dtype {
        Float => "float32",
        Double => "float64",
        Float16 => "float16",
        Int8 => "int8",
        Int16 => "int16",
        Int32 => "int32",
        Int64 => "int64",
        Uint8 => "uint8",
        Uint16 => "uint16",
        Uint32 => "uint32",
        Uint64 => "uint64",
        Bool => "bool",
        Complex64 => "complex64",
        Complex128 => "complex128",
        String => "str",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_numpy_type() {
        let tensors = vec![
            Tensor::from_vec([2, 3], vec![1f32, 2., 3., 4., 5., 6.]).unwrap(),
            Tensor::from_vec([2], vec![-1i64, 7]).unwrap(),
            Tensor::from_vec([3], vec![true, false, true]).unwrap(),
            Tensor::scalar(2.5f64),
            Tensor::from_vec([2], vec!["ab".to_string(), "héllo".to_string()]).unwrap(),
            Tensor::from_vec([0, 4], Vec::<u16>::new()).unwrap(),
        ];
        for t in tensors {
            let back = read_npy(&write_npy(&t).unwrap()).unwrap();
            assert_eq!(back, t);
        }
    }

    #[test]
    fn reads_fortran_order() {
        let mut bytes =
            write_npy(&Tensor::from_vec([2, 3], vec![1i32, 4, 2, 5, 3, 6]).unwrap()).unwrap();
        let needle = b"'fortran_order': False";
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap();
        bytes[at..at + needle.len()].copy_from_slice(b"'fortran_order': True ");
        let t = read_npy(&bytes).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.as_slice::<i32>().unwrap(), &[1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn npz_round_trip() {
        let tensors = vec![
            (
                "a".to_string(),
                Tensor::from_vec([2], vec![1f32, 2.]).unwrap(),
            ),
            ("b".to_string(), Tensor::scalar(3i64)),
        ];
        let mut buf = std::io::Cursor::new(Vec::new());
        write_npz(&mut buf, &tensors).unwrap();
        buf.set_position(0);
        assert_eq!(read_npz(buf).unwrap(), tensors);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(read_npy(b"hello").is_err());
        assert!(read_npz(std::io::Cursor::new(b"not a zip".to_vec())).is_err());
    }
}
