//! Framing of the log's records: `len` (u32 LE), `crc32` of `len` and the body (u32 LE),
//! then the postcard body; and the chunked reader the replay uses.

use redb::StorageBackend;
use serde::{Deserialize, Serialize};

use super::WalError;
use crate::types::{Entry, LogId};

/// `len` and `crc32` of a record.
pub(super) const FRAME: usize = 8;
/// Bytes read at a time while replaying a segment.
const SCAN_CHUNK: usize = 1 << 20;

/// What a record holds, as written (borrowing the entry).
#[derive(Serialize)]
pub(super) enum RecordRef<'a> {
    Header { seq: u64, prev_end: u64 },
    Entry(&'a Entry),
    Committed(Option<LogId>),
    Truncate(u64),
}

/// What a record holds, as read; the same variants in the same order as [`RecordRef`].
#[derive(Deserialize)]
pub(super) enum Record {
    Header { seq: u64, prev_end: u64 },
    Entry(Entry),
    Committed(Option<LogId>),
    Truncate(u64),
}

/// Appends one framed record to `buf`; returns its length.
pub(super) fn put(buf: &mut Vec<u8>, rec: &RecordRef<'_>) -> Result<u32, WalError> {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME]);
    *buf = postcard::to_extend(rec, std::mem::take(buf))?;
    let body = buf.len() - start - FRAME;
    let len = u32::try_from(body).map_err(|_| postcard::Error::SerializeBufferFull)?;
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let crc = checksum(&buf[start..start + 4], &buf[start + FRAME..]);
    buf[start + 4..start + FRAME].copy_from_slice(&crc.to_le_bytes());
    Ok((FRAME + body) as u32)
}

fn checksum(len: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(body);
    h.finalize()
}

/// Why a frame at some offset is not a record.
#[derive(Debug, PartialEq)]
pub(super) enum Bad {
    /// Zero length: nothing was written here.
    End,
    /// Short, or checksum wrong: a torn write (or corruption, depending on where).
    Torn,
}

/// Checks the frame at the start of `bytes`; returns the body's length.
pub(super) fn frame(bytes: &[u8]) -> Result<usize, Bad> {
    let Some(head) = bytes.get(..FRAME) else {
        return Err(Bad::Torn);
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len == 0 {
        return Err(Bad::End);
    }
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let body = bytes.get(FRAME..FRAME + len).ok_or(Bad::Torn)?;
    if checksum(&head[..4], body) != crc {
        return Err(Bad::Torn);
    }
    Ok(len)
}

pub(super) fn decode(seq: u64, offset: u64, body: &[u8]) -> Result<Record, WalError> {
    postcard::from_bytes(body).map_err(|_| WalError::Corrupt {
        seq,
        offset,
        reason: "a record with a valid checksum does not decode",
    })
}

/// Reads a segment front to back in chunks, for the replay.
pub(super) struct Scanner<'a> {
    file: &'a dyn StorageBackend,
    len: u64,
    at: u64,
    buf: Vec<u8>,
}

impl<'a> Scanner<'a> {
    pub(super) fn new(file: &'a dyn StorageBackend) -> std::io::Result<Scanner<'a>> {
        Ok(Scanner {
            file,
            len: file.len()?,
            at: 0,
            buf: Vec::new(),
        })
    }
}

impl Scanner<'_> {
    /// The bytes from `offset` on (at least `want` of them if the file has them).
    fn bytes(&mut self, offset: u64, want: usize) -> std::io::Result<&[u8]> {
        let have = self.at + self.buf.len() as u64;
        if offset < self.at || offset + want as u64 > have {
            let n = (want.max(SCAN_CHUNK) as u64).min(self.len.saturating_sub(offset));
            self.buf.resize(n as usize, 0);
            self.file.read(offset, &mut self.buf)?;
            self.at = offset;
        }
        Ok(&self.buf[(offset - self.at) as usize..])
    }

    /// The record at `offset`: its body and frame length.
    pub(super) fn record(&mut self, offset: u64) -> std::io::Result<Result<(&[u8], u64), Bad>> {
        let head = self.bytes(offset, FRAME)?;
        let len = match head.get(..4) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
            None => return Ok(Err(Bad::Torn)),
        };
        let bytes = self.bytes(offset, FRAME + len)?;
        Ok(frame(bytes).map(|n| (&bytes[FRAME..FRAME + n], (FRAME + n) as u64)))
    }
}
