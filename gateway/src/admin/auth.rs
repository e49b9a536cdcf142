//! The admin key check: `Authorization: Bearer <key>` or `X-API-Key`.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{AdminState, HttpError};

/// The key the request presents, if any.
fn presented(request: &Request) -> Option<&[u8]> {
    let headers = request.headers();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let bytes = value.as_bytes();
        if bytes.len() > 7 && bytes[..7].eq_ignore_ascii_case(b"bearer ") {
            return Some(bytes[7..].trim_ascii());
        }
    }
    headers.get("x-api-key").map(|v| v.as_bytes().trim_ascii())
}

/// 401 without a key, 403 with a wrong one; the key is compared in
/// constant time and never logged.
pub(super) async fn require_admin_key(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    match presented(&request) {
        None | Some([]) => {
            let mut response = HttpError::new(
                StatusCode::UNAUTHORIZED,
                "missing admin key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        Some(key) if !state.inner.key.verify(key) => {
            tracing::warn!(target: "glyphoxa::audit", path = %request.uri().path(), "admin API: wrong admin key");
            HttpError::new(StatusCode::FORBIDDEN, "wrong admin key").into_response()
        }
        Some(_) => next.run(request).await,
    }
}
