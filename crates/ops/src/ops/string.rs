//! String ops: StringNormalizer, StringSplit, StringConcat, RegexFullMatch and TfIdfVectorizer.
//!
//! Strings are UTF-8 `String`s (see [`runnx_ir::TensorData::String`]). Case mapping is Unicode's
//! default (locale-independent) mapping, which is what the `en_US` locale ONNX defaults to does.

use std::collections::HashMap;
use std::hash::Hash;

use runnx_ir::{DataType, Tensor, TensorData, Value};

use crate::kernels::broadcast::binary_map;
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add("", "StringNormalizer", 10, build_string_normalizer);
    reg.add("", "StringSplit", 20, build_string_split);
    reg.add("", "StringConcat", 20, |_| Ok(Box::new(StringConcat)));
    reg.add("", "RegexFullMatch", 20, build_regex_full_match);
    reg.add("", "TfIdfVectorizer", 9, build_tfidf);
}

fn strings(inputs: &Inputs, index: usize) -> Result<&[String], OpError> {
    inputs.slice::<String>(index)
}

// ---------------------------------------------------------------------------------------------
// StringNormalizer

#[derive(Clone, Copy, PartialEq)]
enum CaseChange {
    None,
    Lower,
    Upper,
}

/// ONNX `StringNormalizer`, opset 10: drops the elements of a `[C]` or `[1, C]` tensor that are
/// stop words, then lower- or upper-cases the rest. When every element is dropped the output is
/// one empty string (`[1]` or `[1, 1]`).
struct StringNormalizer {
    case_change: CaseChange,
    case_sensitive: bool,
    /// Compared as given when case-sensitive, lowercased otherwise.
    stopwords: std::collections::HashSet<String>,
}

fn build_string_normalizer(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let case_change = match info.attr_string("case_change_action", "NONE")?.as_str() {
        "NONE" => CaseChange::None,
        "LOWER" => CaseChange::Lower,
        "UPPER" => CaseChange::Upper,
        other => {
            return Err(OpError::attribute(
                "case_change_action",
                format!("expected NONE, LOWER or UPPER, got {other:?}"),
            ))
        }
    };
    let case_sensitive = info.attr_int("is_case_sensitive", 0)? != 0;
    // Any locale is accepted: case mapping is Unicode's default mapping (see the module docs).
    let _locale = info.attr_string_opt("locale")?;
    let stopwords = info
        .attr_strings_opt("stopwords")?
        .unwrap_or_default()
        .into_iter()
        .map(|w| if case_sensitive { w } else { w.to_lowercase() })
        .collect();
    Ok(Box::new(StringNormalizer {
        case_change,
        case_sensitive,
        stopwords,
    }))
}

impl StringNormalizer {
    fn is_stopword(&self, word: &str) -> bool {
        if self.case_sensitive {
            self.stopwords.contains(word)
        } else {
            self.stopwords.contains(&word.to_lowercase())
        }
    }
}

