//! A small dense f32 array for rearranging weights (Keras kernel layouts to ONNX layouts).

/// A row-major f32 array.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Array {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Array, String> {
        let len: usize = shape.iter().product();
        if len != data.len() {
            return Err(format!(
                "shape {shape:?} holds {len} values but {} were given",
                data.len()
            ));
        }
        Ok(Array { shape, data })
    }

    pub fn scalar(v: f32) -> Array {
        Array {
            shape: vec![],
            data: vec![v],
        }
    }

    pub fn vector(data: Vec<f32>) -> Array {
        Array {
            shape: vec![data.len()],
            data,
        }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The same values under another shape with as many elements.
    pub fn reshape(mut self, shape: &[usize]) -> Array {
        assert_eq!(
            shape.iter().product::<usize>(),
            self.data.len(),
            "reshape {:?} -> {shape:?}",
            self.shape
        );
        self.shape = shape.to_vec();
        self
    }

    /// `out.shape[i] = self.shape[perm[i]]`, like numpy's `transpose(perm)`.
    pub fn transpose(&self, perm: &[usize]) -> Array {
        let rank = self.shape.len();
        assert_eq!(perm.len(), rank);
        let shape: Vec<usize> = perm.iter().map(|&p| self.shape[p]).collect();
        let mut in_strides = vec![1usize; rank];
        for i in (0..rank.saturating_sub(1)).rev() {
            in_strides[i] = in_strides[i + 1] * self.shape[i + 1];
        }
        let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
        let mut data = Vec::with_capacity(self.data.len());
        let mut index = vec![0usize; rank];
        for _ in 0..self.data.len() {
            let offset: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
            data.push(self.data[offset]);
            for axis in (0..rank).rev() {
                index[axis] += 1;
                if index[axis] < shape[axis] {
                    break;
                }
                index[axis] = 0;
            }
        }
        Array { shape, data }
    }

    /// Splits axis `axis` into `parts` equal blocks and reassembles them in the order `order`.
    pub fn reorder_blocks(&self, axis: usize, parts: usize, order: &[usize]) -> Array {
        let outer: usize = self.shape[..axis].iter().product();
        let inner: usize = self.shape[axis + 1..].iter().product();
        let block = self.shape[axis] / parts * inner;
        let mut data = Vec::with_capacity(self.data.len());
        for o in 0..outer {
            let base = o * self.shape[axis] * inner;
            for &b in order {
                data.extend_from_slice(&self.data[base + b * block..base + (b + 1) * block]);
            }
        }
        Array {
            shape: self.shape.clone(),
            data,
        }
    }

    pub fn map(&self, f: impl Fn(f32) -> f32) -> Array {
        Array {
            shape: self.shape.clone(),
            data: self.data.iter().map(|&x| f(x)).collect(),
        }
    }

    /// Concatenation along axis 0.
    pub fn concat0(parts: &[&Array]) -> Array {
        let mut shape = parts[0].shape.clone();
        shape[0] = parts.iter().map(|p| p.shape[0]).sum();
        let data = parts.iter().flat_map(|p| p.data.iter().copied()).collect();
        Array { shape, data }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_matches_numpy() {
        let a = Array::new(vec![2, 3], (0..6).map(|x| x as f32).collect()).unwrap();
        let t = a.transpose(&[1, 0]);
        assert_eq!(t.shape, vec![3, 2]);
        assert_eq!(t.data, vec![0., 3., 1., 4., 2., 5.]);
        let b = Array::new(vec![2, 3, 4], (0..24).map(|x| x as f32).collect()).unwrap();
        let t = b.transpose(&[2, 0, 1]);
        assert_eq!(t.shape, vec![4, 2, 3]);
        // t[i, j, k] = b[j, k, i]: t[1, 1, 2] (offset 6 + 3 + 2) = b[1, 2, 1] (12 + 8 + 1)
        assert_eq!(t.data[11], b.data[21]);
    }

    #[test]
    fn reorder_blocks_swaps_gates() {
        let a = Array::new(vec![2, 4], vec![0., 1., 2., 3., 4., 5., 6., 7.]).unwrap();
        let r = a.reorder_blocks(1, 2, &[1, 0]);
        assert_eq!(r.data, vec![2., 3., 0., 1., 6., 7., 4., 5.]);
    }
}
