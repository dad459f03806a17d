//! `/ui`: a read-only, server-rendered dashboard (maud templates, inline CSS, no JavaScript
//! framework; a few lines of inline script only reload the overview). Every page reads the
//! local replica through the [`Ipam`](ipam_raft::Ipam) handle — never HTTP to itself — so it
//! renders even while the cluster has no leader.
//!
//! # Layout
//!
//! - this file — [`routes`] and the handlers: each gathers a page's data into a view struct.
//! - [`pages`] — the templates (one function per page) and the layout around them.
//! - [`auth`] — the login form's cookie and the [`auth::Session`] extractor.
//!
//! A new section (events, history, next free address) is a field of the page's view struct
//! filled by its handler, and a block in its template.

use std::net::IpAddr;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use ipam_core::validate::{check_name, check_owner, parse_addr};
use ipam_core::Labels;
use ipam_raft::Consistency;
use maud::Markup;
use serde::Deserialize;

use crate::api::AppState;
use crate::error::ApiError;

pub mod auth;
pub mod events;
pub mod pages;

use auth::Session;

/// Allocations on one page of the pool view.
pub const PAGE_SIZE: usize = 50;
/// Addresses the pool page previews as the next allocations would get them.
pub const NEXT_FREE_SHOWN: usize = 5;

/// The dashboard's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(overview))
        .route("/ui/", get(overview))
        .route("/ui/pools/{name}", get(pool))
        .route("/ui/addresses/{ip}", get(address))
        .route("/ui/owners", get(owner))
        .route("/ui/search", get(search))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .layer(middleware::from_fn(security_headers))
}

/// A page with its status.
pub fn html(status: StatusCode, body: Markup) -> impl IntoResponse {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        body.into_string(),
    )
}

/// Headers that confine what a page may do even if some text escaped the templates: scripts
/// only the one inline reload script (by hash), no frames, no other origins, no caching.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; script-src '{}'; img-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        pages::reload_script_hash()
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A failed read as a page: its status, and its message unless it is an internal error.
fn error_page(session: &Session, e: ApiError) -> Response {
    let status = e.parts().status;
    let message = if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!(error = %e, "dashboard read failed");
        "internal error; see the node's log".to_string()
    } else {
        e.to_string()
    };
    html(status, pages::error(session, status, &message)).into_response()
}

/// What the overview shows of one member.
pub struct MemberView {
    /// Node id.
    pub id: u64,
    /// `host:port`.
    pub addr: String,
    /// `voter` or `learner`.
    pub role: &'static str,
    /// Whether it leads.
    pub leader: bool,
    /// Whether it is the node serving the page.
    pub this: bool,
    /// Highest index matching the leader's log (known on the leader only).
    pub matched: Option<u64>,
    /// Entries behind the leader's last log index (known on the leader only).
    pub lag: Option<u64>,
}

async fn overview(session: Session, State(state): State<AppState>) -> Response {
    let status = state.ipam.status();
    let progress = state.ipam.replication().unwrap_or_default();
    let members = status
        .members
        .iter()
        .map(|m| {
            let matched = progress
                .iter()
                .find(|r| r.id == m.id)
                .and_then(|r| r.matched);
            MemberView {
                id: m.id,
                addr: m.addr.clone(),
                role: match m.role {
                    ipam_raft::MemberRole::Voter => "voter",
                    ipam_raft::MemberRole::Learner => "learner",
                },
                leader: status.leader == Some(m.id),
                this: m.id == status.id,
                matched,
                lag: matched.map(|i| status.last_log_index.saturating_sub(i)),
            }
        })
        .collect::<Vec<_>>();
    let pools = match state.ipam.pools(&Labels::new(), Consistency::Local).await {
        Ok(p) => p,
        Err(e) => return error_page(&session, e.into()),
    };
    let recent = match state
        .ipam
        .recent_events(events::RECENT, Consistency::Local)
        .await
    {
        Ok(e) => e,
        Err(e) => return error_page(&session, e.into()),
    };
    html(
        StatusCode::OK,
        pages::overview(&session, &status, &members, &pools, &recent),
    )
    .into_response()
}

/// Query of the pool page.
#[derive(Deserialize)]
pub struct PoolQuery {
    /// Start after this address.
    pub after: Option<String>,
    /// Only this owner's allocations.
    pub owner: Option<String>,
}

