//! The OAuth2 access tokens of a `vertex` key, kept fresh by the shared refresher
//! ([`crate::providers::refresh`]): in the background, again 5 minutes before they expire, one
//! fetch at a time, never on the request path. From a service account's key file: a JWT
//! (RS256 through `ring`; header `alg`, `typ`, `kid`; claims `iss` = `client_email`, `scope` =
//! cloud-platform, `aud` = `token_uri`, `iat`, `exp` an hour later) exchanged at the file's
//! `token_uri` with the JWT-bearer grant. From workload identity: the metadata server's token
//! URL with `Metadata-Flavor: Google`. Both answer `{access_token, expires_in, token_type}`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, header};
use http_body_util::BodyExt;

use crate::config::{GoogleAuth, Secret, ServiceAccount};
use crate::providers::refresh::{Fetched, Source};
use crate::upstream;

/// The scope tier1 asks for.
pub(crate) const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// How long a minted JWT is valid (Google's longest).
const JWT_LIFETIME: u64 = 3600;
/// The largest token answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// Where a key's tokens come from.
pub(crate) enum Tokens {
    /// Minted with a service account's key.
    ServiceAccount(Box<Signer>),
    /// Fetched from the metadata server at this URL.
    Metadata(String),
}

/// A service account's JWT signer.
pub(crate) struct Signer {
    email: String,
    key_id: Option<String>,
    key: ring::signature::RsaKeyPair,
    token_uri: String,
}

/// An access token, as requests send it.
pub(crate) struct AccessToken {
    /// `Bearer {token}`, marked sensitive.
    pub header: HeaderValue,
    /// The token, for redaction.
    pub token: Secret,
}

impl Tokens {
    /// The source of `auth`; `None` when the key no longer parses (it was checked at load).
    pub(crate) fn new(auth: &GoogleAuth) -> Option<Self> {
        match auth {
            GoogleAuth::ServiceAccount(sa) => Signer::new(sa).map(|s| Self::ServiceAccount(Box::new(s))),
            GoogleAuth::Metadata(url) => Some(Self::Metadata(url.clone())),
        }
    }
}

impl Signer {
    pub(crate) fn new(sa: &ServiceAccount) -> Option<Self> {
        Some(Self {
            email: sa.client_email.clone(),
            key_id: sa.private_key_id.clone(),
            key: crate::pem::rsa_pkcs8(sa.private_key.expose()).ok()?,
            token_uri: sa.token_uri.clone(),
        })
    }

    /// The signed JWT asserting the account, issued at `now` (Unix seconds).
    pub(crate) fn assertion(&self, now: u64) -> Option<String> {
        let mut head = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.key_id {
            head["kid"] = kid.as_str().into();
        }
        let claims = serde_json::json!({"iss": self.email, "scope": SCOPE, "aud": self.token_uri,
            "iat": now, "exp": now + JWT_LIFETIME});
        let signed = format!("{}.{}", b64url(head.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
        let mut signature = vec![0; self.key.public().modulus_len()];
        let rng = ring::rand::SystemRandom::new();
        self.key.sign(&ring::signature::RSA_PKCS1_SHA256, &rng, signed.as_bytes(), &mut signature).ok()?;
        Some(format!("{signed}.{}", b64url(&signature)))
    }
}

/// Why a token could not be had (logged: never the key, the JWT or a token).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// The JWT could not be signed.
    #[error("JWT not signed")]
    Sign,
    /// The token endpoint or metadata server could not be reached or did not answer in time.
    #[error("token endpoint unreachable")]
    Unreachable,
    /// It answered with an error status.
    #[error("token endpoint answered {0}")]
    Status(u16),
    /// The answer held no usable token.
    #[error("token answer without a usable access_token and expires_in")]
    Answer,
}

impl Source for Tokens {
    type Value = AccessToken;
    type Error = FetchError;

    /// The account and token URI, or the metadata URL (a reload with the same keeps the token).
    fn identity(&self) -> String {
        match self {
            Self::ServiceAccount(s) => format!("vertex {} {}", s.email, s.token_uri),
            Self::Metadata(url) => format!("vertex metadata {url}"),
        }
    }

