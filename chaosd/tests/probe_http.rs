//! `http` and `tcp` probes against real servers on 127.0.0.1 (ports from binding port 0).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use chaosd::probe::{SampleOutcome, sample};
use chaosd::scenario::model::{HttpExpect, HttpProbe, ProbeKind, StatusMatch, TcpProbe};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// A server on 127.0.0.1:0; dropping it stops the accept loop and every connection.
struct TestServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    async fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            // Owned here, so aborting the accept loop drops (and aborts) every connection.
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(route))
                        .await;
                });
            }
        });
        TestServer { addr, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn route(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: u16, body: Vec<u8>| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        Ok(response)
    };
    match req.uri().path() {
        "/" => reply(200, b"ok".to_vec()),
        "/unavailable" => reply(503, b"down".to_vec()),
        "/no-content" => reply(204, Vec::new()),
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            reply(200, b"ok".to_vec())
        }
        "/hang" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            reply(200, b"late".to_vec())
        }
        "/text" => reply(200, b"hello world, version 1.2.3\n".to_vec()),
        "/big" => reply(200, vec![b'a'; 3 * 1024 * 1024]),
        "/echo" => {
            let method = req.method().to_string();
            let header = req
                .headers()
                .get("x-probe")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let text = format!(
                "{method} x-probe={header} body={}",
                String::from_utf8_lossy(&body)
            );
            reply(200, text.into_bytes())
        }
        _ => reply(404, b"not found".to_vec()),
    }
}

fn get(url: String, expect: HttpExpect) -> ProbeKind {
    ProbeKind::Http(HttpProbe {
        url,
        method: "GET".into(),
        headers: BTreeMap::new(),
        body: None,
        timeout: Duration::from_secs(5),
        expect,
    })
}

fn statuses(status: &[StatusMatch]) -> HttpExpect {
    HttpExpect {
        status: status.to_vec(),
        ..HttpExpect::default()
    }
}

#[track_caller]
fn assert_fails(outcome: &SampleOutcome, reason: &str) {
    assert!(!outcome.ok, "expected a failure, got {outcome:?}");
    assert_eq!(outcome.reason, reason, "{outcome:?}");
}

#[track_caller]
fn assert_passes(outcome: &SampleOutcome) {
    assert!(outcome.ok, "expected a pass, got {outcome:?}");
}

/// A port nobody listens on: bound, then released.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

mod http_probe {
    use super::*;

    #[tokio::test]
    async fn any_2xx_passes_by_default() {
        let server = TestServer::start().await;
        let outcome = sample(&get(server.url("/"), HttpExpect::default())).await;
        assert_passes(&outcome);
        assert!(outcome.reason.starts_with("200 in "), "{outcome:?}");
        assert!(outcome.reason.ends_with(" ms"), "{outcome:?}");
        assert_passes(&sample(&get(server.url("/no-content"), HttpExpect::default())).await);
    }

    #[tokio::test]
    async fn status_rules() {
        let server = TestServer::start().await;
        let down = server.url("/unavailable");
        assert_fails(
            &sample(&get(down.clone(), HttpExpect::default())).await,
            "status 503, expected 2xx",
        );
        assert_passes(&sample(&get(down.clone(), statuses(&[StatusMatch::Code(503)]))).await);
        assert_passes(&sample(&get(down.clone(), statuses(&[StatusMatch::Class(5)]))).await);
        assert_fails(
            &sample(&get(
                down,
                statuses(&[StatusMatch::Code(200), StatusMatch::Code(204)]),
            ))
            .await,
            "status 503, expected 200 or 204",
        );
        assert_fails(
            &sample(&get(server.url("/"), statuses(&[StatusMatch::Class(5)]))).await,
            "status 200, expected 5xx",
        );
    }

    #[tokio::test]
    async fn body_rules() {
        let server = TestServer::start().await;
        let contains = |needle: &str| HttpExpect {
            body_contains: Some(needle.into()),
            ..HttpExpect::default()
        };
        let matches = |re: &str| HttpExpect {
            body_matches: Some(chaosd::scenario::model::Pattern::new(re).unwrap()),
            ..HttpExpect::default()
        };
        assert_passes(&sample(&get(server.url("/"), contains("ok"))).await);
        assert_fails(
            &sample(&get(server.url("/"), contains("nope"))).await,
            "body does not contain `nope`",
        );
        assert_passes(&sample(&get(server.url("/text"), matches(r"version \d+\.\d+"))).await);
        assert_fails(
            &sample(&get(server.url("/text"), matches(r"^v\d"))).await,
            r"body does not match `^v\d`",
        );
        // Status is judged before the body.
        assert_fails(
            &sample(&get(server.url("/unavailable"), contains("down"))).await,
            "status 503, expected 2xx",
        );
    }

    #[tokio::test]
    async fn a_large_body_is_read_up_to_the_cap() {
        let server = TestServer::start().await;
        let expect = HttpExpect {
            body_contains: Some("aaa".into()),
            ..HttpExpect::default()
        };
        assert_passes(&sample(&get(server.url("/big"), expect)).await);
    }

