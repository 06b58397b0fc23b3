//! The mock's Bedrock Converse answers: `converse` bodies, `converse-stream` answers in the AWS
//! event-stream framing (one message per event: `messageStart`, a `contentBlockDelta` per word,
//! `contentBlockStop`, `messageStop`, `metadata` with the usage), tool calls when the request
//! offers tools and holds no result yet, and errors in Bedrock's shape (`{"message"}` with the
//! exception named in `x-amzn-ErrorType`).

use std::collections::VecDeque;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use serde_json::{Value, json};

use super::{MockBody, json_response, tools::ARGUMENTS, words};
use crate::eventstream::{Message, Value as Header};

/// The tool to call: the first one offered in `toolConfig`, unless a `toolResult` came back.
pub fn to_call(body: &Value) -> Option<String> {
    let name = body.pointer("/toolConfig/tools/0/toolSpec/name")?.as_str()?;
    let answered = body.get("messages").and_then(Value::as_array).is_some_and(|m| {
        m.iter().any(|m| {
            m.get("content")
                .and_then(Value::as_array)
                .is_some_and(|blocks| blocks.iter().any(|b| b.get("toolResult").is_some()))
        })
    });
    (!answered).then(|| name.to_owned())
}

fn usage(reply: &str) -> Value {
    let output = words(reply).count();
    json!({"inputTokens": 9, "outputTokens": output, "totalTokens": 9 + output})
}

/// A `converse` answer: `reply` as text, or a call of `tool`.
pub fn converse_json(reply: &str, tool: Option<&str>, id: u64) -> Bytes {
    let (content, stop) = match tool {
        Some(t) => {
            let input: Value = serde_json::from_str(ARGUMENTS).unwrap_or(Value::Null);
            (
                json!([{"toolUse": {"toolUseId": format!("tooluse_mock_{id}"), "name": t, "input": input}}]),
                "tool_use",
            )
        }
        None => (json!([{"text": reply}]), "end_turn"),
    };
    let v = json!({"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
        "usage": usage(reply), "metrics": {"latencyMs": 1}});
    Bytes::from(v.to_string())
}

fn event(kind: &str, payload: Value) -> Bytes {
    let m = Message {
        headers: vec![
            (":event-type".into(), Header::String(kind.into())),
            (":content-type".into(), Header::String("application/json".into())),
            (":message-type".into(), Header::String("event".into())),
        ],
        payload: payload.to_string().into_bytes(),
    };
    Bytes::from(m.encode())
}

/// The event-stream messages of a `converse-stream` answer, one frame each.
pub fn converse_frames(reply: &str, tool: Option<&str>, id: u64) -> VecDeque<Bytes> {
    let mut frames = VecDeque::from([event("messageStart", json!({"role": "assistant"}))]);
    let stop = match tool {
        Some(t) => {
            let start = json!({"toolUse": {"toolUseId": format!("tooluse_mock_{id}"), "name": t}});
            frames.push_back(event("contentBlockStart", json!({"contentBlockIndex": 0, "start": start})));
            for piece in super::tools::PIECES {
                let delta = json!({"toolUse": {"input": piece}});
                frames.push_back(event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": delta})));
            }
            "tool_use"
        }
        None => {
            for w in words(reply) {
                let delta = json!({"contentBlockIndex": 0, "delta": {"text": w}});
                frames.push_back(event("contentBlockDelta", delta));
            }
            "end_turn"
        }
    };
    frames.push_back(event("contentBlockStop", json!({"contentBlockIndex": 0})));
    frames.push_back(event("messageStop", json!({"stopReason": stop})));
    frames.push_back(event("metadata", json!({"usage": usage(reply), "metrics": {"latencyMs": 1}})));
    frames
}

/// The exception Bedrock answers `status` with.
pub fn exception(status: u16) -> &'static str {
    match status {
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        400 => "ValidationException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        _ => "InternalServerException",
    }
}

/// An error answer in Bedrock's shape.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response<MockBody> {
    let mut resp = json_response(status, Bytes::from(json!({"message": message}).to_string()));
    let kind = format!("{}:http://internal.amazon.com/coral/com.amazon.bedrock/", exception(status.as_u16()));
    if let Ok(v) = HeaderValue::from_str(&kind) {
        resp.headers_mut().insert("x-amzn-errortype", v);
    }
    resp
}

/// STS's answer to `AssumeRoleWithWebIdentity` (`form`): the credentials of `sts` when its
/// token is the one sent, else 400 `InvalidIdentityToken`.
pub(crate) fn sts_answer(sts: Option<&(String, String, String)>, form: &[u8]) -> Response<MockBody> {
    let form = String::from_utf8_lossy(form);
    let token = form
        .split('&')
        .find_map(|p| p.strip_prefix("WebIdentityToken="))
        .map(super::sigv4::percent_decode)
        .unwrap_or_default();
    let mut resp = match sts {
        Some((want, id, secret)) if *want == token => {
            let expires = humantime::format_rfc3339_seconds(
                std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
            );
            let xml = format!(
                "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
                 <AccessKeyId>{id}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>\
                 <SessionToken>mock-session-token</SessionToken><Expiration>{expires}</Expiration>\
                 </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
            );
            json_response(StatusCode::OK, Bytes::from(xml))
        }
        _ => json_response(
            StatusCode::BAD_REQUEST,
            Bytes::from_static(
                b"<ErrorResponse><Error><Code>InvalidIdentityToken</Code></Error></ErrorResponse>",
            ),
        ),
    };
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    resp
}
