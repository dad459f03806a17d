//! The dashboard's event sections: the most recent events on the overview and an address's
//! history on its page (templates; the handlers in `mod.rs` read the events).

use ipam_core::Event;
use maud::{html, Markup};

use crate::wire::rfc3339;

/// Events the overview shows.
pub const RECENT: usize = 20;
/// Events an address page shows.
pub const HISTORY: usize = 50;

/// A table of `events` (in the order given) under `title`; `id` is the section's element id.
pub fn section(id: &str, title: &str, events: &[Event], empty: &str) -> Markup {
    html! {
        section {
            h2 { (title) }
            @if events.is_empty() {
                p.muted { (empty) }
            } @else {
                table id=(id) {
                    thead { tr {
                        th.num { "Id" } th { "At" } th { "Kind" } th { "Pool" } th { "Address" }
                        th { "Owner" } th.num { "Generation" }
                    } }
                    tbody {
                        @for e in events {
                            tr data-event=(e.id) {
                                td.num { (e.id) }
                                td { (rfc3339(e.at)) }
                                td.kind { (e.kind.as_str()) }
                                td { a href=(format!("/ui/pools/{}", e.pool)) { (e.pool) } }
                                td { @match e.ip {
                                    Some(ip) => a href=(format!("/ui/addresses/{ip}")) { (ip) },
                                    None => span.muted { "—" },
                                } }
                                td { @match &e.owner {
                                    Some(o) => a href=(format!("/ui/owners?owner={}", super::pages::encode_component(o))) { (o) },
                                    None => span.muted { "—" },
                                } }
                                td.num { @match e.generation {
                                    Some(g) => (g),
                                    None => span.muted { "—" },
                                } }
                            }
                        }
                    }
                }
            }
        }
    }
}