    async fn fetch(&self, client: &upstream::Client) -> Result<Fetched<AccessToken>, FetchError> {
        let req = match self {
            Self::ServiceAccount(s) => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let jwt = s.assertion(now).ok_or(FetchError::Sign)?;
                let form = format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={jwt}");
                Request::post(s.token_uri.as_str())
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Bytes::from(form))
            }
            Self::Metadata(url) => Request::builder()
                .method(Method::GET)
                .uri(url.as_str())
                .header("metadata-flavor", "Google")
                .body(Bytes::new()),
        };
        let mut req = req.map_err(|_| FetchError::Unreachable)?;
        req.headers_mut().insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let call = async {
            let resp = client.send(req).await.map_err(|_| FetchError::Unreachable)?;
            let status = resp.status();
            let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|_| FetchError::Unreachable)?
                .to_bytes();
            if !status.is_success() {
                return Err(FetchError::Status(status.as_u16()));
            }
            answer(&body).ok_or(FetchError::Answer)
        };
        tokio::time::timeout(Duration::from_secs(10), call).await.map_err(|_| FetchError::Unreachable)?
    }

    fn secrets(value: &AccessToken) -> Vec<Secret> {
        vec![value.token.clone()]
    }
}

/// A token answer's token and lifetime.
pub(crate) fn answer(body: &[u8]) -> Option<Fetched<AccessToken>> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let token = v.get("access_token")?.as_str().filter(|t| !t.is_empty())?;
    let expires_in = v.get("expires_in")?.as_u64()?;
    let mut header = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    header.set_sensitive(true);
    let value = AccessToken { header, token: Secret::new(token) };
    Some(Fetched { value, valid_for: Duration::from_secs(expires_in) })
}

/// Base64url without padding (RFC 4648 §5).
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn signer(token_uri: &str) -> Signer {
        let sa = ServiceAccount {
            client_email: "tier1-test@tier1-test.iam.gserviceaccount.com".into(),
            private_key_id: Some("0123456789abcdef".into()),
            private_key: Secret::new(include_str!("../../../tests/fixtures/vertex/test-sa-key.pem")),
            token_uri: token_uri.into(),
        };
        Signer::new(&sa).unwrap()
    }

    fn accounts() -> HashMap<String, Vec<u8>> {
        let public = include_bytes!("../../../tests/fixtures/vertex/test-sa-public.der").to_vec();
        HashMap::from([("tier1-test@tier1-test.iam.gserviceaccount.com".to_owned(), public)])
    }

    #[test]
    fn base64url_is_rfc_4648_without_padding() {
        assert_eq!(b64url(b""), "");
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
        assert_eq!(b64url(b"foobar"), "Zm9vYmFy");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn the_jwt_is_verified_by_the_mocks_independent_check_and_tampering_is_caught() {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let jwt = signer("https://oauth2.googleapis.com/token").assertion(now).unwrap();
        crate::mock::vertex::check_jwt(&jwt, &accounts()).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        let json = |p: &str| -> serde_json::Value {
            let v = crate::mock::vertex::b64url_decode(p).unwrap();
            serde_json::from_slice(&v).unwrap()
        };
        assert_eq!(json(parts[0]), serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "0123456789abcdef"}));
        assert_eq!(
            json(parts[1]),
            serde_json::json!({"iss": "tier1-test@tier1-test.iam.gserviceaccount.com", "scope": SCOPE,
                "aud": "https://oauth2.googleapis.com/token", "iat": now, "exp": now + 3600})
        );
        // Another claim under the same signature, or an old JWT: refused.
        let forged = format!("{}.{}.{}", parts[0], b64url(br#"{"iss":"x"}"#), parts[2]);
        assert!(crate::mock::vertex::check_jwt(&forged, &accounts()).is_err());
        let old = signer("https://o/token").assertion(now - 7200).unwrap();
        assert!(crate::mock::vertex::check_jwt(&old, &accounts()).unwrap_err().starts_with("times"));
    }

    #[test]
    fn a_token_answer_gives_a_sensitive_bearer_and_its_lifetime() {
        let f = answer(br#"{"access_token":"ya29.abc","expires_in":3599,"token_type":"Bearer"}"#).unwrap();
        assert_eq!(f.value.header, "Bearer ya29.abc");
        assert!(f.value.header.is_sensitive());
        assert_eq!(f.valid_for, Duration::from_secs(3599));
        assert!(answer(br#"{"access_token":"a\nb","expires_in":1}"#).is_none());
        assert!(answer(br#"{"error":"invalid_grant"}"#).is_none());
    }
}
