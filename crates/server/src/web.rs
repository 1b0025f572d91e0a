//! The web app, embedded in the binary so that one file is the whole product.

use axum::{
    http::header,
    response::{Html, IntoResponse},
};

const INDEX: &str = include_str!("../../../web/index.html");

/// `GET /`: the app's page.
pub async fn index() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(INDEX))
}
