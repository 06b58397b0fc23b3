//! Credentials from a web-identity token, as EKS IRSA mounts it (`AWS_ROLE_ARN`,
//! `AWS_WEB_IDENTITY_TOKEN_FILE`): the token file is read and exchanged with STS
//! (`AssumeRoleWithWebIdentity`, unsigned, the token in the POST body) for temporary
//! credentials. A [`Source`] for the background refresher ([`crate::providers::refresh`]),
//! which keeps them fresh; the token file is read anew at each exchange, as the kubelet rotates
//! it.

use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, Request, header};

use super::credentials::{FetchError, call, expiry, key, lifetime, read_token};
use super::sigv4::AwsKey;
use crate::config::{Secret, WebIdentity};
use crate::providers::refresh::{Fetched, Source};
use crate::upstream;

/// What the log calls the endpoint.
const STS: &str = "STS";

impl Source for WebIdentity {
    type Value = AwsKey;
    type Error = FetchError;

    /// The role, token file, session name and STS (a reload with the same ones keeps the
    /// credentials).
    fn identity(&self) -> String {
        format!("{} {} {} {}", self.role_arn, self.token_file.display(), self.session_name, self.sts_url)
    }

    async fn fetch(&self, client: &upstream::Client) -> Result<Fetched<AwsKey>, FetchError> {
        let (value, expires) = exchange(self, client).await?;
        Ok(Fetched { value, valid_for: lifetime(expires) })
    }

    fn secrets(key: &AwsKey) -> Vec<Secret> {
        key.secrets()
    }
}

/// One `AssumeRoleWithWebIdentity` call: the credentials and when they expire.
pub(crate) async fn exchange(
    source: &WebIdentity,
    client: &upstream::Client,
) -> Result<(AwsKey, SystemTime), FetchError> {
    let token = read_token(&source.token_file).await?;
    let form = format!(
        "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&DurationSeconds=3600&RoleArn={}&RoleSessionName={}&WebIdentityToken={}",
        form_encode(&source.role_arn),
        form_encode(&source.session_name),
        form_encode(&token)
    );
    let req = Request::post(source.sts_url.as_str())
        .header(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"))
        .header(header::ACCEPT, HeaderValue::from_static("application/xml"))
        .body(Bytes::from(form))
        .map_err(|_| FetchError::Unreachable(STS))?;
    let body = call(client, req, STS).await?;
    credentials(&String::from_utf8_lossy(&body)).ok_or(FetchError::Answer(STS))
}

/// The credentials of an `AssumeRoleWithWebIdentityResponse` (XML).
pub(crate) fn credentials(xml: &str) -> Option<(AwsKey, SystemTime)> {
    let tag = |name: &str| {
        let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
        let end = start + xml[start..].find(&format!("</{name}>"))?;
        Some(xml[start..end].trim())
    };
    let expires = expiry(tag("Expiration")?)?;
    let token = tag("SessionToken")?;
    Some((key(tag("AccessKeyId")?, tag("SecretAccessKey")?, Some(token))?, expires))
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
