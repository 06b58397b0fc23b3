//! What the sources of temporary AWS credentials share: each is a [`Source`] of the background
//! refresher ([`crate::providers::refresh`]) giving an [`AwsKey`] and its lifetime (a web
//! identity exchanged with STS, [`super::web_identity`]; the container endpoint of ECS and EKS
//! Pod Identity, [`super::container`]; the EC2 instance metadata, [`super::imds`]). Here: the
//! one call they make (bounded in time, its answer in size), the token file read anew at each
//! fetch, the credentials and expiry of a JSON answer, and the one error they log (never a
//! token or a credential).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;

use super::sigv4::AwsKey;
use crate::config::{AwsAuth, Secret, valid_access_key_id};
use crate::providers::refresh::{self, Current};
use crate::upstream;

/// The largest answer read.
const MAX_ANSWER: usize = 64 * 1024;
/// How long one call may take, answer included.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why credentials could not be had (logged: never a token or a credential).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// The token file could not be read.
    #[error("token file: {0}")]
    TokenFile(std::io::Error),
    /// A token (read from its file, or answered) cannot go in a header.
    #[error("{0}: token is not a valid header value")]
    TokenValue(&'static str),
    /// The endpoint could not be reached or did not answer in time.
    #[error("{0} unreachable")]
    Unreachable(&'static str),
    /// The endpoint answered with an error status.
    #[error("{0} answered {1}")]
    Status(&'static str, u16),
    /// The answer held no usable credentials.
    #[error("{0} answer without credentials")]
    Answer(&'static str),
}

/// Starts (or, on a reload, takes over) the task keeping `auth`'s credentials fresh.
pub(crate) fn start(auth: &AwsAuth, client: upstream::Client) -> Arc<Current<AwsKey>> {
    match auth {
        AwsAuth::WebIdentity(w) => refresh::start(w.clone(), client),
        AwsAuth::Container(c) => refresh::start(c.clone(), client),
        AwsAuth::Instance(i) => refresh::start(i.clone(), client),
    }
}

/// One call of `what` through `client`, bounded in time and size: the body of a 2xx answer.
pub(crate) async fn call(
    client: &upstream::Client,
    req: Request<Bytes>,
    what: &'static str,
) -> Result<Bytes, FetchError> {
    let call = async {
        let resp = client.send(req).await.map_err(|_| FetchError::Unreachable(what))?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|_| FetchError::Unreachable(what))?
            .to_bytes();
        if !status.is_success() {
            return Err(FetchError::Status(what, status.as_u16()));
        }
        Ok(body)
    };
    tokio::time::timeout(CALL_TIMEOUT, call).await.map_err(|_| FetchError::Unreachable(what))?
}

/// A token file's token, read now (the kubelet and EKS rotate them), spaces around trimmed.
pub(crate) async fn read_token(path: &Path) -> Result<String, FetchError> {
    let text = tokio::fs::read_to_string(path).await.map_err(FetchError::TokenFile)?;
    Ok(text.trim().to_owned())
}

/// How long from now credentials expiring at `expires` may be used.
pub(crate) fn lifetime(expires: SystemTime) -> Duration {
    expires.duration_since(SystemTime::now()).unwrap_or_default()
}

/// An RFC 3339 time (`2026-12-04T22:00:00Z`).
pub(crate) fn expiry(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim()).ok()
}

/// A credential set, if its access key id can go in a signature's scope.
pub(crate) fn key(id: &str, secret: &str, token: Option<&str>) -> Option<AwsKey> {
    (valid_access_key_id(id) && !secret.is_empty()).then(|| AwsKey {
        access_key_id: id.to_owned(),
        secret: Secret::new(secret),
        session_token: token.filter(|t| !t.is_empty()).map(Secret::new),
    })
}

/// The credentials and expiry of a JSON answer, as the container endpoint and the instance
/// metadata give them: `AccessKeyId`, `SecretAccessKey`, `Token`, `Expiration`, and when there
/// is a `Code`, `Success`.
pub(crate) fn json_credentials(body: &[u8]) -> Option<(AwsKey, SystemTime)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let field = |name: &str| v.get(name).and_then(serde_json::Value::as_str);
    if v.get("Code").is_some() && field("Code") != Some("Success") {
        return None;
    }
    let expires = expiry(field("Expiration")?)?;
    Some((key(field("AccessKeyId")?, field("SecretAccessKey")?, field("Token"))?, expires))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_answer_gives_its_credentials_and_expiry_and_an_error_none() {
        let body = br#"{"Code":"Success","LastUpdated":"2026-12-04T21:00:00Z","Type":"AWS-HMAC",
            "AccessKeyId":"ASIAEXAMPLE","SecretAccessKey":"wJalr/K7MDENG","Token":"IQoJb3+/=",
            "Expiration":"2026-12-04T22:00:00Z"}"#;
        let (key, expires) = json_credentials(body).unwrap();
        assert_eq!(key.access_key_id, "ASIAEXAMPLE");
        assert_eq!(key.secret.expose(), "wJalr/K7MDENG");
        assert_eq!(key.session_token.unwrap().expose(), "IQoJb3+/=");
        assert_eq!(expires, humantime::parse_rfc3339("2026-12-04T22:00:00Z").unwrap());
        // The container endpoint's answer has no Code.
        let ecs = br#"{"AccessKeyId":"ASIAECS","SecretAccessKey":"s","Token":"t","Expiration":"2026-12-04T22:00:00Z","RoleArn":"arn:aws:iam::1:role/r"}"#;
        assert_eq!(json_credentials(ecs).unwrap().0.access_key_id, "ASIAECS");
        let refused = [
            &br#"{"Code":"AssumeRoleUnauthorizedAccess","Message":"no"}"#[..],
            br#"{"code":"InvalidToken","message":"expired"}"#,
            br#"{"AccessKeyId":"ASIA/../x","SecretAccessKey":"s","Token":"t","Expiration":"2026-12-04T22:00:00Z"}"#,
            br#"{"AccessKeyId":"ASIA","SecretAccessKey":"s","Token":"t","Expiration":"tomorrow"}"#,
            br#"{"AccessKeyId":"ASIA","SecretAccessKey":"","Token":"t","Expiration":"2026-12-04T22:00:00Z"}"#,
            b"not json",
        ];
        for body in refused {
            assert!(json_credentials(body).is_none(), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn errors_name_the_endpoint_and_never_a_value() {
        assert_eq!(
            FetchError::Status("instance metadata", 401).to_string(),
            "instance metadata answered 401"
        );
        assert_eq!(FetchError::Answer("STS").to_string(), "STS answer without credentials");
    }
}
