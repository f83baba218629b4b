//! A stand-in OpenTelemetry collector on 127.0.0.1: it keeps every HTTP request it is sent (path,
//! headers, body bytes) for a test to decode with the protocol crate, or takes connections and
//! never answers, like a hung collector. It counts connections, so a test can also show that
//! nothing was sent at all.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// One request as the collector got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names in lowercase, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    /// The value of header `name` (lowercase), if it came.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How the collector treats what it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answers {
    /// `200 OK` with an empty `ExportTraceServiceResponse` (an empty protobuf body).
    Ok,
    /// Keeps each connection open and never reads nor answers.
    Never,
}

pub struct Collector {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
}

impl Collector {
    /// A collector on a free port of 127.0.0.1, serving until the test process ends.
    pub fn start(answers: Answers) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        Collector::serve(listener, answers)
    }

    /// A collector on `listener` (bound by the caller, on a port it chose).
    pub fn serve(listener: TcpListener, answers: Answers) -> Collector {
        let port = listener.local_addr().expect("local address").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (keep, count) = (Arc::clone(&received), Arc::clone(&connections));
        std::thread::spawn(move || {
            // Connections a hung collector holds open, so the client sees no end either.
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                match answers {
                    Answers::Never => held.push(stream),
                    Answers::Ok => {
                        let keep = Arc::clone(&keep);
                        std::thread::spawn(move || serve_connection(stream, &keep));
                    }
                }
            }
        });
        Collector {
            port,
            received,
            connections,
        }
    }

    /// `http://127.0.0.1:PORT`, the value of `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Connections taken so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Requests on one keep-alive connection until the client closes it.
fn serve_connection(stream: TcpStream, keep: &Mutex<Vec<Received>>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        let mut len = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                if k == "content-length" {
                    len = v.parse().unwrap_or(0);
                }
                headers.push((k, v));
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        keep.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Received {
                method,
                path,
                headers,
                body,
            });
        let answer =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
        if reader.get_mut().write_all(answer).is_err() {
            return;
        }
    }
}
