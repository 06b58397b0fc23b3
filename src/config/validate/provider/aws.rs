//! The AWS credential sets of a signed kind (`bedrock`): each key's `access_key_id`, its
//! `secret` the secret access key and `session_token` the token of temporary credentials; with
//! no keys, the environment's `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
//! `AWS_SESSION_TOKEN` as one key named `env` (read at load, like every `env:` reference, and
//! again at each reload); failing those, a web identity (`AWS_ROLE_ARN` and
//! `AWS_WEB_IDENTITY_TOKEN_FILE`, as EKS IRSA sets them) as one key named `web-identity`.

use crate::config::raw::RawKey;
use crate::config::secret::{Env, Secret, resolve};
use crate::config::validate::Problems;
use crate::config::{KeyConfig, WebIdentity};

/// A key's `access_key_id`, resolved (`env:NAME` or a literal).
pub(super) fn access_key_id(at: &str, k: &RawKey, env: &dyn Env, p: &mut Problems) -> Option<String> {
    let raw = k.access_key_id.as_deref()?;
    match resolve(raw, env) {
        Ok(id) if valid_id(id.expose()) => Some(id.expose().to_owned()),
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

/// Access key ids are upper-case letters and digits (`AKIA...`, `ASIA...`); what goes in the
/// signature's credential scope must hold no `/`, space or newline.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Checks the keys of a provider against its kind: a signed kind's keys need an access key id
/// (and with no keys it takes the environment's); the others take none.
pub(super) fn credentials(
    at: &str,
    (signed, region): (bool, Option<&str>),
    raw: &[RawKey],
    keys: &mut Vec<KeyConfig>,
    env: &dyn Env,
    p: &mut Problems,
) {
    for (i, k) in raw.iter().enumerate() {
        let kp = format!("{at}.keys[{i}]");
        if signed && k.access_key_id.is_none() {
            p.push(format!("{kp}.access_key_id"), "missing (an AWS key is an access key id and its secret)");
        }
        if !signed && (k.access_key_id.is_some() || k.session_token.is_some()) {
            p.push(format!("{kp}.access_key_id"), "only a bedrock key takes access_key_id and session_token");
        }
    }
    if signed && raw.is_empty() {
        match from_env(env).or_else(|| web_identity(env, region)) {
            Some(key) => keys.push(key),
            None => p.push(
                format!("{at}.keys"),
                "none, and no AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, nor AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE, in the environment",
            ),
        }
    }
}

/// The environment's credentials as a key named `env`.
fn from_env(env: &dyn Env) -> Option<KeyConfig> {
    let id = env.var("AWS_ACCESS_KEY_ID").filter(|id| valid_id(id))?;
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
        web_identity: Some(WebIdentity { role_arn, token_file: token_file.into(), session_name, sts_url }),
        ..KeyConfig::derived("web-identity", Secret::new(""))
    })
}