    #[tokio::test]
    async fn max_latency_fails_slow_samples() {
        let server = TestServer::start().await;
        let within = |ms| HttpExpect {
            max_latency: Some(Duration::from_millis(ms)),
            ..HttpExpect::default()
        };
        let outcome = sample(&get(server.url("/slow"), within(100))).await;
        assert!(!outcome.ok, "{outcome:?}");
        assert!(outcome.reason.starts_with("200 in "), "{outcome:?}");
        assert!(
            outcome.reason.ends_with("slower than max_latency 100ms"),
            "{outcome:?}"
        );
        assert!(outcome.latency >= Duration::from_millis(300), "{outcome:?}");
        assert_passes(&sample(&get(server.url("/slow"), within(5000))).await);
    }

    #[tokio::test]
    async fn method_headers_and_body_are_sent() {
        let server = TestServer::start().await;
        let probe = ProbeKind::Http(HttpProbe {
            url: server.url("/echo"),
            method: "POST".into(),
            headers: BTreeMap::from([("X-Probe".to_string(), "abc".to_string())]),
            body: Some("xyz".into()),
            timeout: Duration::from_secs(5),
            expect: HttpExpect {
                body_contains: Some("POST x-probe=abc body=xyz".into()),
                ..HttpExpect::default()
            },
        });
        assert_passes(&sample(&probe).await);
    }

    #[tokio::test]
    async fn a_hanging_server_times_out() {
        let server = TestServer::start().await;
        let probe = ProbeKind::Http(HttpProbe {
            timeout: Duration::from_millis(200),
            ..match get(server.url("/hang"), HttpExpect::default()) {
                ProbeKind::Http(p) => p,
                _ => unreachable!(),
            }
        });
        let outcome = sample(&probe).await;
        assert_fails(&outcome, "timed out after 200ms");
        assert!(outcome.latency < Duration::from_secs(2), "{outcome:?}");
    }

    #[tokio::test]
    async fn the_timeout_covers_the_body() {
        // Headers at once, then a body that never comes.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
                .await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let probe = ProbeKind::Http(HttpProbe {
            url: format!("http://{addr}/"),
            method: "GET".into(),
            headers: BTreeMap::new(),
            body: None,
            timeout: Duration::from_millis(300),
            expect: HttpExpect::default(),
        });
        assert_fails(&sample(&probe).await, "timed out after 300ms");
        server.abort();
    }

    #[tokio::test]
    async fn a_closed_port_is_connection_refused() {
        let addr = closed_port().await;
        let outcome = sample(&get(format!("http://{addr}/"), HttpExpect::default())).await;
        assert_fails(&outcome, "connection refused");
    }

    #[tokio::test]
    async fn https_to_a_plain_server_fails_cleanly() {
        let server = TestServer::start().await;
        let url = format!("https://{}/", server.addr);
        let outcome = sample(&get(url, HttpExpect::default())).await;
        assert!(!outcome.ok, "{outcome:?}");
        assert!(
            !outcome.reason.is_empty() && outcome.reason.len() < 200,
            "{outcome:?}"
        );
    }
}

mod tcp_probe {
    use super::*;

    fn tcp(address: String, timeout: Duration) -> ProbeKind {
        ProbeKind::Tcp(TcpProbe { address, timeout })
    }

    #[tokio::test]
    async fn an_open_port_passes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let outcome = sample(&tcp(addr.to_string(), Duration::from_secs(2))).await;
        assert_passes(&outcome);
        assert!(
            outcome
                .reason
                .starts_with(&format!("connected to {addr} in ")),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_refused() {
        let addr = closed_port().await;
        let outcome = sample(&tcp(addr.to_string(), Duration::from_secs(2))).await;
        assert_fails(&outcome, "connection refused");
    }

    #[tokio::test]
    async fn an_address_without_port_cannot_resolve() {
        let outcome = sample(&tcp("127.0.0.1".into(), Duration::from_secs(2))).await;
        assert!(!outcome.ok, "{outcome:?}");
        assert!(
            outcome.reason.starts_with("cannot resolve `127.0.0.1`"),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_full_backlog_times_out() {
        // A listener that never accepts: once its accept queue is full, Linux drops new SYNs and
        // connects hang. Fill it, then probe.
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::new();
        let mut full = false;
        for _ in 0..64 {
            match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => held.push(stream),
                Ok(Err(err)) => panic!("unexpected connect error: {err}"),
                Err(_) => {
                    full = true;
                    break;
                }
            }
        }
        if !full {
            chaos_tests::skip::skip(
                "the accept queue never filled",
                &format!("the accept queue of {addr} never filled; cannot provoke a timeout"),
            );
            return;
        }
        let outcome = sample(&tcp(addr.to_string(), Duration::from_millis(300))).await;
        assert_fails(&outcome, "timed out after 300ms");
        assert!(outcome.latency < Duration::from_secs(2), "{outcome:?}");
        drop(held);
    }
}
