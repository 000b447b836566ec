//! Request bodies a handler left unread: the rest is read and discarded
//! before the answer goes out, within limits, so an HTTP/1 connection stays
//! usable; past the limits the answer says `Connection: close`.

use std::time::Duration;

use axum::middleware;
use http::{HeaderValue, header};

/// How much of a request body the server reads and discards after a
/// handler refused the request without reading it all, and for how long.
const DRAIN_MAX_BYTES: u64 = 1024 * 1024;
const DRAIN_MAX_TIME: Duration = Duration::from_secs(2);

type SharedBody = std::sync::Arc<std::sync::Mutex<axum::body::Body>>;

/// The request body a handler sees: it reads through to the real one,
/// which the `drain_unread_body` middleware keeps a hold of.
struct SharedRequestBody(SharedBody);

fn poll_shared(
    body: &SharedBody,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
    use axum::body::HttpBody;
    let mut inner = body.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    std::pin::Pin::new(&mut *inner).poll_frame(cx)
}

impl axum::body::HttpBody for SharedRequestBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        poll_shared(&self.0, cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).size_hint()
    }
}

/// Reads what is left of a request body, up to the limits; true when it
/// reached its end.
async fn drain(body: &SharedBody) -> bool {
    let read_to_end = async {
        let mut read = 0u64;
        loop {
            match std::future::poll_fn(|cx| poll_shared(body, cx)).await {
                None => return true,
                Some(Ok(frame)) => {
                    read += frame.data_ref().map_or(0, |d| d.len() as u64);
                    if read > DRAIN_MAX_BYTES {
                        return false;
                    }
                }
                Some(Err(_)) => return false,
            }
        }
    };
    tokio::time::timeout(DRAIN_MAX_TIME, read_to_end).await.unwrap_or(false)
}

/// When a request is answered before its body was read to the end (refused
/// by the session layer, an unknown profile, a body over the limit...),
/// reads and discards the rest before answering, within limits, so the
/// connection stays usable. Past the limits the answer says `Connection:
/// close`: the server then drops the connection, and a client told so does
/// not send its next request on it. (HTTP/1 only: HTTP/2 streams end on
/// their own.)
pub async fn drain_unread_body(req: axum::extract::Request, next: middleware::Next) -> axum::response::Response {
    use axum::body::HttpBody;
    if req.version() > http::Version::HTTP_11 || req.body().is_end_stream() {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let shared: SharedBody = std::sync::Arc::new(std::sync::Mutex::new(body));
    let req = axum::extract::Request::from_parts(parts, axum::body::Body::new(SharedRequestBody(shared.clone())));
    let mut res = next.run(req).await;
    if !drain(&shared).await {
        res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::Router;
    use axum::body::Body;
    use axum::routing::put;
    use http::{Request, StatusCode};
    use tower::ServiceExt;

    use crate::config::HttpLimits;

    /// A body of `len` bytes in 16 KiB chunks that records being read to its end.
    fn body(len: usize, read: Arc<AtomicBool>) -> Body {
        let chunks = (0..len.div_ceil(16 * 1024)).map(move |i| {
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; (len - i * 16 * 1024).min(16 * 1024)]))
        });
        let end = futures_util::stream::poll_fn(move |_| {
            read.store(true, Ordering::SeqCst);
            std::task::Poll::Ready(None)
        });
        Body::from_stream(futures_util::StreamExt::chain(futures_util::stream::iter(chunks), end))
    }

    async fn refuse() -> StatusCode {
        StatusCode::UNAUTHORIZED
    }

    async fn send(len: usize) -> (bool, Option<String>) {
        let app = crate::with_layers(Router::new().route("/x", put(refuse)), &HttpLimits::default());
        let read = Arc::new(AtomicBool::new(false));
        let req = Request::put("/x").body(body(len, read.clone())).unwrap_or_default();
        let Ok(res) = app.oneshot(req).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let connection = res.headers().get("connection").and_then(|v| v.to_str().ok()).map(str::to_owned);
        (read.load(Ordering::SeqCst), connection)
    }

    #[tokio::test]
    async fn a_body_refused_unread_is_drained_so_the_connection_stays_usable() {
        assert_eq!(send(64 * 1024).await, (true, None));
    }

    #[tokio::test]
    async fn past_the_limit_the_answer_closes_the_connection() {
        let (read, connection) = send(3 * 1024 * 1024).await;
        assert!(!read);
        assert_eq!(connection.as_deref(), Some("close"));
    }
}
