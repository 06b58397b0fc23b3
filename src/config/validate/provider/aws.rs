//! The AWS credential sets of a signed kind (`bedrock`): each key's `access_key_id`, its
//! `secret` the secret access key and `session_token` the token of temporary credentials. With
//! no keys, the chain of the AWS SDKs, read at load and again at each reload, its first link
//! found the one key: the environment's `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
//! `AWS_SESSION_TOKEN` (key `env`); a web identity (`AWS_ROLE_ARN` and
//! `AWS_WEB_IDENTITY_TOKEN_FILE`, as EKS IRSA sets them; key `web-identity`); the container
//! credentials endpoint (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` or `_FULL_URI`, as ECS and EKS
//! Pod Identity set them; key `container`); with `instance_metadata = true` only, and unless
//! `AWS_EC2_METADATA_DISABLED=true`, the EC2 instance metadata service (key `instance`).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::raw::{RawKey, RawProvider};
use crate::config::secret::{Env, Secret, resolve};
use crate::config::validate::Problems;
use crate::config::{
    AwsAuth, ContainerCredentials, ContainerToken, InstanceMetadata, KeyConfig, WebIdentity,
    valid_access_key_id,
};

/// A key's `access_key_id`, resolved (`env:NAME` or a literal).
pub(super) fn access_key_id(at: &str, k: &RawKey, env: &dyn Env, p: &mut Problems) -> Option<String> {
    let raw = k.access_key_id.as_deref()?;
    match resolve(raw, env) {
        Ok(id) if valid_access_key_id(id.expose()) => Some(id.expose().to_owned()),
        Ok(_) => {
            p.push(format!("{at}.access_key_id"), "not an access key id (letters and digits)");
            None
        }
        Err(e) => {
            p.push(format!("{at}.access_key_id"), e);
            None
        }
    }
}

/// A key's `session_token`, resolved.
pub(super) fn session_token(at: &str, k: &RawKey, env: &dyn Env, p: &mut Problems) -> Option<Secret> {
    let raw = k.session_token.as_deref()?;
    resolve(raw, env).map_err(|e| p.push(format!("{at}.session_token"), e)).ok()
}

/// Where the ECS agent serves `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`.
const ECS_HOST: &str = "http://169.254.170.2";
/// The instance metadata service, and over IPv6 (`AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE`).
const IMDS: (&str, &str) = ("http://169.254.169.254", "http://[fd00:ec2::254]");

/// Checks the keys of a provider against its kind: a signed kind's keys need an access key id
/// (and with no keys it takes the chain's, see the module doc); the others take none.
pub(super) fn credentials(
    at: &str,
    (signed, region): (bool, Option<&str>),
    rp: &RawProvider,
    keys: &mut Vec<KeyConfig>,
    env: &dyn Env,
    p: &mut Problems,
) {
    for (i, k) in rp.keys.iter().enumerate() {
        let kp = format!("{at}.keys[{i}]");
        if signed && k.access_key_id.is_none() {
            p.push(format!("{kp}.access_key_id"), "missing (an AWS key is an access key id and its secret)");
        }
        if !signed && (k.access_key_id.is_some() || k.session_token.is_some()) {
            p.push(format!("{kp}.access_key_id"), "only a bedrock key takes access_key_id and session_token");
        }
    }
    let instance = rp.instance_metadata.unwrap_or(false);
    if rp.instance_metadata.is_some() && !signed {
        p.push(format!("{at}.instance_metadata"), "only a bedrock provider takes instance_metadata");
    }
    if instance && !rp.keys.is_empty() {
        p.push(
            format!("{at}.instance_metadata"),
            "takes no keys (it is the last link of the chain used without keys)",
        );
    }
    if !signed || !rp.keys.is_empty() {
        return;
    }
    let found = match from_env(env).or_else(|| web_identity(env, region)) {
        Some(key) => Ok(Some(key)),
        None => container(env),
    };
    let disabled = env.var("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let found = match found {
        Ok(None) if instance && !disabled => instance_metadata(env).map(Some),
        found => found,
    };
    match found {
        Ok(Some(key)) => keys.push(key),
        Ok(None) => p.push(
            format!("{at}.keys"),
            format!(
                "none, and no AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, nor AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE, nor AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI, in the environment{}",
                match (instance, disabled) {
                    (false, _) => ", and no instance_metadata = true",
                    (true, true) => " (instance_metadata = true, but AWS_EC2_METADATA_DISABLED=true)",
                    (true, false) => "",
                }
            ),
        ),
        Err(why) => p.push(format!("{at}.keys"), why),
    }
}

/// The environment's credentials as a key named `env`.
fn from_env(env: &dyn Env) -> Option<KeyConfig> {
    let id = env.var("AWS_ACCESS_KEY_ID").filter(|id| valid_access_key_id(id))?;
    let secret = env.var("AWS_SECRET_ACCESS_KEY").filter(|s| !s.is_empty())?;
    Some(KeyConfig {
        access_key_id: Some(id),
        session_token: env.var("AWS_SESSION_TOKEN").filter(|t| !t.is_empty()).map(Secret::new),
        ..KeyConfig::derived("env", Secret::new(secret))
    })
}

