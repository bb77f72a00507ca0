//! What the gateway serves besides the API: the web page at `/` (HTML, script and style
//! compiled into the binary; nothing is fetched from elsewhere at run time), the OpenAPI
//! document at `/openapi.json` and its interactive docs page at `/docs`.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::ApiError;

const INDEX_HTML: &str = include_str!("assets/index.html");
const DOCS_HTML: &str = include_str!("assets/docs.html");
/// The OpenAPI 3.1 document of every route in [`super::router`].
pub const OPENAPI_JSON: &str = include_str!("assets/openapi.json");

/// Files under `/assets/`: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "chart.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/chart.js"),
    ),
    (
        "docs.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/docs.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
];

pub async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

pub async fn docs() -> Html<&'static str> {
    Html(DOCS_HTML)
}

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, content)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *content,
        )
            .into_response(),
        None => ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("no asset {file}"),
        }
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_is_json_with_paths() {
        let document: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert!(document["openapi"].as_str().unwrap().starts_with("3."));
        assert!(document["paths"].as_object().unwrap().len() >= 10);
    }
}
