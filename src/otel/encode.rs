//! OTLP/HTTP protobuf, written by hand for the few fields tier1 sends: an
//! `ExportTraceServiceRequest` of one `ResourceSpans` (the resource encoded once, at start) of
//! one `ScopeSpans` (scope `tier1`) holding the batch's [`Record`]s. Field numbers are those of
//! opentelemetry-proto's `trace.proto`, `common.proto` and `resource.proto` (v1); the tests
//! decode the output with prost and the maintained `opentelemetry-proto` types, every field.
//!
//! A record's attributes are encoded already ([`super::record`]); a batch is sized first (every
//! length is known before its message), then written in one pass into one buffer of that size.

use super::pb::{self, I32, I64, VARINT, field_len};
use super::record::Record;

/// `r`'s span name: its word, then a space and its string, if any.
fn name_len(r: &Record) -> usize {
    r.name.0.len() + r.name.1.map_or(0, |t| 1 + t.len())
}

/// The length of `r` as a `Span` message (without its tag and length).
fn span_len(r: &Record) -> usize {
    // trace_id, span_id, kind, start, end, flags (a two-byte tag and a fixed32).
    let fixed = 18 + 10 + 2 + 9 + 9 + 6;
    let state = r.state.as_ref().map_or(0, |s| field_len(s.len()));
    let parent = if r.parent.is_some() { 10 } else { 0 };
    let status = r.error.map_or(0, |m| field_len(field_len(m.len()) + 2));
    fixed + state + parent + field_len(name_len(r)) + r.attrs().len() + status
}

/// `r` as a `Span` message (without its tag and length), into `b` (room reserved). The fields
/// of fixed size go in copies of fixed size.
fn span(b: &mut Vec<u8>, r: &Record) {
    // trace_id (1) and span_id (2), 16 and 8 bytes.
    let mut ids = [0u8; 28];
    ids[..2].copy_from_slice(&[0x0a, 16]);
    ids[2..18].copy_from_slice(&r.trace_id);
    ids[18..20].copy_from_slice(&[0x12, 8]);
    ids[20..].copy_from_slice(&r.span_id);
    b.extend_from_slice(&ids);
    if let Some(state) = &r.state {
        pb::bytes(b, 3, state.as_bytes());
    }
    if let Some((parent, _)) = &r.parent {
        let mut field = [0x22, 8, 0, 0, 0, 0, 0, 0, 0, 0];
        field[2..].copy_from_slice(parent);
        b.extend_from_slice(&field);
    }
    pb::len(b, 5, name_len(r));
    b.extend_from_slice(r.name.0.as_bytes());
    if let Some(t) = r.name.1 {
        b.push(b' ');
        b.extend_from_slice(r.text(t));
    }
    // kind (6), a varint of one byte; start (7) and end (8), fixed64s.
    let mut times = [0u8; 20];
    times[..3].copy_from_slice(&[(6 << 3) | VARINT as u8, r.kind as u8, (7 << 3) | I64 as u8]);
    times[3..11].copy_from_slice(&r.start.to_le_bytes());
    times[11] = (8 << 3) | I64 as u8;
    times[12..].copy_from_slice(&r.end.to_le_bytes());
    b.extend_from_slice(&times);
    b.extend_from_slice(r.attrs());
    if let Some(message) = r.error {
        // Status: message (2), code (3) = STATUS_CODE_ERROR.
        pb::len(b, 15, field_len(message.len()) + 2);
        pb::bytes(b, 2, message.as_bytes());
        pb::tag(b, 3, VARINT);
        pb::varint(b, 2);
    }
    // Flags: the W3C sampled bit, and whether the parent is remote (SpanFlags' masks).
    let remote = if r.parent.is_some_and(|(_, remote)| remote) { 0x200 } else { 0 };
    pb::tag(b, 16, I32);
    b.extend_from_slice(&(0x101u32 | remote).to_le_bytes());
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
        for (key, value) in [("service.name", service_name), ("service.version", service_version)] {
            pb::key_value(&mut attrs, 1, key, field_len(value.len()));
            pb::bytes(&mut attrs, 1, value.as_bytes());
        }
        let mut resource = Vec::with_capacity(attrs.len() + 4);
        pb::bytes(&mut resource, 1, &attrs);
        let mut scope = Vec::new();
        pb::len(&mut scope, 1, field_len("tier1".len()));
        pb::bytes(&mut scope, 1, b"tier1");
        Self { resource, scope }
    }
}

/// An `ExportTraceServiceRequest` of `records`: sized, then written once into a buffer of
/// that size.
pub(super) fn request(head: &Head, records: &[Record]) -> Vec<u8> {
    let lens: Vec<usize> = records.iter().map(span_len).collect();
    let spans: usize = lens.iter().map(|&n| field_len(n)).sum();
    let scope_spans = head.scope.len() + spans;
    let resource_spans = head.resource.len() + field_len(scope_spans);
    let total = field_len(resource_spans);
    let mut out = Vec::with_capacity(total);
    pb::len(&mut out, 1, resource_spans);
    out.extend_from_slice(&head.resource);
    pb::len(&mut out, 2, scope_spans);
    out.extend_from_slice(&head.scope);
    for (r, n) in records.iter().zip(lens) {
        pb::len(&mut out, 2, n);
        span(&mut out, r);
    }
    debug_assert_eq!(out.len(), total, "a batch's size is its lengths' sum");
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
        let mut r = Record::start(Kind::Server, ([0xab; 16], [0xcd; 8]), "chat", Vec::new());
        r.parent = Some(([0x01; 8], true));
        r.state = Some(http::HeaderValue::from_static("vendor=abc"));
        r.set("gen_ai.operation.name", Val::Static("chat"));
        let model = r.set_text("gen_ai.request.model", "gpt-4o-mini");
        r.name.1 = Some(model);
        r.set_text("tier1.route", &"é".repeat(200));
        r.set("small", Val::Int(7));
        r.set("negative", Val::Int(-3));
        r.set("big", Val::Int(i64::MAX));
        r.set("tier1.stream", Val::Bool(true));
        r.set("no", Val::Bool(false));
        r.set("tier1.time_to_first_token", Val::F64(0.125));
        r.set_list("gen_ai.response.finish_reasons", &["stop", "length"]);
        r.set("empty", Val::Static(""));
        r.error = Some("broken");
        r.end = r.start + 1_500_000;
        r
    }

    /// A client span under a local parent, no state, no error, a long name.
    fn client() -> Record {
        let mut r = Record::start(Kind::Client, ([0x11; 16], [0x22; 8]), "embeddings", Vec::new());
        r.parent = Some(([0xcd; 8], false));
        let model = r.set_text("gen_ai.request.model", &"m".repeat(300));
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
            attributes: vec![kv("gen_ai.request.model", s(&"m".repeat(128))), kv("tier1.attempt", int(2))],
            ..Span::default()
        };
        assert_eq!(ss.spans[1], expected);
    }

    #[test]
    fn a_root_span_has_no_parent_and_a_big_batch_decodes_whole() {
        let mut root = Record::start(Kind::Server, ([3; 16], [4; 8]), "models", Vec::new());
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