/// The environment's web identity as a key named `web-identity`.
fn web_identity(env: &dyn Env, region: Option<&str>) -> Option<KeyConfig> {
    let role_arn = env.var("AWS_ROLE_ARN").filter(|r| !r.is_empty())?;
    let token_file = env.var("AWS_WEB_IDENTITY_TOKEN_FILE").filter(|f| !f.is_empty())?;
    let sts_url = env
        .var("AWS_ENDPOINT_URL_STS")
        .filter(|u| !u.is_empty())
        .or_else(|| region.map(|r| format!("https://sts.{r}.amazonaws.com/")))?;
    let session_name =
        env.var("AWS_ROLE_SESSION_NAME").filter(|n| !n.is_empty()).unwrap_or_else(|| "tier1".to_owned());
    Some(KeyConfig {
        aws: Some(AwsAuth::WebIdentity(WebIdentity {
            role_arn,
            token_file: token_file.into(),
            session_name,
            sts_url,
        })),
        ..KeyConfig::derived("web-identity", Secret::new(""))
    })
}

/// The container credentials endpoint as a key named `container`, if the environment names
/// one; `Err` when it names one tier1 must not send the token to.
fn container(env: &dyn Env) -> Result<Option<KeyConfig>, String> {
    let var = |name: &str| env.var(name).filter(|v| !v.is_empty());
    let url = match (var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"), var("AWS_CONTAINER_CREDENTIALS_FULL_URI"))
    {
        (Some(relative), _) => {
            let url = format!("{ECS_HOST}{relative}");
            if !relative.starts_with('/') || url.parse::<http::Uri>().is_err() {
                return Err("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is not a path (like /v2/credentials/ID)"
                    .to_owned());
            }
            url
        }
        (None, Some(full)) => allowed_full_uri(&full)?,
        (None, None) => return Ok(None),
    };
    let authorization =
        match (var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"), var("AWS_CONTAINER_AUTHORIZATION_TOKEN")) {
            (Some(file), _) => Some(ContainerToken::File(file.into())),
            (None, Some(token)) if http::HeaderValue::from_str(&token).is_ok() => {
                Some(ContainerToken::Value(Secret::new(token)))
            }
            (None, Some(_)) => {
                return Err("AWS_CONTAINER_AUTHORIZATION_TOKEN is not a valid header value".to_owned());
            }
            (None, None) => None,
        };
    Ok(Some(KeyConfig {
        aws: Some(AwsAuth::Container(ContainerCredentials { url, authorization })),
        ..KeyConfig::derived("container", Secret::new(""))
    }))
}

/// `AWS_CONTAINER_CREDENTIALS_FULL_URI` if the AWS SDKs would use it: any host over https; over
/// http only a loopback address, the ECS agent's 169.254.170.2 or EKS Pod Identity's
/// 169.254.170.23 and fd00:ec2::23 (a name is not resolved: `localhost` alone passes).
fn allowed_full_uri(full: &str) -> Result<String, String> {
    let uri: http::Uri = full
        .parse()
        .ok()
        .filter(|u: &http::Uri| u.authority().is_some())
        .ok_or("AWS_CONTAINER_CREDENTIALS_FULL_URI is not a URL")?;
    let host = uri.host().unwrap_or_default();
    let allowed = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => {
            let link_local = [
                IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
                IpAddr::V4(Ipv4Addr::new(169, 254, 170, 23)),
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23)),
            ];
            let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>();
            host.eq_ignore_ascii_case("localhost")
                || ip.is_ok_and(|ip| ip.is_loopback() || link_local.contains(&ip))
        }
        _ => false,
    };
    if allowed {
        Ok(full.to_owned())
    } else {
        Err(format!(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI: {host:?} is not allowed (https to any host; http only to a loopback address, 169.254.170.2, 169.254.170.23 or fd00:ec2::23)"
        ))
    }
}

/// The instance metadata service as a key named `instance`.
fn instance_metadata(env: &dyn Env) -> Result<KeyConfig, String> {
    let ipv6 =
        env.var("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE").is_some_and(|m| m.eq_ignore_ascii_case("ipv6"));
    let endpoint = match env.var("AWS_EC2_METADATA_SERVICE_ENDPOINT").filter(|e| !e.is_empty()) {
        Some(e) => {
            let ok = e.parse::<http::Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https"))
                    && u.authority().is_some()
                    && matches!(u.path(), "" | "/")
                    && u.query().is_none()
            });
            if !ok {
                return Err(
                    "AWS_EC2_METADATA_SERVICE_ENDPOINT is not an http(s) URL without a path".to_owned()
                );
            }
            e.trim_end_matches('/').to_owned()
        }
        None if ipv6 => IMDS.1.to_owned(),
        None => IMDS.0.to_owned(),
    };
    Ok(KeyConfig {
        aws: Some(AwsAuth::Instance(InstanceMetadata { endpoint })),
        ..KeyConfig::derived("instance", Secret::new(""))
    })
}
