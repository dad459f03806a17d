//! The file formats of `import` and `export`: CSV with the header `pool,ip,owner,labels`
//! (labels as `k=v;k=v`) or JSON lines of allocations. An export imports as is.
//!
//! In a labels cell, `\`, `;` and `=` inside a key or value are escaped with `\`, so any label
//! round-trips; a cell without those characters is the plain `k=v;k=v` people write by hand.

use std::io::Write;

use ipam_client::types::{Allocation, Labels};
use serde::Deserialize;

/// One allocation to import, with where it came from for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// 1-based line of a CSV file (the header is line 1), or 1-based record of a JSON file.
    pub line: usize,
    /// Pool name.
    pub pool: String,
    /// Address as written in the file.
    pub ip: String,
    /// Owner.
    pub owner: String,
    /// Labels.
    pub labels: Labels,
}

/// A file that cannot be read as rows.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// CSV syntax, or a row with the wrong number of fields.
    #[error("line {line}: {message}")]
    Csv {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The header lacks a column or names an unknown one.
    #[error("CSV header: {0}")]
    Header(String),
    /// A JSON record that is not an allocation.
    #[error("record {record}: {message}")]
    Json {
        /// 1-based record.
        record: usize,
        /// What is wrong.
        message: String,
    },
    /// A row asks for something this release cannot import.
    #[error("line {line}: {message}")]
    Unsupported {
        /// 1-based line or record.
        line: usize,
        /// What.
        message: String,
    },
}

/// Reads a whole import file: JSON (lines of allocation objects, or any sequence of objects
/// and arrays, including `ip-pool allocations -o json` output) when it starts with `{` or
/// `[`, CSV otherwise.
pub fn read_rows(text: &str) -> Result<Vec<Row>, FormatError> {
    match text.trim_start().chars().next() {
        Some('{') | Some('[') => read_json(text),
        _ => read_csv(text),
    }
}

/// One JSON record: an allocation as the API renders it (other fields are ignored, so an
/// export's `generation` and `allocated_at` do not stand in the way).
#[derive(Deserialize)]
struct JsonRow {
    pool: String,
    ip: String,
    owner: String,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    ttl_seconds: Option<serde_json::Value>,
}

fn read_json(text: &str) -> Result<Vec<Row>, FormatError> {
    let mut rows = Vec::new();
    for value in serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>() {
        let value = value.map_err(|e| FormatError::Json {
            record: rows.len() + 1,
            message: e.to_string(),
        })?;
        match value {
            serde_json::Value::Array(items) => {
                for item in items {
                    push_json(item, &mut rows)?;
                }
            }
            serde_json::Value::Object(mut map) if map.contains_key("allocations") => {
                match map.remove("allocations") {
                    Some(serde_json::Value::Array(items)) => {
                        for item in items {
                            push_json(item, &mut rows)?;
                        }
                    }
                    _ => {
                        return Err(FormatError::Json {
                            record: rows.len() + 1,
                            message: "`allocations` is not an array".into(),
                        })
                    }
                }
            }
            other => push_json(other, &mut rows)?,
        }
    }
    Ok(rows)
}

/// Appends one JSON record as the next row (records are numbered from 1).
fn push_json(value: serde_json::Value, rows: &mut Vec<Row>) -> Result<(), FormatError> {
    let record = rows.len() + 1;
    let parsed: JsonRow = serde_json::from_value(value).map_err(|e| FormatError::Json {
        record,
        message: e.to_string(),
    })?;
    if parsed.ttl_seconds.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(ttl_unsupported(record));
    }
    rows.push(Row {
        line: record,
        pool: parsed.pool,
        ip: parsed.ip,
        owner: parsed.owner,
        labels: parsed.labels,
    });
    Ok(())
}

/// Imports are permanent: the lease TTL column is refused rather than silently dropped.
fn ttl_unsupported(line: usize) -> FormatError {
    FormatError::Unsupported {
        line,
        message: "ttl_seconds is not supported: the cluster has no lease API yet, and a row \
                  must not silently become permanent"
            .into(),
    }
}

