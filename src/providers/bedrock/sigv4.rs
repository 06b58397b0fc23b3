//! SigV4 request signing through the maintained `aws-sigv4` crate: the canonical request of the
//! method, URL (path segments encoded twice, as every AWS service but S3 wants), the `host`,
//! `content-type` and `x-amz-*` headers and the body's SHA-256, signed with a key derived from
//! the secret, date, region and service. Adds `x-amz-date`, `authorization` and, for temporary
//! credentials, `x-amz-security-token` (both marked sensitive: never logged).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, header};

use crate::config::Secret;

/// The service name Bedrock's runtime signs for.
pub(crate) const SERVICE: &str = "bedrock";

/// One credential set: an access key id, its secret, and a session token when temporary.
#[derive(Debug, Clone)]
pub(crate) struct AwsKey {
    /// `AKIA...` (long-term) or `ASIA...` (temporary).
    pub access_key_id: String,
    /// The secret access key.
    pub secret: Secret,
    /// The session token of temporary credentials.
    pub session_token: Option<Secret>,
}

impl AwsKey {
    /// The secret parts: the secret access key and the session token.
    pub(crate) fn secrets(&self) -> Vec<Secret> {
        std::iter::once(self.secret.clone()).chain(self.session_token.clone()).collect()
    }
}

/// Why a request could not be signed (a header value that is no text, say).
#[derive(Debug, thiserror::Error)]
#[error("request cannot be signed")]
pub(crate) struct SignError;

/// Signs `req` for `region` and `service` at `time`, adding the signature's headers.
pub(crate) fn sign_request(
    req: &mut Request<Bytes>,
    key: &AwsKey,
    (region, service): (&str, &str),
    time: SystemTime,
) -> Result<(), SignError> {
    let identity = Credentials::new(
        key.access_key_id.clone(),
        key.secret.expose().to_owned(),
        key.session_token.as_ref().map(|t| t.expose().to_owned()),
        None,
        "tier1",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|_| SignError)?
        .into();
    let host = host_of(req.uri()).ok_or(SignError)?;
    let mut headers = vec![("host", host.as_str())];
    if let Some(v) = req.headers().get(header::CONTENT_TYPE) {
        headers.push(("content-type", v.to_str().map_err(|_| SignError)?));
    }
    let uri = req.uri().to_string();
    let signable =
        SignableRequest::new(req.method().as_str(), &uri, headers.into_iter(), SignableBody::Bytes(req.body()))
            .map_err(|_| SignError)?;
    let (instructions, _signature) = sign(signable, &params).map_err(|_| SignError)?.into_parts();
    let mut signed = Vec::new();
    for (name, value) in instructions.headers() {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| SignError)?;
        let mut value = HeaderValue::from_str(value).map_err(|_| SignError)?;
        value.set_sensitive(name != "x-amz-date");
        signed.push((name, value));
    }
    for (name, value) in signed {
        req.headers_mut().insert(name, value);
    }
    Ok(())
}

/// The `host` header the upstream client sends for `uri`: its host, and its port if it has one.
fn host_of(uri: &http::Uri) -> Option<String> {
    let host = uri.host()?;
    Some(match uri.port_u16() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

#[cfg(test)]
mod tests;
