//! The ONNX textual syntax (onnx/docs/Syntax.md), printed from the IR the way
//! `onnx.printer.to_text` prints it, so that `onnx.parser` reads it back.
//!
//! Beyond onnx's printer: every element type's values are printed (onnx prints `...` for
//! complex and sub-byte types), empty string lists print as `[]`, lists of graphs and tensors
//! are complete, function attribute defaults and value_info are printed. Doc strings other than
//! the model's have no place in the syntax and are not printed.

use std::fmt::Write;

use runnx_ir::{
    Attribute, AttributeValue, Dim, Function, Graph, Model, Node, Tensor, TensorData, ValueInfo,
    ValueType,
};

use crate::ToolError;

/// Prints a model in the textual syntax. Sparse tensor attributes have no textual form and are
/// an error.
pub fn print_text(model: &Model) -> Result<String, ToolError> {
    let mut p = Printer {
        out: String::new(),
        indent: 3,
    };
    p.model(model)?;
    Ok(p.out)
}

struct Printer {
    out: String,
    indent: usize,
}

/// `[A-Za-z_][A-Za-z0-9_]*`: printed bare; anything else is quoted.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '\\' || c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn id(s: &str) -> String {
    if is_identifier(s) {
        s.to_string()
    } else {
        quoted(s)
    }
}

/// Shortest text that parses back to the same f32 (`nan`, `inf` as onnx writes them).
fn float32(x: f32) -> String {
    if x.is_nan() {
        if x.is_sign_negative() { "-nan" } else { "nan" }.to_string()
    } else if x.is_infinite() {
        if x < 0.0 { "-inf" } else { "inf" }.to_string()
    } else {
        format!("{x:?}")
    }
}

fn float64(x: f64) -> String {
    if x.is_nan() {
        if x.is_sign_negative() { "-nan" } else { "nan" }.to_string()
    } else if x.is_infinite() {
        if x < 0.0 { "-inf" } else { "inf" }.to_string()
    } else {
        format!("{x:?}")
    }
}

fn join<T>(items: &[T], sep: &str, f: impl Fn(&T) -> String) -> String {
    items.iter().map(f).collect::<Vec<_>>().join(sep)
}

pub(crate) fn type_text(t: &ValueType) -> String {
    let tensor = |dtype: &runnx_ir::DataType, shape: &Option<Vec<Dim>>| {
        let dims = match shape {
            None => "[]".to_string(),
            Some(d) if d.is_empty() => String::new(),
            Some(d) => format!(
                "[{}]",
                join(d, ",", |d| match d {
                    Dim::Fixed(n) => n.to_string(),
                    Dim::Symbol(s) => id(s),
                    Dim::Unknown => "?".to_string(),
                })
            ),
        };
        format!("{}{dims}", dtype.name())
    };
    match t {
        ValueType::Tensor(tt) => tensor(&tt.dtype, &tt.shape),
        ValueType::SparseTensor(tt) => format!("sparse_tensor({})", tensor(&tt.dtype, &tt.shape)),
        ValueType::Sequence(e) => format!("seq({})", type_text(e)),
        ValueType::Optional(e) => format!("optional({})", type_text(e)),
        ValueType::Map(k, v) => format!("map({}, {})", k.name(), type_text(v)),
        ValueType::Unknown => String::new(),
    }
}

fn value_info(v: &ValueInfo) -> String {
    let ty = type_text(&v.ty);
    if ty.is_empty() {
        id(&v.name)
    } else {
        format!("{ty} {}", id(&v.name))
    }
}

/// The values of a tensor between braces, in the typed field the parser fills for its type:
/// float16/bfloat16/float8 as their bit patterns, sub-byte types as packed bytes, complex as
/// (re, im) pairs.
fn tensor_values(t: &Tensor) -> String {
    fn list<T>(v: &[T], f: impl Fn(&T) -> String) -> String {
        format!("{{{}}}", join(v, ",", f))
    }
    let packed = || {
        let p = runnx_ir::convert::tensor_to_proto("", t);
        let raw = p.raw_data.unwrap_or_default();
        list(&raw[..], |b| b.to_string())
    };
    match t.data() {
        TensorData::Float(v) => list(v, |x| float32(*x)),
        TensorData::Double(v) => list(v, |x| float64(*x)),
        TensorData::Uint8(v) => list(v, |x| x.to_string()),
        TensorData::Int8(v) => list(v, |x| x.to_string()),
        TensorData::Uint16(v) => list(v, |x| x.to_string()),
        TensorData::Int16(v) => list(v, |x| x.to_string()),
        TensorData::Int32(v) => list(v, |x| x.to_string()),
        TensorData::Int64(v) => list(v, |x| x.to_string()),
        TensorData::Uint32(v) => list(v, |x| x.to_string()),
        TensorData::Uint64(v) => list(v, |x| x.to_string()),
        TensorData::Bool(v) => list(v, |x| u8::from(*x).to_string()),
        TensorData::String(v) => format!("{{{}}}", join(v, ", ", |s| quoted(s))),
        TensorData::Float16(v) => list(v, |x| x.to_bits().to_string()),
        TensorData::Bfloat16(v) => list(v, |x| x.to_bits().to_string()),
        TensorData::Complex64(v) => list(v, |c| format!("{},{}", float32(c.re), float32(c.im))),
        TensorData::Complex128(v) => list(v, |c| format!("{},{}", float64(c.re), float64(c.im))),
        TensorData::Float8E4M3FN(v) => list(v, |x| x.0.to_string()),
        TensorData::Float8E4M3FNUZ(v) => list(v, |x| x.0.to_string()),
        TensorData::Float8E5M2(v) => list(v, |x| x.0.to_string()),
        TensorData::Float8E5M2FNUZ(v) => list(v, |x| x.0.to_string()),
        TensorData::Float8E8M0(v) => list(v, |x| x.0.to_string()),
        TensorData::Uint4(_)
        | TensorData::Int4(_)
        | TensorData::Float4E2M1(_)
        | TensorData::Uint2(_)
        | TensorData::Int2(_) => packed(),
    }
}

