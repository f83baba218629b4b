//! `tcp` probes: does a connection to `host:port` open? The address is resolved at every
//! sample, so a moved DNS name is followed.

use tokio::net::{TcpStream, lookup_host};
use tokio::time::Instant;

use super::{Verdict, describe_io, fmt_latency, timed_out};
use crate::spec::TcpProbe;

pub(crate) async fn sample(probe: &TcpProbe) -> Verdict {
    match tokio::time::timeout(probe.timeout, connect(&probe.address)).await {
        Ok(verdict) => verdict,
        Err(_) => Err(timed_out(probe.timeout)),
    }
}

/// Tries each resolved address in turn, like `TcpStream::connect`, keeping the last error.
async fn connect(address: &str) -> Verdict {
    let start = Instant::now();
    let addrs = lookup_host(address)
        .await
        .map_err(|err| format!("cannot resolve `{address}`: {}", describe_io(&err)))?;
    let mut last_error = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                drop(stream);
                return Ok(format!(
                    "connected to {addr} in {}",
                    fmt_latency(start.elapsed())
                ));
            }
            Err(err) => last_error = Some(err),
        }
    }
    match last_error {
        Some(err) => Err(describe_io(&err)),
        None => Err(format!("`{address}` resolves to no address")),
    }
}
