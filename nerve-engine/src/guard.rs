//! Guards against models that come from somewhere untrusted (a registry, a server, a federated
//! round): what a model file may ask of ONNX Runtime before it is handed over, and what its
//! output may look like at run time.
//!
//! [`check_model`] reads the ONNX protobuf (a minimal wire-format walker over the few fields it
//! needs: no protobuf crate, no generated code) and refuses external data, custom-op domains not
//! on [`ALLOWED_DOMAINS`], and tensors of absurd shapes or sizes, including constant shapes that
//! would make the run-time probe allocate gigabytes. [`check_output`] tells a broken output
//! (NaN/Inf, black, blown out) from a plausible one, for the element to fall back on.

use std::collections::HashMap;
use std::path::{Component, Path};

/// Operator domains a model may use: the ONNX standard ones and ONNX Runtime's own contrib ops
/// (quantisation tools emit `com.microsoft`). A custom domain needs a custom-op library loaded
/// into the process, which is code the model's author chose.
pub const ALLOWED_DOMAINS: &[&str] = &["", "ai.onnx", "ai.onnx.ml", "com.microsoft"];

/// Most elements one tensor may hold (256 Mi: 1 GiB of floats). The shipped models' largest
/// weight has a few thousand.
pub const MAX_ELEMENTS: u64 = 1 << 28;
/// Most bytes of weights a model may declare in all.
pub const MAX_WEIGHT_BYTES: u64 = 1 << 30;
/// Largest fixed dimension a declared shape may have.
pub const MAX_DIM: i64 = 1 << 24;
/// Largest factor by which one `Resize`/`Upsample` may scale an axis, and one `Tile` repeat.
pub const MAX_FACTOR: f64 = 64.0;
/// Deepest nesting of subgraphs (`If`, `Loop`, `Scan` bodies).
const MAX_DEPTH: usize = 32;

// ---- the protobuf wire format -------------------------------------------------------------------

/// How every reason for a file that is not a well-formed ONNX protobuf starts (as opposed to a
/// well-formed model that asks for something refused); see [`is_malformed`].
const MALFORMED: &str = "malformed ONNX protobuf";

/// Whether a reason of [`check_model`] says the file is not an ONNX model at all.
pub fn is_malformed(why: &str) -> bool {
    why.starts_with(MALFORMED)
}

#[derive(Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

fn varint(buf: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*at).ok_or("truncated varint")?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn take<'a>(buf: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], String> {
    let end = at.checked_add(n).filter(|&e| e <= buf.len()).ok_or("field runs past the end")?;
    let s = &buf[*at..end];
    *at = end;
    Ok(s)
}

/// The (field number, value) pairs of one message, in order.
fn fields(buf: &[u8]) -> impl Iterator<Item = Result<(u64, Wire<'_>), String>> {
    let mut at = 0;
    let mut failed = false;
    std::iter::from_fn(move || {
        if at >= buf.len() || failed {
            return None;
        }
        let field = (|| {
            let key = varint(buf, &mut at)?;
            let value = match key & 7 {
                0 => Wire::Varint(varint(buf, &mut at)?),
                1 => {
                    take(buf, &mut at, 8)?;
                    Wire::Fixed64
                }
                2 => {
                    let n = varint(buf, &mut at)?;
                    Wire::Bytes(take(buf, &mut at, usize::try_from(n).map_err(|_| "length too large")?)?)
                }
                5 => Wire::Fixed32(u32::from_le_bytes(take(buf, &mut at, 4)?.try_into().map_err(|_| "fixed32")?)),
                w => return Err(format!("wire type {w} (groups are not used by ONNX)")),
            };
            Ok((key >> 3, value))
        })();
        failed = field.is_err();
        Some(field.map_err(|e| format!("{MALFORMED}: {e}")))
    })
}

fn text(w: Wire<'_>) -> Result<&str, String> {
    match w {
        Wire::Bytes(b) => std::str::from_utf8(b).map_err(|_| format!("{MALFORMED}: a string that is not UTF-8")),
        _ => Err(format!("{MALFORMED}: a string field of another wire type")),
    }
}

fn message(w: Wire<'_>) -> Result<&[u8], String> {
    match w {
        Wire::Bytes(b) => Ok(b),
        _ => Err(format!("{MALFORMED}: a message field of another wire type")),
    }
}