/// `float[2,3] name = {…}` (initializer) or `float[2,3] {…}` (attribute value).
fn tensor(t: &Tensor, name: Option<&str>) -> String {
    let dims = if t.shape().is_empty() {
        String::new()
    } else {
        format!("[{}]", join(t.shape(), ",", |d| d.to_string()))
    };
    let head = format!("{}{dims}", t.dtype().name());
    match name {
        Some(n) => format!("{head} {} = {}", id(n), tensor_values(t)),
        None => format!("{head} {}", tensor_values(t)),
    }
}

fn attr_type(v: &AttributeValue) -> &'static str {
    match v {
        AttributeValue::Type(_) => "type_proto",
        AttributeValue::Types(_) => "type_protos",
        other => other.kind(),
    }
}

impl Printer {
    fn pad(&mut self, n: usize) {
        self.out.extend(std::iter::repeat_n(' ', n));
    }

    fn model(&mut self, m: &Model) -> Result<(), ToolError> {
        let mut header = vec![
            format!("ir_version: {}", m.ir_version),
            format!(
                "opset_import: [{}]",
                m.opset_imports
                    .iter()
                    .map(|(d, v)| format!("{} : {v}", quoted(d)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ];
        let mut string = |key: &str, value: &str| {
            if !value.is_empty() {
                header.push(format!("{key}: {}", quoted(value)));
            }
        };
        string("producer_name", &m.producer_name);
        string("producer_version", &m.producer_version);
        string("domain", &m.domain);
        if m.model_version != 0 {
            header.push(format!("model_version: {}", m.model_version));
        }
        if !m.doc_string.is_empty() {
            header.push(format!("doc_string: {}", quoted(&m.doc_string)));
        }
        if !m.metadata_props.is_empty() {
            header.push(format!(
                "metadata_props: [{}]",
                join(&m.metadata_props, ", ", |(k, v)| format!(
                    "{}: {}",
                    quoted(k),
                    quoted(v)
                ))
            ));
        }
        self.out.push_str("<\n");
        let lines: Vec<String> = header.iter().map(|h| format!("   {h}")).collect();
        self.out.push_str(&lines.join(",\n"));
        self.out.push_str("\n>\n");
        self.graph(&m.graph)?;
        for f in &m.functions {
            self.out.push('\n');
            self.function(f)?;
        }
        self.out.push('\n');
        Ok(())
    }

    fn graph(&mut self, g: &Graph) -> Result<(), ToolError> {
        let _ = write!(
            self.out,
            "{} ({}) => ({}) ",
            id(&g.name),
            join(&g.inputs, ", ", value_info),
            join(&g.outputs, ", ", value_info)
        );
        if !g.initializers.is_empty() || !g.value_info.is_empty() {
            self.out.push('\n');
            self.pad(self.indent);
            self.out.push('<');
            let mut items: Vec<String> = g
                .initializers
                .iter()
                .map(|(n, t)| tensor(t, Some(n)))
                .collect();
            items.extend(g.value_info.iter().map(value_info));
            self.out.push_str(&items.join(", "));
            self.out.push_str(">\n");
        }
        self.nodes(&g.nodes)
    }

    fn nodes(&mut self, nodes: &[Node]) -> Result<(), ToolError> {
        self.out.push_str("{\n");
        for n in nodes {
            self.node(n)?;
        }
        self.pad(self.indent - 3);
        self.out.push('}');
        Ok(())
    }

    fn node(&mut self, n: &Node) -> Result<(), ToolError> {
        self.pad(self.indent);
        if !n.name.is_empty() {
            let _ = write!(self.out, "[{}] ", id(&n.name));
        }
        let _ = write!(self.out, "{} = ", join(&n.outputs, ", ", |s| id(s)));
        if !n.domain.is_empty() {
            let _ = write!(self.out, "{}.", n.domain);
        }
        self.out.push_str(&n.op_type);
        let has_subgraph = n.attributes.iter().any(|a| {
            matches!(
                a.value,
                AttributeValue::Graph(_) | AttributeValue::Graphs(_)
            )
        });
        if !has_subgraph {
            self.attributes(&n.attributes, n)?;
        }
        let _ = write!(self.out, " ({})", join(&n.inputs, ", ", |s| id(s)));
        if has_subgraph {
            self.attributes(&n.attributes, n)?;
        }
        self.out.push('\n');
        Ok(())
    }

    fn attributes(&mut self, attrs: &[Attribute], n: &Node) -> Result<(), ToolError> {
        if attrs.is_empty() {
            return Ok(());
        }
        self.out.push_str(" <");
        for (i, a) in attrs.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.attribute(a)
                .map_err(|e| ToolError::Invalid(format!("{}: {e}", n.describe())))?;
        }
        self.out.push('>');
        Ok(())
    }

    fn attribute(&mut self, a: &Attribute) -> Result<(), String> {
        let _ = write!(self.out, "{}: {} = ", a.name, attr_type(&a.value));
        if let Some(r) = &a.ref_attr_name {
            let _ = write!(self.out, "@{r}");
            return Ok(());
        }
        let bytes = |b: &[u8]| quoted(&String::from_utf8_lossy(b));
        let text = match &a.value {
            AttributeValue::Float(x) => float32(*x),
            AttributeValue::Int(i) => i.to_string(),
            AttributeValue::String(s) => bytes(s),
            AttributeValue::Tensor(t) => tensor(t, None),
            AttributeValue::Type(t) => type_text(t),
            AttributeValue::Floats(v) => format!("[{}]", join(v, ", ", |x| float32(*x))),
            AttributeValue::Ints(v) => format!("[{}]", join(v, ", ", |x| x.to_string())),
            AttributeValue::Strings(v) => format!("[{}]", join(v, ", ", |s| bytes(s))),
            AttributeValue::Tensors(v) => format!("[{}]", join(v, ", ", |t| tensor(t, None))),
            AttributeValue::Types(v) => format!("[{}]", join(v, ", ", type_text)),
            AttributeValue::Graph(g) => {
                self.indent += 3;
                let r = self.graph(g);
                self.indent -= 3;
                return r.map_err(|e| e.to_string());
            }
            AttributeValue::Graphs(gs) => {
                self.indent += 3;
                self.out.push('[');
                for (i, g) in gs.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.graph(g).map_err(|e| e.to_string())?;
                }
                self.out.push(']');
                self.indent -= 3;
                return Ok(());
            }
            AttributeValue::SparseTensor(_) | AttributeValue::SparseTensors(_) => {
                return Err(format!(
                    "attribute '{}': sparse tensors have no textual syntax (print as prototxt or json)",
                    a.name
                ))
            }
        };
        self.out.push_str(&text);
        Ok(())
    }

    fn function(&mut self, f: &Function) -> Result<(), ToolError> {
        self.out.push_str("<\n");
        let _ = writeln!(self.out, "  domain: {},", quoted(&f.domain));
        if !f.overload.is_empty() {
            let _ = writeln!(self.out, "  overload: {},", quoted(&f.overload));
        }
        if !f.doc_string.is_empty() {
            let _ = writeln!(self.out, "  doc_string: {},", quoted(&f.doc_string));
        }
        let _ = write!(
            self.out,
            "  opset_import: [{}]\n>\n{} ",
            f.opset_imports
                .iter()
                .map(|(d, v)| format!("{} : {v}", quoted(d)))
                .collect::<Vec<_>>()
                .join(","),
            id(&f.name)
        );
        if !f.attributes.is_empty() || !f.attribute_defaults.is_empty() {
            self.out.push('<');
            let mut first = true;
            for a in &f.attributes {
                if !first {
                    self.out.push_str(", ");
                }
                first = false;
                self.out.push_str(&id(a));
            }
            for a in &f.attribute_defaults {
                if !first {
                    self.out.push_str(", ");
                }
                first = false;
                self.attribute(a).map_err(ToolError::Invalid)?;
            }
            self.out.push('>');
        }
        let _ = write!(
            self.out,
            "({}) => ({})",
            join(&f.inputs, ", ", |s| id(s)),
            join(&f.outputs, ", ", |s| id(s))
        );
        if !f.value_info.is_empty() {
            let _ = write!(self.out, " <{}>", join(&f.value_info, ", ", value_info));
        }
        self.out.push('\n');
        self.nodes(&f.nodes)
    }
}
