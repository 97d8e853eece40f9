//! Reads the ONNX textual syntax into a ModelProto, as `onnx.parser.parse_model` does.
//!
//! Follows onnx's grammar (onnx/defs/parser.cc): `#` comments, bare or quoted identifiers, `float`
//! for a scalar and `float[]` for unknown rank, attribute types inferred from the value when not
//! annotated, `@name` references in function bodies. Also reads what [`super::print_text`] adds:
//! lists of graphs, tensors and type protos, and function attribute defaults.

use runnx_ir::DataType;
use runnx_onnx::proto::{
    self, attribute_proto::AttributeType, tensor_shape_proto, type_proto, TypeProto,
};

/// A parse error: what was expected, and the line and column where.
#[derive(Debug, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

type Result<T> = std::result::Result<T, ParseError>;

/// Parses a whole model.
pub fn parse_text(text: &str) -> Result<proto::ModelProto> {
    let mut p = Parser {
        s: text.as_bytes(),
        pos: 0,
    };
    let m = p.model()?;
    Ok(m)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

enum Literal {
    Int(i64),
    Float(f64),
    Str(String),
}

impl Parser<'_> {
    fn error<T>(&self, message: impl Into<String>) -> Result<T> {
        let before = &self.s[..self.pos.min(self.s.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = self.pos
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1)
            + 1;
        Err(ParseError {
            line,
            column,
            message: message.into(),
        })
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() {
            match self.s[self.pos] {
                b'#' => {
                    while self.pos < self.s.len() && self.s[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                c if c.is_ascii_whitespace() => self.pos += 1,
                _ => break,
            }
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    fn matches(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        if self.matches(c) {
            Ok(())
        } else {
            let found = match self.peek() {
                Some(f) => format!("'{}'", f as char),
                None => "the end of the text".into(),
            };
            self.error(format!("expected '{}', found {found}", c as char))
        }
    }

    fn optional_identifier(&mut self) -> Option<String> {
        self.skip_ws();
        let start = self.pos;
        match self.s.get(self.pos) {
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => self.pos += 1,
            _ => return None,
        }
        while self
            .s
            .get(self.pos)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            self.pos += 1;
        }
        Some(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn peek_identifier(&mut self) -> Option<String> {
        let at = self.pos;
        let id = self.optional_identifier();
        self.pos = at;
        id
    }

    fn identifier(&mut self) -> Result<String> {
        match self.optional_identifier() {
            Some(id) => Ok(id),
            None => self.error("expected an identifier"),
        }
    }

    /// A bare identifier or a string literal; `None` when neither is next.
    fn optional_quotable(&mut self) -> Result<Option<String>> {
        if self.peek() == Some(b'"') {
            return self.string().map(Some);
        }
        Ok(self.optional_identifier())
    }

    fn quotable(&mut self) -> Result<String> {
        match self.optional_quotable()? {
            Some(s) => Ok(s),
            None => self.error("expected a name"),
        }
    }

    fn string(&mut self) -> Result<String> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.pos) {
                None => return self.error("unterminated string"),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    let Some(&c) = self.s.get(self.pos + 1) else {
                        return self.error("unterminated string");
                    };
                    out.push(c);
                    self.pos += 2;
                }
                Some(&c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// True when `nan`, `inf` or `infinity` (any case) is next.
    fn next_is_special_float(&mut self) -> bool {
        let at = self.pos;
        let word = self.optional_identifier();
        self.pos = at;
        matches!(
            word.map(|w| w.to_ascii_lowercase()).as_deref(),
            Some("nan" | "inf" | "infinity")
        )
    }

    fn literal(&mut self) -> Result<Literal> {
        match self.peek() {
            Some(b'"') => return self.string().map(Literal::Str),
            None => return self.error("expected a value"),
            _ => {}
        }
        let start = self.pos;
        let negative = self.s[self.pos] == b'-';
        if negative {
            self.pos += 1;
        }
        if self.next_is_special_float() {
            let word = self.identifier()?.to_ascii_lowercase();
            let v = if word == "nan" {
                f64::NAN
            } else {
                f64::INFINITY
            };
            return Ok(Literal::Float(if negative { -v } else { v }));
        }
        let mut is_float = false;
        while let Some(&c) = self.s.get(self.pos) {
            match c {
                b'0'..=b'9' => {}
                b'.' | b'e' | b'E' => is_float = true,
                b'+' | b'-' if matches!(self.s[self.pos - 1], b'e' | b'E') => {}
                _ => break,
            }
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
        if text.is_empty() || text == "-" {
            return self.error("expected a value");
        }
        if is_float {
            match text.parse() {
                Ok(v) => Ok(Literal::Float(v)),
                Err(_) => self.error(format!("'{text}' is not a number")),
            }
        } else {
            match text.parse() {
                Ok(v) => Ok(Literal::Int(v)),
                Err(_) => self.error(format!("'{text}' is not an integer")),
            }
        }
    }

    fn int(&mut self) -> Result<i64> {
        match self.literal()? {
            Literal::Int(i) => Ok(i),
            _ => self.error("expected an integer"),
        }
    }

    fn uint(&mut self) -> Result<u64> {
        self.skip_ws();
        let start = self.pos;
        while self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        match std::str::from_utf8(&self.s[start..self.pos])
            .unwrap_or("")
            .parse()
        {
            Ok(v) => Ok(v),
            Err(_) => self.error("expected an unsigned integer"),
        }
    }

    fn float(&mut self) -> Result<f64> {
        match self.literal()? {
            Literal::Int(i) => Ok(i as f64),
            Literal::Float(f) => Ok(f),
            Literal::Str(_) => self.error("expected a number"),
        }
    }

    fn str_value(&mut self) -> Result<String> {
        match self.literal()? {
            Literal::Str(s) => Ok(s),
            _ => self.error("expected a string"),
        }
    }

    fn model(&mut self) -> Result<proto::ModelProto> {
        let mut m = proto::ModelProto::default();
        if self.matches(b'<') {
            loop {
                let key = self.identifier()?;
                self.expect(b':')?;
                match key.as_str() {
                    "ir_version" => m.ir_version = Some(self.int()?),
                    "opset_import" => m.opset_import = self.opsets()?,
                    "producer_name" => m.producer_name = Some(self.str_value()?),
                    "producer_version" => m.producer_version = Some(self.str_value()?),
                    "domain" => m.domain = Some(self.str_value()?),
                    "model_version" => m.model_version = Some(self.int()?),
                    "doc_string" => m.doc_string = Some(self.str_value()?),
                    "metadata_props" => {
                        self.expect(b'[')?;
                        if !self.matches(b']') {
                            loop {
                                let key = self.str_value()?;
                                self.expect(b':')?;
                                let value = self.str_value()?;
                                m.metadata_props.push(proto::StringStringEntryProto {
                                    key: Some(key),
                                    value: Some(value),
                                });
                                if !self.matches(b',') {
                                    break;
                                }
                            }
                            self.expect(b']')?;
                        }
                    }
                    other => return self.error(format!("unknown model field '{other}'")),
                }
                if !self.matches(b',') {
                    break;
                }
            }
            self.expect(b'>')?;
        }
        m.graph = Some(self.graph()?);
        while !self.at_end() {
            m.functions.push(self.function()?);
        }
        Ok(m)
    }

    fn opsets(&mut self) -> Result<Vec<proto::OperatorSetIdProto>> {
        let mut out = Vec::new();
        self.expect(b'[')?;
        if self.matches(b']') {
            return Ok(out);
        }
        loop {
            let domain = self.str_value()?;
            self.expect(b':')?;
            let version = self.int()?;
            out.push(proto::OperatorSetIdProto {
                domain: Some(domain),
                version: Some(version),
            });
            if !self.matches(b',') {
                break;
            }
        }
        self.expect(b']')?;
        Ok(out)
    }

    fn next_is_type(&mut self) -> bool {
        match self.peek_identifier() {
            Some(id) => {
                DataType::from_name(&id).is_some()
                    || matches!(id.as_str(), "seq" | "map" | "optional" | "sparse_tensor")
            }
            None => false,
        }
    }

    fn shape(&mut self) -> Result<Option<proto::TensorShapeProto>> {
        use tensor_shape_proto::{dimension::Value, Dimension};
        if !self.matches(b'[') {
            return Ok(Some(proto::TensorShapeProto::default())); // a scalar
        }
        if self.matches(b']') {
            return Ok(None); // unknown rank
        }
        let mut dims = Vec::new();
        loop {
            let value = if self.matches(b'?') {
                None
            } else if let Some(id) = self.optional_quotable()? {
                Some(Value::DimParam(id))
            } else {
                Some(Value::DimValue(self.int()?))
            };
            dims.push(Dimension {
                value,
                denotation: None,
            });
            if !self.matches(b',') {
                break;
            }
        }
        self.expect(b']')?;
        Ok(Some(proto::TensorShapeProto { dim: dims }))
    }

    fn elem_type(&mut self) -> Result<i32> {
        let id = self.identifier()?;
        match DataType::from_name(&id) {
            Some(d) => Ok(d.onnx_code()),
            None => self.error(format!("'{id}' is not an element type")),
        }
    }

    fn type_proto(&mut self) -> Result<TypeProto> {
        let id = self.identifier()?;
        let value = if let Some(d) = DataType::from_name(&id) {
            type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(d.onnx_code()),
                shape: self.shape()?,
            })
        } else {
            self.expect(b'(')?;
            let v = match id.as_str() {
                "seq" => type_proto::Value::SequenceType(Box::new(type_proto::Sequence {
                    elem_type: Some(Box::new(self.type_proto()?)),
                })),
                "optional" => type_proto::Value::OptionalType(Box::new(type_proto::Optional {
                    elem_type: Some(Box::new(self.type_proto()?)),
                })),
                "map" => {
                    let key = self.elem_type()?;
                    self.expect(b',')?;
                    type_proto::Value::MapType(Box::new(type_proto::Map {
                        key_type: Some(key),
                        value_type: Some(Box::new(self.type_proto()?)),
                    }))
                }
                "sparse_tensor" => {
                    let elem = self.elem_type()?;
                    type_proto::Value::SparseTensorType(type_proto::SparseTensor {
                        elem_type: Some(elem),
                        shape: self.shape()?,
                    })
                }
                other => return self.error(format!("unknown type '{other}'")),
            };
            self.expect(b')')?;
            v
        };
        Ok(TypeProto {
            value: Some(value),
            denotation: None,
        })
    }

    fn value_info(&mut self) -> Result<proto::ValueInfoProto> {
        let ty = if self.next_is_type() {
            Some(self.type_proto()?)
        } else {
            None
        };
        Ok(proto::ValueInfoProto {
            name: Some(self.quotable()?),
            r#type: ty,
            ..Default::default()
        })
    }

    /// The values of a tensor of type `ty` (`{…}`), or nothing.
    fn tensor_data(&mut self, t: &mut proto::TensorProto, ty: &TypeProto) -> Result<()> {
        let Some(type_proto::Value::TensorType(tt)) = &ty.value else {
            return self.error("expected a tensor type");
        };
        let elem = tt.elem_type.unwrap_or(0);
        t.data_type = Some(elem);
        for d in tt.shape.iter().flat_map(|s| &s.dim) {
            match d.value {
                Some(tensor_shape_proto::dimension::Value::DimValue(v)) => t.dims.push(v),
                _ => return self.error("a tensor needs numeric dimensions"),
            }
        }
        if tt.shape.is_none() {
            return self.error("a tensor needs a shape");
        }
        let dtype = DataType::from_onnx(elem);
        if self.matches(b'{') {
            if self.matches(b'}') {
                return Ok(());
            }
            loop {
                use DataType as D;
                match dtype {
                    Some(D::Int64) => t.int64_data.push(self.int()?),
                    Some(D::Uint32 | D::Uint64) => t.uint64_data.push(self.uint()?),
                    Some(D::Float | D::Complex64) => t.float_data.push(self.float()? as f32),
                    Some(D::Double | D::Complex128) => t.double_data.push(self.float()?),
                    Some(D::String) => t.string_data.push(self.str_value()?.into_bytes().into()),
                    Some(_) => {
                        let v = self.int()?;
                        match i32::try_from(v) {
                            Ok(v) => t.int32_data.push(v),
                            Err(_) => return self.error(format!("{v} does not fit the type")),
                        }
                    }
                    None => return self.error(format!("unknown element type {elem}")),
                }
                if !self.matches(b',') {
                    break;
                }
            }
            self.expect(b'}')?;
        } else if self.matches(b'[') {
            // External data: ["location": "file.bin", "offset": "0", ...]
            t.data_location = Some(proto::tensor_proto::DataLocation::External as i32);
            loop {
                let key = self.str_value()?;
                self.expect(b':')?;
                let value = self.str_value()?;
                t.external_data.push(proto::StringStringEntryProto {
                    key: Some(key),
                    value: Some(value),
                });
                if !self.matches(b',') {
                    break;
                }
            }
            self.expect(b']')?;
        }
        Ok(())
    }

    fn graph(&mut self) -> Result<proto::GraphProto> {
        let name = self.quotable()?;
        let mut g = proto::GraphProto {
            name: Some(name),
            ..Default::default()
        };
        // Inputs, each optionally with a default value (an initializer).
        self.expect(b'(')?;
        if !self.matches(b')') {
            loop {
                let vi = self.value_info()?;
                if self.matches(b'=') {
                    let mut t = proto::TensorProto {
                        name: vi.name.clone(),
                        ..Default::default()
                    };
                    let ty = vi.r#type.clone().unwrap_or_default();
                    self.tensor_data(&mut t, &ty)?;
                    g.initializer.push(t);
                }
                g.input.push(vi);
                if !self.matches(b',') {
                    break;
                }
            }
            self.expect(b')')?;
        }
        self.expect(b'=')?;
        self.expect(b'>')?;
        self.expect(b'(')?;
        if !self.matches(b')') {
            loop {
                g.output.push(self.value_info()?);
                if !self.matches(b',') {
                    break;
                }
            }
            self.expect(b')')?;
        }
        // Initializers (`type name = {…}`) and value_info (`type name`).
        if self.matches(b'<') && !self.matches(b'>') {
            loop {
                let vi = self.value_info()?;
                if self.matches(b'=') {
                    let mut t = proto::TensorProto {
                        name: vi.name.clone(),
                        ..Default::default()
                    };
                    let ty = vi.r#type.clone().unwrap_or_default();
                    self.tensor_data(&mut t, &ty)?;
                    g.initializer.push(t);
                } else {
                    g.value_info.push(vi);
                }
                if !self.matches(b',') {
                    break;
                }
            }
            self.expect(b'>')?;
        }
        g.node = self.nodes()?;
        Ok(g)
    }

    fn nodes(&mut self) -> Result<Vec<proto::NodeProto>> {
        self.expect(b'{')?;
        let mut nodes = Vec::new();
        while !self.matches(b'}') {
            if self.at_end() {
                return self.error("expected '}' to close the node list");
            }
            nodes.push(self.node()?);
        }
        Ok(nodes)
    }

    /// Names separated by commas; an empty name is `""` or nothing before a comma.
    fn id_list(&mut self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let Some(first) = self.optional_quotable()? else {
            return Ok(out);
        };
        out.push(first);
        while self.matches(b',') {
            match self.optional_quotable()? {
                Some(id) => out.push(id),
                None => break,
            }
        }
        Ok(out)
    }

    fn node(&mut self) -> Result<proto::NodeProto> {
        let mut n = proto::NodeProto::default();
        if self.matches(b'[') {
            n.name = Some(self.optional_quotable()?.unwrap_or_default());
            self.expect(b']')?;
        }
        n.output = self.id_list()?;
        self.expect(b'=')?;
        let mut parts = vec![self.identifier()?];
        while self.matches(b'.') {
            parts.push(self.identifier()?);
        }
        n.op_type = parts.pop();
        if !parts.is_empty() {
            n.domain = Some(parts.join("."));
        }
        if self.matches(b':') {
            n.overload = Some(self.identifier()?);
        }
        n.attribute = self.attribute_list()?;
        self.expect(b'(')?;
        n.input = self.id_list()?;
        self.expect(b')')?;
        if n.attribute.is_empty() {
            n.attribute = self.attribute_list()?;
        }
        Ok(n)
    }

    fn attribute_list(&mut self) -> Result<Vec<proto::AttributeProto>> {
        let mut out = Vec::new();
        if self.matches(b'<') {
            loop {
                let name = self.identifier()?;
                out.push(self.attribute(name)?);
                if !self.matches(b',') {
                    break;
                }
            }
            self.expect(b'>')?;
        }
        Ok(out)
    }

    fn attribute(&mut self, name: String) -> Result<proto::AttributeProto> {
        let mut a = proto::AttributeProto {
            name: Some(name),
            ..Default::default()
        };
        let mut declared = None;
        if self.matches(b':') {
            let ty = self.identifier()?;
            declared = Some(
                attribute_type(&ty)
                    .map_or_else(|| self.error(format!("unknown attribute type '{ty}'")), Ok)?,
            );
            a.r#type = declared.map(|t| t as i32);
        }
        self.expect(b'=')?;
        if self.matches(b'[') {
            let single = declared.map(singleton);
            if self.matches(b']') {
                if declared.is_none() {
                    return self.error("an empty list needs a type annotation (name: ints = [])");
                }
                return Ok(a);
            }
            loop {
                let v = self.single_value(single)?;
                let list_type = match v {
                    Value::Int(i) => {
                        a.ints.push(i);
                        AttributeType::Ints
                    }
                    Value::Float(f) => {
                        a.floats.push(f);
                        AttributeType::Floats
                    }
                    Value::Str(s) => {
                        a.strings.push(s.into_bytes().into());
                        AttributeType::Strings
                    }
                    Value::Tensor(t) => {
                        a.tensors.push(t);
                        AttributeType::Tensors
                    }
                    Value::Graph(g) => {
                        a.graphs.push(g);
                        AttributeType::Graphs
                    }
                    Value::Type(t) => {
                        a.type_protos.push(t);
                        AttributeType::TypeProtos
                    }
                    Value::Ref(_) => return self.error("a reference cannot be a list element"),
                };
                a.r#type = Some(list_type as i32);
                if !self.matches(b',') {
                    break;
                }
            }
            self.expect(b']')?;
            // An int list annotated as floats (`[1, 2]` for floats) was converted element-wise.
            return Ok(a);
        }
        match self.single_value(declared)? {
            Value::Ref(r) => a.ref_attr_name = Some(r),
            Value::Int(i) => {
                a.i = Some(i);
                a.r#type = Some(AttributeType::Int as i32);
            }
            Value::Float(f) => {
                a.f = Some(f);
                a.r#type = Some(AttributeType::Float as i32);
            }
            Value::Str(s) => {
                a.s = Some(s.into_bytes().into());
                a.r#type = Some(AttributeType::String as i32);
            }
            Value::Tensor(t) => {
                a.t = Some(t);
                a.r#type = Some(AttributeType::Tensor as i32);
            }
            Value::Graph(g) => {
                a.g = Some(g);
                a.r#type = Some(AttributeType::Graph as i32);
            }
            Value::Type(t) => {
                a.tp = Some(t);
                a.r#type = Some(AttributeType::TypeProto as i32);
            }
        }
        Ok(a)
    }

    /// One attribute value; `expected` (from the annotation) turns an integer into a float.
    fn single_value(&mut self, expected: Option<AttributeType>) -> Result<Value> {
        let wants_graph = matches!(expected, Some(AttributeType::Graph));
        let v = match self.peek() {
            Some(b'"') if wants_graph => Value::Graph(self.graph()?),
            Some(b'@') => {
                self.pos += 1;
                return Ok(Value::Ref(self.quotable()?));
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                if self.next_is_type() {
                    let ty = self.type_proto()?;
                    let next = self.peek();
                    if next == Some(b'{') || next == Some(b'=') || self.peek_identifier().is_some()
                    {
                        let mut t = proto::TensorProto {
                            name: self.optional_quotable()?,
                            ..Default::default()
                        };
                        self.matches(b'=');
                        self.tensor_data(&mut t, &ty)?;
                        Value::Tensor(t)
                    } else {
                        Value::Type(ty)
                    }
                } else if self.next_is_special_float() {
                    Value::Float(self.float()? as f32)
                } else {
                    Value::Graph(self.graph()?)
                }
            }
            _ => match self.literal()? {
                Literal::Int(i) => Value::Int(i),
                Literal::Float(f) => Value::Float(f as f32),
                Literal::Str(s) => Value::Str(s),
            },
        };
        let got = v.kind();
        match (expected, v) {
            (None, v) => Ok(v),
            (Some(AttributeType::Float), Value::Int(i)) => Ok(Value::Float(i as f32)),
            (Some(e), v) if Some(e) == got => Ok(v),
            (Some(e), _) => self.error(format!(
                "the value does not match the declared attribute type {}",
                e.as_str_name()
            )),
        }
    }

    fn function(&mut self) -> Result<proto::FunctionProto> {
        let mut f = proto::FunctionProto::default();
        if self.matches(b'<') {
            loop {
                let key = self.identifier()?;
                self.expect(b':')?;
                match key.as_str() {
                    "opset_import" => f.opset_import = self.opsets()?,
                    "doc_string" => f.doc_string = Some(self.str_value()?),
                    "domain" => f.domain = Some(self.str_value()?),
                    "overload" => f.overload = Some(self.str_value()?),
                    other => return self.error(format!("unknown function field '{other}'")),
                }
                if !self.matches(b',') {
                    break;
                }
            }
            self.expect(b'>')?;
        }
        f.name = Some(self.quotable()?);
        if self.matches(b'<') {
            loop {
                let id = self.quotable()?;
                if matches!(self.peek(), Some(b':' | b'=')) {
                    f.attribute_proto.push(self.attribute(id)?);
                } else {
                    f.attribute.push(id);
                }
                if !self.matches(b',') {
                    break;
                }
            }
            self.expect(b'>')?;
        }
        f.input = self.function_io(&mut f.value_info)?;
        self.expect(b'=')?;
        self.expect(b'>')?;
        f.output = self.function_io(&mut f.value_info)?;
        if self.matches(b'<') && !self.matches(b'>') {
            loop {
                f.value_info.push(self.value_info()?);
                if !self.matches(b',') {
                    break;
                }
            }
            self.expect(b'>')?;
        }
        f.node = self.nodes()?;
        Ok(f)
    }

    /// `(a, float[2] b)`: names, with the typed ones also added to `value_info`.
    fn function_io(&mut self, value_info: &mut Vec<proto::ValueInfoProto>) -> Result<Vec<String>> {
        let mut names = Vec::new();
        self.expect(b'(')?;
        if self.matches(b')') {
            return Ok(names);
        }
        loop {
            let vi = self.value_info()?;
            names.push(vi.name.clone().unwrap_or_default());
            if vi.r#type.is_some() {
                value_info.push(vi);
            }
            if !self.matches(b',') {
                break;
            }
        }
        self.expect(b')')?;
        Ok(names)
    }
}

enum Value {
    Int(i64),
    Float(f32),
    Str(String),
    Tensor(proto::TensorProto),
    Graph(proto::GraphProto),
    Type(TypeProto),
    Ref(String),
}

impl Value {
    fn kind(&self) -> Option<AttributeType> {
        Some(match self {
            Value::Int(_) => AttributeType::Int,
            Value::Float(_) => AttributeType::Float,
            Value::Str(_) => AttributeType::String,
            Value::Tensor(_) => AttributeType::Tensor,
            Value::Graph(_) => AttributeType::Graph,
            Value::Type(_) => AttributeType::TypeProto,
            Value::Ref(_) => return None,
        })
    }
}

fn attribute_type(name: &str) -> Option<AttributeType> {
    use AttributeType as A;
    Some(match name {
        "float" => A::Float,
        "int" => A::Int,
        "string" => A::String,
        "tensor" => A::Tensor,
        "graph" => A::Graph,
        "sparse_tensor" => A::SparseTensor,
        "type_proto" => A::TypeProto,
        "floats" => A::Floats,
        "ints" => A::Ints,
        "strings" => A::Strings,
        "tensors" => A::Tensors,
        "graphs" => A::Graphs,
        "sparse_tensors" => A::SparseTensors,
        "type_protos" => A::TypeProtos,
        _ => return None,
    })
}

fn singleton(t: AttributeType) -> AttributeType {
    use AttributeType as A;
    match t {
        A::Floats => A::Float,
        A::Ints => A::Int,
        A::Strings => A::String,
        A::Tensors => A::Tensor,
        A::Graphs => A::Graph,
        A::SparseTensors => A::SparseTensor,
        A::TypeProtos => A::TypeProto,
        other => other,
    }
}
