//! Event handlers: `GET /api/v1/events` (a page, oldest first), `GET /api/v1/events/watch`
//! (server-sent events: `id:` + `data:` per event, keep-alive comments, `Last-Event-ID`
//! resume) and `GET /api/v1/addresses/{ip}/history` (newest first).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::Stream;
use ipam_client::types as api;
use ipam_core::validate::{check_limit, check_name, parse_addr};
use ipam_core::Event;

use crate::api::AppState;
use crate::error::ApiError;
use crate::extract::{ApiPath, Params};
use crate::wire;

/// The contract's bound on the silence of an event stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Default page size of event listings and histories.
const DEFAULT_LIMIT: u64 = 100;

/// The API form of an event.
pub fn event(e: &Event) -> api::Event {
    api::Event {
        id: e.id.to_string(),
        at: wire::rfc3339(e.at),
        kind: e.kind.as_str().to_string(),
        pool: e.pool.clone(),
        ip: e.ip.map(|ip| ip.to_string()),
        prefix: e.prefix.map(|p| p.to_string()),
        owner: e.owner.clone(),
        generation: e.generation,
    }
}

/// `?limit=` within 1..=1000, default 100.
fn limit(params: &mut Params) -> Result<usize, ApiError> {
    let limit = params.take_u64("limit")?.unwrap_or(DEFAULT_LIMIT);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    check_limit(limit)?;
    Ok(limit)
}

/// `?pool=`, checked as a pool name.
fn pool(params: &mut Params) -> Result<Option<String>, ApiError> {
    let pool = params.take("pool")?;
    if let Some(p) = &pool {
        check_name(p)?;
    }
    Ok(pool)
}

/// `GET /api/v1/events?after=ID&pool=P&limit=N`.
pub async fn list(
    State(state): State<AppState>,
    mut params: Params,
) -> Result<Json<api::EventList>, ApiError> {
    let after = params.take_u64("after")?;
    let pool = pool(&mut params)?;
    let limit = limit(&mut params)?;
    let consistency = params.consistency()?;
    params.finish()?;
    let page = state
        .ipam
        .events(after, pool.as_deref(), limit, consistency)
        .await?;
    Ok(Json(api::EventList {
        events: page.events.iter().map(event).collect(),
        next: page.next.map(|n| n.to_string()),
    }))
}

/// `GET /api/v1/addresses/{ip}/history?limit=N`.
pub async fn history(
    State(state): State<AppState>,
    ApiPath(ip): ApiPath<String>,
    mut params: Params,
) -> Result<Json<api::EventList>, ApiError> {
    let limit = limit(&mut params)?;
    let consistency = params.consistency()?;
    params.finish()?;
    let ip = parse_addr(&ip)?;
    let events = state.ipam.history(ip, limit, consistency).await?;
    Ok(Json(api::EventList {
        events: events.iter().map(event).collect(),
        next: None,
    }))
}

/// `GET /api/v1/events/watch?after=ID&pool=P`; a `Last-Event-ID` header wins over `after`.
pub async fn watch(
    State(state): State<AppState>,
    headers: HeaderMap,
    mut params: Params,
) -> Result<Response, ApiError> {
    let after = params.take_u64("after")?;
    let pool = pool(&mut params)?;
    params.finish()?;
    let last = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::InvalidArgument(
                        "Last-Event-ID must be an event id (a non-negative integer)".to_string(),
                    )
                })?,
        ),
        None => None,
    };
    let watch = state.ipam.watch(last.or(after), pool).await?;
    let closing = state.closing.subscribe();
    Ok(Sse::new(frames(watch, closing))
        .keep_alive(KeepAlive::new().interval(state.sse_keep_alive))
        .into_response())
}

/// What [`frames`] carries from one item to the next.
struct Follow {
    watch: ipam_raft::events::EventWatch,
    closing: tokio::sync::watch::Receiver<bool>,
    done: bool,
}

/// The SSE frames of a watch: one per event; an error ends the stream with an `error` event
/// carrying the contract's error body; node shutdown ends it silently.
fn frames(
    watch: ipam_raft::events::EventWatch,
    closing: tokio::sync::watch::Receiver<bool>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let start = Follow {
        watch,
        closing,
        done: false,
    };
    futures::stream::unfold(start, |mut f| async move {
        if f.done || *f.closing.borrow() {
            return None;
        }
        let next = tokio::select! {
            next = f.watch.next() => next,
            _ = f.closing.changed() => None,
        };
        let frame = match next? {
            Ok(e) => {
                let data = serde_json::to_string(&event(&e)).unwrap_or_default();
                SseEvent::default().id(e.id.to_string()).data(data)
            }
            Err(e) => {
                f.done = true;
                let e = ApiError::from(e);
                let parts = e.parts();
                let body = api::ErrorBody {
                    error: api::ErrorDetail {
                        code: parts.code,
                        message: e.to_string(),
                        index: None,
                        may_have_committed: None,
                    },
                };
                let data = serde_json::to_string(&body).unwrap_or_default();
                SseEvent::default().event("error").data(data)
            }
        };
        Some((Ok(frame), f))
    })
}