async fn pool(
    session: Session,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<PoolQuery>,
) -> Response {
    let read = async {
        check_name(&name)?;
        let after = match q.after.as_deref().filter(|a| !a.is_empty()) {
            Some(a) => Some(parse_addr(a)?),
            None => None,
        };
        let owner = q.owner.as_deref().filter(|o| !o.is_empty());
        if let Some(o) = owner {
            check_owner(o)?;
        }
        let info = state.ipam.pool(&name, Consistency::Local).await?;
        let next_free = state
            .ipam
            .next_free(&name, NEXT_FREE_SHOWN, Consistency::Local)
            .await?;
        let page = state
            .ipam
            .allocations(&name, owner, after, PAGE_SIZE, Consistency::Local)
            .await?;
        Ok::<_, ApiError>((info, next_free, page, owner.map(str::to_string)))
    };
    match read.await {
        Ok((info, next_free, page, owner)) => html(
            StatusCode::OK,
            pages::pool(
                &session,
                &info,
                &next_free,
                &page,
                owner.as_deref(),
                after_text(&q),
            ),
        )
        .into_response(),
        Err(e) => error_page(&session, e),
    }
}

fn after_text(q: &PoolQuery) -> Option<&str> {
    q.after.as_deref().filter(|a| !a.is_empty())
}

async fn address(
    session: Session,
    State(state): State<AppState>,
    Path(ip): Path<String>,
) -> Response {
    let read = async {
        let ip: IpAddr = parse_addr(&ip)?;
        let info = state.ipam.address(ip, Consistency::Local).await?;
        let history = state
            .ipam
            .history(ip, events::HISTORY, Consistency::Local)
            .await?;
        Ok::<_, ApiError>((ip, info, history))
    };
    match read.await {
        Ok((ip, info, history)) => html(
            StatusCode::OK,
            pages::address(&session, ip, &info, &history),
        )
        .into_response(),
        Err(e) => error_page(&session, e),
    }
}

/// Query of the owner page.
#[derive(Deserialize)]
pub struct OwnerQuery {
    /// The owner.
    pub owner: String,
}

async fn owner(
    session: Session,
    State(state): State<AppState>,
    Query(q): Query<OwnerQuery>,
) -> Response {
    let read = async {
        check_owner(&q.owner)?;
        Ok::<_, ApiError>(
            state
                .ipam
                .owner_allocations(&q.owner, Consistency::Local)
                .await?,
        )
    };
    match read.await {
        Ok(allocations) => html(
            StatusCode::OK,
            pages::owner(&session, &q.owner, &allocations),
        )
        .into_response(),
        Err(e) => error_page(&session, e),
    }
}

/// Query of the search box.
#[derive(Deserialize)]
pub struct SearchQuery {
    /// An address, a pool name or an owner.
    #[serde(default)]
    pub q: String,
}

/// An address goes to its page, an existing pool's name to the pool, anything else is taken
/// as an owner.
async fn search(
    session: Session,
    State(state): State<AppState>,
    Query(q): Query<SearchQuery>,
) -> Response {
    let text = q.q.trim();
    if text.is_empty() {
        return Redirect::to("/ui").into_response();
    }
    if let Ok(ip) = parse_addr(text) {
        return Redirect::to(&format!("/ui/addresses/{ip}")).into_response();
    }
    if check_name(text).is_ok() && state.ipam.pool(text, Consistency::Local).await.is_ok() {
        return Redirect::to(&format!("/ui/pools/{text}")).into_response();
    }
    if let Err(e) = check_owner(text) {
        return error_page(&session, e.into());
    }
    Redirect::to(&format!(
        "/ui/owners?owner={}",
        pages::encode_component(text)
    ))
    .into_response()
}

async fn login_form(State(state): State<AppState>) -> Response {
    if state.token.is_none() {
        return Redirect::to("/ui").into_response();
    }
    html(StatusCode::OK, pages::login(None)).into_response()
}

/// The login form's body.
#[derive(Deserialize)]
pub struct LoginForm {
    /// The cluster token.
    pub token: String,
}

async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let Some(token) = &state.token else {
        return Redirect::to("/ui").into_response();
    };
    if !auth::token_matches(&form.token, token) {
        return html(StatusCode::UNAUTHORIZED, pages::login(Some("wrong token"))).into_response();
    }
    let mut response = Redirect::to("/ui").into_response();
    if let Ok(v) = HeaderValue::from_str(&auth::login_cookie(token, state.secure_cookies)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn logout(State(state): State<AppState>) -> Response {
    let mut response = Redirect::to("/ui/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&auth::logout_cookie(state.secure_cookies)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}
