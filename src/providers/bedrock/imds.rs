//! Credentials from the EC2 instance metadata service, IMDSv2 only (opt-in:
//! `instance_metadata = true`): a session token first (`PUT /latest/api/token` with
//! `X-aws-ec2-metadata-token-ttl-seconds: 21600`), then with it in `X-aws-ec2-metadata-token`
//! the instance role's name (`GET /latest/meta-data/iam/security-credentials/`) and its
//! credentials (`GET .../ROLE`, `{Code, AccessKeyId, SecretAccessKey, Token, Expiration}`). A
//! refused token is a failed fetch: tier1 never falls back to IMDSv1's token-less GETs. A new
//! session token at each fetch (once an hour or so). A [`Source`] for the background refresher.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, header};

use super::credentials::{FetchError, call, json_credentials, lifetime};
use super::sigv4::AwsKey;
use crate::config::{InstanceMetadata, Secret};
use crate::providers::refresh::{Fetched, Source};
use crate::upstream;

/// What the log calls the endpoint.
const IMDS: &str = "instance metadata";
/// Where the session token is had.
pub(crate) const TOKEN_PATH: &str = "/latest/api/token";
/// The instance role's name, and under it its credentials.
pub(crate) const CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials/";
/// The session token's lifetime asked for (the longest, 6 hours).
const TOKEN_TTL: HeaderValue = HeaderValue::from_static("21600");
/// The header asking for a session token of so many seconds.
pub(crate) const TTL_HEADER: HeaderName = HeaderName::from_static("x-aws-ec2-metadata-token-ttl-seconds");
/// The header carrying the session token.
pub(crate) const TOKEN_HEADER: HeaderName = HeaderName::from_static("x-aws-ec2-metadata-token");

impl Source for InstanceMetadata {
    type Value = AwsKey;
    type Error = FetchError;

    fn identity(&self) -> String {
        format!("instance metadata {}", self.endpoint)
    }

    async fn fetch(&self, client: &upstream::Client) -> Result<Fetched<AwsKey>, FetchError> {
        let request = |method: Method, path: &str| {
            Request::builder()
                .method(method)
                .uri(format!("{}{path}", self.endpoint))
                .body(Bytes::new())
                .map_err(|_| FetchError::Unreachable(IMDS))
        };
        let mut put = request(Method::PUT, TOKEN_PATH)?;
        put.headers_mut().insert(TTL_HEADER, TOKEN_TTL);
        let token = call(client, put, IMDS).await?;
        let mut token = HeaderValue::from_bytes(token.trim_ascii())
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or(FetchError::TokenValue(IMDS))?;
        token.set_sensitive(true);
        let get = |path: &str| {
            let mut req = request(Method::GET, path)?;
            req.headers_mut().insert(TOKEN_HEADER, token.clone());
            Ok::<_, FetchError>(req)
        };
        let roles = call(client, get(CREDENTIALS_PATH)?, IMDS).await?;
        let role = role_name(&roles).ok_or(FetchError::Answer(IMDS))?;
        let mut creds = get(&format!("{CREDENTIALS_PATH}{role}"))?;
        creds.headers_mut().insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let body = call(client, creds, IMDS).await?;
        let (value, expires) = json_credentials(&body).ok_or(FetchError::Answer(IMDS))?;
        Ok(Fetched { value, valid_for: lifetime(expires) })
    }

    fn secrets(key: &AwsKey) -> Vec<Secret> {
        key.secrets()
    }
}

/// The instance role's name: the answer's first line, if it is an IAM role name (letters,
/// digits and `+=,.@_-`, at most 64: it goes in the next URL's path).
fn role_name(answer: &[u8]) -> Option<&str> {
    let first = std::str::from_utf8(answer).ok()?.lines().next()?.trim();
    let valid = |b: u8| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b);
    (!first.is_empty() && first.len() <= 64 && first.bytes().all(valid) && first != "." && first != "..")
        .then_some(first)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::{Instant, sleep_until};

    use super::*;
    use crate::mock::server::{MockConfig, MockUpstream};

    /// Paused time over real sockets on 127.0.0.1: loopback I/O is ready by the time the
    /// runtime looks, so the clock only jumps when both sides wait on timers.
    #[tokio::test(start_paused = true)]
    async fn credentials_are_fetched_again_five_minutes_before_they_expire() {
        let t0 = Instant::now();
        let mock = MockUpstream::start(MockConfig::default().instance_metadata("ASIAI", "s")).await.unwrap();
        let source = InstanceMetadata { endpoint: mock.url() };
        let client = upstream::Client::plain(Duration::from_secs(1));
        let current = crate::providers::refresh::start(source, client);
        let served = || mock.stats.snapshot().aws_credentials_served;
        sleep_until(t0 + Duration::from_secs(1)).await;
        assert_eq!(current.get().map(|k| k.access_key_id.clone()).as_deref(), Some("ASIAI"));
        assert_eq!(served(), 1);
        // The mock's credentials are valid for an hour: fetched again at 55 minutes.
        sleep_until(t0 + Duration::from_secs(3298)).await;
        assert_eq!(served(), 1);
        sleep_until(t0 + Duration::from_secs(3301)).await;
        assert_eq!(served(), 2);
        let fetches = mock.stats.requests().iter().filter(|r| r.path == TOKEN_PATH).count();
        assert_eq!(fetches, 2, "a new session token at each fetch");
    }

    #[test]
    fn the_role_name_is_the_first_line_and_never_a_path() {
        assert_eq!(role_name(b"tier1-role\n"), Some("tier1-role"));
        assert_eq!(role_name(b"a+b=c,d.e@f_g-h\nother"), Some("a+b=c,d.e@f_g-h"));
        for bad in [&b""[..], b"\n", b"../admin", b"a/b", b"..", b"role?x", &[b'r'; 65]] {
            assert_eq!(role_name(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
