//! The worker's HTTP face: the router and its handlers, which turn requests into
//! calls on [`Worker`] and its answers into the reference worker's status codes and
//! error texts. Kept apart from `mod.rs`, which owns running experiments and their
//! bookkeeping, so each file holds one concern.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde_json::{Map, Value, json};

use super::{MAX_BODY, MAX_TRAIN_PY, RunError, Worker, valid_id};

impl Worker {
    /// The HTTP API, to be served as is or behind the x402 gate.
    pub fn router(self: &Arc<Self>) -> Router {
        let unknown_method = |r: MethodRouter<Arc<Worker>>| r.fallback(unknown);
        Router::new()
            .route("/health", unknown_method(get(health)))
            .route("/healthz", unknown_method(get(health)))
            .route("/status", unknown_method(get(status)))
            .route("/best", unknown_method(get(best)))
            .route("/experiments/", unknown_method(get(experiment)))
            .route("/experiments/{*id}", unknown_method(get(experiment)))
            .route("/experiment", unknown_method(post(submit)))
            .fallback(unknown)
            .with_state(self.clone())
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn error(status: StatusCode, text: impl Into<String>) -> Response {
    reply(status, json!({"error": text.into()}))
}

async fn health(State(w): State<Arc<Worker>>) -> Response {
    reply(
        StatusCode::OK,
        json!({
            "status": "ok",
            "busy": w.busy(),
            "repo": w.config.repo.display().to_string(),
            "timeoutSeconds": w.timeout_secs(),
            "gpu": w.config.gpu,
        }),
    )
}

async fn status(State(w): State<Arc<Worker>>) -> Response {
    reply(StatusCode::OK, w.status())
}

async fn best(State(w): State<Arc<Worker>>) -> Response {
    match w.best() {
        Some(best) => reply(StatusCode::OK, best),
        None => error(StatusCode::NOT_FOUND, "no completed experiments yet"),
    }
}

/// `GET /experiments/<id>`; the id is checked on the raw path, before any
/// percent-decoding, so no encoding of `..` or `/` gets through.
async fn experiment(State(w): State<Arc<Worker>>, uri: Uri) -> Response {
    let id = uri.path().strip_prefix("/experiments/").unwrap_or_default();
    if !valid_id(id) {
        return error(StatusCode::BAD_REQUEST, "invalid experiment id");
    }
    let path = w.results_dir.join(id).join("result.json");
    match tokio::fs::read(&path)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    {
        Some(result) => reply(StatusCode::OK, result),
        None => error(StatusCode::NOT_FOUND, format!("experiment {id} not found")),
    }
}

async fn unknown(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("unknown endpoint: {}", uri.path()),
    )
}

/// `POST /experiment`: a probe, or a run that answers when it has finished.
async fn submit(State(w): State<Arc<Worker>>, body: Body) -> Response {
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "request body is over {MAX_BODY} bytes: send a train_py of at most {MAX_TRAIN_PY} bytes"
                ),
            );
        }
    };
    let payload: Map<String, Value> = if bytes.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return error(StatusCode::BAD_REQUEST, "JSON body must be an object"),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")),
        }
    };
    if payload.get("probe") == Some(&Value::Bool(true)) {
        return reply(
            StatusCode::OK,
            json!({"status": "ok", "probe": true, "busy": w.busy(), "timeoutSeconds": w.timeout_secs()}),
        );
    }
    let field = |a: &str, b: &str| {
        payload
            .get(a)
            .or_else(|| payload.get(b))
            .filter(|v| !v.is_null())
    };
    let train_py = match field("train_py", "trainPy") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return error(StatusCode::BAD_REQUEST, "train_py string is required"),
    };
    if train_py.len() > MAX_TRAIN_PY {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "train_py is {} bytes; the most this worker accepts is {MAX_TRAIN_PY}",
                train_py.len()
            ),
        );
    }
    let config = match payload.get("config") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "config must be a JSON object when provided",
            );
        }
    };
    let experiment_id = match field("experiment_id", "experimentId") {
        None => None,
        Some(Value::String(id)) if valid_id(id) => Some(id.clone()),
        Some(Value::String(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "experiment_id must contain only alphanumeric characters, hyphens, or underscores",
            );
        }
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "experiment_id must be a string when provided",
            );
        }
    };
    match w.run_experiment(train_py, config, experiment_id).await {
        Ok(result) => reply(StatusCode::OK, result),
        Err(RunError::Busy) => reply(
            StatusCode::CONFLICT,
            json!({"error": "worker is already running an experiment", "status": "busy"}),
        ),
        Err(RunError::Invalid(e)) => error(StatusCode::BAD_REQUEST, e),
        Err(RunError::Internal(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal worker error: {e}"),
        ),
    }
}
