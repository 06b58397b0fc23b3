//! Credentials from a web-identity token, as EKS IRSA mounts it (`AWS_ROLE_ARN`,
//! `AWS_WEB_IDENTITY_TOKEN_FILE`): the token file is read and exchanged with STS
//! (`AssumeRoleWithWebIdentity`, unsigned, the token in the POST body) for temporary
//! credentials. A [`Source`] for the background refresher ([`crate::providers::refresh`]),
//! which keeps them fresh; the token file is read anew at each exchange, as the kubelet rotates
//! it.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::BodyExt;

use super::sigv4::AwsKey;
use crate::config::{Secret, WebIdentity};
use crate::providers::refresh::{Fetched, Source};
use crate::upstream;

/// The largest STS answer read.
const MAX_ANSWER: usize = 64 * 1024;

impl Source for WebIdentity {
    type Value = AwsKey;
    type Error = ExchangeError;

    /// The role, token file, session name and STS (a reload with the same ones keeps the
    /// credentials).
    fn identity(&self) -> String {
        format!("{} {} {} {}", self.role_arn, self.token_file.display(), self.session_name, self.sts_url)
    }

    async fn fetch(&self, client: &upstream::Client) -> Result<Fetched<AwsKey>, ExchangeError> {
        let (value, expires) = exchange(self, client).await?;
        Ok(Fetched { value, valid_for: expires.duration_since(SystemTime::now()).unwrap_or_default() })
    }

    fn secrets(key: &AwsKey) -> Vec<Secret> {
        key.secrets()
    }
}

/// Why an exchange failed (for the log: never the token or the credentials).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    /// The token file could not be read.
    #[error("token file: {0}")]
    Token(std::io::Error),
    /// STS could not be reached or did not answer in time.
    #[error("STS unreachable")]
    Unreachable,
    /// STS answered with an error status.
    #[error("STS answered {0}")]
    Status(u16),
    /// The answer held no credentials.
    #[error("STS answer without credentials")]
    Answer,
}

/// One `AssumeRoleWithWebIdentity` call: the credentials and when they expire.
pub(crate) async fn exchange(
    source: &WebIdentity,
    client: &upstream::Client,
) -> Result<(AwsKey, SystemTime), ExchangeError> {
    let token = tokio::fs::read_to_string(&source.token_file).await.map_err(ExchangeError::Token)?;
    let form = format!(
        "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&DurationSeconds=3600&RoleArn={}&RoleSessionName={}&WebIdentityToken={}",
        form_encode(&source.role_arn),
        form_encode(&source.session_name),
        form_encode(token.trim())
    );
    let req = Request::post(source.sts_url.as_str())
        .header(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"))
        .header(header::ACCEPT, HeaderValue::from_static("application/xml"))
        .body(Bytes::from(form))
        .map_err(|_| ExchangeError::Unreachable)?;
    let call = async {
        let resp = client.send(req).await.map_err(|_| ExchangeError::Unreachable)?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|_| ExchangeError::Unreachable)?
            .to_bytes();
        if !status.is_success() {
            return Err(ExchangeError::Status(status.as_u16()));
        }
        credentials(&String::from_utf8_lossy(&body)).ok_or(ExchangeError::Answer)
    };
    tokio::time::timeout(Duration::from_secs(10), call).await.map_err(|_| ExchangeError::Unreachable)?
}

/// The credentials of an `AssumeRoleWithWebIdentityResponse` (XML).
pub(crate) fn credentials(xml: &str) -> Option<(AwsKey, SystemTime)> {
    let tag = |name: &str| {
        let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
        let end = start + xml[start..].find(&format!("</{name}>"))?;
        Some(xml[start..end].trim().to_owned())
    };
    let expires = humantime::parse_rfc3339_weak(&tag("Expiration")?).ok()?;
    let key = AwsKey {
        access_key_id: tag("AccessKeyId").filter(|k| k.bytes().all(|b| b.is_ascii_alphanumeric()))?,
        secret: Secret::new(tag("SecretAccessKey")?),
        session_token: Some(Secret::new(tag("SessionToken")?)),
    };
    Some((key, expires))
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sts_answer_gives_its_credentials_and_expiry() {
        let xml = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
      <SecretAccessKey>wJalr/K7MDENG</SecretAccessKey>
      <SessionToken>FwoGZX+/=</SessionToken>
      <Expiration>2026-12-04T22:00:00Z</Expiration>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#;
        let (key, expires) = credentials(xml).unwrap();
        assert_eq!(key.access_key_id, "ASIAEXAMPLE");
        assert_eq!(key.secret.expose(), "wJalr/K7MDENG");
        assert_eq!(key.session_token.unwrap().expose(), "FwoGZX+/=");
        assert_eq!(expires, humantime::parse_rfc3339("2026-12-04T22:00:00Z").unwrap());
        assert!(credentials("<Error><Code>InvalidIdentityToken</Code></Error>").is_none());
        assert!(credentials(&xml.replace("ASIAEXAMPLE", "ASIA/../x")).is_none());
        assert_eq!(form_encode("a b+c/=é"), "a%20b%2Bc%2F%3D%C3%A9");
    }
}