/// A repeated int64 field: one varint, or a packed run of them.
fn int64s(w: Wire<'_>, out: &mut Vec<i64>) -> Result<(), String> {
    match w {
        Wire::Varint(v) => out.push(v as i64),
        Wire::Bytes(b) => {
            let mut at = 0;
            while at < b.len() {
                out.push(varint(b, &mut at).map_err(|e| format!("{MALFORMED}: {e}"))? as i64);
            }
        }
        _ => return Err(format!("{MALFORMED}: an int64 field of another wire type")),
    }
    Ok(())
}

fn floats(w: Wire<'_>, out: &mut Vec<f32>) -> Result<(), String> {
    match w {
        Wire::Fixed32(v) => out.push(f32::from_bits(v)),
        Wire::Bytes(b) => out.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        _ => return Err(format!("{MALFORMED}: a float field of another wire type")),
    }
    Ok(())
}

// ---- the model --------------------------------------------------------------------------------

/// The fields of a `TensorProto` the checks read.
#[derive(Default)]
struct Tensor {
    name: String,
    dims: Vec<i64>,
    data_type: u64,
    raw: Vec<u8>,
    int64_data: Vec<i64>,
    float_data: Vec<f32>,
    external: Vec<String>,
    external_location: bool,
}

const FLOAT: u64 = 1;
const INT64: u64 = 7;

impl Tensor {
    fn parse(buf: &[u8]) -> Result<Self, String> {
        let mut t = Tensor::default();
        for f in fields(buf) {
            match f? {
                (1, w) => int64s(w, &mut t.dims)?,
                (2, Wire::Varint(v)) => t.data_type = v,
                (4, w) => floats(w, &mut t.float_data)?,
                (7, w) => int64s(w, &mut t.int64_data)?,
                (8, w) => t.name = text(w)?.to_owned(),
                // Only small raw data is kept: the shape checks read constants of a few values,
                // and weights need not be copied.
                (9, Wire::Bytes(b)) if b.len() <= 4096 => t.raw = b.to_vec(),
                (13, w) => {
                    // StringStringEntryProto: key = 1, value = 2.
                    let (mut key, mut value) = (String::new(), String::new());
                    for e in fields(message(w)?) {
                        match e? {
                            (1, k) => key = text(k)?.to_owned(),
                            (2, v) => value = text(v)?.to_owned(),
                            _ => {}
                        }
                    }
                    if key == "location" {
                        t.external.push(value);
                    }
                }
                (14, Wire::Varint(1)) => t.external_location = true,
                _ => {}
            }
        }
        Ok(t)
    }

    fn element_bytes(&self) -> u64 {
        match self.data_type {
            11 | 13 | 7 | 14 => 8,
            15 => 16,
            1 | 6 | 12 => 4,
            5 | 4 | 10 | 16 => 2,
            _ => 1,
        }
    }

    /// Element count from the declared dims, refused when a dim is negative or the count absurd.
    fn elements(&self) -> Result<u64, String> {
        let mut n: u64 = 1;
        for &d in &self.dims {
            let d = u64::try_from(d).map_err(|_| format!("tensor '{}' has a negative dimension {:?}", self.name, self.dims))?;
            n = n.checked_mul(d).filter(|&n| n <= MAX_ELEMENTS).ok_or_else(|| {
                format!("tensor '{}' of shape {:?} is absurdly large (more than {MAX_ELEMENTS} elements)", self.name, self.dims)
            })?;
        }
        Ok(n)
    }

    fn int_values(&self) -> Vec<i64> {
        if self.data_type == INT64 && !self.raw.is_empty() {
            return self.raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
        }
        self.int64_data.clone()
    }

    fn float_values(&self) -> Vec<f32> {
        if self.data_type == FLOAT && !self.raw.is_empty() {
            return self.raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        }
        self.float_data.clone()
    }
}

struct Node {
    op_type: String,
    domain: String,
    inputs: Vec<String>,
}

