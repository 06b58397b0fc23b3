use std::sync::Arc;
use std::time::Duration;

use http::{StatusCode, header};
use http_body_util::BodyExt;

use super::*;
use crate::error::AttemptRecord;

fn record(class: Class) -> AttemptRecord {
    AttemptRecord {
        provider: Arc::from("p"),
        model: "m".into(),
        key: Some(Arc::from("k1")),
        class,
        status: None,
    }
}

fn exhausted(classes: &[Class], retry_after: Option<Duration>) -> ProxyError {
    let e = Exhausted {
        attempts: classes.iter().map(|c| record(*c)).collect(),
        started: classes.len() as u32,
        retry_after,
        resting: false,
    };
    ProxyError::Exhausted(Box::new(e))
}

fn body(resp: Response<Body>) -> serde_json::Value {
    let bytes = futures_lite(resp.into_body());
    serde_json::from_slice(&bytes).expect("a JSON body")
}

/// Collects a full body without a runtime (`full` bodies are ready at once).
fn futures_lite(body: Body) -> Bytes {
    let mut fut = std::pin::pin!(body.collect());
    let waker = std::task::Waker::noop();
    match fut.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
        std::task::Poll::Ready(Ok(c)) => c.to_bytes(),
        _ => panic!("a full body is ready at once"),
    }
}

use std::future::Future as _;

#[test]
fn exhausted_maps_to_the_documented_status() {
    let r = error(
        &exhausted(&[Class::RateLimited, Class::Overloaded], Some(Duration::from_millis(2100))),
        Dialect::OpenAi,
    );
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()[header::RETRY_AFTER], "3");
    let status = |classes: &[Class]| error(&exhausted(classes, None), Dialect::OpenAi).status();
    assert_eq!(status(&[Class::Timeout, Class::Timeout]), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(status(&[Class::Timeout, Class::Server]), StatusCode::BAD_GATEWAY);
    assert_eq!(status(&[Class::Auth]), StatusCode::BAD_GATEWAY);
    let none = error(&exhausted(&[], Some(Duration::from_secs(4))), Dialect::OpenAi);
    assert_eq!(none.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(none.headers()[header::RETRY_AFTER], "4");
    // Issue 20: the front rests the sidecar for every provider on a 5xx. A rate limit among
    // other failures, or targets skipped because they rest (keys or model cooling, a full
    // limit), is a 429 to come back to, not tier1 failing.
    assert_eq!(status(&[Class::RateLimited, Class::Server]), StatusCode::TOO_MANY_REQUESTS);
    let resting = |classes: &[Class]| {
        let ProxyError::Exhausted(mut e) = exhausted(classes, Some(Duration::from_secs(2))) else {
            unreachable!()
        };
        e.resting = true;
        error(&ProxyError::Exhausted(e), Dialect::OpenAi)
    };
    let r = resting(&[]);
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    assert_eq!(body(r)["error"]["code"], "rate_limited");
    assert_eq!(resting(&[Class::Server]).status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(status(&[Class::ContextLength]), StatusCode::BAD_REQUEST);
}

#[test]
fn an_exhausted_openai_body_lists_the_attempts_and_names_the_dominant_class() {
    let r = error(&exhausted(&[Class::Timeout, Class::Timeout, Class::Server], None), Dialect::OpenAi);
    let v = body(r);
    assert_eq!(v["error"]["code"], "upstream_timeout");
    assert_eq!(v["error"]["type"], "upstream_error");
    assert_eq!(v["error"]["attempts"].as_array().map(Vec::len), Some(3));
    assert_eq!(v["error"]["attempts"][0]["key"], "k1");
    assert_eq!(v["error"]["attempts"][0]["classification"], "timeout");
}

#[test]
fn anthropic_clients_get_anthropics_shape_with_the_same_status_and_headers() {
    let cases = [
        (ProxyError::Unauthorized, "authentication_error"),
        (ProxyError::UnknownModel("x".into()), "not_found_error"),
        (ProxyError::PayloadTooLarge(10), "request_too_large"),
        (ProxyError::Busy(Duration::from_secs(1)), "overloaded_error"),
        (exhausted(&[Class::Server], None), "api_error"),
        (exhausted(&[Class::RateLimited], Some(Duration::from_secs(2))), "rate_limit_error"),
    ];
    for (e, kind) in cases {
        let openai = error(&e, Dialect::OpenAi);
        let anthropic = error(&e, Dialect::Anthropic);
        assert_eq!(openai.status(), anthropic.status(), "{e}");
        assert_eq!(openai.headers(), anthropic.headers(), "{e}");
        let v = body(anthropic);
        assert_eq!(v["type"], "error", "{e}");
        assert_eq!(v["error"]["type"], kind, "{e}");
        assert_eq!(v["error"]["message"], e.to_string(), "{e}");
        assert!(v["error"].get("attempts").is_none(), "{e}");
    }
}

#[test]
fn error_headers_say_how_to_authenticate_what_is_allowed_and_when_to_come_back() {
    let r = error(&ProxyError::Unauthorized, Dialect::OpenAi);
    assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
    let r = error(&ProxyError::MethodNotAllowed("GET, HEAD"), Dialect::OpenAi);
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
    let r = error(&ProxyError::PayloadTooLarge(10), Dialect::OpenAi);
    assert_eq!(r.headers()[header::CONNECTION], "close");
    let r = error(&ProxyError::Busy(Duration::from_secs(42)), Dialect::OpenAi);
    assert_eq!(
        (r.status(), &r.headers()[header::RETRY_AFTER]),
        (StatusCode::SERVICE_UNAVAILABLE, &"42".parse().unwrap())
    );
    let rejection = crate::ratelimit::Rejection {
        limit: "per-key".into(),
        retry_after: Duration::from_millis(1500),
        unavailable: false,
        resets_at_ms: None,
    };
    let r = error(&ProxyError::Limited(Box::new(rejection)), Dialect::OpenAi);
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    assert_eq!(r.headers()["x-tier1-limit"], "per-key");
    assert_eq!(body(r)["error"]["code"], "rate_limit_exceeded");
    // A 502 is tier1's to give only for upstream failures; it never says when to come back.
    let r = error(&exhausted(&[Class::Server], Some(Duration::from_secs(9))), Dialect::OpenAi);
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(r.headers().get(header::RETRY_AFTER).is_none());
}

#[test]
fn a_budget_refusal_says_budget_exceeded_and_when_it_resets_in_every_format() {
    let rejection = crate::ratelimit::Rejection {
        limit: "daily".into(),
        retry_after: Duration::from_millis(3_600_500),
        unavailable: false,
        resets_at_ms: Some(1_767_312_000_000),
    };
    let e = ProxyError::Limited(Box::new(rejection));
    for dialect in [Dialect::OpenAi, Dialect::Responses, Dialect::Anthropic] {
        let r = error(&e, dialect);
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3601");
        assert_eq!(r.headers()["x-tier1-budget"], "daily");
        assert!(r.headers().get("x-tier1-limit").is_none());
        let v = body(r);
        assert_eq!(v["error"]["resets_at"], 1_767_312_000u64, "{dialect:?}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("budget 'daily' exceeded"), "{message}");
        if dialect == Dialect::Anthropic {
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], "rate_limit_error");
        } else {
            assert_eq!(v["error"]["code"], "budget_exceeded");
            assert_eq!(v["error"]["type"], "rate_limit_error");
        }
    }
}

#[test]
fn an_untranslatable_request_is_the_callers_400_in_either_format() {
    let e = ProxyError::Untranslatable { provider: Arc::from("claude"), why: "n > 1".into(), param: None };
    let r = error(&e, Dialect::OpenAi);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        futures_lite(r.into_body()),
        Bytes::from_static(
            br#"{"error":{"code":"untranslatable_request","message":"cannot translate the request for claude: n > 1","param":null,"type":"invalid_request_error"}}"#
        )
    );
    let r = error(&e, Dialect::Anthropic);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v = body(r);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["message"], "cannot translate the request for claude: n > 1");
}

