//! The mock upstream's own SigV4 check, written from AWS's description of the algorithm and
//! sharing no code with tier1's signer (the `aws-sigv4` crate): the canonical request rebuilt
//! from what arrived (method, the path's segments encoded once more, the sorted query, the
//! signed headers trimmed, the body's SHA-256), the string to sign under the credential scope,
//! and the HMAC-SHA256 chain of the secret, date, region, service and `aws4_request`, through
//! `ring`. A request the mock cannot verify this way is refused with a 403, as AWS does.

use ring::{digest, hmac};

/// What a signature check found wrong (a 403's message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No `Authorization: AWS4-HMAC-SHA256 ...`, or one that does not parse.
    #[error("missing or malformed SigV4 authorization")]
    Malformed,
    /// An access key id the mock does not know.
    #[error("unknown access key id")]
    UnknownKey,
    /// The scope's region or service is not the expected one.
    #[error("credential scope {0:?} is not the expected one")]
    Scope(String),
    /// A signed header is missing from the request.
    #[error("signed header {0:?} is missing")]
    Missing(String),
    /// The signature does not match.
    #[error("the request signature does not match")]
    Mismatch,
}

/// One request as it arrived, for [`verify`].
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// `POST`, `GET`...
    pub method: &'a str,
    /// The path, as received (already percent-encoded once).
    pub path: &'a str,
    /// The query, without `?` (empty for none).
    pub query: &'a str,
    /// The headers, by lower-case name.
    pub headers: &'a http::HeaderMap,
    /// The body.
    pub body: &'a [u8],
}

/// Checks the request's SigV4 signature for `region` and `service`, the secret of its access
/// key id given by `secret_of`; the access key id when it holds.
pub fn verify<'k>(
    req: &Signed<'_>,
    (region, service): (&str, &str),
    secret_of: impl Fn(&str) -> Option<&'k str>,
) -> Result<String, Refused> {
    let auth = req.headers.get("authorization").and_then(|v| v.to_str().ok()).ok_or(Refused::Malformed)?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or(Refused::Malformed)?;
    let field = |name: &str| {
        rest.split(',').map(str::trim).find_map(|f| f.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
    };
    let credential = field("Credential").ok_or(Refused::Malformed)?;
    let signed_headers = field("SignedHeaders").ok_or(Refused::Malformed)?;
    let signature = field("Signature").ok_or(Refused::Malformed)?;
    let mut scope = credential.splitn(2, '/');
    let key_id = scope.next().ok_or(Refused::Malformed)?;
    let scope = scope.next().ok_or(Refused::Malformed)?;
    let parts: Vec<&str> = scope.split('/').collect();
    let [date, r, s, "aws4_request"] = parts[..] else { return Err(Refused::Malformed) };
    if r != region || s != service {
        return Err(Refused::Scope(scope.to_owned()));
    }
    let secret = secret_of(key_id).ok_or(Refused::UnknownKey)?;
    let amz_date = req.headers.get("x-amz-date").and_then(|v| v.to_str().ok()).ok_or(Refused::Malformed)?;
    let canonical = canonical_request(req, signed_headers)?;
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    );
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in [date, region, service, "aws4_request"] {
        key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), part.as_bytes()).as_ref().to_vec();
    }
    let want = hex(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), to_sign.as_bytes()).as_ref());
    if want == signature { Ok(key_id.to_owned()) } else { Err(Refused::Mismatch) }
}

/// The canonical request of `req` with `signed_headers` (`a;b;c`).
pub fn canonical_request(req: &Signed<'_>, signed_headers: &str) -> Result<String, Refused> {
    // Every segment encoded again: `%3A` in the path becomes `%253A`.
    let path: Vec<String> = req.path.split('/').map(encode).collect();
    let path = if path.len() <= 1 { "/".to_owned() } else { path.join("/") };
    let mut query: Vec<(String, String)> = req
        .query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(&decode(k)), encode(&decode(v)))
        })
        .collect();
    query.sort();
    let query: Vec<String> = query.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut headers = String::new();
    for name in signed_headers.split(';') {
        let values: Vec<String> = req
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return Err(Refused::Missing(name.to_owned()));
        }
        headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let body = hex(digest::digest(&digest::SHA256, req.body).as_ref());
    Ok(format!("{}\n{path}\n{}\n{headers}\n{signed_headers}\n{body}", req.method, query.join("&")))
}

/// Percent-encodes every byte but `A-Z a-z 0-9 - . _ ~`.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Undoes percent-encoding (a model id in a path).
pub fn percent_decode(s: &str) -> String {
    decode(s)
}

/// Undoes percent-encoding (for query parameters, which are encoded once, canonically).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hexval = |c: u8| char::from(c).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hexval), b.get(i + 2).copied().and_then(hexval)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
