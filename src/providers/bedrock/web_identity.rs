//! Credentials from a web-identity token, as EKS IRSA mounts it (`AWS_ROLE_ARN`,
//! `AWS_WEB_IDENTITY_TOKEN_FILE`): the token file is read and exchanged with STS
//! (`AssumeRoleWithWebIdentity`, unsigned, the token in the POST body) for temporary
//! credentials, which a background task keeps fresh: again 5 minutes before they expire (the
//! token file is read anew each time, as the kubelet rotates it), after a failure with a backoff
//! of 1 s doubling up to 60 s while the last credentials are kept. Never on the request path:
//! a request signs with what is there; before the first exchange answered it cannot be signed
//! and fails over like any failed attempt. A reloaded snapshot takes over the running task and
//! its credentials (same role, token file, session name and STS); the task ends with the last
//! snapshot holding it.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::BodyExt;

use super::sigv4::AwsKey;
use crate::config::{Secret, WebIdentity};
use crate::upstream;

/// How long before the expiry the credentials are refreshed.
const EARLY: Duration = Duration::from_secs(300);
/// The largest STS answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// The credentials of one web identity, as the background task last got them.
#[derive(Default)]
pub(crate) struct Current(ArcSwapOption<AwsKey>);

impl Current {
    /// The credentials now, if an exchange has answered yet.
    pub(crate) fn get(&self) -> Option<Arc<AwsKey>> {
        self.0.load_full()
    }
}

/// The web identities being kept fresh, by what identifies them: a reloaded snapshot takes the
/// running one's credentials (and task) instead of starting over without any.
type Running = std::sync::Mutex<std::collections::HashMap<[String; 4], Weak<Current>>>;
static RUNNING: std::sync::OnceLock<Running> = std::sync::OnceLock::new();

/// Keeps `source`'s credentials fresh through `client`: the running refresh of the same
/// identity if there is one (a reload), else a new one (when there is a runtime to run on: a
/// snapshot built only to be checked starts nothing).
pub(crate) fn start(source: WebIdentity, client: upstream::Client) -> Arc<Current> {
    let id = [
        source.role_arn.clone(),
        source.token_file.display().to_string(),
        source.session_name.clone(),
        source.sts_url.clone(),
    ];
    let Ok(rt) = tokio::runtime::Handle::try_current() else { return Arc::new(Current::default()) };
    let mut running = match RUNNING.get_or_init(Running::default).lock() {
        Ok(r) => r,
        Err(poisoned) => poisoned.into_inner(),
    };
    running.retain(|_, c| c.strong_count() > 0);
    if let Some(current) = running.get(&id).and_then(Weak::upgrade) {
        return current;
    }
    let current = Arc::new(Current::default());
    running.insert(id, Arc::downgrade(&current));
    rt.spawn(refresh(Arc::downgrade(&current), source, client));
    current
}

/// The refresh loop; ends when the provider holding `current` is gone.
async fn refresh(current: Weak<Current>, source: WebIdentity, client: upstream::Client) {
    let mut failures = 0u32;
    loop {
        if current.strong_count() == 0 {
            return;
        }
        let wait = match exchange(&source, &client).await {
            Ok((key, expires)) => {
                let Some(c) = current.upgrade() else { return };
                c.0.store(Some(Arc::new(key)));
                failures = 0;
                let left = expires.duration_since(SystemTime::now()).unwrap_or_default();
                left.saturating_sub(EARLY).max(Duration::from_secs(10))
            }
            Err(e) => {
                tracing::warn!(role = %source.role_arn, error = %e, "web identity credentials not refreshed");
                failures = failures.saturating_add(1);
                Duration::from_secs(1 << failures.min(6)).min(Duration::from_secs(60))
            }
        };
        tokio::time::sleep(wait).await;
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
