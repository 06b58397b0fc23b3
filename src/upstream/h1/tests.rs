use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Request;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::{Chunked, Framing, Parsed, Step, parse};
use crate::upstream::{Body, Client, Connector, Error};

fn head(text: &str) -> Result<Option<Parsed>, super::Error> {
    parse(&mut BytesMut::from(text))
}

fn framing(text: &str) -> (Framing, bool) {
    match head(text) {
        Ok(Some(Parsed::Final(_, framing, reusable))) => (framing, reusable),
        _ => panic!("not a final head: {text:?}"),
    }
}

#[test]
fn heads_frame_their_bodies() {
    assert!(matches!(framing("HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n"), (Framing::Length(12), true)));
    assert!(matches!(
        framing("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"),
        (Framing::Chunked, true)
    ));
    assert!(matches!(framing("HTTP/1.1 200 OK\r\n\r\n"), (Framing::Eof, false)));
    assert!(matches!(framing("HTTP/1.1 204 No Content\r\n\r\n"), (Framing::Empty, true)));
    assert!(matches!(
        framing("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n"),
        (_, false)
    ));
    assert!(matches!(framing("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n"), (_, false)));
    assert!(matches!(
        framing("HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 1\r\n\r\n"),
        (_, true)
    ));
    assert!(matches!(
        framing("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\n"),
        (Framing::Length(3), _)
    ));
}

