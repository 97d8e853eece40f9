//! Recycled f32 buffers for kernel outputs.
//!
//! A run frees each activation when its last consumer has run ([`crate::Inputs`] hands it
//! here) and allocates the next ones right after. Allocating afresh made the allocator zero
//! every output (`vec![0.0; n]`) and, for blocks it had given back to the OS, fault the pages
//! in again: 8% of a batch-8 MNIST CNN run. A kernel that overwrites its whole output asks
//! [`f32_buffer`] instead and gets a recycled buffer with stale contents.
//!
//! The pool is per thread (a session runs on its caller's thread) and small: at most
//! [`KEEP`] buffers, so memory held between runs stays bounded.

use std::any::{Any, TypeId};
use std::cell::RefCell;

/// Buffers kept per thread.
const KEEP: usize = 16;
/// Smaller buffers go back to the allocator, which serves them quickly.
const MIN_LEN: usize = 1 << 12;

thread_local! {
    static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Keeps `buffer` for a later [`f32_buffer`] (the oldest kept one goes when the pool is full).
pub fn recycle(buffer: Vec<f32>) {
    if buffer.capacity() < MIN_LEN {
        return;
    }
    // A thread being torn down has no pool left; the buffer is then simply freed.
    let _ = FREE.try_with(|free| {
        let mut free = free.borrow_mut();
        if free.len() == KEEP {
            free.remove(0);
        }
        free.push(buffer);
    });
}

/// A vector of `len` floats whose contents are unspecified (a recycled buffer's old values, or
/// zeros): for outputs the caller overwrites completely. Takes the smallest kept buffer that
/// holds `len` without being more than 4 times larger.
pub fn f32_buffer(len: usize) -> Vec<f32> {
    let reused = if len >= MIN_LEN {
        FREE.try_with(|free| {
            let mut free = free.borrow_mut();
            let best = free
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= len && b.capacity() / 4 <= len)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i)?;
            Some(free.swap_remove(best))
        })
        .ok()
        .flatten()
    } else {
        None
    };
    match reused {
        Some(mut buffer) => {
            // Stale values stay; only growth past the old length is written.
            buffer.resize(len, 0.0);
            buffer
        }
        None => vec![0.0; len],
    }
}

/// [`f32_buffer`] for kernels generic over the element type (broadcasting, copies) that
/// overwrite their whole output: a recycled buffer when `T` is f32, the most common case, else
/// fresh default values. Zeroing fresh outputs of Add, Where and Transpose was 8% of a batch-8
/// BERT-tiny run.
pub fn buffer<T: Clone + Default + 'static>(len: usize) -> Vec<T> {
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        let recycled: Box<dyn Any> = Box::new(f32_buffer(len));
        if let Ok(v) = recycled.downcast::<Vec<T>>() {
            return *v;
        }
    }
    vec![T::default(); len]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_a_fitting_buffer_and_sizes_it() {
        let big = vec![1.0f32; 3 * MIN_LEN];
        let address = big.as_ptr();
        recycle(big);
        // Too small to be worth a 3x larger buffer? 3x is within 4x, so it is reused.
        let got = f32_buffer(MIN_LEN + 5);
        assert_eq!(got.len(), MIN_LEN + 5);
        assert_eq!(got.as_ptr(), address);
        // Nothing left to reuse: a fresh zeroed vector.
        let fresh = f32_buffer(2 * MIN_LEN);
        assert_eq!(fresh.len(), 2 * MIN_LEN);
        assert!(fresh.iter().all(|&v| v == 0.0));
        recycle(got);
        let grown = f32_buffer(2 * MIN_LEN);
        assert_eq!(grown.len(), 2 * MIN_LEN);
        // Far too large a buffer is not handed out for a small request.
        recycle(vec![0.0; 64 * MIN_LEN]);
        assert_ne!(f32_buffer(MIN_LEN).capacity(), 64 * MIN_LEN);
    }

    #[test]
    fn generic_buffers_recycle_f32_only() {
        let kept = vec![2.0f32; 2 * MIN_LEN];
        let address = kept.as_ptr();
        recycle(kept);
        let got: Vec<f32> = buffer(2 * MIN_LEN);
        assert_eq!((got.len(), got.as_ptr()), (2 * MIN_LEN, address));
        let ints: Vec<i64> = buffer(3);
        assert_eq!(ints, vec![0; 3]);
    }
}
