//! A tiny HTTP client for the command line: `tier1 health` (container health checks; the image
//! has no curl) and `tier1 check --against` (fetching a running instance's `/admin/config`).

use std::time::Duration;

use bytes::Bytes;

/// GETs `url` (plain `http://`) and returns its status, or why it could not.
pub async fn check(url: &str, timeout: Duration) -> Result<http::StatusCode, String> {
    get(url, None, timeout).await.map(|(status, _)| status)
}

/// GETs `url` with an optional bearer (and the `x-tier1-admin` marker) and returns the status and
/// body.
pub(crate) async fn get(
    url: &str,
    bearer: Option<&str>,
    timeout: Duration,
) -> Result<(http::StatusCode, Bytes), String> {
    use http_body_util::BodyExt;
    let uri: http::Uri = url.parse().map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url}: only http:// URLs are supported"));
    }
    let client = crate::upstream::Client::plain(timeout);
    // The admin marker (see `crate::admin`), so `check --against` a keyless loopback instance works.
    let mut req = http::Request::get(uri).header(crate::admin::X_TIER1_ADMIN, "1");
    if let Some(b) = bearer {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {b}"));
    }
    let req = req.body(Bytes::new()).map_err(|e| e.to_string())?;
    let fetch = async {
        let resp = client.send(req).await.map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| format!("{url}: {e}"))?.to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, fetch).await.map_err(|_| format!("{url}: no answer within {timeout:?}"))?
}
