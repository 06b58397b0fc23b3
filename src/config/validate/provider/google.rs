//! The Google Cloud settings of a `vertex` provider: `project` and `location` (or `global`),
//! required by it, refused by the other kinds; both go in every URL, so both are checked. Its
//! credentials: each key's `secret` is a service account's key file (JSON, usually
//! `file:/path/key.json`: its `client_email`, `private_key` checked to be an RSA PKCS#8 key,
//! `token_uri`) or else an access token sent as it is; with no keys, `workload_identity = true`
//! makes one key `workload-identity` whose tokens come from the metadata server
//! (`GCE_METADATA_HOST` overrides its host, as in Google's SDKs). Errors say what is wrong with a
//! key file, never what it holds.

use crate::config::ProviderKind;
use crate::config::raw::RawProvider;
use crate::config::secret::{Env, Secret};
use crate::config::validate::Problems;
use crate::config::{GoogleAuth, KeyConfig, ServiceAccount};
use crate::providers::{BaseUrl, vertex};

/// Where Google's SDKs exchange a service account's JWT when its key file names no `token_uri`.
const TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The metadata server's host when `GCE_METADATA_HOST` is not set.
const METADATA_HOST: &str = "metadata.google.internal";

/// `project` and `location`: required and valid for a located kind (`vertex`), refused by the
/// others.
pub(super) fn place(
    at: &str,
    kind: ProviderKind,
    rp: &RawProvider,
    p: &mut Problems,
) -> (Option<String>, Option<String>) {
    let located = matches!(kind.spec().base_url(), BaseUrl::Located { .. });
    let mut check = |field: &str, raw: Option<&str>, valid: fn(&str) -> bool, example: &str| match raw {
        None if located => {
            p.push(
                format!("{at}.{field}"),
                format!("missing (a {} provider needs one, e.g. {example})", kind.as_str()),
            );
            None
        }
        None => None,
        Some(_) if !located => {
            p.push(format!("{at}.{field}"), format!("a {} provider takes no {field}", kind.as_str()));
            None
        }
        Some(v) if valid(v) => Some(v.to_owned()),
        Some(v) => {
            p.push(format!("{at}.{field}"), format!("{v:?} is not a {field} name (like {example})"));
            None
        }
    };
    let project = check("project", rp.project.as_deref(), vertex::valid_project, "\"my-project\"");
    let location =
        check("location", rp.location.as_deref(), vertex::valid_location, "\"us-east5\" or \"global\"");
    (project, location)
}

/// The credentials of a `vertex` provider's keys (see the module doc); the other kinds take no
/// `workload_identity`.
pub(super) fn credentials(
    at: &str,
    kind: ProviderKind,
    rp: &RawProvider,
    keys: &mut Vec<KeyConfig>,
    env: &dyn Env,
    p: &mut Problems,
) {
    let workload = rp.workload_identity.unwrap_or(false);
    if kind != ProviderKind::Vertex {
        if rp.workload_identity.is_some() {
            p.push(format!("{at}.workload_identity"), "only a vertex provider takes workload_identity");
        }
        return;
    }
    for key in keys.iter_mut() {
        let text = key.secret.expose().trim_start();
        if !text.starts_with('{') {
            continue; // An access token, sent as it is.
        }
        match service_account(text) {
            Ok(sa) => key.google = Some(GoogleAuth::ServiceAccount(sa)),
            Err(why) => {
                let i = rp
                    .keys
                    .iter()
                    .enumerate()
                    .position(|(i, k)| k.name.clone().unwrap_or_else(|| format!("key{i}")) == key.name);
                let kp = i.map_or_else(|| format!("{at}.keys"), |i| format!("{at}.keys[{i}]"));
                p.push(format!("{kp}.secret"), format!("not a usable service-account key file: {why}"));
            }
        }
    }
    match (rp.keys.is_empty(), workload) {
        (true, true) => keys.push(workload_identity(env)),
        (true, false) => p.push(
            format!("{at}.keys"),
            "none (a key's secret is a service-account key file, e.g. \"file:/etc/tier1/sa.json\"), and no workload_identity = true",
        ),
        (false, true) => {
            p.push(format!("{at}.workload_identity"), "takes no keys (its one key is the metadata server's)");
        }
        (false, false) => {}
    }
}

/// What tier1 needs of a service-account key file; `Err` names what is missing or wrong.
fn service_account(text: &str) -> Result<ServiceAccount, String> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("invalid JSON at line {} column {}", e.line(), e.column()))?;
    let field = |name: &str| v.get(name).and_then(serde_json::Value::as_str);
    if field("type") != Some("service_account") {
        return Err("its type is not \"service_account\"".to_owned());
    }
    let client_email = field("client_email")
        .filter(|e| e.contains('@') && e.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or("no client_email")?;
    let private_key = field("private_key").ok_or("no private_key")?;
    crate::pem::rsa_pkcs8(private_key).map_err(|why| format!("private_key: {why}"))?;
    let token_uri = field("token_uri").unwrap_or(TOKEN_URI);
    let uri_ok = token_uri
        .parse::<http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some());
    if !uri_ok {
        return Err("token_uri is not an http(s) URL".to_owned());
    }
    Ok(ServiceAccount {
        client_email: client_email.to_owned(),
        private_key_id: field("private_key_id").map(str::to_owned),
        private_key: Secret::new(private_key),
        token_uri: token_uri.to_owned(),
    })
}

/// The metadata server's key, named `workload-identity`.
fn workload_identity(env: &dyn Env) -> KeyConfig {
    let host = env
        .var("GCE_METADATA_HOST")
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
        })
        .unwrap_or_else(|| METADATA_HOST.to_owned());
    KeyConfig {
        google: Some(GoogleAuth::Metadata(format!(
            "http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
        ))),
        ..KeyConfig::derived("workload-identity", Secret::new(""))
    }
}