#[test]
fn a_broken_stream_ends_with_an_error_event_in_the_clients_format() {
    let openai = String::from_utf8(stream_error(RelayError::Timeout, Dialect::OpenAi)).unwrap();
    assert!(openai.starts_with("data: {") && openai.ends_with("}\n\n"), "{openai}");
    let v: serde_json::Value = serde_json::from_str(openai["data: ".len()..].trim()).unwrap();
    assert_eq!(v["error"]["code"], "upstream_timeout");
    let anthropic = String::from_utf8(stream_error(RelayError::EventTooLarge, Dialect::Anthropic)).unwrap();
    assert!(anthropic.starts_with("event: error\ndata: {"), "{anthropic}");
    let v: serde_json::Value =
        serde_json::from_str(anthropic["event: error\ndata: ".len()..].trim()).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "api_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("larger than the configured limit"));
    // Never `[DONE]`: that always means a finished answer.
    for err in [RelayError::Upstream, RelayError::Timeout, RelayError::EventTooLarge] {
        for d in [Dialect::OpenAi, Dialect::Anthropic] {
            assert!(!String::from_utf8(stream_error(err, d)).unwrap().contains("[DONE]"));
        }
    }
}

#[test]
fn the_messages_endpoint_speaks_anthropic() {
    assert_eq!(Dialect::of(Operation::Messages), Dialect::Anthropic);
    assert_eq!(Dialect::of(Operation::Chat), Dialect::OpenAi);
    assert_eq!(Dialect::of(Operation::Embeddings), Dialect::OpenAi);
}