#[test]
fn ambiguous_or_broken_heads_are_refused() {
    for text in [
        "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: +1\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        "SMTP ready\r\n\r\n",
    ] {
        assert!(head(text).is_err(), "{text:?}");
    }
    let many: String = (0..101).map(|i| format!("x-{i}: v\r\n")).collect();
    assert!(head(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")).is_err());
    assert!(matches!(head("HTTP/1.1 200 OK\r\ncontent-le"), Ok(None)));
}

/// RFC 9112 §6.1/§6.3 across every Transfer-Encoding field line, not the first only. Fails before
/// the fix: `gzip` then `chunked` on two lines read as until-close (only the first line was
/// read), `chunked` twice was taken as chunked, and `gzip` alone ran to the close.
#[test]
fn transfer_codings_are_read_across_every_line() {
    // Split over lines or in one, a single chunked coding is the framing.
    assert!(matches!(
        framing("HTTP/1.1 200 OK\r\ntransfer-encoding: \r\ntransfer-encoding: Chunked\r\n\r\n"),
        (Framing::Chunked, true)
    ));
    // Codings tier1 did not ask for (it sends no TE) and does not decode, chunked twice, chunked
    // not last, or any transfer coding in an HTTP/1.0 answer: a broken provider.
    for te in [
        "transfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n",
        "transfer-encoding: chunked\r\ntransfer-encoding: gzip\r\n",
        "transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n",
        "transfer-encoding: chunked, chunked\r\n",
        "transfer-encoding: gzip, chunked\r\n",
        "transfer-encoding: gzip\r\n",
        "transfer-encoding: identity\r\n",
        "transfer-encoding: \r\n",
        "transfer-encoding: chunked;q=1\r\n",
    ] {
        let text = format!("HTTP/1.1 200 OK\r\n{te}\r\n");
        assert!(head(&text).is_err(), "{text:?}");
    }
    assert!(head("HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
    // With a Content-Length too, Transfer-Encoding wins and the connection is not reused (§6.3).
    for text in [
        "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: x\r\n\r\n",
    ] {
        assert!(matches!(framing(text), (Framing::Chunked, false)), "{text:?}");
        let Ok(Some(Parsed::Final(resp, ..))) = head(text) else { panic!("no head") };
        assert!(!resp.headers().contains_key("content-length"), "a length that does not frame the body");
    }
    let wire =
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    assert_eq!(
        super::decode([&wire[..]]).unwrap(),
        (200, b"abc".to_vec()),
        "the body is chunked, not 2 bytes"
    );
}

#[test]
fn interim_answers_are_skipped_and_values_keep_their_bytes() {
    let mut buf = BytesMut::from(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nx-a: b c\r\ncontent-length: 2\r\n\r\nhi",
    );
    assert!(matches!(parse(&mut buf), Ok(Some(Parsed::Interim))));
    let Ok(Some(Parsed::Final(resp, _, _))) = parse(&mut buf) else { panic!("no final head") };
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(resp.headers()["x-a"], "b c");
    assert_eq!(&buf[..], b"hi", "the body stays in the buffer");
}

/// Decodes `wire` fed in pieces of `step` bytes.
fn dechunk(wire: &[u8], step: usize) -> Result<(Vec<u8>, BytesMut), super::Error> {
    let (mut dec, mut buf, mut out) = (Chunked::Size, BytesMut::new(), Vec::new());
    for piece in wire.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match dec.step(&mut buf)? {
                Step::Data(d) => out.extend_from_slice(&d),
                Step::More => break,
                Step::End => return Ok((out, buf)),
            }
        }
    }
    Err(super::Error::Invalid("unfinished"))
}

#[test]
fn chunked_bodies_decode_whatever_the_split() {
    let wire = b"5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
    for step in 1..=wire.len() {
        let (body, left) = dechunk(wire, step).unwrap();
        assert_eq!(body, b"hello 0123456789", "split every {step}");
        assert!(b"NEXT".starts_with(&left), "split {step}: the decoder read past the end: {left:?}");
    }
    assert!(dechunk(b"5\r\nhelloXX0\r\n\r\n", 3).is_err(), "data must end with CRLF");
    assert!(dechunk(b"zz\r\n", 1).is_err());
    assert!(dechunk(b"11111111111111111\r\n", 4).is_err(), "a size over 64 bits");
    assert!(dechunk(&[b'1'; 5000], 100).is_err(), "an endless size line");
}

/// A scripted provider: answers each request on a connection with the next of `answers`,
/// then closes the connection if the script says so. Counts connections and reports requests.
struct Upstream {
    url: String,
    opened: Arc<AtomicUsize>,
    requests: mpsc::UnboundedReceiver<String>,
    closed: mpsc::UnboundedReceiver<()>,
}

async fn upstream(answers: &'static [&'static str], close_after: usize) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/x", listener.local_addr().unwrap());
    let opened = Arc::new(AtomicUsize::new(0));
    let (req_tx, requests) = mpsc::unbounded_channel();
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let count = opened.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let (req_tx, closed_tx) = (req_tx.clone(), closed_tx.clone());
            tokio::spawn(async move {
                let mut served = 0;
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        let _ = closed_tx.send(());
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                    let text = String::from_utf8_lossy(&buf[..end]).to_string();
                    let len = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |n| n.parse::<usize>().unwrap());
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                    buf.drain(..end + 4 + len);
                    let _ = req_tx.send(format!("{text}\n\n{body}"));
                    let answer = answers[served.min(answers.len() - 1)];
                    served += 1;
                    if answer.is_empty() {
                        // Closes without answering, as a provider does when it drops an idle
                        // connection just as a request arrives on it.
                        let _ = closed_tx.send(());
                        return;
                    }
                    if sock.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                    if served == close_after {
                        let _ = closed_tx.send(());
                        return;
                    }
                }
            });
        }
    });
    Upstream { url, opened, requests, closed }
}

fn client(max_idle: usize, idle: Duration) -> Client {
    Client::new(Connector::new(None, Duration::from_secs(1)), max_idle, idle)
}

async fn call(client: &Client, url: &str, body: &'static str) -> Result<(u16, Bytes), Error> {
    let req = Request::post(url).header("x-k", "v").body(Bytes::from_static(body.as_bytes())).unwrap();
    let resp = client.send(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| Error::Failed(e.to_string()))?.to_bytes();
    Ok((status, body))
}

const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
const CHUNKED: &str = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";

#[tokio::test]
async fn requests_are_written_whole_and_connections_reused() {
    let mut up = upstream(&[OK, CHUNKED, OK], 0).await;
    let c = client(8, Duration::from_secs(60));
    assert_eq!(call(&c, &up.url, "{\"a\":1}").await.unwrap(), (200, Bytes::from_static(b"ok")));
    assert_eq!(call(&c, &up.url, "").await.unwrap(), (200, Bytes::from_static(b"abcde")));
    assert_eq!(call(&c, &up.url, "x").await.unwrap(), (200, Bytes::from_static(b"ok")));
    assert_eq!(up.opened.load(Ordering::SeqCst), 1, "one keep-alive connection for three calls");
    let first = up.requests.recv().await.unwrap();
    assert!(first.starts_with("POST /v1/x HTTP/1.1\r\nhost: 127.0.0.1:"), "{first}");
    assert!(first.contains("\r\nx-k: v\r\ncontent-length: 7") && first.ends_with("\n\n{\"a\":1}"), "{first}");
}