/// What the walk gathers over the whole model, subgraphs and functions included.
#[derive(Default)]
struct Walk {
    weight_bytes: u64,
    /// Constant tensors by name (initializers and `Constant` nodes' values), per graph scope:
    /// the shape checks look up a node's inputs here.
    constants: HashMap<String, Tensor>,
    nodes: Vec<Node>,
    /// Domains defined by the model's own functions: calling them is not a custom op.
    local_domains: Vec<String>,
}

/// Refuses a model file that asks ONNX Runtime for more than running a self-contained network
/// of standard operators: external data (not covered by the manifest's sha256, and resolved
/// against the working directory when a model is loaded from memory as the engine does), custom
/// operator domains, and absurd tensors. `dir` is the model's directory, named in the reasons.
pub fn check_model(bytes: &[u8], dir: &Path) -> Result<(), String> {
    let mut walk = Walk::default();
    let mut graph = None;
    let mut functions = Vec::new();
    let mut opsets = Vec::new();
    for f in fields(bytes) {
        match f? {
            (7, w) => graph = Some(message(w)?),
            (8, w) => {
                for e in fields(message(w)?) {
                    if let (1, d) = e? {
                        opsets.push(text(d)?.to_owned());
                    }
                }
            }
            (25, w) => {
                let body = message(w)?;
                for e in fields(body) {
                    if let (10, d) = e? {
                        walk.local_domains.push(text(d)?.to_owned());
                    }
                }
                functions.push(body);
            }
            _ => {}
        }
    }
    let graph = graph.ok_or(format!("{MALFORMED}: no graph"))?;
    walk.graph(graph, 0, dir)?;
    for body in functions {
        for e in fields(body) {
            match e? {
                (7, n) => walk.node(message(n)?, 0, dir)?,
                (9, o) => {
                    for e in fields(message(o)?) {
                        if let (1, d) = e? {
                            opsets.push(text(d)?.to_owned());
                        }
                    }
                }
                _ => {}
            }
        }
    }
    for d in opsets.iter().chain(walk.nodes.iter().map(|n| &n.domain)) {
        if !ALLOWED_DOMAINS.contains(&d.as_str()) && !walk.local_domains.contains(d) {
            return Err(format!(
                "uses the custom operator domain '{d}', which is not allowed (allowed: {})",
                ALLOWED_DOMAINS.iter().map(|d| if d.is_empty() { "ai.onnx" } else { d }).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    if walk.weight_bytes > MAX_WEIGHT_BYTES {
        return Err(format!("declares {} bytes of weights, more than {MAX_WEIGHT_BYTES}", walk.weight_bytes));
    }
    walk.shape_constants()
}

impl Walk {
    fn graph(&mut self, buf: &[u8], depth: usize, dir: &Path) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("subgraphs nested deeper than {MAX_DEPTH}"));
        }
        for f in fields(buf) {
            match f? {
                (1, w) => self.node(message(w)?, depth, dir)?,
                (5, w) => {
                    self.initializer(message(w)?, dir)?;
                }
                // SparseTensorProto: values = 1, indices = 2.
                (15, w) => {
                    for e in fields(message(w)?) {
                        if let (1 | 2, t) = e? {
                            self.initializer(message(t)?, dir)?;
                        }
                    }
                }
                (11..=13, w) => value_info(message(w)?)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn initializer(&mut self, buf: &[u8], dir: &Path) -> Result<Tensor, String> {
        let t = Tensor::parse(buf)?;
        if t.external_location || !t.external.is_empty() {
            let location = t.external.first().map(String::as_str).unwrap_or_default();
            let leaves = Path::new(location).components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
                || location.is_empty()
                || dir.join(location).canonicalize().is_ok_and(|real| dir.canonicalize().is_ok_and(|d| !real.starts_with(d)));
            return Err(if leaves {
                format!("tensor '{}' has external data at {location:?}, outside the model's directory {}", t.name, dir.display())
            } else {
                format!(
                    "tensor '{}' keeps its data in the external file {location:?}; external data is not covered by the \
                     manifest's sha256 and is not supported: embed the weights in the model file",
                    t.name
                )
            });
        }
        let n = t.elements()?;
        self.weight_bytes = self.weight_bytes.saturating_add(n.saturating_mul(t.element_bytes()));
        let keep = Tensor { name: t.name.clone(), ..Tensor::default() };
        let name = t.name.clone();
        self.constants.insert(name, t);
        Ok(keep)
    }

    fn node(&mut self, buf: &[u8], depth: usize, dir: &Path) -> Result<(), String> {
        let mut node = Node { op_type: String::new(), domain: String::new(), inputs: Vec::new() };
        let mut outputs = Vec::new();
        let mut value = None;
        for f in fields(buf) {
            match f? {
                (1, w) => node.inputs.push(text(w)?.to_owned()),
                (2, w) => outputs.push(text(w)?.to_owned()),
                (4, w) => node.op_type = text(w)?.to_owned(),
                (7, w) => node.domain = text(w)?.to_owned(),
                (5, w) => {
                    // AttributeProto: name 1, t 5, g 6, tensors 10, graphs 11, sparse_tensor 22,
                    // sparse_tensors 23.
                    let mut attr_name = String::new();
                    for a in fields(message(w)?) {
                        match a? {
                            (1, n) => attr_name = text(n)?.to_owned(),
                            (5 | 10, t) => {
                                let t = self.initializer(message(t)?, dir)?;
                                if attr_name == "value" {
                                    value = Some(t.name);
                                }
                            }
                            (6 | 11, g) => self.graph(message(g)?, depth + 1, dir)?,
                            (22 | 23, s) => {
                                for e in fields(message(s)?) {
                                    if let (1 | 2, t) = e? {
                                        self.initializer(message(t)?, dir)?;
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        // A Constant node's value is a constant under the node's output name.
        if node.op_type == "Constant"
            && let (Some(v), Some(out)) = (value, outputs.first())
            && let Some(t) = self.constants.remove(&v)
        {
            self.constants.insert(out.clone(), t);
        }
        self.nodes.push(node);
        Ok(())
    }

    /// Constant inputs that set a tensor's size at run time: a shape of more than
    /// [`MAX_ELEMENTS`], a scale or a repeat beyond [`MAX_FACTOR`].
    fn shape_constants(&self) -> Result<(), String> {
        for n in &self.nodes {
            let input = |i: usize| n.inputs.get(i).filter(|s| !s.is_empty()).and_then(|s| self.constants.get(s));
            let (shape, factors) = match n.op_type.as_str() {
                "ConstantOfShape" => (input(0), None),
                "Expand" | "Reshape" => (input(1), None),
                "Tile" => (None, input(1).map(|t| t.int_values().into_iter().map(|v| v as f64).collect::<Vec<_>>())),
                "Resize" => (input(3), input(2).map(|t| t.float_values().into_iter().map(f64::from).collect())),
                "Upsample" => (None, input(1).map(|t| t.float_values().into_iter().map(f64::from).collect())),
                _ => (None, None),
            };
            if let Some(t) = shape {
                let values = t.int_values();
                let count = values.iter().filter(|&&v| v > 0).try_fold(1u64, |n, &v| n.checked_mul(v as u64).filter(|&n| n <= MAX_ELEMENTS));
                if count.is_none() {
                    return Err(format!("{} node asks for a tensor of shape {values:?} (more than {MAX_ELEMENTS} elements)", n.op_type));
                }
            }
            if let Some(f) = factors
                && let Some(bad) = f.iter().find(|v| !(v.is_finite() && v.abs() <= MAX_FACTOR))
            {
                return Err(format!("{} node scales or repeats an axis by {bad} (at most {MAX_FACTOR})", n.op_type));
            }
        }
        Ok(())
    }
}

/// ValueInfoProto (name 1, type 2): fixed dimensions of a tensor type must be sane.
fn value_info(buf: &[u8]) -> Result<(), String> {
    let mut name = "";
    for f in fields(buf) {
        match f? {
            (1, w) => name = text(w)?,
            (2, w) => {
                // TypeProto.tensor_type (1) -> shape (2) -> dim (1) -> dim_value (1).
                for t in fields(message(w)?) {
                    let (1, tensor) = t? else { continue };
                    for s in fields(message(tensor)?) {
                        let (2, shape) = s? else { continue };
                        for d in fields(message(shape)?) {
                            let (1, dim) = d? else { continue };
                            for v in fields(message(dim)?) {
                                if let (1, Wire::Varint(v)) = v?
                                    && !(0..=MAX_DIM).contains(&(v as i64))
                                {
                                    return Err(format!("'{name}' declares a dimension of {} (at most {MAX_DIM})", v as i64));
                                }
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

// ---- the output at run time -------------------------------------------------------------------

/// Why a model's output is not shown.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OutputFault {
    #[error("the model's output has {count} NaN or infinite samples of {total} (first at sample {first})")]
    NotFinite { count: usize, total: usize, first: usize },
    #[error("the model's output is black (brightest sample {max:.3}) for an input of mean luma {input_mean:.3}")]
    Black { max: f32, input_mean: f32 },
    #[error("the model's output has mean luma {output_mean:.3}, far from its input's {input_mean:.3} (samples are 0..1)")]
    Blown { output_mean: f32, input_mean: f32 },
    #[error("the model's output is empty")]
    Empty,
}

/// Input mean luma above which an output this dark counts as black (a dark scene stays dark
/// and passes): 16/255, video black.
const BLACK_INPUT: f32 = 16.0 / 255.0;
/// An output whose brightest sample is under this (2/255) is black.
const BLACK_OUTPUT: f32 = 2.0 / 255.0;
/// How far the output's mean luma may move from the input's: half the range. Super-resolution
/// and recovery keep the mean within a few levels; a model that moves it this far is broken.
const MAX_MEAN_SHIFT: f32 = 0.5;

/// Checks one model output (`out`, samples 0..1, any size) against the luma it was made from
/// (`lr_luma`, the model's current input frame, samples 0..1): NaN/Inf anywhere, black for a
/// frame that is not dark, or a mean moved by half the range are faults. No allocation.
///
/// It runs on every frame, so the common case is one vectorisable pass: eight independent f32
/// sums and maxima (a NaN or Inf anywhere makes the sum non-finite; f32::max skips NaN), folded
/// into f64 every few thousand samples so the mean stays exact enough. Only a non-finite sum
/// pays a second pass, to count the bad samples for the message.
pub fn check_output(lr_luma: &[f32], out: &[f32]) -> Result<(), OutputFault> {
    check_summary(lr_luma, OutputSummary::of(out))
}

/// What [`check_output`] needs to know of an output. An output made in bands is summarised band
/// by band on the bands' own threads while each band's samples are still in that core's cache,
/// and the summaries joined in order ([`OutputSummary::then`]): the check then reads no sample
/// a second time on the streaming thread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutputSummary {
    len: usize,
    sum: f64,
    max: f32,
    /// NaN or infinite samples (counted only when the sum is not finite) and the first's index.
    not_finite: usize,
    first_not_finite: Option<usize>,
}

impl OutputSummary {
    /// One pass over `out` (see [`check_output`]), a second only when its sum is not finite.
    pub fn of(out: &[f32]) -> Self {
        let (sum, max) = sum_and_max(out);
        let (mut not_finite, mut first_not_finite) = (0, None);
        if !sum.is_finite() {
            not_finite = out.iter().filter(|v| !v.is_finite()).count();
            first_not_finite = out.iter().position(|v| !v.is_finite());
        }
        Self { len: out.len(), sum, max, not_finite, first_not_finite }
    }

    /// The summary of an output of `len` samples, all finite, summing to `sum`, largest `max`.
    pub fn finite(len: usize, sum: f64, max: f32) -> Self {
        Self { len, sum, max, not_finite: 0, first_not_finite: None }
    }

    /// Whether two summaries agree, their sums to `rel` of the larger.
    #[cfg(test)]
    pub(crate) fn same_within(&self, other: &Self, rel: f64) -> bool {
        (self.len, self.max, self.not_finite, self.first_not_finite) == (other.len, other.max, other.not_finite, other.first_not_finite)
            && (self.sum - other.sum).abs() <= rel * self.sum.abs().max(other.sum.abs())
    }

    /// The summary of this output followed by `next` (the band below).
    pub fn then(self, next: Self) -> Self {
        Self {
            len: self.len + next.len,
            sum: self.sum + next.sum,
            max: self.max.max(next.max),
            not_finite: self.not_finite + next.not_finite,
            first_not_finite: self.first_not_finite.or(next.first_not_finite.map(|i| self.len + i)),
        }
    }
}

/// [`check_output`] on an output already summarised.
pub fn check_summary(lr_luma: &[f32], out: OutputSummary) -> Result<(), OutputFault> {
    if out.len == 0 {
        return Err(OutputFault::Empty);
    }
    if let Some(first) = out.first_not_finite {
        return Err(OutputFault::NotFinite { count: out.not_finite, total: out.len, first });
    }
    let input_mean = if lr_luma.is_empty() { 0.0 } else { (sum_and_max(lr_luma).0 / lr_luma.len() as f64) as f32 };
    if out.max < BLACK_OUTPUT && input_mean > BLACK_INPUT {
        return Err(OutputFault::Black { max: out.max, input_mean });
    }
    let output_mean = (out.sum / out.len as f64) as f32;
    if (output_mean - input_mean).abs() > MAX_MEAN_SHIFT {
        return Err(OutputFault::Blown { output_mean, input_mean });
    }
    Ok(())
}

/// The sum (f64) and maximum of `v`, eight lanes at a time.
fn sum_and_max(v: &[f32]) -> (f64, f32) {
    const LANES: usize = 8;
    const FOLD: usize = 4096; // lanes' sums go to f64 after this many samples each
    let (mut total, mut max) = (0f64, f32::MIN);
    for block in v.chunks(LANES * FOLD) {
        let (mut sums, mut maxs) = ([0f32; LANES], [f32::MIN; LANES]);
        let lanes = block.chunks_exact(LANES);
        for &x in lanes.remainder() {
            total += f64::from(x);
            max = max.max(x);
        }
        for c in lanes {
            for j in 0..LANES {
                sums[j] += c[j];
                maxs[j] = maxs[j].max(c[j]);
            }
        }
        total += sums.iter().map(|&s| f64::from(s)).sum::<f64>();
        max = maxs.iter().fold(max, |m, &x| m.max(x));
    }
    (total, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| (i % 200) as f32 / 255.0).collect()
    }

    #[test]
    fn a_plausible_output_passes() {
        let lr = ramp(64);
        let hr: Vec<f32> = lr.iter().flat_map(|&v| [v; 4]).collect();
        assert_eq!(check_output(&lr, &hr), Ok(()));
        // A dark scene stays dark.
        assert_eq!(check_output(&[0.01; 16], &[0.0; 64]), Ok(()));
        // Out-of-range samples near the edges (ringing) are not faults.
        assert_eq!(check_output(&[0.5; 4], &[-0.05, 1.05, 0.5, 0.5]), Ok(()));
    }

    #[test]
    fn nan_and_infinity_are_faults_with_where() {
        let mut hr = vec![0.5f32; 100];
        hr[7] = f32::NAN;
        hr[50] = f32::INFINITY;
        hr[99] = f32::NEG_INFINITY;
        let err = check_output(&[0.5; 25], &hr).unwrap_err();
        assert_eq!(err, OutputFault::NotFinite { count: 3, total: 100, first: 7 });
        assert!(err.to_string().contains("3 NaN or infinite samples of 100"), "{err}");
    }

    #[test]
    fn one_bad_sample_anywhere_in_a_large_frame_is_found_and_the_mean_stays_exact() {
        let n = 1280 * 720 + 5; // eight-lane blocks, several f64 folds and a remainder
        let hr: Vec<f32> = (0..n).map(|i| (i % 251) as f32 / 255.0).collect();
        let (sum, max) = sum_and_max(&hr);
        let exact: f64 = hr.iter().map(|&v| f64::from(v)).sum();
        assert!((sum - exact).abs() / exact < 1e-6, "{sum} vs {exact}");
        assert_eq!(max, 250.0 / 255.0);
        for at in [0, 13, n / 2 + 3, n - 1] {
            let mut bad = hr.clone();
            bad[at] = f32::NAN;
            assert_eq!(check_output(&[0.5; 4], &bad), Err(OutputFault::NotFinite { count: 1, total: n, first: at }));
        }
        // Finite but absurd samples overflow the lanes' sums: a blown output, not a NaN report.
        assert!(matches!(check_output(&[0.5; 4], &vec![3e38f32; 64]), Err(OutputFault::Blown { .. })));
    }

    #[test]
    fn summaries_of_bands_joined_give_the_whole_outputs_verdict() {
        let n = 64 * 48;
        let hr: Vec<f32> = (0..n).map(|i| (i % 251) as f32 / 255.0).collect();
        let joined = |v: &[f32]| {
            let (a, rest) = v.split_at(n / 3);
            let (b, c) = rest.split_at(n / 3 + 5);
            OutputSummary::of(a).then(OutputSummary::of(b)).then(OutputSummary::of(c))
        };
        let whole = OutputSummary::of(&hr);
        let bands = joined(&hr);
        assert_eq!((bands.len, bands.max, bands.not_finite), (whole.len, whole.max, 0));
        assert!((bands.sum - whole.sum).abs() < 1e-6 * whole.sum);
        assert_eq!(check_summary(&[0.5; 4], bands), Ok(()));
        // a NaN in the last band is reported where it lies in the whole output
        let mut bad = hr.clone();
        bad[n - 2] = f32::NAN;
        bad[2 * n / 3 + 10] = f32::INFINITY;
        assert_eq!(check_summary(&[0.5; 4], joined(&bad)), check_output(&[0.5; 4], &bad));
        assert_eq!(
            check_summary(&[0.5; 4], joined(&bad)),
            Err(OutputFault::NotFinite { count: 2, total: n, first: 2 * n / 3 + 10 })
        );
        assert_eq!(check_summary(&[0.5; 4], OutputSummary::of(&[])), Err(OutputFault::Empty));
    }

    #[test]
    fn black_for_a_bright_input_is_a_fault() {
        let err = check_output(&[0.6; 16], &[0.0; 64]).unwrap_err();
        assert!(matches!(err, OutputFault::Black { .. }), "{err:?}");
        assert!(err.to_string().contains("black"), "{err}");
    }

    #[test]
    fn a_blown_output_is_a_fault() {
        assert!(matches!(check_output(&[0.1; 16], &[1.0; 64]), Err(OutputFault::Blown { .. })));
        assert!(matches!(check_output(&[0.5; 16], &[200.0; 64]), Err(OutputFault::Blown { .. })));
        assert_eq!(check_output(&[0.5; 16], &[]), Err(OutputFault::Empty));
    }

    /// Protobuf encoding helpers for the walker's own tests.
    fn key(field: u64, wire: u64, out: &mut Vec<u8>) {
        put_varint((field << 3) | wire, out);
    }
    fn put_varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn bytes(field: u64, b: &[u8], out: &mut Vec<u8>) {
        key(field, 2, out);
        put_varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    fn model_with_initializer(dims: &[i64]) -> Vec<u8> {
        let mut tensor = Vec::new();
        for &d in dims {
            key(1, 0, &mut tensor);
            put_varint(d as u64, &mut tensor);
        }
        bytes(8, b"w", &mut tensor);
        let mut graph = Vec::new();
        bytes(5, &tensor, &mut graph);
        let mut model = Vec::new();
        bytes(7, &graph, &mut model);
        model
    }

    #[test]
    fn the_walker_reads_dims_and_refuses_absurd_ones() {
        let dir = Path::new("/nonexistent");
        assert_eq!(check_model(&model_with_initializer(&[16, 1, 3, 3]), dir), Ok(()));
        let err = check_model(&model_with_initializer(&[1 << 20, 1 << 20]), dir).unwrap_err();
        assert!(err.contains("absurdly large"), "{err}");
        let err = check_model(&model_with_initializer(&[-1, 4]), dir).unwrap_err();
        assert!(err.contains("negative dimension"), "{err}");
    }

    #[test]
    fn truncated_and_garbage_protobufs_are_errors_not_panics() {
        let model = model_with_initializer(&[16, 1, 3, 3]);
        for cut in 0..model.len() {
            let _ = check_model(&model[..cut], Path::new("."));
        }
        for garbage in [&b""[..], &[0xff; 32], b"not a model at all"] {
            let why = check_model(garbage, Path::new(".")).unwrap_err();
            assert!(is_malformed(&why), "{why}");
        }
        // A refusal of a well-formed model is not "malformed".
        assert!(!is_malformed(&check_model(&model_with_initializer(&[-1]), Path::new(".")).unwrap_err()));
    }
}
