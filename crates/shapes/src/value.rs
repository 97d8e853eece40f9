//! Symbolic integer values: what is known about the contents of small integer tensors (shapes
//! computed inside the graph), so `Shape -> Gather -> Concat -> Reshape` chains resolve.

use runnx_ir::{DataType, Dim, Tensor};

/// One integer element: known, a named dimension, or unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SymInt {
    Known(i64),
    Symbol(String),
    Unknown,
}

impl SymInt {
    pub fn from_dim(dim: &Dim) -> SymInt {
        match dim {
            Dim::Fixed(n) => SymInt::Known(*n as i64),
            Dim::Symbol(s) => SymInt::Symbol(s.clone()),
            Dim::Unknown => SymInt::Unknown,
        }
    }

    /// The dimension this value describes when used as a size (negative sizes are unknown).
    pub fn to_dim(&self) -> Dim {
        match self {
            SymInt::Known(n) if *n >= 0 => Dim::Fixed(*n as usize),
            SymInt::Symbol(s) => Dim::Symbol(s.clone()),
            _ => Dim::Unknown,
        }
    }

    pub fn known(&self) -> Option<i64> {
        match self {
            SymInt::Known(n) => Some(*n),
            _ => None,
        }
    }
}

/// The contents of an integer tensor of rank 0 or 1, element by element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymValue {
    pub elems: Vec<SymInt>,
    /// Rank 0 (then `elems` has one element) rather than rank 1.
    pub scalar: bool,
}

/// Integer constants up to this many elements are tracked as values.
pub const MAX_TRACKED_ELEMENTS: usize = 64;

/// Whether an element type is tracked by value (shape arithmetic happens in int64/int32).
pub fn is_tracked(dtype: DataType) -> bool {
    matches!(dtype, DataType::Int64 | DataType::Int32)
}

impl SymValue {
    pub fn vector(elems: Vec<SymInt>) -> SymValue {
        SymValue {
            elems,
            scalar: false,
        }
    }

    pub fn scalar(elem: SymInt) -> SymValue {
        SymValue {
            elems: vec![elem],
            scalar: true,
        }
    }

    pub fn from_dims(dims: &[Dim]) -> SymValue {
        SymValue::vector(dims.iter().map(SymInt::from_dim).collect())
    }

    /// A small int32/int64 constant of rank 0 or 1 as a value; `None` for anything else.
    pub fn from_tensor(tensor: &Tensor) -> Option<SymValue> {
        if !is_tracked(tensor.dtype()) || tensor.rank() > 1 || tensor.len() > MAX_TRACKED_ELEMENTS {
            return None;
        }
        let elems = tensor
            .to_i64_vec()
            .ok()?
            .into_iter()
            .map(SymInt::Known)
            .collect();
        Some(SymValue {
            elems,
            scalar: tensor.rank() == 0,
        })
    }

    /// Every element, when all are known.
    pub fn known(&self) -> Option<Vec<i64>> {
        self.elems.iter().map(SymInt::known).collect()
    }

    pub fn shape_usize(&self) -> Vec<usize> {
        if self.scalar {
            Vec::new()
        } else {
            vec![self.elems.len()]
        }
    }

    pub fn shape(&self) -> Vec<Dim> {
        if self.scalar {
            Vec::new()
        } else {
            vec![Dim::Fixed(self.elems.len())]
        }
    }
}

/// Values of several tracked tensors lined up element by element (a one-element value repeats).
pub struct Zipped {
    pub rows: Vec<Vec<SymInt>>,
    /// Whether every value is a scalar.
    pub scalar: bool,
}

/// Lines `values` up element by element; `None` when their lengths differ (other than 1).
pub fn zip(values: &[&SymValue]) -> Option<Zipped> {
    let len = values.iter().map(|v| v.elems.len()).max()?;
    if values
        .iter()
        .any(|v| v.elems.len() != len && v.elems.len() != 1)
    {
        return None;
    }
    let rows = (0..len)
        .map(|k| {
            values
                .iter()
                .map(|v| v.elems[if v.elems.len() == 1 { 0 } else { k }].clone())
                .collect()
        })
        .collect();
    Some(Zipped {
        rows,
        scalar: values.iter().all(|v| v.scalar),
    })
}

// Element arithmetic: known results where the operands decide them, else unknown.

pub fn sym_add(a: &SymInt, b: &SymInt) -> SymInt {
    match (a, b) {
        (SymInt::Known(x), SymInt::Known(y)) => {
            x.checked_add(*y).map_or(SymInt::Unknown, SymInt::Known)
        }
        (x, SymInt::Known(0)) | (SymInt::Known(0), x) => x.clone(),
        _ => SymInt::Unknown,
    }
}

pub fn sym_sub(a: &SymInt, b: &SymInt) -> SymInt {
    match (a, b) {
        (SymInt::Known(x), SymInt::Known(y)) => {
            x.checked_sub(*y).map_or(SymInt::Unknown, SymInt::Known)
        }
        (x, SymInt::Known(0)) => x.clone(),
        (SymInt::Symbol(x), SymInt::Symbol(y)) if x == y => SymInt::Known(0),
        _ => SymInt::Unknown,
    }
}

pub fn sym_mul(a: &SymInt, b: &SymInt) -> SymInt {
    match (a, b) {
        (SymInt::Known(x), SymInt::Known(y)) => {
            x.checked_mul(*y).map_or(SymInt::Unknown, SymInt::Known)
        }
        (SymInt::Known(0), _) | (_, SymInt::Known(0)) => SymInt::Known(0),
        (x, SymInt::Known(1)) | (SymInt::Known(1), x) => x.clone(),
        _ => SymInt::Unknown,
    }
}

/// Integer division; only for non-negative operands, where truncation and flooring agree.
pub fn sym_div(a: &SymInt, b: &SymInt) -> SymInt {
    match (a, b) {
        (SymInt::Known(x), SymInt::Known(y)) if *x >= 0 && *y > 0 => SymInt::Known(x / y),
        (x, SymInt::Known(1)) => x.clone(),
        (SymInt::Symbol(x), SymInt::Symbol(y)) if x == y => SymInt::Known(1),
        _ => SymInt::Unknown,
    }
}

pub fn sym_max(a: &SymInt, b: &SymInt) -> SymInt {
    match (a, b) {
        (SymInt::Known(x), SymInt::Known(y)) => SymInt::Known(*x.max(y)),
        _ if a == b => a.clone(),
        _ => SymInt::Unknown,
    }
}

pub fn sym_min(a: &SymInt, b: &SymInt) -> SymInt {
    match (a, b) {
        (SymInt::Known(x), SymInt::Known(y)) => SymInt::Known(*x.min(y)),
        _ if a == b => a.clone(),
        _ => SymInt::Unknown,
    }
}

/// 1 or 0 (a bool value tracked as an integer, for `Where` conditions).
pub fn sym_equal(a: &SymInt, b: &SymInt) -> SymInt {
    match (a, b) {
        (SymInt::Known(x), SymInt::Known(y)) => SymInt::Known((x == y) as i64),
        (SymInt::Symbol(x), SymInt::Symbol(y)) if x == y => SymInt::Known(1),
        // A named dimension is a size, never negative.
        (SymInt::Symbol(_), SymInt::Known(n)) | (SymInt::Known(n), SymInt::Symbol(_)) if *n < 0 => {
            SymInt::Known(0)
        }
        _ => SymInt::Unknown,
    }
}