impl Kernel for StringNormalizer {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let words = strings(&inputs, 0)?;
        let two_dim = match x.shape() {
            [_] => false,
            [1, _] => true,
            other => {
                return Err(OpError::input(
                    0,
                    format!("expected shape [C] or [1, C], got {other:?}"),
                ))
            }
        };
        let mut out: Vec<String> = words
            .iter()
            .filter(|w| !self.is_stopword(w))
            .map(|w| match self.case_change {
                CaseChange::None => w.clone(),
                CaseChange::Lower => w.to_lowercase(),
                CaseChange::Upper => w.to_uppercase(),
            })
            .collect();
        if out.is_empty() {
            out.push(String::new());
        }
        let shape = if two_dim {
            vec![1, out.len()]
        } else {
            vec![out.len()]
        };
        Ok(vec![Tensor::from_vec(shape, out)?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// StringSplit

/// ONNX `StringSplit`, opset 20: splits each element on `delimiter` (or, when it is unset or
/// empty, on runs of whitespace, ignoring leading and trailing whitespace) at most `maxsplit`
/// times. Outputs the pieces, padded with empty strings to the largest count along a new last
/// axis, and each element's piece count.
struct StringSplit {
    /// `None` splits on whitespace runs.
    delimiter: Option<String>,
    /// `None` splits as often as possible.
    max_splits: Option<usize>,
}

fn build_string_split(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let delimiter = info.attr_string_opt("delimiter")?.filter(|d| !d.is_empty());
    // A negative maxsplit means no limit, as in Python's `str.split`.
    let max_splits = info
        .attr_int_opt("maxsplit")?
        .and_then(|m| usize::try_from(m).ok());
    Ok(Box::new(StringSplit {
        delimiter,
        max_splits,
    }))
}

/// `s` split on runs of whitespace with at most `max_splits` splits; the unsplit remainder keeps
/// its trailing whitespace (Python's `str.split(None, maxsplit)`).
fn split_whitespace(s: &str, max_splits: Option<usize>) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        if max_splits.is_some_and(|m| pieces.len() == m) {
            pieces.push(rest);
            break;
        }
        match rest.find(char::is_whitespace) {
            Some(end) => {
                pieces.push(&rest[..end]);
                rest = rest[end..].trim_start();
            }
            None => {
                pieces.push(rest);
                break;
            }
        }
    }
    pieces
}

impl StringSplit {
    fn split<'s>(&self, s: &'s str) -> Vec<&'s str> {
        match (&self.delimiter, self.max_splits) {
            (None, m) => split_whitespace(s, m),
            (Some(d), None) => s.split(d.as_str()).collect(),
            (Some(d), Some(m)) => s.splitn(m + 1, d.as_str()).collect(),
        }
    }
}

impl Kernel for StringSplit {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let pieces: Vec<Vec<&str>> = strings(&inputs, 0)?.iter().map(|s| self.split(s)).collect();
        let width = pieces.iter().map(Vec::len).max().unwrap_or(0);
        let mut y = Vec::with_capacity(pieces.len() * width);
        for p in &pieces {
            y.extend(p.iter().map(|s| s.to_string()));
            y.extend(std::iter::repeat_n(String::new(), width - p.len()));
        }
        let counts: Vec<i64> = pieces.iter().map(|p| p.len() as i64).collect();
        let mut y_shape = x.shape().to_vec();
        y_shape.push(width);
        Ok(vec![
            Tensor::from_vec(y_shape, y)?.into(),
            Tensor::from_vec(x.shape(), counts)?.into(),
        ])
    }
}

// ---------------------------------------------------------------------------------------------
// StringConcat

/// ONNX `StringConcat`, opset 20: elementwise `X + Y` with multidirectional broadcasting.
struct StringConcat;

