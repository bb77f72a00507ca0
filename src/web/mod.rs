//! The HTTP gateway: an axum router over the cluster and the database. It talks to actors
//! (the member view, model hosts) and reads the store for plain queries; it never fits a
//! model itself.
//!
//! - [`health`]: `/health/livez`, `/health/readyz`, `/metrics`;
//! - [`cluster`]: `GET /api/cluster`, the live members and the series each hosts;
//! - [`stores`]: `GET /api/stores` and the latest batch forecast of a series;
//! - [`forecast`]: `POST /api/forecast`, online forecasts by the series' model actors.
//!
//! Errors are JSON: `{"error": "..."}` with a 4xx or 5xx status that says whose fault it is.

pub mod cluster;
pub mod forecast;
pub mod health;
pub mod stores;

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ractor::ActorRef;
use serde::Serialize;

use crate::actors::membership::MembershipMessage;
use crate::store::Database;

/// What every handler may use.
#[derive(Clone)]
pub struct Gateway {
    pub database: Database,
    pub membership: ActorRef<MembershipMessage>,
    pub node: String,
}

/// Longest the gateway waits for an actor before answering 503.
pub const ACTOR_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The gateway's routes.
pub fn router(gateway: Gateway) -> Router {
    Router::new()
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
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(gateway)
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
