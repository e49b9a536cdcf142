//! The fake's HTTP side: one axum fallback handler that reads a request
//! (token, JSON or multipart body), serves it through [`super::routes`] and
//! records it with the answer's status, under one lock.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::Value;

use super::api_error::ApiError;
use super::multipart;
use super::records::{RecordedRequest, UploadedFile};
use super::routes::{self, Answer, Incoming};
use super::sessions::bare_token;
use super::state::Shared;

/// Largest request body accepted (uploads included); Discord's own limit is 25 MiB.
const BODY_LIMIT: usize = 32 * 1024 * 1024;

/// The REST API router.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}

/// The body as JSON plus uploaded files, or `Err` with the raw text of a body that is not JSON.
fn read_body(headers: &HeaderMap, body: &[u8]) -> Result<(Option<Value>, Vec<UploadedFile>), Value> {
    let raw = || Value::String(String::from_utf8_lossy(body).into_owned());
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if multipart::is_multipart(content_type) {
        let form = multipart::parse(content_type, body).ok_or_else(raw)?;
        let payload = match form.payload_json {
            Some(text) => Some(serde_json::from_str(&text).map_err(|_| Value::String(text))?),
            None => None,
        };
        return Ok((payload, form.files));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((None, Vec::new()));
    }
    serde_json::from_slice(body)
        .map(|json| (Some(json), Vec::new()))
        .map_err(|_| raw())
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(|value| bare_token(value).to_owned());
    let parsed = read_body(&headers, &body);
    let answer = shared.write(|state| {
        let (json, files) = match &parsed {
            Ok((json, files)) => (json.clone(), files.as_slice()),
            Err(raw) => (Some(raw.clone()), &[][..]),
        };
        let answer = match &parsed {
            Ok(_) => routes::route(
                state,
                &Incoming {
                    method: method.as_str(),
                    path: uri.path(),
                    token: token.as_deref(),
                    body: json.as_ref(),
                    files,
                },
            ),
            Err(_) => ApiError::invalid_json().into(),
        };
        let application_id = token
            .as_deref()
            .and_then(|token| state.bots.get(token))
            .map(|entry| entry.fixture.application_id.clone());
        state.requests.push(RecordedRequest {
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            token: token.clone(),
            application_id,
            body: json,
            files: files.to_vec(),
            status: answer.status(),
        });
        answer
    });
    respond(answer)
}

fn respond(answer: Answer) -> Response {
    match answer {
        Answer::Json(status, body) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, Json(body)).into_response()
        }
        Answer::NoContent => StatusCode::NO_CONTENT.into_response(),
        Answer::File { content_type, bytes } => {
            let content_type =
                HeaderValue::from_str(&content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
            ([(CONTENT_TYPE, content_type)], bytes).into_response()
        }
    }
}
