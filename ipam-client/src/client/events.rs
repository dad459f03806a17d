//! Typed calls of the event endpoints: a page of events, an address's history, and
//! [`EventStream`], the `text/event-stream` of `GET /api/v1/events/watch` parsed into events.
//!
//! The stream parser is small and local: the node sends only `id:`, `data:`, `event:` and
//! comment lines, and no maintained SSE crate fits reqwest's body without a stream adapter.

use reqwest::{header, Method, Response};

use super::Client;
use crate::error::ClientError;
use crate::types::{ErrorBody, Event, EventList};

impl Client {
    /// `GET /api/v1/events?after&pool&limit`: events after id `after`, oldest first.
    pub async fn events(
        &self,
        after: Option<u64>,
        pool: Option<&str>,
        limit: Option<u32>,
    ) -> Result<EventList, ClientError> {
        let mut rb = self.read(&["api", "v1", "events"]);
        if let Some(after) = after {
            rb = rb.query(&[("after", after)]);
        }
        if let Some(pool) = pool {
            rb = rb.query(&[("pool", pool)]);
        }
        if let Some(limit) = limit {
            rb = rb.query(&[("limit", limit)]);
        }
        self.json(rb).await
    }

    /// `GET /api/v1/addresses/{ip}/history?limit`: the address's events, newest first.
    pub async fn history(&self, ip: &str, limit: Option<u32>) -> Result<Vec<Event>, ClientError> {
        let mut rb = self.read(&["api", "v1", "addresses", ip, "history"]);
        if let Some(limit) = limit {
            rb = rb.query(&[("limit", limit)]);
        }
        let list: EventList = self.json(rb).await?;
        Ok(list.events)
    }

    /// `GET /api/v1/events/watch`: follows the event log from id `after` (exclusive; from now
    /// on when `None`), only `pool`'s events when given. `last_event_id` is sent as the
    /// `Last-Event-ID` header, which the node prefers over `after` (a resumed stream). The
    /// client's whole-request timeout does not apply: the stream stays open.
    pub async fn watch(
        &self,
        after: Option<u64>,
        pool: Option<&str>,
        last_event_id: Option<u64>,
    ) -> Result<EventStream, ClientError> {
        let mut rb = self
            .http
            .request(Method::GET, self.url(&["api", "v1", "events", "watch"]))
            .header(header::ACCEPT, "text/event-stream");
        if let Some(token) = &self.token {
            rb = rb.bearer_auth(token);
        }
        if let Some(after) = after {
            rb = rb.query(&[("after", after)]);
        }
        if let Some(pool) = pool {
            rb = rb.query(&[("pool", pool)]);
        }
        if let Some(id) = last_event_id {
            rb = rb.header("last-event-id", id.to_string());
        }
        let resp = self.checked(rb).await?;
        Ok(EventStream {
            resp,
            endpoint: self.endpoint().to_string(),
            buf: Vec::new(),
            frame: Frame::default(),
            last_id: last_event_id.or(after),
        })
    }
}

/// The fields of one server-sent event being read.
#[derive(Debug, Default)]
struct Frame {
    id: Option<String>,
    event: Option<String>,
    data: Vec<String>,
}

/// What one complete frame was.
#[derive(Debug, PartialEq)]
enum Parsed {
    Event(Event),
    /// `event: error`: the node ended the stream with this error body.
    Error(ErrorBody),
}

/// An open `GET /api/v1/events/watch` stream. [`EventStream::next`] yields events in id order;
/// keep-alive comments are skipped. After a disconnect, resume with
/// `Client::watch(None, pool, stream.last_event_id())`.
#[derive(Debug)]
pub struct EventStream {
    resp: Response,
    endpoint: String,
    buf: Vec<u8>,
    frame: Frame,
    last_id: Option<u64>,
}

impl EventStream {
    /// The next event; `None` when the node closed the stream (shutdown).
    pub async fn next(&mut self) -> Option<Result<Event, ClientError>> {
        loop {
            while let Some(line) = take_line(&mut self.buf) {
                match self.line(&line) {
                    Ok(Some(Parsed::Event(e))) => {
                        if let Some(id) = e.id_number() {
                            self.last_id = Some(id);
                        }
                        return Some(Ok(e));
                    }
                    Ok(Some(Parsed::Error(body))) => {
                        return Some(Err(ClientError::Api {
                            status: body
                                .error
                                .code
                                .status()
                                .unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR),
                            code: body.error.code,
                            message: body.error.message,
                            index: body.error.index,
                            may_have_committed: body.error.may_have_committed.unwrap_or(false),
                            retry_after: None,
                        }))
                    }
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                }
            }
            match self.resp.chunk().await {
                Ok(Some(bytes)) => self.buf.extend_from_slice(&bytes),
                Ok(None) => return None,
                Err(e) => return Some(Err(ClientError::transport(&self.endpoint, e))),
            }
        }
    }

    /// The id of the last event delivered (or the position the stream started from).
    pub fn last_event_id(&self) -> Option<u64> {
        self.last_id
    }

    /// Feeds one line; a blank line completes the frame.
    fn line(&mut self, line: &str) -> Result<Option<Parsed>, ClientError> {
        if line.is_empty() {
            let frame = std::mem::take(&mut self.frame);
            if frame.data.is_empty() {
                return Ok(None);
            }
            let data = frame.data.join("\n");
            let decode = |detail: String| ClientError::Decode {
                endpoint: self.endpoint.clone(),
                status: reqwest::StatusCode::OK,
                detail,
            };
            if frame.event.as_deref() == Some("error") {
                let body: ErrorBody = serde_json::from_str(&data)
                    .map_err(|e| decode(format!("error event: {e}; data: {data}")))?;
                return Ok(Some(Parsed::Error(body)));
            }
            let event: Event = serde_json::from_str(&data)
                .map_err(|e| decode(format!("event: {e}; data: {data}")))?;
            if frame.id.is_some_and(|id| id != event.id) {
                return Err(decode(format!("id line differs from event {}", event.id)));
            }
            return Ok(Some(Parsed::Event(event)));
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "id" => self.frame.id = Some(value.to_string()),
            "data" => self.frame.data.push(value.to_string()),
            "event" => self.frame.event = Some(value.to_string()),
            _ => {}
        }
        Ok(None)
    }
}

/// Removes and returns the first complete line of `buf` (without its `\n` or `\r\n`).
fn take_line(buf: &mut Vec<u8>) -> Option<String> {
    let end = buf.iter().position(|b| *b == b'\n')?;
    let mut line: Vec<u8> = buf.drain(..=end).collect();
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Some(String::from_utf8_lossy(&line).into_owned())
}

#[cfg(test)]
mod tests {
    use super::take_line;

    #[test]
    fn lines_split_on_lf_and_crlf_and_wait_for_the_rest() {
        let mut buf = b"id: 1\r\ndata: {}\n\npart".to_vec();
        assert_eq!(take_line(&mut buf).as_deref(), Some("id: 1"));
        assert_eq!(take_line(&mut buf).as_deref(), Some("data: {}"));
        assert_eq!(take_line(&mut buf).as_deref(), Some(""));
        assert_eq!(take_line(&mut buf), None);
        assert_eq!(buf, b"part");
    }
}