fn read_csv(text: &str) -> Result<Vec<Row>, FormatError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| FormatError::Header(e.to_string()))?
        .clone();
    let mut columns = [None; 5];
    const NAMES: [&str; 5] = ["pool", "ip", "owner", "labels", "ttl_seconds"];
    for (i, name) in headers.iter().enumerate() {
        match NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)) {
            Some(c) if columns[c].is_none() => columns[c] = Some(i),
            Some(_) => return Err(FormatError::Header(format!("column {name} appears twice"))),
            None => {
                return Err(FormatError::Header(format!(
                    "unknown column {name:?} (expected pool,ip,owner and optionally labels)"
                )))
            }
        }
    }
    let [Some(pool), Some(ip), Some(owner), labels, ttl] = columns else {
        return Err(FormatError::Header(
            "the header must name the columns pool,ip,owner (and optionally labels)".into(),
        ));
    };
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| FormatError::Csv {
            line: e.position().map_or(0, |p| p.line() as usize),
            message: e.to_string(),
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let field = |i: usize| record.get(i).unwrap_or("").to_string();
        if ttl.is_some_and(|i| !field(i).is_empty()) {
            return Err(ttl_unsupported(line));
        }
        let labels = match labels {
            Some(i) => decode_labels(&field(i)).map_err(|message| FormatError::Csv {
                line,
                message: format!("labels: {message}"),
            })?,
            None => Labels::new(),
        };
        rows.push(Row {
            line,
            pool: field(pool),
            ip: field(ip),
            owner: field(owner),
            labels,
        });
    }
    Ok(rows)
}

/// `k=v;k=v`, escaping `\`, `;` and `=` with `\`.
pub fn encode_labels(labels: &Labels) -> String {
    fn escape(out: &mut String, s: &str) {
        for c in s.chars() {
            if matches!(c, '\\' | ';' | '=') {
                out.push('\\');
            }
            out.push(c);
        }
    }
    let mut out = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        escape(&mut out, k);
        out.push('=');
        escape(&mut out, v);
    }
    out
}

/// The inverse of [`encode_labels`]; an empty cell is no labels.
pub fn decode_labels(cell: &str) -> Result<Labels, String> {
    let mut labels = Labels::new();
    if cell.is_empty() {
        return Ok(labels);
    }
    // Each entry is (key, value-so-far); `None` value until the unescaped `=` is seen.
    let mut key = String::new();
    let mut value: Option<String> = None;
    let mut finish = |key: &mut String, value: &mut Option<String>| -> Result<(), String> {
        let Some(v) = value.take() else {
            return Err(format!("expected k=v, got {key:?}"));
        };
        let k = std::mem::take(key);
        if labels.insert(k.clone(), v).is_some() {
            return Err(format!("label {k:?} appears twice"));
        }
        Ok(())
    };
    let mut chars = cell.chars();
    while let Some(c) = chars.next() {
        let literal = match c {
            '\\' => match chars.next() {
                Some(next) => next,
                None => return Err("a trailing backslash escapes nothing".into()),
            },
            ';' => {
                finish(&mut key, &mut value)?;
                continue;
            }
            '=' if value.is_none() => {
                value = Some(String::new());
                continue;
            }
            c => c,
        };
        match &mut value {
            Some(v) => v.push(literal),
            None => key.push(literal),
        }
    }
    finish(&mut key, &mut value)?;
    Ok(labels)
}

/// Writes the CSV header line.
pub fn csv_writer<W: Write>(out: W) -> anyhow::Result<csv::Writer<W>> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(["pool", "ip", "owner", "labels"])?;
    Ok(writer)
}

/// Writes one allocation as a CSV record.
pub fn write_csv<W: Write>(writer: &mut csv::Writer<W>, a: &Allocation) -> anyhow::Result<()> {
    writer.write_record([
        a.pool.as_str(),
        a.ip.as_str(),
        a.owner.as_str(),
        &encode_labels(&a.labels),
    ])?;
    Ok(())
}

