//! The client over TLS: HTTP/2 when the provider offers it (one shared connection), HTTP/1.1
//! (pooled) when it does not, against a hyper server on a real socket.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use super::{Client, Connector};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
}

/// The test CA's `localhost` certificate, offering `alpn`.
fn acceptor(alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
    let (certs, key) =
        crate::tls::certified_key(&fixture("server-a.pem"), &fixture("server-a-key.pem")).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A TLS server offering `alpn`, answering every request with its HTTP version; counts
/// connections.
async fn server(alpn: &[&[u8]]) -> (String, Arc<AtomicUsize>) {
    let (open, _) = tokio::sync::watch::channel(true);
    let (arrived, _) = tokio::sync::mpsc::unbounded_channel();
    held_server(alpn, open.subscribe(), arrived).await
}

/// The same, holding each answer until `open` is true, and reporting each request's arrival.
async fn held_server(
    alpn: &[&[u8]],
    open: tokio::sync::watch::Receiver<bool>,
    arrived: tokio::sync::mpsc::UnboundedSender<()>,
) -> (String, Arc<AtomicUsize>) {
    let acceptor = acceptor(alpn);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://localhost:{}/v1/chat", listener.local_addr().unwrap().port());
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let (acceptor, open, arrived) = (acceptor.clone(), open.clone(), arrived.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (mut open, arrived) = (open.clone(), arrived.clone());
                    async move {
                        let _ = arrived.send(());
                        let _ = open.wait_for(|open| *open).await;
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let text = format!("{body:?}");
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (url, connections)
}

fn client() -> Client {
    client_with(super::pool::H2_STREAMS)
}

fn client_with(h2_streams: usize) -> Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in crate::tls::load_certs(&fixture("ca.pem")).unwrap() {
        roots.add(cert).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Client::with_h2_streams(
        Connector::new(Some(tls), Duration::from_secs(5)),
        8,
        Duration::from_secs(60),
        h2_streams,
    )
}

async fn call(client: &Client, url: &str, body: &'static str) -> (Version, String) {
    let resp =
        client.send(Request::post(url).body(Bytes::from_static(body.as_bytes())).unwrap()).await.unwrap();
    let version = resp.version();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (version, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn http2_is_used_when_offered_and_its_connection_shared() {
    let (url, connections) = server(&[b"h2", b"http/1.1"]).await;
    let c = client();
    assert_eq!(call(&c, &url, "one").await, (Version::HTTP_2, "b\"one\"".to_owned()));
    let together = tokio::join!(call(&c, &url, "a"), call(&c, &url, "b"), call(&c, &url, "c"));
    assert_eq!(together.2, (Version::HTTP_2, "b\"c\"".to_owned()));
    assert_eq!(connections.load(Ordering::SeqCst), 1, "four requests, one HTTP/2 connection");
}

#[tokio::test]
async fn a_cold_burst_shares_one_http2_connection_and_http1_calls_each_get_their_own() {
    let (url, connections) = server(&[b"h2"]).await;
    let c = client();
    let burst: Vec<_> = (0..8).map(|_| call(&c, &url, "x")).collect();
    for (version, _) in join_all(burst).await {
        assert_eq!(version, Version::HTTP_2);
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1, "eight concurrent first calls, one connection");

    let (url, connections) = server(&[b"http/1.1"]).await;
    let c = client();
    call(&c, &url, "first").await;
    let burst: Vec<_> = (0..4).map(|_| c.send(Request::post(&url).body(Bytes::new()).unwrap())).collect();
    let held: Vec<_> = join_all(burst).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        4,
        "an HTTP/1.1 origin: one connection per call in flight"
    );
    drop(held);
}

/// Runs the futures concurrently on this task (the h1 tests use it too).
pub(super) async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (f, d) in pinned.iter_mut().zip(done.iter_mut()) {
            if d.is_none()
                && let std::task::Poll::Ready(v) = f.as_mut().poll(cx)
            {
                *d = Some(v);
            }
        }
        if done.iter().all(Option::is_some) { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    done.into_iter().flatten().collect()
}

#[tokio::test]
async fn http1_over_tls_is_pooled_when_http2_is_not_offered() {
    let (url, connections) = server(&[b"http/1.1"]).await;
    let c = client();
    for body in ["one", "two", "three"] {
        assert_eq!(call(&c, &url, body).await, (Version::HTTP_11, format!("b{body:?}")));
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1, "three requests, one kept-alive connection");
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_connect_error() {
    let (url, _) = server(&[b"h2"]).await;
    let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let c = Client::new(Connector::new(Some(tls), Duration::from_secs(5)), 8, Duration::from_secs(60));
    let err = c.send(Request::post(&url).body(Bytes::new()).unwrap()).await.err().unwrap();
    assert!(matches!(err, super::Error::Connect(super::ConnectError::Tls(_))), "{err}");
}

#[tokio::test]
async fn a_full_http2_connection_gets_a_sibling_instead_of_queueing() {
    let (open, gate) = tokio::sync::watch::channel(false);
    let (arrived, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    let (url, connections) = held_server(&[b"h2"], gate, arrived).await;
    // Two requests in flight per connection: five held requests need three connections.
    let c = client_with(2);
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { call(&c, &url, "held").await })
        })
        .collect();
    for _ in 0..5 {
        arrivals.recv().await.unwrap();
    }
    assert_eq!(connections.load(Ordering::SeqCst), 3);
    open.send(true).unwrap();
    for call in calls {
        assert_eq!(call.await.unwrap().0, Version::HTTP_2);
    }
    // Their places were given back with their bodies: the next calls reuse the connections.
    call(&c, &url, "again").await;
    call(&c, &url, "again").await;
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn after_a_failed_dial_the_waiting_calls_dial_on_their_own() {
    // A provider that accepts TCP and never answers the TLS handshake: each dial takes the whole
    // connect timeout. Four concurrent first calls: one dials while three wait; when it fails,
    // the three dial at once (one round), rather than one after another (three rounds).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://localhost:{}/v1/chat", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let timeout = Duration::from_millis(300);
    let c = {
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        Client::new(Connector::new(Some(tls), timeout), 8, Duration::from_secs(60))
    };
    let started = tokio::time::Instant::now();
    let calls: Vec<_> = (0..4).map(|_| c.send(Request::post(&url).body(Bytes::new()).unwrap())).collect();
    for result in join_all(calls).await {
        assert!(matches!(result, Err(super::Error::Connect(super::ConnectError::Tls(_)))));
    }
    let took = started.elapsed();
    assert!(
        took >= timeout * 2 && took < timeout * 3,
        "two rounds of the connect timeout, not four: {took:?}"
    );
}

/// An HTTP/2 provider (h2's server, for its resets) that resets the first `reset` streams it
/// receives with `reason` and answers the others with an empty 200; counts the streams.
async fn resetting_server(reset: usize, reason: h2::Reason) -> (String, Arc<AtomicUsize>) {
    let acceptor = acceptor(&[b"h2"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://localhost:{}/v1/chat", listener.local_addr().unwrap().port());
    let streams = Arc::new(AtomicUsize::new(0));
    let count = streams.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut conn) = h2::server::handshake(tls).await else { return };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    if count.fetch_add(1, Ordering::SeqCst) < reset {
                        respond.send_reset(reason);
                    } else {
                        let _ = respond.send_response(Response::new(()), true);
                    }
                }
            });
        }
    });
    (url, streams)
}