#[tokio::test]
async fn a_connection_closed_while_idle_is_replaced_without_an_error() {
    // The provider closes every connection after one answer, without saying so.
    let mut up = upstream(&[OK], 1).await;
    let c = client(8, Duration::from_secs(60));
    for _ in 0..3 {
        assert_eq!(call(&c, &up.url, "x").await.unwrap().0, 200);
        up.closed.recv().await.unwrap();
    }
    assert_eq!(up.opened.load(Ordering::SeqCst), 3);
    assert_eq!(c.shared.idle_h1(), 1, "the last one is pooled until it is found closed");
}

#[tokio::test]
async fn a_pooled_connection_that_closes_instead_of_answering_is_retried_on_a_new_one() {
    let mut up = upstream(&[OK, ""], 0).await;
    let c = client(8, Duration::from_secs(60));
    assert_eq!(call(&c, &up.url, "1").await.unwrap().0, 200);
    assert_eq!(call(&c, &up.url, "2").await.unwrap().0, 200);
    assert_eq!(up.opened.load(Ordering::SeqCst), 2);
    up.closed.recv().await.unwrap();
    let bodies: Vec<String> = std::iter::from_fn(|| up.requests.try_recv().ok()).collect();
    assert_eq!(bodies.len(), 3, "the second call went twice: {bodies:?}");
    assert!(bodies[1].ends_with("\n\n2") && bodies[2].ends_with("\n\n2"));
    // A new connection that closes without answering is an error, not a retry.
    let up = upstream(&[""], 0).await;
    assert!(matches!(call(&c, &up.url, "").await, Err(Error::Failed(_))));
    assert_eq!(up.opened.load(Ordering::SeqCst), 1);
}

/// A provider that answers the first request it gets with [`OK`] (its connection then pooled)
/// and every later one, on any connection, by holding it `hold`, writing `partial` and closing.
/// Counts the requests it read.
async fn holding(hold: Duration, partial: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/x", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                loop {
                    // The requests here are small: one read holds the whole of one.
                    let mut buf = [0u8; 4096];
                    if sock.read(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if count.fetch_add(1, Ordering::SeqCst) == 0 {
                        sock.write_all(OK.as_bytes()).await.unwrap();
                        continue;
                    }
                    tokio::time::sleep(hold).await;
                    let _ = sock.write_all(partial.as_bytes()).await;
                    return;
                }
            });
        }
    });
    (url, requests)
}

/// Issue 19: a provider held a request 15 s on a pooled connection, then closed it without an
/// answer, and got the same POST again on a new connection (a possible second paid request).
/// Fails before the fix: two requests, the second call sent twice.
#[tokio::test(start_paused = true)]
async fn a_request_held_and_then_closed_on_is_never_sent_again() {
    let (url, requests) = holding(Duration::from_secs(15), "").await;
    let c = client(8, Duration::from_secs(60));
    assert_eq!(call(&c, &url, "warm").await.unwrap().0, 200);
    assert_eq!(c.shared.idle_h1(), 1);
    assert!(matches!(call(&c, &url, "paid").await, Err(Error::Failed(_))));
    assert_eq!(requests.load(Ordering::SeqCst), 2, "the held request was sent again");
}

/// Once any byte of an answer arrived (here an interim 100), the provider read the request: a
/// close right after it is an error, not a resend, however soon it comes.
#[tokio::test(start_paused = true)]
async fn a_close_after_part_of_an_answer_is_never_sent_again() {
    let (url, requests) = holding(Duration::ZERO, "HTTP/1.1 100 Continue\r\n\r\n").await;
    let c = client(8, Duration::from_secs(60));
    assert_eq!(call(&c, &url, "warm").await.unwrap().0, 200);
    assert!(matches!(call(&c, &url, "paid").await, Err(Error::Failed(_))));
    assert_eq!(requests.load(Ordering::SeqCst), 2);
}

