//! What the gateway records of every request, as tower-http layers around the routes:
//! - a request id: the caller's `x-request-id`, or a new one; returned in the answer's
//!   `x-request-id` and carried by the request's span and log line;
//! - a span per request (`HTTP <method> <route>`, the route template, never the query, so no
//!   `access_token` is recorded) that continues an incoming W3C `traceparent`;
//! - an access log line per answer (target `storecast::web::access`: route, status, latency,
//!   request id; at debug level, client errors at info, server errors at warn); no header is
//!   logged, so neither is `Authorization`;
//! - the request-duration histogram by route template, method and status;
//! - a handler that panics answers a JSON 500 and is counted, instead of dropping the
//!   connection.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Response, StatusCode};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use tracing::Span;

use super::ApiError;
use crate::{metrics, telemetry};

/// The route label of a request no route matched.
const UNMATCHED: &str = "unmatched";

/// Wraps `router`'s routes in the layers above.
pub fn observed(router: Router) -> Router {
    let trace = TraceLayer::new_for_http()
        .make_span_with(request_span)
        .on_request(())
        .on_response(log_answer)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(());
    router
        .layer(CatchPanicLayer::custom(panic_answer))
        .layer(middleware::from_fn(record_duration))
        .layer(trace)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(RequestIds::new()))
}

/// The route template the router matched, or `unmatched`.
fn route_of<B>(request: &axum::http::Request<B>) -> String {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_string()
}

fn request_span<B>(request: &axum::http::Request<B>) -> Span {
    let route = route_of(request);
    let method = request.method().as_str();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "http request",
        otel.name = %format!("HTTP {method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = %route,
        url.path = %request.uri().path(),
        http.response.status_code = tracing::field::Empty,
        request_id = %request_id,
    );
    telemetry::follow_headers(&span, request.headers());
    span
}

fn log_answer(response: &Response<Body>, latency: Duration, span: &Span) {
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    let latency_ms = format_args!("{:.2}", latency.as_secs_f64() * 1000.0);
    // Every answer at debug (a line per request costs the hot path about a sixth of its
    // throughput), client errors at info, server errors as warnings.
    match status {
        500.. => {
            tracing::warn!(target: "storecast::web::access", parent: span, status, latency_ms, "answered")
        }
        400..=499 => {
            tracing::info!(target: "storecast::web::access", parent: span, status, latency_ms, "answered")
        }
        _ => {
            tracing::debug!(target: "storecast::web::access", parent: span, status, latency_ms, "answered")
        }
    }
}

/// Observes how long the request took, by route template, method and status.
async fn record_duration(request: Request, next: Next) -> axum::response::Response {
    let route = route_of(&request);
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = metrics::HttpLabels {
        route,
        method,
        status: response.status().as_u16(),
    };
    metrics::metrics()
        .http_request_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

/// A handler panicked: a JSON 500, counted and logged.
fn panic_answer(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    metrics::metrics().http_panics.inc();
    tracing::error!(panic = %message, "a request handler panicked");
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: "internal error: the request's handler failed (logged on the node)".to_string(),
    }
    .into_response()
}

/// Request ids: a random prefix per process and a counter, unique without coordination.
#[derive(Clone)]
struct RequestIds {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl RequestIds {
    fn new() -> Self {
        let prefix = super::random_token()
            .map(|token| token[..8].to_string())
            .unwrap_or_else(|_| format!("{:08x}", std::process::id()));
        RequestIds {
            prefix: prefix.into(),
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{number:x}", self.prefix);
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn ask(address: std::net::SocketAddr, path: &str, headers: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_json_500_and_ids_come_back() {
        async fn boom() -> &'static str {
            panic!("test: handler fails")
        }
        let app = observed(
            Router::new()
                .route("/boom", get(boom))
                .route("/fine/{id}", get(|| async { "fine" })),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let panics_before = metrics::metrics().http_panics.get();

        let failed = ask(address, "/boom", "").await;
        assert!(failed.starts_with("HTTP/1.1 500"), "{failed}");
        assert!(failed.contains("\"error\":\"internal error"), "{failed}");
        assert!(failed.to_lowercase().contains("x-request-id: "), "{failed}");
        assert_eq!(metrics::metrics().http_panics.get(), panics_before + 1);

        // The caller's id is kept; the duration is recorded under the route template.
        let fine = ask(
            address,
            "/fine/42?access_token=secret",
            "x-request-id: abc-123\r\n",
        )
        .await;
        assert!(fine.starts_with("HTTP/1.1 200"), "{fine}");
        assert!(
            fine.to_lowercase().contains("x-request-id: abc-123"),
            "{fine}"
        );
        let text = metrics::render();
        assert!(
            text.contains(
                "storecast_http_request_duration_seconds_count{route=\"/fine/{id}\",method=\"GET\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("route=\"/boom\",method=\"GET\",status=\"500\""),
            "{text}"
        );
    }
}