impl Kernel for StringConcat {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (a, b) = (inputs.tensor(0)?, inputs.tensor(1)?);
        let (shape, out) = binary_map(
            strings(&inputs, 0)?,
            a.shape(),
            strings(&inputs, 1)?,
            b.shape(),
            |x: &String, y: &String| {
                let mut s = String::with_capacity(x.len() + y.len());
                s.push_str(x);
                s.push_str(y);
                s
            },
        )?;
        Ok(vec![Tensor::from_vec(shape, out)?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// RegexFullMatch

/// ONNX `RegexFullMatch`, opset 20: whether each element matches `pattern` in full. The pattern
/// is RE2 syntax, which the `regex` crate implements (both guarantee linear-time matching and
/// share their syntax but for a few rarely used escapes).
struct RegexFullMatch {
    regex: regex::Regex,
}

fn build_regex_full_match(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let pattern = info
        .attr_string_opt("pattern")?
        .ok_or_else(|| OpError::attribute("pattern", "is required"))?;
    // Anchoring both ends turns a search into a full match; the group keeps alternations whole.
    let regex = regex::Regex::new(&format!(r"\A(?:{pattern})\z"))
        .map_err(|e| OpError::attribute("pattern", format!("invalid regex {pattern:?}: {e}")))?;
    Ok(Box::new(RegexFullMatch { regex }))
}

impl Kernel for RegexFullMatch {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let out: Vec<bool> = strings(&inputs, 0)?
            .iter()
            .map(|s| self.regex.is_match(s))
            .collect();
        Ok(vec![Tensor::from_vec(x.shape(), out)?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// TfIdfVectorizer

#[derive(Clone, Copy, PartialEq)]
enum Weighting {
    /// Raw n-gram counts.
    Tf,
    /// 1 (times the weight) where an n-gram occurs at all.
    Idf,
    /// Counts times the weight.
    TfIdf,
}

/// The pool of n-grams as a trie: a path of tokens from the root spells an n-gram, and the node
/// it ends on holds the n-gram's output coordinate.
struct NgramTrie<K> {
    nodes: Vec<TrieNode<K>>,
}

struct TrieNode<K> {
    children: HashMap<K, usize>,
    /// Output coordinate of the n-gram ending here; `None` for a prefix only.
    output: Option<usize>,
}

impl<K: Hash + Eq + Clone> NgramTrie<K> {
    fn new() -> Self {
        NgramTrie {
            nodes: vec![TrieNode {
                children: HashMap::new(),
                output: None,
            }],
        }
    }

    fn insert(&mut self, ngram: &[K], output: usize) {
        let mut at = 0;
        for token in ngram {
            at = match self.nodes[at].children.get(token) {
                Some(&next) => next,
                None => {
                    let next = self.nodes.len();
                    self.nodes.push(TrieNode {
                        children: HashMap::new(),
                        output: None,
                    });
                    self.nodes[at].children.insert(token.clone(), next);
                    next
                }
            };
        }
        self.nodes[at].output = Some(output);
    }

    fn child(&self, node: usize, token: &K) -> Option<usize> {
        self.nodes[node].children.get(token).copied()
    }
}

/// The pool in the input's token type.
enum Pool {
    Ints(NgramTrie<i64>),
    Strings(NgramTrie<String>),
}

/// ONNX `TfIdfVectorizer`, opset 9: counts, per row of a `[C]` or `[N, C]` input, the
/// occurrences of the pool's n-grams of `min_gram_length..=max_gram_length` tokens, with up to
/// `max_skip_count` tokens skipped between consecutive n-gram items (the same skip throughout
/// one n-gram), and weights the counts.
///
/// Unigrams are counted once whatever the skip. `weights` are indexed by output coordinate, as
/// onnxruntime and the ONNX reference read them (the same as the pool order whenever
/// `ngram_indexes` is the identity, the usual case).
struct TfIdfVectorizer {
    pool: Pool,
    min_gram: usize,
    max_gram: usize,
    max_skip: usize,
    weighting: Weighting,
    weights: Vec<f32>,
    output_size: usize,
}

/// The pool's n-grams by size: `(n, first index, one past the last index)` from `ngram_counts`.
fn pool_ranges(
    ngram_counts: &[i64],
    pool_len: usize,
) -> Result<Vec<(usize, usize, usize)>, OpError> {
    let starts: Vec<usize> = ngram_counts
        .iter()
        .map(|&c| usize::try_from(c).ok().filter(|&c| c <= pool_len))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            OpError::attribute("ngram_counts", format!("values must lie in 0..={pool_len}"))
        })?;
    let mut ranges = Vec::with_capacity(starts.len());
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(pool_len);
        if end < start {
            return Err(OpError::attribute("ngram_counts", "must be non-decreasing"));
        }
        ranges.push((i + 1, start, end));
    }
    Ok(ranges)
}

fn build_tfidf(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let weighting = match info.attr_string_opt("mode")?.as_deref() {
        Some("TF") => Weighting::Tf,
        Some("IDF") => Weighting::Idf,
        Some("TFIDF") => Weighting::TfIdf,
        other => {
            return Err(OpError::attribute(
                "mode",
                format!("expected TF, IDF or TFIDF, got {other:?}"),
            ))
        }
    };
    let positive = |name: &str| -> Result<usize, OpError> {
        let v = info
            .attr_int_opt(name)?
            .ok_or_else(|| OpError::attribute(name, "is required"))?;
        usize::try_from(v).map_err(|_| OpError::attribute(name, format!("must be >= 0, got {v}")))
    };
    let min_gram = positive("min_gram_length")?;
    let max_gram = positive("max_gram_length")?;
    let max_skip = positive("max_skip_count")?;
    if min_gram == 0 || min_gram > max_gram {
        return Err(OpError::invalid(format!(
            "need 1 <= min_gram_length <= max_gram_length, got {min_gram} and {max_gram}"
        )));
    }
    let ngram_counts = info
        .attr_ints_opt("ngram_counts")?
        .ok_or_else(|| OpError::attribute("ngram_counts", "is required"))?;
    let ngram_indexes: Vec<usize> = info
        .attr_ints_opt("ngram_indexes")?
        .ok_or_else(|| OpError::attribute("ngram_indexes", "is required"))?
        .iter()
        .map(|&i| usize::try_from(i))
        .collect::<Result<_, _>>()
        .map_err(|_| OpError::attribute("ngram_indexes", "must be non-negative"))?;
    let output_size = ngram_indexes.iter().max().map_or(0, |m| m + 1);
    let weights = info.attr_floats_opt("weights")?.unwrap_or_default();
    if !weights.is_empty() && weights.len() < output_size {
        return Err(OpError::attribute(
            "weights",
            format!("has {} values for {output_size} outputs", weights.len()),
        ));
    }

    // Each n-gram of the pool, in order, takes the next entry of `ngram_indexes`, including
    // n-grams of sizes outside `min..=max` that are left out of the trie.
    fn fill<K: Hash + Eq + Clone>(
        pool: &[K],
        ranges: &[(usize, usize, usize)],
        ngram_indexes: &[usize],
        (min_gram, max_gram): (usize, usize),
    ) -> Result<NgramTrie<K>, OpError> {
        let mut trie = NgramTrie::new();
        let mut id = 0;
        for &(n, start, end) in ranges {
            for ngram in pool[start..end].chunks_exact(n) {
                if (min_gram..=max_gram).contains(&n) {
                    let output = *ngram_indexes.get(id).ok_or_else(|| {
                        OpError::attribute(
                            "ngram_indexes",
                            "has fewer entries than the pool has n-grams",
                        )
                    })?;
                    trie.insert(ngram, output);
                }
                id += 1;
            }
        }
        Ok(trie)
    }
    let grams = (min_gram, max_gram);
    let pool = match (
        info.attr_ints_opt("pool_int64s")?,
        info.attr_strings_opt("pool_strings")?,
    ) {
        (Some(ints), None) => {
            let ranges = pool_ranges(&ngram_counts, ints.len())?;
            Pool::Ints(fill(&ints, &ranges, &ngram_indexes, grams)?)
        }
        (None, Some(strs)) => {
            let ranges = pool_ranges(&ngram_counts, strs.len())?;
            Pool::Strings(fill(&strs, &ranges, &ngram_indexes, grams)?)
        }
        _ => {
            return Err(OpError::invalid(
                "exactly one of pool_int64s and pool_strings must be set",
            ))
        }
    };
    Ok(Box::new(TfIdfVectorizer {
        pool,
        min_gram,
        max_gram,
        max_skip,
        weighting,
        weights,
        output_size,
    }))
}

impl TfIdfVectorizer {
    /// Adds the n-gram counts of one row to `counts` (one per output coordinate).
    fn count_row<K: Hash + Eq + Clone>(&self, trie: &NgramTrie<K>, row: &[K], counts: &mut [u32]) {
        let mut min_gram = self.min_gram;
        for skip in 0..=self.max_skip {
            let step = skip + 1;
            for start in 0..row.len() {
                // Too close to the end for the shortest n-gram wanted at this step.
                if start + step * (min_gram - 1) >= row.len() {
                    break;
                }
                let mut node = 0;
                let mut pos = start;
                for n in 1..=self.max_gram {
                    let Some(next) = row.get(pos).and_then(|t| trie.child(node, t)) else {
                        break;
                    };
                    node = next;
                    if n >= min_gram {
                        if let Some(out) = trie.nodes[node].output {
                            counts[out] += 1;
                        }
                    }
                    pos += step;
                }
            }
            // Unigrams do not depend on the skip: count them on the first pass only.
            if min_gram == 1 {
                min_gram = 2;
                if min_gram > self.max_gram {
                    break;
                }
            }
        }
    }

    fn count_rows<K: Hash + Eq + Clone>(
        &self,
        trie: &NgramTrie<K>,
        x: &[K],
        rows: usize,
        counts: &mut [u32],
    ) {
        let cols = x.len().checked_div(rows).unwrap_or(0);
        if cols == 0 {
            return;
        }
        for (row, out) in x.chunks(cols).zip(counts.chunks_mut(self.output_size)) {
            self.count_row(trie, row, out);
        }
    }
}

impl Kernel for TfIdfVectorizer {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let (rows, out_shape) = match x.shape() {
            [] | [_] => (1, vec![self.output_size]),
            &[n, _] => (n, vec![n, self.output_size]),
            other => {
                return Err(OpError::input(
                    0,
                    format!("expected shape [C] or [N, C], got {other:?}"),
                ))
            }
        };
        let mut counts = vec![0u32; rows * self.output_size];
        match (&self.pool, x.data()) {
            (Pool::Ints(trie), TensorData::Int64(v)) => self.count_rows(trie, v, rows, &mut counts),
            (Pool::Ints(trie), TensorData::Int32(v)) => {
                let v: Vec<i64> = v.iter().map(|&t| i64::from(t)).collect();
                self.count_rows(trie, &v, rows, &mut counts)
            }
            (Pool::Strings(trie), TensorData::String(v)) => {
                self.count_rows(trie, v, rows, &mut counts)
            }
            (Pool::Ints(_), _) => {
                return Err(OpError::input(
                    0,
                    format!(
                        "expected int32 or int64 with pool_int64s, got {}",
                        x.dtype()
                    ),
                ))
            }
            (Pool::Strings(_), _) => {
                return Err(OpError::input(
                    0,
                    format!(
                        "expected {} with pool_strings, got {}",
                        DataType::String,
                        x.dtype()
                    ),
                ))
            }
        }
        let weight = |i: usize| {
            self.weights
                .get(i % self.output_size.max(1))
                .copied()
                .unwrap_or(1.0)
        };
        let y: Vec<f32> = counts
            .iter()
            .enumerate()
            .map(|(i, &c)| match self.weighting {
                Weighting::Tf => c as f32,
                Weighting::Idf => {
                    if c > 0 {
                        weight(i)
                    } else {
                        0.0
                    }
                }
                Weighting::TfIdf => c as f32 * weight(i),
            })
            .collect();
        Ok(vec![Tensor::from_vec(out_shape, y)?.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_split_keeps_remainder() {
        assert_eq!(split_whitespace("  a  b c  ", None), vec!["a", "b", "c"]);
        assert_eq!(split_whitespace("  a  b c  ", Some(1)), vec!["a", "b c  "]);
        assert!(split_whitespace("   ", None).is_empty());
    }

    #[test]
    fn tfidf_counts_skipped_bigrams() {
        // The spec's example: with 2 skips, [94, 17, 36, 12, 28] holds bigrams (94, 12), (17, 28).
        let mut trie = NgramTrie::new();
        trie.insert(&[94i64, 12], 0);
        trie.insert(&[17, 28], 1);
        trie.insert(&[94, 17], 2);
        let op = TfIdfVectorizer {
            pool: Pool::Ints(NgramTrie::new()),
            min_gram: 2,
            max_gram: 2,
            max_skip: 2,
            weighting: Weighting::Tf,
            weights: vec![],
            output_size: 3,
        };
        let mut counts = vec![0; 3];
        op.count_row(&trie, &[94, 17, 36, 12, 28], &mut counts);
        assert_eq!(counts, vec![1, 1, 1]);
    }
}