/// Writes one allocation as a JSON line.
pub fn write_json<W: Write>(out: &mut W, a: &Allocation) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, a)?;
    out.write_all(b"\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_round_trip_with_escapes() {
        for l in [
            labels(&[]),
            labels(&[("a", "b")]),
            labels(&[("env", "prod"), ("rack", "r1")]),
            labels(&[("k;=", "v=;\\x"), ("e", "")]),
        ] {
            assert_eq!(decode_labels(&encode_labels(&l)).unwrap(), l);
        }
        assert_eq!(encode_labels(&labels(&[("a", "1"), ("b", "2")])), "a=1;b=2");
        assert_eq!(decode_labels("a=b=c").unwrap(), labels(&[("a", "b=c")]));
        assert!(decode_labels("a").is_err());
        assert!(decode_labels("a=1;a=2").is_err());
        assert!(decode_labels("a=1\\").is_err());
    }

    #[test]
    fn csv_rows_with_and_without_labels() {
        let rows =
            read_rows("pool,ip,owner,labels\nvms,10.0.0.5,vm-1,env=prod\nvms,10.0.0.6,\"a,b\",\n")
                .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].labels, labels(&[("env", "prod")]));
        assert_eq!(rows[1].owner, "a,b");
        assert!(rows[1].labels.is_empty());
        let rows = read_rows("ip,owner,pool\n10.0.0.5,vm-1,vms\n").unwrap();
        assert_eq!(
            (rows[0].pool.as_str(), rows[0].ip.as_str()),
            ("vms", "10.0.0.5")
        );
    }

    #[test]
    fn bad_csv_is_an_error_naming_the_line() {
        assert!(matches!(
            read_rows("pool,ip\nvms,10.0.0.5\n"),
            Err(FormatError::Header(_))
        ));
        assert!(matches!(
            read_rows("pool,ip,owner,color\n"),
            Err(FormatError::Header(_))
        ));
        let err = read_rows("pool,ip,owner\nvms,10.0.0.5\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = read_rows("pool,ip,owner,ttl_seconds\nvms,10.0.0.5,a,60\n").unwrap_err();
        assert!(
            matches!(err, FormatError::Unsupported { line: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn json_lines_arrays_and_listings() {
        let text = concat!(
            r#"{"pool":"vms","ip":"10.0.0.5","owner":"a","generation":3,"allocated_at":"x"}"#,
            "\n",
            r#"{"pool":"vms","ip":"10.0.0.6","owner":"b","labels":{"k":"v"}}"#,
            "\n"
        );
        let rows = read_rows(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].labels, labels(&[("k", "v")]));
        let rows =
            read_rows(r#"{"allocations":[{"pool":"p","ip":"1.2.3.4","owner":"o"}]}"#).unwrap();
        assert_eq!(rows.len(), 1);
        let rows = read_rows(r#"[{"pool":"p","ip":"1.2.3.4","owner":"o"}]"#).unwrap();
        assert_eq!(rows[0].line, 1);
        let err = read_rows("{\"pool\":\"p\"}\n").unwrap_err();
        assert!(matches!(err, FormatError::Json { record: 1, .. }), "{err}");
    }

    #[test]
    fn export_formats_import_as_is() {
        let a = Allocation {
            ip: "10.0.0.5".into(),
            pool: "vms".into(),
            owner: "vm,1".into(),
            generation: 7,
            allocated_at: "2026-01-01T00:00:00Z".into(),
            labels: labels(&[("a;b", "c=d")]),
            ttl_seconds: None,
            expires_at: None,
            renewed_at: "2026-01-01T00:00:00Z".into(),
            network: None,
            prefix: None,
        };
        let mut w = csv_writer(Vec::new()).unwrap();
        write_csv(&mut w, &a).unwrap();
        let csv = String::from_utf8(w.into_inner().unwrap()).unwrap();
        let mut json = Vec::new();
        write_json(&mut json, &a).unwrap();
        for text in [csv, String::from_utf8(json).unwrap()] {
            let rows = read_rows(&text).unwrap();
            assert_eq!(rows.len(), 1, "{text}");
            assert_eq!(
                (&rows[0].pool, &rows[0].ip, &rows[0].owner, &rows[0].labels),
                (&a.pool, &a.ip, &a.owner, &a.labels)
            );
        }
    }
}
