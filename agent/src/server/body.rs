//! Reading JSON request bodies, bounded: shared by `chaos-agent` and the `chaosd` service.

use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::Request;
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use serde::de::DeserializeOwned;

/// Why a body was not read: each server maps these to its own 413 and 400 answers.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    Bad(String),
}

/// Reads a JSON body of at most `limit` bytes. A body declared larger is drained (boundedly) and
/// refused without being read.
pub async fn read_json<T: DeserializeOwned>(
    req: Request<Incoming>,
    limit: usize,
) -> Result<T, BodyError> {
    let bytes = read_bytes(req, limit).await?;
    serde_json::from_slice(&bytes)
        .map_err(|err| BodyError::Bad(format!("malformed JSON body: {err}")))
}

/// Like [`read_json`], for a body that may be left out: an empty body is `T::default()`.
pub async fn read_json_or_default<T: DeserializeOwned + Default>(
    req: Request<Incoming>,
    limit: usize,
) -> Result<T, BodyError> {
    let bytes = read_bytes(req, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes)
        .map_err(|err| BodyError::Bad(format!("malformed JSON body: {err}")))
}

async fn read_bytes(req: Request<Incoming>, limit: usize) -> Result<bytes::Bytes, BodyError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        drain(req.into_body(), 8 * limit).await;
        return Err(BodyError::TooLarge);
    }
    let bytes = match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            return Err(BodyError::TooLarge);
        }
        Err(err) => {
            return Err(BodyError::Bad(format!(
                "cannot read the request body: {err}"
            )));
        }
    };
    Ok(bytes)
}

/// Reads and discards a refused body, a bounded amount for a bounded time, so that the client
/// gets to read our answer instead of a connection reset.
async fn drain(mut body: Incoming, max: usize) {
    let work = async {
        let mut seen = 0;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += data.len();
                if seen > max {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), work).await;
}