/// A stream the provider refused (RFC 9113 8.7: not processed) goes again, once; one it reset
/// for another reason may have been worked on, and does not. Fails before the fix: the refused
/// call was an error after one stream.
#[tokio::test]
async fn a_refused_http2_stream_is_sent_again_once_and_another_reset_is_not() {
    let (url, streams) = resetting_server(1, h2::Reason::REFUSED_STREAM).await;
    let c = client();
    let resp = c.send(Request::post(&url).body(Bytes::from_static(b"x")).unwrap()).await.unwrap();
    assert_eq!((resp.version(), resp.status().as_u16()), (Version::HTTP_2, 200));
    assert_eq!(streams.load(Ordering::SeqCst), 2, "refused once, then answered");

    let (url, streams) = resetting_server(2, h2::Reason::REFUSED_STREAM).await;
    let c = client();
    assert!(c.send(Request::post(&url).body(Bytes::new()).unwrap()).await.is_err());
    assert_eq!(streams.load(Ordering::SeqCst), 2, "sent again once, not more");

    let (url, streams) = resetting_server(1, h2::Reason::INTERNAL_ERROR).await;
    let c = client();
    assert!(c.send(Request::post(&url).body(Bytes::new()).unwrap()).await.is_err());
    assert_eq!(streams.load(Ordering::SeqCst), 1, "a stream the provider may have begun on");
}

/// An HTTP/2 provider written frame by frame (h2's server cannot be made to send a GOAWAY below
/// a stream it received): on its first connection it answers the first request with GOAWAY and
/// last stream 0, so the request was never processed; later connections answer 200. Counts
/// connections and requests.
async fn going_away_server() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let acceptor = acceptor(&[b"h2"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://localhost:{}/v1/chat", listener.local_addr().unwrap().port());
    let (connections, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (opened, count) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let first = opened.fetch_add(1, Ordering::SeqCst) == 0;
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut preface = [0u8; 24];
                if tls.read_exact(&mut preface).await.is_err() {
                    return;
                }
                // An empty SETTINGS frame.
                tls.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
                loop {
                    let mut head = [0u8; 9];
                    if tls.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
                    let mut payload = vec![0u8; len];
                    if tls.read_exact(&mut payload).await.is_err() {
                        return;
                    }
                    let (kind, flags, id) = (head[3], head[4], &head[5..9]);
                    let reply: Vec<u8> = match kind {
                        // SETTINGS (not an ACK): ACK it.
                        4 if flags & 1 == 0 => vec![0, 0, 0, 4, 1, 0, 0, 0, 0],
                        // HEADERS: a request.
                        1 => {
                            count.fetch_add(1, Ordering::SeqCst);
                            if first {
                                // GOAWAY, last stream 0, NO_ERROR.
                                vec![0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
                            } else {
                                // HEADERS, END_STREAM | END_HEADERS, `:status: 200` (HPACK 0x88).
                                [&[0, 0, 1, 1, 5][..], id, &[0x88]].concat()
                            }
                        }
                        _ => continue,
                    };
                    tls.write_all(&reply).await.unwrap();
                }
            });
        }
    });
    (url, connections, requests)
}

/// A request above the provider's GOAWAY last stream was not processed (RFC 9113 6.8): it goes
/// again, on a new connection (the one going away is not given it again). Fails before the fix:
/// the GOAWAY was the call's error.
#[tokio::test]
async fn an_http2_request_above_a_goaway_is_sent_again_on_a_new_connection() {
    let (url, connections, requests) = going_away_server().await;
    let c = client();
    let resp = c.send(Request::post(&url).body(Bytes::from_static(b"x")).unwrap()).await.unwrap();
    assert_eq!((resp.version(), resp.status().as_u16()), (Version::HTTP_2, 200));
    assert_eq!((connections.load(Ordering::SeqCst), requests.load(Ordering::SeqCst)), (2, 2));
}
