//! `tier1 health`: a tiny HTTP GET for container health checks (the image has no curl).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// GETs `url` (plain `http://`) and returns its status, or why it could not.
pub async fn check(url: &str, timeout: Duration) -> Result<http::StatusCode, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url}: only http:// URLs are supported"));
    }
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(timeout));
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    match tokio::time::timeout(timeout, client.get(uri)).await {
        Err(_) => Err(format!("{url}: no answer within {timeout:?}")),
        Ok(Err(e)) => Err(format!("{url}: {e}")),
        Ok(Ok(resp)) => Ok(resp.status()),
    }
}
