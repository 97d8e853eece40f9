//! External tensor data (`data_location = EXTERNAL`): `location`, `offset` and `length` entries
//! name a byte range of a file next to the model.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;

use crate::proto::TensorProto;
use crate::{FormatError, Result};

/// The parsed `external_data` entries of one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalData {
    pub location: String,
    pub offset: u64,
    pub length: Option<u64>,
}

impl ExternalData {
    pub fn from_tensor(tensor: &TensorProto) -> Result<Self> {
        let name = tensor.name.clone().unwrap_or_default();
        let err = |message: String| FormatError::ExternalData {
            tensor: name.clone(),
            message,
        };
        let mut location = None;
        let mut offset = 0;
        let mut length = None;
        for entry in &tensor.external_data {
            let key = entry.key.as_deref().unwrap_or("");
            let value = entry.value.as_deref().unwrap_or("");
            let parse = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| err(format!("has a non-numeric {key} '{v}'")))
            };
            match key {
                "location" => location = Some(value.to_string()),
                "offset" => offset = parse(value)?,
                "length" => length = Some(parse(value)?),
                _ => {} // "checksum" and future keys are informational.
            }
        }
        let location = location.ok_or_else(|| err("has no 'location' entry".into()))?;
        Ok(ExternalData {
            location,
            offset,
            length,
        })
    }
}

/// Resolves external data paths inside one model folder, mapping each file once.
pub struct ExternalDataResolver {
    base_dir: Option<PathBuf>,
    files: Mutex<HashMap<PathBuf, Bytes>>,
}

impl ExternalDataResolver {
    pub fn new(base_dir: Option<PathBuf>) -> Self {
        ExternalDataResolver {
            base_dir,
            files: Mutex::new(HashMap::new()),
        }
    }

    pub fn base_dir(&self) -> Option<&Path> {
        self.base_dir.as_deref()
    }

    /// Returns the bytes of `tensor`'s external data: a view of the memory-mapped file.
    pub fn read(&self, tensor: &TensorProto) -> Result<Bytes> {
        let info = ExternalData::from_tensor(tensor)?;
        let name = tensor.name.clone().unwrap_or_default();
        let err = |message: String| FormatError::ExternalData {
            tensor: name.clone(),
            message,
        };
        let path = self.resolve(&info.location).map_err(&err)?;
        let file = self.map_file(&path).map_err(&err)?;
        let start = usize::try_from(info.offset).map_err(|_| err("offset too large".into()))?;
        let end = match info.length {
            Some(len) => start.checked_add(len as usize),
            None => Some(file.len()),
        };
        match end {
            Some(end) if start <= end && end <= file.len() => Ok(file.slice(start..end)),
            _ => Err(err(format!(
                "range offset={} length={:?} lies outside '{}' ({} bytes)",
                info.offset,
                info.length,
                info.location,
                file.len()
            ))),
        }
    }

    /// Joins `location` to the model folder, refusing anything that could leave it: absolute
    /// paths, `..` components, and symbolic links that point outside once resolved.
    fn resolve(&self, location: &str) -> std::result::Result<PathBuf, String> {
        let base = self.base_dir.as_ref().ok_or_else(|| {
            format!(
                "'{location}' cannot be resolved: the model was loaded from bytes, not from a file"
            )
        })?;
        let rel = Path::new(location);
        if location.is_empty() {
            return Err("location is empty".into());
        }
        for component in rel.components() {
            match component {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir => {
                    return Err(format!(
                        "location '{location}' leaves the model's folder ('..' is not allowed)"
                    ))
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(format!(
                        "location '{location}' is an absolute path; it must be relative to the model's folder"
                    ))
                }
            }
        }
        let joined = base.join(rel);
        let real = joined
            .canonicalize()
            .map_err(|e| format!("file '{}' cannot be opened: {e}", joined.display()))?;
        let real_base = base
            .canonicalize()
            .map_err(|e| format!("model folder '{}': {e}", base.display()))?;
        if !real.starts_with(&real_base) {
            return Err(format!(
                "location '{location}' resolves to '{}', outside the model's folder",
                real.display()
            ));
        }
        Ok(real)
    }

    fn map_file(&self, path: &Path) -> std::result::Result<Bytes, String> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bytes) = files.get(path) {
            return Ok(bytes.clone());
        }
        let file = std::fs::File::open(path)
            .map_err(|e| format!("file '{}' cannot be opened: {e}", path.display()))?;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let bytes = if len == 0 {
            Bytes::new()
        } else {
            // SAFETY: read-only mapping; the file must not be truncated while the model lives.
            let map = unsafe { memmap2::Mmap::map(&file) }
                .map_err(|e| format!("file '{}' cannot be mapped: {e}", path.display()))?;
            Bytes::from_owner(map)
        };
        files.insert(path.to_path_buf(), bytes.clone());
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::StringStringEntryProto;

    fn tensor_at(location: &str) -> TensorProto {
        TensorProto {
            name: Some("w".into()),
            external_data: vec![StringStringEntryProto {
                key: Some("location".into()),
                value: Some(location.into()),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn refuses_paths_that_leave_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let resolver = ExternalDataResolver::new(Some(dir.path().to_path_buf()));
        for bad in ["../../etc/passwd", "/etc/passwd", "a/../../x"] {
            let e = resolver.read(&tensor_at(bad)).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn refuses_symlinks_out_of_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link.bin")).unwrap();
        let resolver = ExternalDataResolver::new(Some(dir.path().to_path_buf()));
        let e = resolver
            .read(&tensor_at("link.bin"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside the model's folder"), "{e}");
    }

    #[test]
    fn reads_a_range() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("w.bin"), [1u8, 2, 3, 4, 5]).unwrap();
        let resolver = ExternalDataResolver::new(Some(dir.path().to_path_buf()));
        let mut t = tensor_at("w.bin");
        t.external_data.push(StringStringEntryProto {
            key: Some("offset".into()),
            value: Some("1".into()),
        });
        t.external_data.push(StringStringEntryProto {
            key: Some("length".into()),
            value: Some("3".into()),
        });
        assert_eq!(&resolver.read(&t).unwrap()[..], &[2, 3, 4]);
        t.external_data[2].value = Some("9".into());
        assert!(resolver.read(&t).is_err());
        let missing = tensor_at("missing.bin");
        assert!(resolver
            .read(&missing)
            .unwrap_err()
            .to_string()
            .contains("missing.bin"));
    }

    #[test]
    fn reads_beyond_4_gib() {
        // A sparse file: the 5 GiB offset costs no disk space, but exercises 64-bit offsets
        // (models over 2 GB keep their weights in external data).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        let file = std::fs::File::create(&path).unwrap();
        let offset: u64 = 5 << 30;
        file.set_len(offset + 8).unwrap();
        use std::io::{Seek, SeekFrom, Write};
        let mut file = file;
        file.seek(SeekFrom::Start(offset)).unwrap();
        file.write_all(&[9, 8, 7, 6, 5, 4, 3, 2]).unwrap();
        drop(file);
        let resolver = ExternalDataResolver::new(Some(dir.path().to_path_buf()));
        let mut t = tensor_at("big.bin");
        for (k, v) in [("offset", offset.to_string()), ("length", "4".to_string())] {
            t.external_data.push(StringStringEntryProto {
                key: Some(k.into()),
                value: Some(v),
            });
        }
        assert_eq!(&resolver.read(&t).unwrap()[..], &[9, 8, 7, 6]);
    }
}
