//! Combining two descriptions of a value: what a model declares with what inference found
//! ([`merge_types`]: both hold), or the types of the values it may take ([`union`]: either holds).

use runnx_ir::{Dim, TensorType, ValueType};

/// The more specific of two descriptions of the same value; an error naming the first
/// contradiction (different element types, ranks or fixed sizes).
pub fn merge_types(declared: &ValueType, inferred: &ValueType) -> Result<ValueType, String> {
    use ValueType::*;
    Ok(match (declared, inferred) {
        (Unknown, t) | (t, Unknown) => t.clone(),
        (Tensor(a), Tensor(b)) => Tensor(merge_tensor(a, b)?),
        (SparseTensor(a), SparseTensor(b)) => SparseTensor(merge_tensor(a, b)?),
        (Sequence(a), Sequence(b)) => Sequence(Box::new(merge_types(a, b)?)),
        (Optional(a), Optional(b)) => Optional(Box::new(merge_types(a, b)?)),
        (Map(ka, a), Map(kb, b)) if ka == kb => Map(*ka, Box::new(merge_types(a, b)?)),
        (a, b) => return Err(format!("{} against {}", a.type_string(), b.type_string())),
    })
}

fn merge_tensor(a: &TensorType, b: &TensorType) -> Result<TensorType, String> {
    if a.dtype != b.dtype {
        return Err(format!("element type {} against {}", a.dtype, b.dtype));
    }
    let shape = match (&a.shape, &b.shape) {
        (None, s) | (s, None) => s.clone(),
        (Some(x), Some(y)) => {
            if x.len() != y.len() {
                return Err(format!("rank {} against {}", x.len(), y.len()));
            }
            let mut dims = Vec::with_capacity(x.len());
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                dims.push(match (p, q) {
                    (Dim::Fixed(m), Dim::Fixed(n)) if m != n => {
                        return Err(format!("dimension {i} is {m} against {n}"))
                    }
                    (Dim::Fixed(_), _) => p.clone(),
                    (_, Dim::Fixed(_)) => q.clone(),
                    (Dim::Symbol(_), _) => p.clone(),
                    _ => q.clone(),
                });
            }
            Some(dims)
        }
    };
    Ok(TensorType {
        dtype: a.dtype,
        shape,
    })
}

/// The type of a value that is either `a` or `b` (If branches, loop iterations): element types
/// must agree; dims that differ become unknown, ranks that differ leave the shape unknown.
pub fn union(a: &ValueType, b: &ValueType) -> Result<ValueType, String> {
    use ValueType::*;
    Ok(match (a, b) {
        (Unknown, _) | (_, Unknown) => Unknown,
        (Tensor(x), Tensor(y)) => Tensor(union_tensor(x, y)?),
        (SparseTensor(x), SparseTensor(y)) => SparseTensor(union_tensor(x, y)?),
        (Sequence(x), Sequence(y)) => Sequence(Box::new(union(x, y)?)),
        (Optional(x), Optional(y)) => Optional(Box::new(union(x, y)?)),
        (Map(kx, x), Map(ky, y)) if kx == ky => Map(*kx, Box::new(union(x, y)?)),
        (x, y) => return Err(format!("{} against {}", x.type_string(), y.type_string())),
    })
}

fn union_tensor(a: &TensorType, b: &TensorType) -> Result<TensorType, String> {
    if a.dtype != b.dtype {
        return Err(format!("element type {} against {}", a.dtype, b.dtype));
    }
    let shape = match (&a.shape, &b.shape) {
        (Some(x), Some(y)) if x.len() == y.len() => Some(
            x.iter()
                .zip(y)
                .map(|(p, q)| if p == q { p.clone() } else { Dim::Unknown })
                .collect(),
        ),
        _ => None,
    };
    Ok(TensorType {
        dtype: a.dtype,
        shape,
    })
}
