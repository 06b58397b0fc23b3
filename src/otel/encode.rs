//! OTLP/HTTP protobuf, written by hand for the few fields tier1 sends: an
//! `ExportTraceServiceRequest` of one `ResourceSpans` (the resource encoded once, at start) of
//! one `ScopeSpans` (scope `tier1`) holding the batch's [`Record`]s. Field numbers are those of
//! opentelemetry-proto's `trace.proto`, `common.proto` and `resource.proto` (v1); the tests
//! decode the output with prost and the maintained `opentelemetry-proto` types, every field.

use super::record::{Record, Val};

/// A protobuf writer over a byte buffer.
struct Pb<'a>(&'a mut Vec<u8>);

/// Wire types.
const VARINT: u32 = 0;
const I64: u32 = 1;
const LEN: u32 = 2;
const I32: u32 = 5;

/// The length of `n` as a varint.
fn varint_len(n: u64) -> usize {
    // One byte per 7 bits, at least one.
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

/// The length of a length-delimited field of `n` bytes with a one-byte tag (field < 16).
fn field_len(n: usize) -> usize {
    1 + varint_len(n as u64) + n
}

impl Pb<'_> {
    fn varint(&mut self, mut n: u64) {
        while n >= 0x80 {
            #[allow(clippy::cast_possible_truncation)]
            self.0.push((n as u8) | 0x80);
            n >>= 7;
        }
        #[allow(clippy::cast_possible_truncation)]
        self.0.push(n as u8);
    }

    fn tag(&mut self, field: u32, wire: u32) {
        self.varint(u64::from((field << 3) | wire));
    }

    fn len(&mut self, field: u32, n: usize) {
        self.tag(field, LEN);
        self.varint(n as u64);
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.len(field, b.len());
        self.0.extend_from_slice(b);
    }

    fn fixed64(&mut self, field: u32, n: u64) {
        self.tag(field, I64);
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    /// A `KeyValue` with a string `AnyValue`, as field `field`.
    fn string_attr(&mut self, field: u32, key: &str, value: &str) {
        let any = field_len(value.len());
        self.len(field, field_len(key.len()) + field_len(any));
        self.bytes(1, key.as_bytes());
        self.len(2, any);
        self.bytes(1, value.as_bytes());
    }
}

/// The encoded `AnyValue` of `v`'s length.
fn any_len(r: &Record, v: &Val) -> usize {
    match v {
        Val::Static(s) => field_len(s.len()),
        Val::Text(t) => field_len(r.str(*t).len()),
        #[allow(clippy::cast_sign_loss)]
        Val::Int(n) => 1 + varint_len(*n as u64),
        Val::F64(_) => 9,
        Val::Bool(_) => 2,
        Val::List(items) => field_len(list_len(items)),
    }
}

/// The encoded `ArrayValue` of `items`' length.
fn list_len(items: &[String]) -> usize {
    items.iter().map(|s| field_len(field_len(s.len()))).sum()
}

/// An attribute (`KeyValue`) of `r`, as field 9 of its span.
fn attr(pb: &mut Pb<'_>, r: &Record, key: &str, v: &Val) {
    let any = any_len(r, v);
    pb.len(9, field_len(key.len()) + field_len(any));
    pb.bytes(1, key.as_bytes());
    pb.len(2, any);
    match v {
        Val::Static(s) => pb.bytes(1, s.as_bytes()),
        Val::Text(t) => pb.bytes(1, r.str(*t).as_bytes()),
        Val::Bool(b) => {
            pb.tag(2, VARINT);
            pb.varint(u64::from(*b));
        }
        Val::Int(n) => {
            pb.tag(3, VARINT);
            #[allow(clippy::cast_sign_loss)]
            pb.varint(*n as u64);
        }
        Val::F64(x) => pb.fixed64(4, x.to_bits()),
        Val::List(items) => {
            pb.len(5, list_len(items));
            for s in items {
                pb.len(1, field_len(s.len()));
                pb.bytes(1, s.as_bytes());
            }
        }
    }
}

/// `r` as a `Span` message (without its tag and length).
fn span(pb: &mut Pb<'_>, r: &Record) {
    pb.bytes(1, &r.trace_id);
    pb.bytes(2, &r.span_id);
    if let Some(state) = &r.state {
        pb.bytes(3, state.as_bytes());
    }
    if let Some((parent, _)) = &r.parent {
        pb.bytes(4, parent);
    }
    let model = r.name.1.map(|t| r.str(t));
    match model {
        Some(m) => {
            pb.len(5, r.name.0.len() + 1 + m.len());
            pb.0.extend_from_slice(r.name.0.as_bytes());
            pb.0.push(b' ');
            pb.0.extend_from_slice(m.as_bytes());
        }
        None => pb.bytes(5, r.name.0.as_bytes()),
    }
    pb.tag(6, VARINT);
    pb.varint(r.kind as u64);
    pb.fixed64(7, r.start);
    pb.fixed64(8, r.end);
    for (key, v) in &r.attrs {
        attr(pb, r, key, v);
    }
    if let Some(message) = r.error {
        // Status: message (2), code (3) = STATUS_CODE_ERROR.
        pb.len(15, field_len(message.len()) + 2);
        pb.bytes(2, message.as_bytes());
        pb.tag(3, VARINT);
        pb.varint(2);
    }
    // Flags: the W3C sampled bit, and whether the parent is remote (SpanFlags' masks).
    let remote = if r.parent.is_some_and(|(_, remote)| remote) { 0x200 } else { 0 };
    pb.tag(16, I32);
    pb.0.extend_from_slice(&(0x101u32 | remote).to_le_bytes());
}

/// What every batch starts with: the `Resource` (`service.name`, `service.version`), field 1
/// of `ResourceSpans`, and the scope (`InstrumentationScope` named `tier1`), field 1 of
/// `ScopeSpans`.
#[derive(Debug)]
pub(super) struct Head {
    resource: Vec<u8>,
    scope: Vec<u8>,
}

impl Head {
    pub(super) fn new(service_name: &str, service_version: &str) -> Self {
        let mut attrs = Vec::new();
        let mut pb = Pb(&mut attrs);
        pb.string_attr(1, "service.name", service_name);
        pb.string_attr(1, "service.version", service_version);
        let mut resource = Vec::with_capacity(attrs.len() + 4);
        Pb(&mut resource).bytes(1, &attrs);
        let mut scope = Vec::new();
        let name = field_len("tier1".len());
        let mut pb = Pb(&mut scope);
        pb.len(1, name);
        pb.bytes(1, b"tier1");
        Self { resource, scope }
    }
}

/// An `ExportTraceServiceRequest` of `records`, each span encoded once into `scratch` then
/// copied in (a message's length comes before it).
pub(super) fn request(head: &Head, records: &[Record]) -> Vec<u8> {
    let mut spans = Vec::with_capacity(records.len() * 512);
    let mut one = Vec::with_capacity(1024);
    for r in records {
        one.clear();
        span(&mut Pb(&mut one), r);
        Pb(&mut spans).bytes(2, &one);
    }
    let scope_spans = head.scope.len() + spans.len();
    let resource_spans = head.resource.len() + field_len(scope_spans);
    let mut out = Vec::with_capacity(field_len(resource_spans));
    let mut pb = Pb(&mut out);
    pb.len(1, resource_spans);
    pb.0.extend_from_slice(&head.resource);
    pb.len(2, scope_spans);
    pb.0.extend_from_slice(&head.scope);
    pb.0.extend_from_slice(&spans);
    out
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use opentelemetry_proto::tonic::trace::v1::{Span, status::StatusCode};
    use prost::Message as _;

    use super::super::record::{Kind, Record, Val};
    use super::*;

    fn s(v: &str) -> Option<AnyValue> {
        Some(AnyValue { value: Some(Value::StringValue(v.to_owned())) })
    }

    fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
        KeyValue { key: key.to_owned(), value, ..KeyValue::default() }
    }

    /// A server span with a remote parent, a tracestate, an error and every kind of value.
    fn server() -> Record {
        let mut r = Record::start(Kind::Server, ([0xab; 16], [0xcd; 8]), "chat", 8);
        r.parent = Some(([0x01; 8], true));
        r.state = Some(http::HeaderValue::from_static("vendor=abc"));
        let model = r.text("gpt-4o-mini");
        r.name.1 = Some(model);
        r.set("gen_ai.operation.name", Val::Static("chat"));
        r.set("gen_ai.request.model", Val::Text(model));
        r.set_text("tier1.route", &"é".repeat(200));
        r.set("small", Val::Int(7));
        r.set("negative", Val::Int(-3));
        r.set("big", Val::Int(i64::MAX));
        r.set("tier1.stream", Val::Bool(true));
        r.set("no", Val::Bool(false));
        r.set("tier1.time_to_first_token", Val::F64(0.125));
        r.set("gen_ai.response.finish_reasons", Val::List(vec!["stop".into(), "length".into()]));
        r.set("empty", Val::Static(""));
        r.error = Some("broken");
        r.end = r.start + 1_500_000;
        r
    }

    /// A client span under a local parent, no state, no error, a long name.
    fn client() -> Record {
        let mut r = Record::start(Kind::Client, ([0x11; 16], [0x22; 8]), "embeddings", 2);
        r.parent = Some(([0xcd; 8], false));
        let model = r.text(&"m".repeat(300));
        r.name.1 = Some(model);
        r.set("tier1.attempt", Val::Int(2));
        r.end = r.start + 10;
        r
    }

    fn decode(records: &[Record]) -> ExportTraceServiceRequest {
        let head = Head::new("tier1-test", "1.2.3");
        ExportTraceServiceRequest::decode(request(&head, records).as_slice()).unwrap()
    }

    #[test]
    fn varint_lengths_are_protobufs() {
        for n in [0, 1, 127, 128, 16_383, 16_384, u64::from(u32::MAX), u64::MAX >> 1, u64::MAX] {
            assert_eq!(varint_len(n), prost::encoding::encoded_len_varint(n), "{n}");
        }
    }

    #[test]
    fn a_batch_decodes_with_the_maintained_types_field_by_field() {
        let (a, b) = (server(), client());
        let export = decode(&[a.clone(), b.clone()]);
        assert_eq!(export.resource_spans.len(), 1);
        let rs = &export.resource_spans[0];
        let resource = rs.resource.as_ref().unwrap();
        assert_eq!(
            resource.attributes,
            vec![kv("service.name", s("tier1-test")), kv("service.version", s("1.2.3"))]
        );
        assert_eq!(resource.dropped_attributes_count, 0);
        assert_eq!(rs.scope_spans.len(), 1);
        let ss = &rs.scope_spans[0];
        let scope = ss.scope.as_ref().unwrap();
        assert_eq!((scope.name.as_str(), scope.version.as_str()), ("tier1", ""));
        assert!(scope.attributes.is_empty());
        assert_eq!(ss.spans.len(), 2);
        let int = |n| Some(AnyValue { value: Some(Value::IntValue(n)) });
        let boolean = |b| Some(AnyValue { value: Some(Value::BoolValue(b)) });
        let list = Some(AnyValue {
            value: Some(Value::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
                values: vec![s("stop").unwrap(), s("length").unwrap()],
            })),
        });
        let expected = Span {
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            trace_state: "vendor=abc".into(),
            parent_span_id: vec![0x01; 8],
            flags: 0x301,
            name: "chat gpt-4o-mini".into(),
            kind: 2,
            start_time_unix_nano: a.start,
            end_time_unix_nano: a.start + 1_500_000,
            attributes: vec![
                kv("gen_ai.operation.name", s("chat")),
                kv("gen_ai.request.model", s("gpt-4o-mini")),
                kv("tier1.route", s(&"é".repeat(64))),
                kv("small", int(7)),
                kv("negative", int(-3)),
                kv("big", int(i64::MAX)),
                kv("tier1.stream", boolean(true)),
                kv("no", boolean(false)),
                kv("tier1.time_to_first_token", Some(AnyValue { value: Some(Value::DoubleValue(0.125)) })),
                kv("gen_ai.response.finish_reasons", list),
                kv("empty", s("")),
            ],
            status: Some(opentelemetry_proto::tonic::trace::v1::Status {
                message: "broken".into(),
                code: StatusCode::Error as i32,
            }),
            ..Span::default()
        };
        assert_eq!(ss.spans[0], expected);
        let expected = Span {
            trace_id: vec![0x11; 16],
            span_id: vec![0x22; 8],
            parent_span_id: vec![0xcd; 8],
            flags: 0x101,
            name: format!("embeddings {}", "m".repeat(128)),
            kind: 3,
            start_time_unix_nano: b.start,
            end_time_unix_nano: b.start + 10,
            attributes: vec![kv("tier1.attempt", int(2))],
            ..Span::default()
        };
        assert_eq!(ss.spans[1], expected);
    }

    #[test]
    fn a_root_span_has_no_parent_and_a_big_batch_decodes_whole() {
        let mut root = Record::start(Kind::Server, ([3; 16], [4; 8]), "models", 0);
        root.end = root.start;
        let export = decode(&[root]);
        let span = &export.resource_spans[0].scope_spans[0].spans[0];
        assert!(span.parent_span_id.is_empty() && span.trace_state.is_empty() && span.status.is_none());
        assert_eq!((span.name.as_str(), span.flags, span.kind), ("models", 0x101, 2));
        // Lengths past one varint byte at every level.
        let many: Vec<Record> = (0..600).map(|_| server()).collect();
        let export = decode(&many);
        assert_eq!(export.resource_spans[0].scope_spans[0].spans.len(), 600);
        assert!(export.resource_spans[0].scope_spans[0].spans.iter().all(|s| s.attributes.len() == 11));
    }
}
