//! The signer against AWS's published SigV4 test suite (`aws-sig-v4-test-suite`: credentials
//! `AKIDEXAMPLE`, region `us-east-1`, service `service`, 2015-08-30T12:36:00Z), and against the
//! mock upstream's independent check.

use std::time::{Duration, SystemTime};

use super::*;
use crate::mock::sigv4::{Refused, Signed, verify};

const ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const TOKEN: &str = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
const SCOPE: &str = "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";

fn key(token: Option<&str>) -> AwsKey {
    AwsKey { access_key_id: ID.to_owned(), secret: Secret::new(SECRET), session_token: token.map(Secret::new) }
}

fn suite_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160)
}

/// A suite request signed by tier1's signer.
fn signed(method: &str, content_type: Option<&str>, body: &str, token: Option<&str>) -> Request<Bytes> {
    let mut b = Request::builder().method(method).uri("https://example.amazonaws.com/");
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    let mut req = b.body(Bytes::from(body.to_owned())).unwrap();
    sign_request(&mut req, &key(token), ("us-east-1", "service"), suite_time()).unwrap();
    req
}

fn authorization(req: &Request<Bytes>) -> &str {
    req.headers()[header::AUTHORIZATION].to_str().unwrap()
}

#[test]
fn get_vanilla() {
    let req = signed("GET", None, "", None);
    assert_eq!(
        authorization(&req),
        format!("AWS4-HMAC-SHA256 {SCOPE}, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
    );
    assert_eq!(req.headers()["x-amz-date"], "20150830T123600Z");
    assert!(req.headers()[header::AUTHORIZATION].is_sensitive(), "never logged");
}

#[test]
fn post_vanilla() {
    let req = signed("POST", None, "", None);
    assert_eq!(
        authorization(&req),
        format!("AWS4-HMAC-SHA256 {SCOPE}, SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b")
    );
}

#[test]
fn post_x_www_form_urlencoded() {
    let req = signed("POST", Some("application/x-www-form-urlencoded"), "Param1=value1", None);
    assert_eq!(
        authorization(&req),
        format!("AWS4-HMAC-SHA256 {SCOPE}, SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a")
    );
}

#[test]
fn get_vanilla_with_session_token() {
    let req = signed("GET", None, "", Some(TOKEN));
    assert_eq!(
        authorization(&req),
        format!("AWS4-HMAC-SHA256 {SCOPE}, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8")
    );
    assert_eq!(req.headers()["x-amz-security-token"], TOKEN);
    assert!(req.headers()["x-amz-security-token"].is_sensitive());
}

/// The mock's view of a request as the upstream client sends it (with its `host`).
fn check(req: &Request<Bytes>, service: &str, secret: &str) -> Result<String, Refused> {
    let mut headers = req.headers().clone();
    let host = host_of(req.uri()).unwrap();
    headers.insert(header::HOST, host.parse().unwrap());
    let signed = Signed {
        method: req.method().as_str(),
        path: req.uri().path(),
        query: req.uri().query().unwrap_or_default(),
        headers: &headers,
        body: req.body(),
    };
    verify(&signed, ("us-east-1", service), |id| (id == ID).then_some(secret))
}

#[test]
fn the_mocks_independent_check_agrees_with_the_suite_and_the_signer() {
    // The suite's requests, as the signer signed them (their signatures pinned above).
    for req in [
        signed("GET", None, "", None),
        signed("POST", None, "", None),
        signed("POST", Some("application/x-www-form-urlencoded"), "Param1=value1", None),
        signed("GET", None, "", Some(TOKEN)),
    ] {
        assert_eq!(check(&req, "service", SECRET), Ok(ID.to_owned()));
        assert_eq!(check(&req, "service", "another secret"), Err(Refused::Mismatch));
        assert!(matches!(check(&req, "bedrock", SECRET), Err(Refused::Scope(_))));
    }
    // A Converse call: a model id with `:` and `/` in the path, a JSON body, a port.
    let uri = "http://127.0.0.1:8123/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.anthropic.claude-v1%3A0/converse-stream";
    let mut req = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Bytes::from_static(br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#))
        .unwrap();
    sign_request(&mut req, &key(Some(TOKEN)), ("us-east-1", SERVICE), SystemTime::now()).unwrap();
    assert_eq!(check(&req, SERVICE, SECRET), Ok(ID.to_owned()));
    // Any change after signing is caught: the body, the path.
    let mut tampered = req.clone();
    *tampered.body_mut() = Bytes::from_static(b"{}");
    assert_eq!(check(&tampered, SERVICE, SECRET), Err(Refused::Mismatch));
    let mut moved = req.clone();
    *moved.uri_mut() = uri.replace("converse-stream", "converse").parse().unwrap();
    assert_eq!(check(&moved, SERVICE, SECRET), Err(Refused::Mismatch));
    let mut unsigned = req;
    unsigned.headers_mut().remove(header::AUTHORIZATION);
    assert_eq!(check(&unsigned, SERVICE, SECRET), Err(Refused::Malformed));
}
