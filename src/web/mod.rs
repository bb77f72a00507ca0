//! The HTTP gateway: an axum router over the cluster and the database. It reaches the
//! cluster (the member view, model actors, the scheduler) through the node's cluster client
//! and reads the store for plain queries; it never fits a model itself.
//!
//! - [`admin`]: the admin listener every node runs (metrics and health);
//! - [`health`]: `/health/livez`, `/health/readyz`, `/metrics`;
//! - [`cluster`]: `GET /api/cluster`, the live members and the series each hosts;
//! - [`stores`]: `GET /api/stores`, a series' latest batch forecast and its recent sales;
//! - [`forecast`]: `POST /api/forecast`, online forecasts by the series' model actors;
//! - [`jobs`]: retrain one series or all (`202` with a job id), a job's state and its
//!   server-sent progress events;
//! - [`page`]: the web page at `/`, the OpenAPI document and its docs page;
//! - [`observe`]: request ids, spans, the access log, duration metrics, panics as JSON 500s;
//! - [`server`]: binding the address and serving, as the node's gateway role runs it;
//! - [`connections`]: serving connections within limits (a cap, header-read and idle
//!   timeouts), for the gateway and the admin listener.
//!
//! Errors are JSON: `{"error": "..."}` with a 4xx or 5xx status that says whose fault it is.
//! Mutating requests need the bearer token (`gateway.token`); reads too when
//! `gateway.protect_reads` is set. Every request but an event stream is answered within
//! `gateway.request_timeout_ms`.

pub mod admin;
pub mod cluster;
pub mod connections;
pub mod forecast;
pub mod health;
pub mod jobs;
pub mod observe;
pub mod page;
pub mod server;
pub mod stores;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use crate::actors::client::{ClusterClient, ClusterError};
use crate::actors::node::NodeStatus;
use crate::store::Database;

/// How the gateway serves (from `[gateway]`, plus the product and model profile it trains).
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub listen: SocketAddr,
    /// What mutating requests must carry as `Authorization: Bearer <token>`.
    pub token: String,
    /// The token was made at random for this run (none was configured).
    pub token_generated: bool,
    /// Reads need the token too.
    pub protect_reads: bool,
    pub request_timeout: Duration,
    /// The model profile retrain jobs are recorded with.
    pub profile: String,
    /// What the gateway's connections are allowed.
    pub limits: connections::Limits,
    /// Most job event streams open at once.
    pub max_event_streams: usize,
    /// Longest an event stream stays open.
    pub event_stream_lifetime: Duration,
    /// Most forecast days one `POST /api/forecast` may ask for, over all its items.
    pub forecast_max_days: u32,
    /// Online forecasts run at once.
    pub forecast_concurrency: usize,
}

/// What every handler may use.
#[derive(Clone)]
pub struct Gateway {
    pub database: Database,
    pub client: ClusterClient,
    pub node: String,
    pub settings: Arc<GatewaySettings>,
    /// Whether the node is stopping (readiness says so).
    pub status: NodeStatus,
    /// Ids of jobs this gateway saw end, so its event streams answer at once instead of at
    /// their next look.
    pub job_ended: tokio::sync::broadcast::Sender<i64>,
    /// The pollers that feed job event streams.
    pub job_feeds: Arc<jobs::JobFeeds>,
    /// Slots for online forecasts (`gateway.forecast_concurrency`).
    pub forecast_slots: Arc<tokio::sync::Semaphore>,
    /// The store list, built once for the requests that arrive while one is being built.
    pub store_list: Arc<stores::Coalesced<bytes::Bytes>>,
}

impl Gateway {
    pub fn new(
        database: Database,
        client: ClusterClient,
        status: NodeStatus,
        node: String,
        settings: GatewaySettings,
    ) -> Self {
        let job_ended = tokio::sync::broadcast::channel(64).0;
        let job_feeds = jobs::JobFeeds::new(
            database.clone(),
            job_ended.clone(),
            settings.max_event_streams,
            settings.event_stream_lifetime,
        );
        let forecast_slots = Arc::new(tokio::sync::Semaphore::new(
            settings.forecast_concurrency.max(1),
        ));
        Gateway {
            database,
            client,
            status,
            node,
            settings: Arc::new(settings),
            job_ended,
            job_feeds,
            forecast_slots,
            store_list: Arc::default(),
        }
    }
}

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The gateway's routes.
pub fn router(gateway: Gateway) -> Router {
    let timed = Router::new()
        .route("/", get(page::index))
        .route("/assets/{file}", get(page::asset))
        .route("/docs", get(page::docs))
        .route("/openapi.json", get(page::openapi))
        .route("/health/livez", get(health::livez))
        .route("/health/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/api/cluster", get(cluster::cluster))
        .route("/api/stores", get(stores::stores))
        .route("/api/forecast", post(forecast::forecast))
        .route(
            "/api/stores/{store}/products/{product}/forecast",
            get(stores::forecast),
        )
        .route(
            "/api/stores/{store}/products/{product}/sales",
            get(stores::sales),
        )
        .route(
            "/api/stores/{store}/products/{product}/versions",
            get(stores::versions),
        )
        .route(
            "/api/stores/{store}/products/{product}/retrain",
            post(jobs::retrain),
        )
        .route("/api/train", post(jobs::train_all))
        .route("/api/jobs", get(jobs::jobs))
        .route("/api/jobs/{id}", get(jobs::job))
        .layer(middleware::from_fn_with_state(
            gateway.settings.request_timeout,
            time_limit,
        ));
    // An event stream lasts as long as its job: no time limit.
    let streams = Router::new().route("/api/jobs/{id}/events", get(jobs::events));
    let routes = timed
        .merge(streams)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(gateway.clone(), authorize))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(gateway);
    observe::observed(routes)
}

