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
        if !matches!(tensor.dtype(), DataType::Int64 | DataType::Int32)
            || tensor.rank() > 1
            || tensor.len() > MAX_TRACKED_ELEMENTS
        {
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