/// The status a code stands for (the 503s split by cause; 4xx codes that cover a few).
fn statuses_of(code: Code) -> &'static [u16] {
    match code {
        Code::Ok => &[200],
        Code::RateLimited => &[429],
        Code::Overloaded | Code::NoTarget => &[503],
        Code::Timeout => &[504],
        Code::UpstreamError => &[502],
        Code::Unauthorized => &[401, 403],
        Code::Invalid => &[400, 405, 408, 409, 422],
        Code::NotFound => &[404],
        Code::TooLarge => &[413],
    }
}

/// Each error's `code` label is the one its answer's status stands for, so a ratio of codes is
/// a ratio of what clients saw: the 429s apart from the 400s, and 502, 503 and 504 apart (what
/// `status_class` lumped together). Every variant of `ProxyError` is here.
#[test]
fn every_error_has_the_code_of_the_status_it_answers_with() {
    let limited = |unavailable, resets_at_ms| crate::ratelimit::Rejection {
        limit: Arc::from("l"),
        retry_after: Duration::from_secs(1),
        unavailable,
        resets_at_ms,
    };
    let mut resting = Exhausted { attempts: vec![], started: 0, retry_after: None, resting: true };
    let cases: Vec<(ProxyError, Code)> = vec![
        (ProxyError::BadRequest(crate::json::ScanError::NotJson), Code::Invalid),
        (ProxyError::Unauthorized, Code::Unauthorized),
        (ProxyError::Forbidden, Code::Unauthorized),
        (ProxyError::UnknownModel("m".into()), Code::NotFound),
        (ProxyError::NoSuchPath, Code::NotFound),
        (ProxyError::MethodNotAllowed("POST"), Code::Invalid),
        (ProxyError::PayloadTooLarge(10), Code::TooLarge),
        (ProxyError::BodyTimeout, Code::Invalid),
        (ProxyError::BodyRead, Code::Invalid),
        (ProxyError::Busy(Duration::from_secs(1)), Code::Overloaded),
        (ProxyError::Limited(Box::new(limited(false, None))), Code::RateLimited),
        (ProxyError::Limited(Box::new(limited(false, Some(5000)))), Code::RateLimited),
        (ProxyError::Limited(Box::new(limited(true, None))), Code::Overloaded),
        (ProxyError::WrongFormat { model: "m".into(), served_by: "x".into() }, Code::Invalid),
        (ProxyError::NotEligible { model: "m".into(), provider: Arc::from("p") }, Code::NotFound),
        (
            ProxyError::Untranslatable { provider: Arc::from("p"), why: "w".into(), param: None },
            Code::Invalid,
        ),
        (exhausted(&[Class::RateLimited], None), Code::RateLimited),
        // An overloaded upstream is a 429 to wait out, not tier1's 503.
        (exhausted(&[Class::Overloaded, Class::Server], None), Code::RateLimited),
        (ProxyError::Exhausted(Box::new(resting.clone())), Code::RateLimited),
        (exhausted(&[], None), Code::NoTarget),
        (exhausted(&[Class::Timeout, Class::FirstToken], None), Code::Timeout),
        (exhausted(&[Class::Timeout, Class::Server], None), Code::UpstreamError),
        (exhausted(&[Class::Connect], None), Code::UpstreamError),
        (exhausted(&[Class::Auth], None), Code::UpstreamError),
        (exhausted(&[Class::ContextLength, Class::ContentFilter], None), Code::Invalid),
    ];
    for (e, want) in &cases {
        let status = error(e, Dialect::OpenAi).status().as_u16();
        assert_eq!(code(e), *want, "{e:?} ({status})");
        assert!(statuses_of(*want).contains(&status), "{e:?}: {status} is not {}", want.as_str());
    }
    // Every code but ok is some error's (ok is every success's, the handler's default).
    for c in Code::ALL.into_iter().filter(|c| *c != Code::Ok) {
        assert!(cases.iter().any(|(_, w)| *w == c), "{} is no error's code", c.as_str());
    }
    resting.resting = false;
    assert_eq!(code(&ProxyError::Exhausted(Box::new(resting))), Code::NoTarget);
}

/// A provider's refusal relayed to the client keeps the provider's status: its code is that
/// status's.
#[test]
fn a_relayed_refusal_has_the_code_of_its_status() {
    for (status, want) in
        [(400, Code::Invalid), (404, Code::NotFound), (413, Code::TooLarge), (422, Code::Invalid)]
    {
        let c = Code::of_refusal(StatusCode::from_u16(status).unwrap());
        assert_eq!(c, want, "{status}");
        assert!(statuses_of(c).contains(&status));
    }
}
