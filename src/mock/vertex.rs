//! The mock's Google Vertex AI: the publisher routes
//! (`/v1/projects/{p}/locations/{l}/publishers/{google|anthropic}/models/{m}:{method}`), which
//! take only a bearer access token the mock minted (and not expired) or was given, and an
//! Anthropic body only with `"anthropic_version": "vertex-2023-10-16"` and no `model`; an OAuth2
//! token endpoint (`POST /token`, the JWT-bearer grant) that checks the assertion's RS256
//! signature with the service account's public key, its issuer, scope, audience and times, and
//! counts what it mints; and a GCE metadata server's token route (`Metadata-Flavor: Google`).
//! The JWT check is written here from RFC 7515/7519, apart from tier1's signer.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::{MockBody, json_response};

/// The scope every assertion must ask for.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The body version a Claude request must carry.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";
/// The metadata server's token path.
pub const METADATA_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// What the mock's Google side accepts and answers.
#[derive(Debug, Clone, Default)]
pub struct GoogleMock {
    /// Access tokens the publisher routes accept besides the minted ones.
    pub tokens: HashSet<String>,
    /// Service accounts the token endpoint mints for: client email → public key (PKCS#1
    /// `RSAPublicKey` DER).
    pub accounts: HashMap<String, Vec<u8>>,
    /// `expires_in` of what it mints (0: 3600 s).
    pub lifetime: u64,
    /// Whether the metadata server's token route answers.
    pub metadata: bool,
}

/// The tokens minted so far, with their expiry.
#[derive(Debug, Default)]
pub struct Minted {
    tokens: Mutex<HashMap<String, SystemTime>>,
    count: AtomicU64,
}

impl Minted {
    /// Tokens minted so far (token endpoint and metadata server).
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    fn mint(&self, lifetime: u64) -> (String, u64) {
        let lifetime = if lifetime == 0 { 3600 } else { lifetime };
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!("ya29.mock-{n}");
        if let Ok(mut t) = self.tokens.lock() {
            t.insert(token.clone(), SystemTime::now() + Duration::from_secs(lifetime));
        }
        (token, lifetime)
    }

    /// Whether `token` was minted and is not expired.
    fn valid(&self, token: &str) -> bool {
        self.tokens.lock().ok().and_then(|t| t.get(token).copied()).is_some_and(|exp| exp > SystemTime::now())
    }
}

/// One Vertex AI publisher call, from its path.
#[derive(Debug, PartialEq, Eq)]
pub struct Route {
    /// `google` or `anthropic`.
    pub publisher: String,
    /// The model.
    pub model: String,
    /// The method after `:`.
    pub method: String,
}

/// The Vertex AI call a path names, if it names one.
pub fn route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/v1/projects/")?;
    let mut parts = rest.split('/');
    let (_project, l, _location, pubs, publisher, models, tail) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if l != "locations" || pubs != "publishers" || models != "models" || parts.next().is_some() {
        return None;
    }
    let (model, method) = tail.rsplit_once(':')?;
    Some(Route { publisher: publisher.to_owned(), model: model.to_owned(), method: method.to_owned() })
}

/// The bearer token of `headers`, when the mock accepts it.
pub(crate) fn authorized<'h>(
    google: &GoogleMock,
    minted: &Minted,
    headers: &'h HeaderMap,
) -> Option<&'h str> {
    let token = headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")?;
    (google.tokens.contains(token) || minted.valid(token)).then_some(token)
}

/// A Google-shaped error answer.
pub(crate) fn google_error(status: StatusCode, canonical: &str, message: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": canonical}});
    json_response(status, Bytes::from(body.to_string()))
}

type Response = http::Response<MockBody>;

/// An Anthropic-shaped 400.
pub(crate) fn anthropic_invalid(message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}});
    json_response(StatusCode::BAD_REQUEST, Bytes::from(body.to_string()))
}

/// A Claude body as Vertex AI takes it, with the model of the URL put in (for the mock's own
/// answer, which names it); `Err` says why it is not one (a 400).
pub(crate) fn claude_body(body: &[u8], model: &str, stream: bool) -> Result<Bytes, &'static str> {
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body) else {
        return Err("mock: body is not a JSON object");
    };
    if obj.get("anthropic_version").and_then(Value::as_str) != Some(ANTHROPIC_VERSION) {
        return Err("mock: anthropic_version must be vertex-2023-10-16");
    }
    if obj.contains_key("model") {
        return Err("mock: model: Extra inputs are not permitted");
    }
    if obj.get("stream").and_then(Value::as_bool).unwrap_or(false) != stream {
        return Err("mock: stream must match the method");
    }
    obj.insert("model".into(), model.into());
    Ok(Bytes::from(Value::Object(obj).to_string()))
}