/// A pooled connection closed just after the request reached it (within the window: the
/// provider closed it idle before reading) is still replaced, up to the window's end.
#[tokio::test(start_paused = true)]
async fn a_close_within_the_window_is_sent_again_and_one_past_it_is_not() {
    let (url, requests) = holding(super::UNREAD_WINDOW - Duration::from_millis(10), "").await;
    let c = client(8, Duration::from_secs(60));
    assert_eq!(call(&c, &url, "warm").await.unwrap().0, 200);
    assert!(matches!(call(&c, &url, "again").await, Err(Error::Failed(_))), "the new one closes too");
    assert_eq!(requests.load(Ordering::SeqCst), 3, "sent again on a new connection");
    let (url, requests) = holding(super::UNREAD_WINDOW + Duration::from_millis(10), "").await;
    let c = client(8, Duration::from_secs(60));
    assert_eq!(call(&c, &url, "warm").await.unwrap().0, 200);
    assert!(matches!(call(&c, &url, "once").await, Err(Error::Failed(_))));
    assert_eq!(requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connection_close_and_eof_bodies_are_not_pooled() {
    let up = upstream(&["HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\na"], 0).await;
    let c = client(8, Duration::from_secs(60));
    call(&c, &up.url, "").await.unwrap();
    call(&c, &up.url, "").await.unwrap();
    assert_eq!(up.opened.load(Ordering::SeqCst), 2);
    assert_eq!(c.shared.idle_h1(), 0);
    let up = upstream(&["HTTP/1.1 200 OK\r\n\r\nuntil close"], 1).await;
    assert_eq!(call(&c, &up.url, "").await.unwrap().1, Bytes::from_static(b"until close"));
}

#[tokio::test]
async fn a_body_dropped_early_closes_its_connection() {
    let mut up = upstream(&["HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial"], 0).await;
    let c = client(8, Duration::from_secs(60));
    let resp = c.send(Request::post(&up.url).body(Bytes::new()).unwrap()).await.unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"partial");
    drop(body);
    up.closed.recv().await.unwrap();
    assert_eq!(c.shared.idle_h1(), 0);
}

#[tokio::test]
async fn a_body_cut_short_is_an_error() {
    let up = upstream(&["HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial"], 1).await;
    let c = client(8, Duration::from_secs(60));
    assert!(matches!(call(&c, &up.url, "").await, Err(Error::Failed(_))));
    let up = upstream(&["HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nab"], 1).await;
    assert!(matches!(call(&c, &up.url, "").await, Err(Error::Failed(_))));
    let up = upstream(&["HTTP/1.1 200 OK\r\ncontent-"], 1).await;
    assert!(matches!(call(&c, &up.url, "").await, Err(Error::Failed(_))));
}

#[tokio::test]
async fn refused_connections_are_connect_errors() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = client(8, Duration::from_secs(60));
    assert!(matches!(call(&c, &format!("http://127.0.0.1:{port}/"), "").await, Err(Error::Connect(_))));
    assert!(
        matches!(call(&c, "https://127.0.0.1:1/", "").await, Err(Error::Connect(_))),
        "no TLS on this client"
    );
}

#[tokio::test]
async fn the_pool_keeps_at_most_max_idle_and_sweeps_expired_ones() {
    let mut up = upstream(&[OK], 0).await;
    let c = client(2, Duration::from_millis(40));
    let calls: Vec<_> = (0..4).map(|_| c.send(Request::post(&up.url).body(Bytes::new()).unwrap())).collect();
    let bodies: Vec<Body> =
        crate::upstream::tests::join_all(calls).await.into_iter().map(|r| r.unwrap().into_body()).collect();
    assert_eq!(up.opened.load(Ordering::SeqCst), 4);
    for b in bodies {
        b.collect().await.unwrap();
    }
    assert_eq!(c.shared.idle_h1(), 2, "two kept, two closed");
    for _ in 0..2 {
        up.closed.recv().await.unwrap();
    }
    // The sweeper closes the other two once they have been idle past the timeout.
    for _ in 0..2 {
        up.closed.recv().await.unwrap();
    }
    assert_eq!(c.shared.idle_h1(), 0);
}
