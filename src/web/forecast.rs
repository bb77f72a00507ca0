//! `POST /api/forecast`, compatible with the reference stack's forecast service: a list of
//! `{store_id, product_name, begin_date, end_date}`, answered item by item with
//! `forecast: [{timestamp, value, lower_ci, upper_ci}]` and `api: {model_name, model_version}`.
//!
//! Each item is served by its series' model actor, wherever placement puts it, from the
//! loaded model version (no refit). The whole request is checked first; a bad item fails it
//! with a 4xx naming the item and what is wrong.
//!
//! The cost of one request is bounded: at most [`MAX_ITEMS`] items, [`MAX_DAYS`] days each
//! and `gateway.forecast_max_days` days in all; items wait for one of the gateway's
//! `gateway.forecast_concurrency` slots. A caller that goes away drops its request: the items
//! not yet forecast are never asked for.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{ApiError, Gateway};
use crate::actors::model::ForecastRequest;
use crate::cluster::placement::SeriesKey;

/// Most items one request may ask for.
pub const MAX_ITEMS: usize = 100;
/// Most days one item may span.
pub const MAX_DAYS: i64 = 366;

#[derive(Debug, Clone, Deserialize)]
pub struct Item {
    pub store_id: u32,
    pub product_name: String,
    pub begin_date: NaiveDate,
    pub end_date: NaiveDate,
}

#[derive(Debug, Serialize)]
pub struct Answer {
    pub store_id: u32,
    pub product_name: String,
    pub forecast: Vec<Point>,
    pub api: Api,
}

#[derive(Debug, Serialize)]
pub struct Point {
    /// The day, as `YYYY-MM-DDT00:00:00` like the reference service.
    pub timestamp: String,
    pub value: f64,
    pub lower_ci: f64,
    pub upper_ci: f64,
}

#[derive(Debug, Serialize)]
pub struct Api {
    pub model_name: String,
    pub model_version: i32,
}

pub async fn forecast(
    State(gateway): State<Gateway>,
    body: Result<Json<Vec<Item>>, JsonRejection>,
) -> Result<Json<Vec<Answer>>, ApiError> {
    let Json(items) = body.map_err(|rejection| {
        ApiError::bad_request(format!(
            "the body must be a JSON list of {{store_id, product_name, begin_date, end_date}}: {}",
            rejection.body_text()
        ))
    })?;
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(ApiError::bad_request(format!(
            "ask for 1 to {MAX_ITEMS} items, not {}",
            items.len()
        )));
    }
    let database = &gateway.database;
    let mut plans = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let at = |what: String| format!("item {index} (store {}): {what}", item.store_id);
        if item.end_date < item.begin_date {
            return Err(ApiError::bad_request(at(format!(
                "end_date {} is before begin_date {}",
                item.end_date, item.begin_date
            ))));
        }
        let span = (item.end_date - item.begin_date).num_days() + 1;
        if span > MAX_DAYS {
            return Err(ApiError::bad_request(at(format!(
                "{span} days asked, more than {MAX_DAYS}"
            ))));
        }
        let last = database
            .last_sale_dates(&item.product_name, &[item.store_id])
            .await
            .map_err(ApiError::database)?
            .get(&item.store_id)
            .copied()
            .ok_or_else(|| ApiError {
                status: StatusCode::NOT_FOUND,
                message: at(format!("unknown series: no sales of {}", item.product_name)),
            })?;
        if item.begin_date <= last {
            return Err(ApiError::bad_request(at(format!(
                "begin_date must be after the last day of sales, {last}"
            ))));
        }
        let days = (item.end_date - last).num_days();
        if days > MAX_DAYS {
            return Err(ApiError::bad_request(at(format!(
                "end_date is {days} days after the last day of sales ({last}); at most {MAX_DAYS}"
            ))));
        }
        plans.push((item, days as u32));
    }

    let total: u64 = plans.iter().map(|(_, days)| u64::from(*days)).sum();
    let most = gateway.settings.forecast_max_days;
    if total > u64::from(most) {
        return Err(ApiError::bad_request(format!(
            "{total} forecast days asked in all (each item counted from its last day of \
             sales), more than {most} (gateway.forecast_max_days): split the request"
        )));
    }

    let mut answers = Vec::with_capacity(plans.len());
    for (item, days) in plans {
        let key = SeriesKey::new(item.store_id, item.product_name.clone());
        let owner = gateway.client.owner(&key).await?;
        // Held until this item's answer is in; the request's time limit bounds the wait.
        let _slot = Arc::clone(&gateway.forecast_slots)
            .acquire_owned()
            .await
            .map_err(|_| ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: "the gateway is stopping".to_string(),
            })?;
        let request = ForecastRequest::new(item.store_id, item.product_name.clone(), days);
        let forecast = gateway.client.forecast(&owner.node, request).await?;
        answers.push(Answer {
            store_id: item.store_id,
            product_name: item.product_name.clone(),
            forecast: forecast
                .points
                .iter()
                .filter(|point| point.date >= item.begin_date && point.date <= item.end_date)
                .map(|point| Point {
                    timestamp: format!("{}T00:00:00", point.date),
                    value: point.yhat,
                    lower_ci: point.lower,
                    upper_ci: point.upper,
                })
                .collect(),
            api: Api {
                model_name: forecast.version.profile,
                model_version: forecast.version.version,
            },
        });
    }
    Ok(Json(answers))
}