/// The token endpoint's answer to a JWT-bearer grant (`form`).
pub(crate) fn token_answer(google: &GoogleMock, minted: &Minted, form: &[u8]) -> Response {
    let form = String::from_utf8_lossy(form);
    let field = |name: &str| form.split('&').find_map(|p| p.strip_prefix(name)?.strip_prefix('='));
    if field("grant_type") != Some("urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer") {
        return oauth_error("unsupported_grant_type", "mock: want the jwt-bearer grant");
    }
    match field("assertion").map(|a| check_jwt(a, &google.accounts)) {
        Some(Ok(())) => {
            let (token, expires_in) = minted.mint(google.lifetime);
            let body = json!({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"});
            json_response(StatusCode::OK, Bytes::from(body.to_string()))
        }
        Some(Err(why)) => oauth_error("invalid_grant", &format!("mock: {why}")),
        None => oauth_error("invalid_request", "mock: no assertion"),
    }
}

/// The metadata server's token answer (only with `Metadata-Flavor: Google`).
pub(crate) fn metadata_answer(google: &GoogleMock, minted: &Minted, headers: &HeaderMap) -> Response {
    if !google.metadata {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "mock: no metadata server");
    }
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "mock: Metadata-Flavor: Google missing",
        );
    }
    let (token, expires_in) = minted.mint(google.lifetime);
    let body = json!({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"});
    json_response(StatusCode::OK, Bytes::from(body.to_string()))
}

fn oauth_error(error: &str, description: &str) -> Response {
    let body = json!({"error": error, "error_description": description});
    json_response(StatusCode::BAD_REQUEST, Bytes::from(body.to_string()))
}

/// Checks a JWT-bearer assertion: RS256 by a known account's key, the cloud-platform scope, an
/// audience at `/token`, issued now (within a minute) and valid for at most an hour.
pub fn check_jwt(jwt: &str, accounts: &HashMap<String, Vec<u8>>) -> Result<(), String> {
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("not three parts".into());
    };
    let json = |part: &str| -> Result<Value, String> {
        let bytes = b64url_decode(part).ok_or("bad base64url")?;
        serde_json::from_slice(&bytes).map_err(|e| format!("bad JSON: {e}"))
    };
    let (header, claims) = (json(h)?, json(c)?);
    if header["alg"] != "RS256" || header["typ"] != "JWT" {
        return Err(format!("header {header}"));
    }
    let iss = claims["iss"].as_str().ok_or("no iss")?;
    let key = accounts.get(iss).ok_or_else(|| format!("unknown account {iss}"))?;
    let signature = b64url_decode(s).ok_or("bad signature encoding")?;
    let signed = &jwt[..h.len() + 1 + c.len()];
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, key)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| "bad signature".to_owned())?;
    if claims["scope"].as_str().is_none_or(|sc| !sc.split(' ').any(|x| x == SCOPE)) {
        return Err("scope".into());
    }
    if claims["aud"].as_str().is_none_or(|a| !a.ends_with("/token")) {
        return Err("aud".into());
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (iat, exp) = (claims["iat"].as_u64().ok_or("iat")?, claims["exp"].as_u64().ok_or("exp")?);
    if iat > now + 60 || iat + 60 < now || exp <= now || exp > iat + 3600 {
        return Err(format!("times iat={iat} exp={exp} now={now}"));
    }
    Ok(())
}

/// Base64url without padding (RFC 4648 §5), decoded.
pub(crate) fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_the_publisher_model_and_method() {
        let r = route("/v1/projects/p/locations/global/publishers/anthropic/models/claude-x@1:rawPredict");
        assert_eq!(
            r,
            Some(Route {
                publisher: "anthropic".into(),
                model: "claude-x@1".into(),
                method: "rawPredict".into()
            })
        );
        assert_eq!(route("/v1/projects/p/locations/l/publishers/google/models/a/b:generateContent"), None);
        assert_eq!(route("/v1beta/models/g:generateContent"), None);
        assert_eq!(b64url_decode("aGk"), Some(b"hi".to_vec()));
        assert_eq!(b64url_decode("a+b"), None);
    }
}
