//! The manifest's background fetch: with tier1's own upstream client, never on the request path.
//! Each fetch is bounded ([`MAX_BYTES`], [`TIMEOUT`]) and conditional (`If-None-Match` with the
//! last `ETag`, `If-Modified-Since` with the last `Last-Modified`): a 304 confirms the copy. A
//! fetch that fails in any way keeps the last good copy, logs a warning and counts
//! `tier1_manifest_fetch_errors_total{reason}`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::{Catalog, Manifest, shape};
use crate::config::FrontConfig;
use crate::metrics::Metrics;
use crate::upstream::Client;

/// The largest manifest read (OmniRoute's, with every provider, is a few hundred KiB).
pub(crate) const MAX_BYTES: usize = 1 << 20;
/// Connect, answer and body of one fetch, together.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a fetch kept the last good copy (the metric's bounded `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// An answer other than 200 or 304.
    Status,
    /// Not a schema-1 manifest.
    Invalid,
    /// No whole answer within [`TIMEOUT`].
    Timeout,
    /// No connection, or it broke.
    Connect,
    /// Over [`MAX_BYTES`].
    TooLarge,
}

impl Reason {
    const ALL: [Self; 5] = [Self::Status, Self::Invalid, Self::Timeout, Self::Connect, Self::TooLarge];

    fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Invalid => "invalid",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::TooLarge => "too_large",
        }
    }
}

/// The validators of the copy held, sent back on the next fetch.
#[derive(Debug, Default)]
struct Validators {
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
}

/// What a fetch gave.
enum Fetched {
    /// 304: the copy held is current.
    NotModified,
    /// A new copy, and its validators.
    New(Catalog, Validators),
}

/// Fetches the manifest every `manifest_refresh` until `stop`, reading `[front]` from the live
/// config (`front`) before each fetch, so a reload changes the URL or the interval; a URL
/// learned from the front's header wakes it at once. A URL taken
/// out drops the copy; a changed URL forgets the validators (the copy stays until the new one).
pub(crate) async fn watch(
    manifest: Arc<Manifest>,
    metrics: Arc<Metrics>,
    front: impl Fn() -> FrontConfig + Send,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if let Err(e) = metrics.enable_manifest(&Reason::ALL.map(Reason::as_str)) {
        tracing::warn!(error = %e, "cannot register the manifest metrics");
    }
    let client = Client::web(TIMEOUT);
    let mut validators = Validators::default();
    let mut last: Option<Uri> = None;
    loop {
        let config = front();
        match manifest.url(&config) {
            None if last.take().is_some() => {
                manifest.store(None);
                validators = Validators::default();
            }
            None => {}
            Some(url) => {
                if last.as_ref() != Some(&url) {
                    validators = Validators::default();
                    last = Some(url.clone());
                }
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    () = refresh(&client, &url, &mut validators, &manifest, &metrics) => {}
                }
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(config.manifest_refresh) => {}
            () = manifest.wake.notified() => {}
        }
    }
}

/// One fetch, and what it does to the copy held.
async fn refresh(
    client: &Client,
    url: &Uri,
    validators: &mut Validators,
    manifest: &Manifest,
    metrics: &Metrics,
) {
    match fetch(client, url, validators).await {
        Ok(Fetched::NotModified) => manifest.confirmed(),
        Ok(Fetched::New(catalog, fresh)) => {
            tracing::debug!(providers = catalog.entries.len(), "front provider manifest fetched");
            *validators = fresh;
            manifest.store(Some(catalog));
            manifest.confirmed();
        }
        Err((reason, error)) => {
            let reason = reason.as_str();
            metrics.manifest_fetch_errors_total.get(crate::metrics::labels::ManifestError { reason }).inc();
            // The URL is not logged: it may carry user-info.
            tracing::warn!(reason, %error, "front provider manifest fetch failed; the last good copy stays");
        }
    }
}

/// GETs the manifest, conditionally, and checks it.
async fn fetch(client: &Client, url: &Uri, v: &Validators) -> Result<Fetched, (Reason, String)> {
    let mut req = Request::get(url.clone()).header(header::ACCEPT, "application/json");
    if let Some(etag) = &v.etag {
        req = req.header(header::IF_NONE_MATCH, etag.clone());
    }
    if let Some(date) = &v.last_modified {
        req = req.header(header::IF_MODIFIED_SINCE, date.clone());
    }
    let req = req.body(Bytes::new()).map_err(|e| (Reason::Connect, e.to_string()))?;
    let exchange = async {
        let resp = client.send(req).await.map_err(|e| (Reason::Connect, e.to_string()))?;
        match resp.status() {
            StatusCode::NOT_MODIFIED => return Ok(Fetched::NotModified),
            StatusCode::OK => {}
            s => return Err((Reason::Status, format!("answered {s}"))),
        }
        let length = resp.headers().get(header::CONTENT_LENGTH).and_then(|l| l.to_str().ok()?.parse().ok());
        if length.is_some_and(|l: usize| l > MAX_BYTES) {
            return Err((Reason::TooLarge, format!("over {MAX_BYTES} bytes")));
        }
        let fresh = Validators {
            etag: resp.headers().get(header::ETAG).cloned(),
            last_modified: resp.headers().get(header::LAST_MODIFIED).cloned(),
        };
        let body = Limited::new(resp.into_body(), MAX_BYTES).collect().await.map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                (Reason::TooLarge, format!("over {MAX_BYTES} bytes"))
            } else {
                (Reason::Connect, e.to_string())
            }
        })?;
        let catalog = shape::parse(&body.to_bytes()).map_err(|e| (Reason::Invalid, e.to_string()))?;
        Ok(Fetched::New(catalog, fresh))
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| (Reason::Timeout, format!("no whole answer within {TIMEOUT:?}")))?
}
