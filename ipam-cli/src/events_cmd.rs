//! `ipam-cli events [--pool P] [--after ID] [--follow]` and `ipam-cli ip history IP`.
//!
//! `--follow` prints each event as it arrives: a fixed-width table row (the widths cannot be
//! measured ahead of a stream), or one compact JSON line with `-o json`.

use clap::Args;
use ipam_client::types::{Event, EventList};
use ipam_client::Client;

use crate::args::Output;
use crate::commands::{emit, write_stdout};
use crate::render::{or_dash, Table};

/// `ipam-cli events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only this pool's events.
    #[arg(long)]
    pub pool: Option<String>,
    /// Start after this event id (exclusive); without it, a listing starts at the oldest kept
    /// event and --follow at the next new one.
    #[arg(long, value_name = "ID")]
    pub after: Option<u64>,
    /// Page size of a listing, 1–1000.
    #[arg(long, conflicts_with = "follow")]
    pub limit: Option<u32>,
    /// Keep printing events as they happen, until the node closes the stream.
    #[arg(short, long)]
    pub follow: bool,
}

/// `ipam-cli ip history IP`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The address.
    pub ip: String,
    /// At most this many events, newest first (1–1000; default 100).
    #[arg(long)]
    pub limit: Option<u32>,
}

const HEADERS: [&str; 7] = ["ID", "AT", "KIND", "POOL", "IP", "OWNER", "GENERATION"];

fn cells(e: &Event) -> Vec<String> {
    vec![
        e.id.clone(),
        e.at.clone(),
        e.kind.clone(),
        e.pool.clone(),
        or_dash(e.ip.as_deref().or(e.prefix.as_deref())),
        or_dash(e.owner.as_deref()),
        e.generation
            .map_or_else(|| "-".to_string(), |g| g.to_string()),
    ]
}

/// Events as an aligned table.
pub fn event_table(events: &[Event]) -> String {
    let mut t = Table::new(&HEADERS).right_align(&[0, 6]);
    for e in events {
        t.row(cells(e));
    }
    t.render()
}

/// Widths of the follow mode's columns: ids up to 10 digits, RFC 3339 with milliseconds,
/// the longest kind, then room for typical names and addresses.
const FOLLOW_WIDTHS: [usize; 6] = [10, 24, 12, 16, 15, 20];

/// One line of the follow mode's table (the header when `cells` are the headers).
fn follow_line(cells: &[String]) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        match FOLLOW_WIDTHS.get(i) {
            Some(&w) if i == 0 => line.push_str(&format!("{cell:>w$}")),
            Some(&w) => line.push_str(&format!("{cell:<w$}")),
            None => line.push_str(cell),
        }
    }
    line.push('\n');
    line
}

/// `ipam-cli events ...`.
pub async fn events(client: &Client, out: Output, args: EventsArgs) -> anyhow::Result<()> {
    if !args.follow {
        let list = client
            .events(args.after, args.pool.as_deref(), args.limit)
            .await?;
        return emit(out, &list, || {
            let mut text = event_table(&list.events);
            if let Some(next) = &list.next {
                text.push_str(&format!("more: --after {next}\n"));
            }
            text
        });
    }
    let mut stream = client.watch(args.after, args.pool.as_deref(), None).await?;
    if out != Output::Json {
        let headers: Vec<String> = HEADERS.iter().map(|h| h.to_string()).collect();
        write_stdout(&follow_line(&headers))?;
    }
    while let Some(event) = stream.next().await {
        let event = event?;
        let line = match out {
            Output::Json => format!("{}\n", serde_json::to_string(&event)?),
            Output::Table | Output::Csv => follow_line(&cells(&event)),
        };
        write_stdout(&line)?;
    }
    Ok(())
}

/// `ipam-cli ip history IP`.
pub async fn history(client: &Client, out: Output, args: HistoryArgs) -> anyhow::Result<()> {
    let events = client.history(&args.ip, args.limit).await?;
    let list = EventList { events, next: None };
    emit(out, &list, || {
        if list.events.is_empty() {
            format!("{} has no recorded events\n", args.ip)
        } else {
            event_table(&list.events)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, kind: &str, ip: Option<&str>) -> Event {
        Event {
            id: id.into(),
            at: "2026-01-02T03:04:05.678Z".into(),
            kind: kind.into(),
            pool: "vms".into(),
            ip: ip.map(str::to_string),
            prefix: None,
            owner: ip.map(|_| "vm-1".to_string()),
            generation: ip.map(|_| 7),
        }
    }

    #[test]
    fn tables_show_dashes_for_pool_events() {
        let t = event_table(&[
            event("1", "pool_created", None),
            event("12", "allocated", Some("10.0.0.2")),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ID  AT"), "{t}");
        assert!(lines[1].contains("pool_created  vms   -"), "{t}");
        assert!(lines[2].ends_with("vm-1            7"), "{t}");
    }

    #[test]
    fn follow_rows_keep_their_columns() {
        let a = follow_line(&cells(&event("3", "allocated", Some("10.0.0.2"))));
        let b = follow_line(&cells(&event("1234", "pool_updated", None)));
        assert_eq!(a.find("vms"), b.find("vms"), "{a}{b}");
        assert!(a.ends_with("7\n"));
    }
}
