//! The agent's accept loop under a flood (a smaller attack surface): connections from
//! one address are capped while other addresses are still served, a few hundred at once from one
//! address are fine, and a connection serves a bounded number of requests. Traffic goes only to
//! the agent this test starts on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use agent::http::accept::{MAX_PER_ADDRESS, MAX_REQUESTS_PER_CONNECTION};
use agent::server::{self, Config};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::{CancellationToken, DropGuard};

/// An agent on 127.0.0.1:0, stopped when the guard is dropped.
async fn agent() -> (SocketAddr, DropGuard, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        token: agent::http::auth::Token::new("limits-token-0123456789"),
        token_file: None,
        tls: None,
        client_certs_required: false,
        policy: None,
        state_dir: dir.path().join("state"),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(server::run(
        listener,
        config,
        shutdown.clone().cancelled_owned(),
    ));
    (addr, shutdown.drop_guard(), dir)
}

/// A connection to `addr` from the local address `from`.
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Sends `GET /healthz` and reads the answer: its status and whether it says `connection:
/// close`. `None` when the connection was closed instead.
async fn healthz(stream: &mut BufReader<TcpStream>) -> Option<(u16, bool)> {
    stream
        .get_mut()
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: agent\r\n\r\n")
        .await
        .ok()?;
    let mut line = String::new();
    if stream.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let status = line.split_whitespace().nth(1)?.parse().ok()?;
    let (mut length, mut close) = (0, false);
    loop {
        line.clear();
        stream.read_line(&mut line).await.ok()?;
        let header = line.trim_end().to_ascii_lowercase();
        if header.is_empty() {
            break;
        }
        if let Some(n) = header.strip_prefix("content-length:") {
            length = n.trim().parse().ok()?;
        }
        close |= header == "connection: close";
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.ok()?;
    Some((status, close))
}

/// Whether the server closed the connection (reading gives end of file or a reset) within 2 s.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), stream.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_is_capped_while_other_addresses_are_served() {
    let (addr, _stop, _dir) = agent().await;
    // A few hundred at once from one address are fine: every one is served.
    let mut held = Vec::new();
    for _ in 0..MAX_PER_ADDRESS {
        held.push(BufReader::new(connect_from("127.0.0.1", addr).await));
    }
    for (i, stream) in held.iter_mut().enumerate() {
        assert_eq!(healthz(stream).await, Some((200, false)), "connection {i}");
    }
    // One more from that address is closed at once; from another address, served.
    let mut over = connect_from("127.0.0.1", addr).await;
    assert!(closed_by_server(&mut over).await, "connection past the cap");
    let mut other = BufReader::new(connect_from("127.0.0.2", addr).await);
    assert_eq!(healthz(&mut other).await, Some((200, false)));
    // Once they are gone, the address is served again.
    drop(held);
    let mut again = None;
    for _ in 0..100 {
        let mut stream = BufReader::new(connect_from("127.0.0.1", addr).await);
        if let Some(answer) = healthz(&mut stream).await {
            again = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(again, Some((200, false)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_serves_a_bounded_number_of_requests() {
    let (addr, _stop, _dir) = agent().await;
    let mut stream = BufReader::new(connect_from("127.0.0.1", addr).await);
    for i in 1..MAX_REQUESTS_PER_CONNECTION {
        assert_eq!(
            healthz(&mut stream).await,
            Some((200, false)),
            "request {i}"
        );
    }
    // The last one says so, and the connection ends.
    assert_eq!(healthz(&mut stream).await, Some((200, true)));
    assert!(closed_by_server(stream.get_mut()).await);
}
