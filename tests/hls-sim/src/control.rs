//! The control API (HTTP/1.1 + JSON on its own port).
//!
//! - `GET /healthz`
//! - `GET /topology[?stream=NAME][&region=NAME]`
//! - `GET /faults`, `GET /faults/{id}`
//! - `POST /faults` (a [`FaultRequest`]) -> [`crate::api::FaultApplied`]
//! - `DELETE /faults/{id}` -> [`crate::api::Healed`]; `DELETE /faults` -> [`crate::api::HealedAll`]
//! - `POST /streams/{stream}/renditions` (a [`RenditionUpdate`]) ->
//!   [`crate::api::RenditionsChanged`]

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::api::{FaultList, FaultRequest, RenditionUpdate};
use crate::body::SimBody;
use crate::error::SimError;
use crate::state::Shared;

const MAX_BODY: usize = 1 << 20;

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<SimBody> {
    let mut body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    let mut r = Response::new(SimBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error(e: &SimError) -> Response<SimBody> {
    #[derive(Serialize)]
    struct Error {
        error: String,
    }
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(
        status,
        &Error {
            error: e.to_string(),
        },
    )
}

fn ok<T: Serialize>(r: Result<T, SimError>) -> Response<SimBody> {
    match r {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => error(&e),
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, SimError> {
    let body: Bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| SimError::BadRequest(format!("cannot read body: {e}")))?
        .to_bytes();
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &body
    };
    serde_json::from_slice(body).map_err(|e| SimError::BadRequest(format!("invalid JSON: {e}")))
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<SimBody>, std::convert::Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let query = req.uri().query().map(str::to_string);
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    let resp = match (&method, segs.as_slice()) {
        (&Method::GET, ["healthz"]) => json(StatusCode::OK, &serde_json::json!({"ok": true})),
        (&Method::GET, ["topology"]) => {
            let q = query.as_deref();
            let topo = shared.topology(query_param(q, "stream"), query_param(q, "region"));
            json(StatusCode::OK, &topo)
        }
        (&Method::GET, ["faults"]) => json(
            StatusCode::OK,
            &FaultList {
                faults: shared.fault_list(),
            },
        ),
        (&Method::GET, ["faults", id]) => ok(parse_id(id).and_then(|id| {
            shared
                .fault_list()
                .into_iter()
                .find(|f| f.id == id)
                .ok_or_else(|| SimError::NotFound(format!("no active fault {id}")))
        })),
        (&Method::POST, ["faults"]) => match read_json::<FaultRequest>(req).await {
            Ok(f) => ok(shared.apply_fault(f).await),
            Err(e) => error(&e),
        },
        (&Method::DELETE, ["faults"]) => json(StatusCode::OK, &shared.heal_all().await),
        (&Method::DELETE, ["faults", id]) => match parse_id(id) {
            Ok(id) => ok(shared.heal_fault(id).await),
            Err(e) => error(&e),
        },
        (&Method::POST, ["streams", stream, "renditions"]) => {
            let stream = stream.to_string();
            match read_json::<RenditionUpdate>(req).await {
                Ok(u) => ok(shared.update_renditions(&stream, &u)),
                Err(e) => error(&e),
            }
        }
        (_, ["healthz" | "topology" | "faults" | "streams", ..]) => {
            let mut r = error(&SimError::BadRequest(format!("{method} not allowed here")));
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            r
        }
        _ => error(&SimError::NotFound(format!("no route {path}"))),
    };
    Ok(resp)
}

fn parse_id(s: &str) -> Result<u64, SimError> {
    s.parse()
        .map_err(|_| SimError::BadRequest(format!("invalid fault id {s:?}")))
}