/// Whether a request may read without the token: the page, its assets, the docs, health and
/// metrics are always open; the API is open unless `gateway.protect_reads`.
fn open_without_token(path: &str, protect_reads: bool) -> bool {
    let always_open = path == "/"
        || path.starts_with("/assets/")
        || path == "/docs"
        || path == "/openapi.json"
        || path.starts_with("/health/")
        || path == "/metrics";
    always_open || !protect_reads
}

/// Checks the bearer token of requests that need it; answers 401 otherwise.
/// Whether `path` is a job's event stream (`/api/jobs/{id}/events`).
fn is_event_stream(path: &str) -> bool {
    path.strip_prefix("/api/jobs/")
        .and_then(|rest| rest.strip_suffix("/events"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

async fn authorize(State(gateway): State<Gateway>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    // `POST /api/forecast` reads: it fits nothing and stores nothing.
    let needs_token = if request.method() == Method::POST && path != "/api/forecast" {
        true
    } else {
        !open_without_token(path, gateway.settings.protect_reads)
    };
    if needs_token {
        // A browser's EventSource cannot set headers: an event stream may pass
        // `?access_token=`. Nothing else may, as URLs end up in histories and proxy logs.
        let from_query = (request.method() == Method::GET && is_event_stream(path))
            .then(|| request.uri().query())
            .flatten()
            .and_then(|query| {
                query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("access_token="))
            })
            .map(percent_decoded);
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::to_string)
            .or(from_query);
        let why = match given {
            None => Some("this request needs `Authorization: Bearer <token>` (gateway.token)"),
            Some(ref token) if !constant_time_eq(token.trim(), &gateway.settings.token) => {
                Some("the bearer token is not this gateway's (gateway.token)")
            }
            Some(_) => None,
        };
        if let Some(why) = why {
            let mut response = ApiError {
                status: StatusCode::UNAUTHORIZED,
                message: why.to_string(),
            }
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    next.run(request).await
}

/// A query value with its `%XX` escapes and `+` (a space) decoded.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = |at: usize| {
            bytes
                .get(at)
                .and_then(|byte| char::from(*byte).to_digit(16))
        };
        match (bytes[index], hex(index + 1), hex(index + 2)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                index += 3;
            }
            (b'+', _, _) => {
                decoded.push(b' ');
                index += 1;
            }
            (byte, _, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Compares tokens without stopping at the first difference, so timing tells nothing.
fn constant_time_eq(given: &str, expected: &str) -> bool {
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    let mut difference = given.len() ^ expected.len();
    for (index, byte) in expected.iter().enumerate() {
        difference |= usize::from(byte ^ given.get(index).copied().unwrap_or(0));
    }
    difference == 0 && !expected.is_empty()
}

/// Answers 503 when a request takes longer than `gateway.request_timeout_ms`.
async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable(format!(
            "no answer within {} ms (gateway.request_timeout_ms)",
            limit.as_millis()
        ))
        .into_response(),
    }
}

async fn not_found(request: Request) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!(
            "no such endpoint: {} {} (see /openapi.json)",
            request.method(),
            request.uri().path()
        ),
    }
}

/// A random token for a node started without `gateway.token`: 128 bits from the kernel.
pub fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// An error answer: a status and a message for the caller.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    /// The database failed: the service is unavailable, not the request wrong.
    pub fn database(error: crate::store::StoreError) -> Self {
        ApiError::unavailable(error.to_string())
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    /// The gateway itself failed (a bug, not the request or the cluster).
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
}

impl From<ClusterError> for ApiError {
    /// An unknown series is the request's fault (404); an owner that answered it cannot do
    /// it is a conflict with the series' state (409); the rest is the cluster's (503).
    fn from(error: ClusterError) -> Self {
        let status = match &error {
            ClusterError::UnknownSeries { .. } => StatusCode::NOT_FOUND,
            ClusterError::Failed { .. } => StatusCode::CONFLICT,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError {
            status,
            message: error.to_string(),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: &self.message,
            }),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq("secret", "secret"));
        assert!(!constant_time_eq("secreT", "secret"));
        assert!(!constant_time_eq("secret-and-more", "secret"));
        assert!(!constant_time_eq("", "secret"));
        assert!(!constant_time_eq("", ""), "an empty token never matches");
    }

    #[tokio::test]
    async fn a_request_past_the_time_limit_gets_503() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "too late"
        };
        let app = Router::new()
            .route("/slow", get(slow))
            .route("/quick", get(|| async { "in time" }))
            .layer(middleware::from_fn_with_state(
                Duration::from_millis(100),
                time_limit,
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let ask = |path: &'static str| async move {
            let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            answer
        };
        let started = std::time::Instant::now();
        let late = ask("/slow").await;
        assert!(late.starts_with("HTTP/1.1 503"), "{late}");
        assert!(late.contains("no answer within 100 ms"), "{late}");
        assert!(started.elapsed() < Duration::from_secs(4));
        assert!(ask("/quick").await.ends_with("in time"));
    }

    #[test]
    fn query_tokens_are_decoded() {
        assert_eq!(percent_decoded("a%2Bb%3D%3D+c"), "a+b== c");
        assert_eq!(percent_decoded("plain"), "plain");
        assert_eq!(percent_decoded("bad%zz%4"), "bad%zz%4");
    }

    #[test]
    fn random_tokens_differ() {
        let (first, second) = (random_token().unwrap(), random_token().unwrap());
        assert_eq!(first.len(), 32);
        assert_ne!(first, second);
    }
}
