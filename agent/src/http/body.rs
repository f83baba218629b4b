//! Reading JSON request bodies, bounded: shared by `chaos-agent` and the `chaosd` service.

use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::Request;
use hyper::body::Body;
use hyper::header::CONTENT_LENGTH;
use serde::de::DeserializeOwned;

/// How long a client may take to send a request's body once its headers are in. With the token,
/// a client could otherwise hold a connection and its task for ever by sending one byte a minute.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a body was not read: each server maps these to its own 413, 408 and 400 answers.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    /// Not all of it arrived within [`BODY_TIMEOUT`].
    TooSlow,
    Bad(String),
}

/// Reads a JSON body of at most `limit` bytes. A body declared larger is drained (boundedly) and
/// refused without being read.
pub async fn read_json<T, B>(req: Request<B>, limit: usize) -> Result<T, BodyError>
where
    T: DeserializeOwned,
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = read_bytes(req, limit).await?;
    serde_json::from_slice(&bytes)
        .map_err(|err| BodyError::Bad(format!("malformed JSON body: {err}")))
}

/// Like [`read_json`], for a body that may be left out: an empty body is `T::default()`.
pub async fn read_json_or_default<T, B>(req: Request<B>, limit: usize) -> Result<T, BodyError>
where
    T: DeserializeOwned + Default,
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = read_bytes(req, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes)
        .map_err(|err| BodyError::Bad(format!("malformed JSON body: {err}")))
}

/// The whole body, bounded in size and in time.
async fn read_bytes<B>(req: Request<B>, limit: usize) -> Result<bytes::Bytes, BodyError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        drain(req.into_body(), 8 * limit).await;
        return Err(BodyError::TooLarge);
    }
    let collect = Limited::new(req.into_body(), limit).collect();
    let Ok(collected) = tokio::time::timeout(BODY_TIMEOUT, collect).await else {
        return Err(BodyError::TooSlow);
    };
    let bytes = match collected {
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
async fn drain<B: Body>(body: B, max: usize) {
    let mut body = std::pin::pin!(body);
    let work = async {
        let mut seen = 0;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += bytes::Buf::remaining(data);
                if seen > max {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), work).await;
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use hyper::body::Frame;

    use super::*;

    /// A body whose bytes never come: what a client sending one byte a minute looks like.
    struct Stalled;

    impl Body for Stalled {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_arrives_is_given_up_after_the_body_timeout() {
        let started = tokio::time::Instant::now();
        let req = Request::new(Stalled);
        let got = read_json::<serde_json::Value, _>(req, 1024).await;
        assert!(matches!(got, Err(BodyError::TooSlow)), "{got:?}");
        assert_eq!(started.elapsed(), BODY_TIMEOUT);
    }

    #[tokio::test]
    async fn a_whole_body_is_read_and_a_large_one_refused() {
        let req = Request::new(http_body_util::Full::new(Bytes::from_static(b"{\"a\": 1}")));
        let got: serde_json::Value = read_json(req, 1024).await.expect("a JSON body");
        assert_eq!(got["a"], 1);
        let req = Request::new(http_body_util::Full::new(Bytes::from(vec![b' '; 2048])));
        let got = read_json::<serde_json::Value, _>(req, 1024).await;
        assert!(matches!(got, Err(BodyError::TooLarge)), "{got:?}");
    }
}
