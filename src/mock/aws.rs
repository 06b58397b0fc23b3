//! The mock's AWS credential endpoints, each answer counted: the container credentials
//! endpoint of ECS and EKS Pod Identity (`GET` [`CONTAINER_PATH`], its `Authorization` one of
//! the tokens it accepts) and the EC2 instance metadata service in IMDSv2 (a `PUT` of
//! `/latest/api/token` with a TTL gives the session token, which every `GET` must carry: a
//! token-less IMDSv1 GET is a 401, as on an instance requiring IMDSv2). Both mint credentials
//! valid for an hour whose access key the Bedrock routes then accept, with their own session
//! token. [`METADATA`] taken down (`MockStats::set_down`) makes both answer 503.

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use serde_json::json;

use super::{MockBody, json_response};

/// Where the mock serves container credentials.
pub const CONTAINER_PATH: &str = "/v2/credentials/mock-task";
/// The session token of the container endpoint's credentials.
pub const CONTAINER_SESSION_TOKEN: &str = "mock-container-session-token";
/// The session token of the instance metadata's credentials.
pub const INSTANCE_SESSION_TOKEN: &str = "mock-instance-session-token";
/// The instance role the metadata names.
pub const INSTANCE_ROLE: &str = "tier1-instance-role";
/// The IMDSv2 session token the mock hands out.
const IMDS_TOKEN: &str = "mock-imds-v2-token";
/// The name to take down (`MockStats::set_down`) for both endpoints to answer 503.
pub const METADATA: &str = "(aws metadata)";

/// What the mock's AWS credential endpoints answer.
#[derive(Debug, Clone, Default)]
pub struct AwsMetadataMock {
    /// The container endpoint: the `Authorization` values it takes (none: it takes none) and
    /// the access key id it answers.
    pub container: Option<(Vec<String>, String)>,
    /// The instance metadata: the access key id it answers.
    pub instance: Option<String>,
}

/// The credentials answer of `id` (its secret `secret`) with `token`, valid for an hour.
fn credentials(id: &str, secret: &str, token: &str, code: bool) -> Response<MockBody> {
    let expires = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
    );
    let mut v = json!({"AccessKeyId": id, "SecretAccessKey": secret, "Token": token,
        "Expiration": expires.to_string()});
    if code {
        v["Code"] = "Success".into();
        v["Type"] = "AWS-HMAC".into();
        v["LastUpdated"] = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().into();
    }
    json_response(StatusCode::OK, Bytes::from(v.to_string()))
}

fn text(status: StatusCode, body: &'static str) -> Response<MockBody> {
    let mut resp = json_response(status, Bytes::from_static(body.as_bytes()));
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    resp
}

/// The answer of a request for the AWS credential endpoints, if it is one; `Some(true)` in the
/// second place when credentials were handed out. `secret_of` gives an access key's secret.
pub(crate) fn answer<'k>(
    mock: &AwsMetadataMock,
    (method, path, headers): (&Method, &str, &HeaderMap),
    down: bool,
    secret_of: impl Fn(&str) -> Option<&'k str>,
) -> Option<(Response<MockBody>, bool)> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some((tokens, id)) = &mock.container
        && path == CONTAINER_PATH
    {
        if down {
            return Some((text(StatusCode::SERVICE_UNAVAILABLE, "down"), false));
        }
        let authorized =
            tokens.is_empty() || header("authorization").is_some_and(|t| tokens.iter().any(|w| w == t));
        if !authorized || method != Method::GET {
            let body = r#"{"code":"AccessDenied","message":"mock: wrong authorization token"}"#;
            return Some((
                json_response(StatusCode::UNAUTHORIZED, Bytes::from_static(body.as_bytes())),
                false,
            ));
        }
        let secret = secret_of(id).unwrap_or_default();
        return Some((credentials(id, secret, CONTAINER_SESSION_TOKEN, false), true));
    }
    let id = mock.instance.as_ref()?;
    if !path.starts_with("/latest/") {
        return None;
    }
    if down {
        return Some((text(StatusCode::SERVICE_UNAVAILABLE, "down"), false));
    }
    if path == "/latest/api/token" {
        let ttl = header("x-aws-ec2-metadata-token-ttl-seconds").and_then(|t| t.parse::<u32>().ok());
        return Some(match (method, ttl) {
            (&Method::PUT, Some(1..=21600)) => (text(StatusCode::OK, IMDS_TOKEN), false),
            (&Method::PUT, _) => (text(StatusCode::BAD_REQUEST, "missing or invalid ttl"), false),
            _ => (text(StatusCode::METHOD_NOT_ALLOWED, "PUT only"), false),
        });
    }
    if method != Method::GET || header("x-aws-ec2-metadata-token") != Some(IMDS_TOKEN) {
        return Some((text(StatusCode::UNAUTHORIZED, "IMDSv2 token required"), false));
    }
    let role = path.strip_prefix("/latest/meta-data/iam/security-credentials/")?;
    Some(match role {
        "" => (text(StatusCode::OK, INSTANCE_ROLE), false),
        INSTANCE_ROLE => {
            let secret = secret_of(id).unwrap_or_default();
            (credentials(id, secret, INSTANCE_SESSION_TOKEN, true), true)
        }
        _ => (text(StatusCode::NOT_FOUND, "no such role"), false),
    })
}
