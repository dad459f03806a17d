//! Human output: aligned tables, key/value listings, readable numbers. Every function returns
//! the text, so it can be tested without a node.

use ipam_client::types::{Allocation, ClusterStatus, Labels, MemberRole, Pool};

/// Columns separated by two spaces, each as wide as its widest cell; the last column is not
/// padded so lines carry no trailing blanks. Numeric columns are right-aligned.
pub struct Table {
    headers: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers, all left-aligned.
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            right: vec![false; headers.len()],
            rows: Vec::new(),
        }
    }

    /// Right-aligns the columns at `columns`.
    pub fn right_align(mut self, columns: &[usize]) -> Table {
        for &c in columns {
            self.right[c] = true;
        }
        self
    }

    /// Appends a row (as many cells as headers).
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    /// The table as text, one line per row after the header line.
    pub fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let header: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let last = row.len() - 1;
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let pad = widths[i] - width(cell);
                if i > 0 {
                    line.push_str("  ");
                }
                if self.right[i] {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    if i != last {
                        line.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key  value` lines with the keys padded to one width.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        out.push_str(format!("{k:width$}  {v}").trim_end());
        out.push('\n');
    }
    out
}

/// Groups the digits of a decimal string in threes: `18446744073709551615` →
/// `18,446,744,073,709,551,615`. Works on the string, so IPv6 counts stay exact; anything that
/// is not a plain run of digits is returned unchanged.
pub fn thousands(decimal: &str) -> String {
    if decimal.is_empty() || !decimal.bytes().all(|b| b.is_ascii_digit()) {
        return decimal.to_string();
    }
    let mut out = String::with_capacity(decimal.len() + decimal.len() / 3);
    for (i, c) in decimal.chars().enumerate() {
        if i > 0 && (decimal.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A utilization in [0, 1] as a percentage with one decimal. A pool that is in use but below
/// 0.05 % shows `<0.1%` rather than a misleading `0.0%`; one not quite full never shows 100.0%.
pub fn percent(utilization: f64, allocated: &str) -> String {
    let in_use = allocated.bytes().any(|b| b != b'0');
    let pct = utilization * 100.0;
    if in_use && pct < 0.05 {
        "<0.1%".to_string()
    } else if utilization < 1.0 && pct >= 99.95 {
        ">99.9%".to_string()
    } else {
        format!("{pct:.1}%")
    }
}

fn labels(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn or_dash(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "-".to_string(),
    }
}

/// `ip-pool list`.
pub fn pool_table(pools: &[Pool]) -> String {
    let mut t = Table::new(&[
        "NAME",
        "CIDR",
        "GATEWAY",
        "CAPACITY",
        "ALLOCATED",
        "FREE",
        "UTILIZATION",
    ])
    .right_align(&[3, 4, 5, 6]);
    for p in pools {
        t.row(vec![
            p.name.clone(),
            p.cidr.clone(),
            or_dash(p.gateway.as_deref()),
            thousands(&p.stats.capacity),
            thousands(&p.stats.allocated),
            thousands(&p.stats.free),
            percent(p.stats.utilization, &p.stats.allocated),
        ]);
    }
    t.render()
}

/// `ip-pool show` and `ip-pool create`.
pub fn pool_details(p: &Pool) -> String {
    let mut pairs = vec![
        ("name", p.name.clone()),
        ("cidr", p.cidr.clone()),
        ("gateway", or_dash(p.gateway.as_deref())),
        ("description", or_dash(Some(&p.description))),
        ("created", p.created_at.clone()),
        ("labels", or_dash(Some(&labels(&p.labels)))),
    ];
    if p.reserved.is_empty() {
        pairs.push(("reserved", "-".to_string()));
    }
    for (i, r) in p.reserved.iter().enumerate() {
        pairs.push((if i == 0 { "reserved" } else { "" }, r.clone()));
    }
    pairs.extend(crate::pool_args::detail_pairs(p));
    if let Some(len) = p.delegation_prefix_len {
        pairs.push((
            "delegates",
            format!("/{len} blocks (counts below are blocks)"),
        ));
    }
    if let Some(parent) = &p.parent {
        pairs.push(("parent", parent.clone()));
    }
    pairs.extend([
        ("capacity", thousands(&p.stats.capacity)),
        ("allocated", thousands(&p.stats.allocated)),
        ("free", thousands(&p.stats.free)),
        ("cooling", thousands(&p.stats.cooling)),
        (
            "utilization",
            percent(p.stats.utilization, &p.stats.allocated),
        ),
    ]);
    key_values(&pairs)
}

/// `ip-pool allocations` and `ip release --owner` listings.
pub fn allocation_table(allocations: &[Allocation]) -> String {
    let mut t =
        Table::new(&["IP", "OWNER", "GENERATION", "ALLOCATED AT", "LABELS"]).right_align(&[2]);
    for a in allocations {
        t.row(vec![
            a.ip.clone(),
            a.owner.clone(),
            a.generation.to_string(),
            a.allocated_at.clone(),
            or_dash(Some(&labels(&a.labels))),
        ]);
    }
    t.render()
}

/// One allocation, as `ip allocate` and `ip show` print it.
pub fn allocation_details(a: &Allocation) -> String {
    let mut pairs = vec![("ip", a.ip.clone())];
    if let Some(prefix) = &a.prefix {
        pairs.push(("prefix", prefix.clone()));
    }
    pairs.extend([
        ("pool", a.pool.clone()),
        ("owner", a.owner.clone()),
        ("generation", a.generation.to_string()),
        ("allocated", a.allocated_at.clone()),
        (
            "expires",
            a.expires_at.clone().unwrap_or_else(|| "never".to_string()),
        ),
        ("renewed", a.renewed_at.clone()),
        ("labels", or_dash(Some(&labels(&a.labels)))),
    ]);
    key_values(&pairs) + &crate::pool_args::network_details(a.network.as_ref())
}

/// `cluster status`.
pub fn cluster_status(s: &ClusterStatus) -> String {
    let leader = s.leader.map_or("none".to_string(), |l| l.to_string());
    let mut out = key_values(&[
        ("node", s.id.to_string()),
        ("leader", leader),
        ("term", s.term.to_string()),
        ("last log index", s.last_log_index.to_string()),
        ("commit index", s.commit_index.to_string()),
        ("applied index", s.applied_index.to_string()),
        ("feature level", s.feature_level.to_string()),
    ]);
    out.push('\n');
    let mut t = Table::new(&["ID", "ADDRESS", "ROLE", "LEVEL", ""]).right_align(&[0, 3]);
    for m in &s.members {
        let role = match m.role {
            MemberRole::Voter => "voter",
            MemberRole::Learner => "learner",
        };
        let mut notes = Vec::new();
        if s.leader == Some(m.id) {
            notes.push("leader");
        }
        if s.id == m.id {
            notes.push("this node");
        }
        t.row(vec![
            m.id.to_string(),
            m.addr.clone(),
            role.to_string(),
            m.feature_level.map_or("?".to_string(), |l| l.to_string()),
            notes.join(", "),
        ]);
    }
    out.push_str(&t.render());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam_client::types::{Member, PoolStats};

    fn pool(name: &str, cidr: &str, capacity: &str, allocated: &str, utilization: f64) -> Pool {
        Pool {
            name: name.into(),
            cidr: cidr.into(),
            gateway: None,
            reserved: vec![],
            labels: Labels::new(),
            description: String::new(),
            created_at: "2026-01-01T00:00:00Z".into(),
            stats: PoolStats {
                capacity: capacity.into(),
                allocated: allocated.into(),
                free: "0".into(),
                utilization,
                cooling: "0".into(),
            },
            ..Pool::default()
        }
    }

    #[test]
    fn thousands_groups_exactly() {
        assert_eq!(thousands("0"), "0");
        assert_eq!(thousands("999"), "999");
        assert_eq!(thousands("1000"), "1,000");
        assert_eq!(thousands("253"), "253");
        assert_eq!(thousands("16777214"), "16,777,214");
        // 2^64 - 1 and 2^128 - 1: beyond f64's exact integers.
        assert_eq!(
            thousands("18446744073709551615"),
            "18,446,744,073,709,551,615"
        );
        assert_eq!(
            thousands("340282366920938463463374607431768211455"),
            "340,282,366,920,938,463,463,374,607,431,768,211,455"
        );
        assert_eq!(thousands("-5"), "-5");
        assert_eq!(thousands(""), "");
    }

    #[test]
    fn percentages_have_one_decimal() {
        assert_eq!(percent(0.0, "0"), "0.0%");
        assert_eq!(percent(0.5, "1"), "50.0%");
        assert_eq!(percent(0.12345, "1"), "12.3%");
        assert_eq!(percent(1.0, "10"), "100.0%");
        assert_eq!(percent(1e-18, "1"), "<0.1%");
        assert_eq!(percent(0.99999, "99999"), ">99.9%");
    }

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&["NAME", "COUNT", "NOTE"]).right_align(&[1]);
        t.row(vec!["a".into(), "1,000".into(), "x".into()]);
        t.row(vec!["longer-name".into(), "7".into(), "".into()]);
        assert_eq!(
            t.render(),
            "NAME         COUNT  NOTE\n\
             a            1,000  x\n\
             longer-name      7\n"
        );
    }

    #[test]
    fn pool_table_shows_ipv6_capacity_exactly() {
        let mut v6 = pool("v6", "fd00::/64", "18446744073709551615", "3", 1.6e-19);
        v6.stats.free = "18446744073709551612".into();
        let mut v4 = pool("vms", "10.0.0.0/24", "253", "2", 2.0 / 253.0);
        v4.gateway = Some("10.0.0.1".into());
        v4.stats.free = "251".into();
        let out = pool_table(&[v6, v4]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NAME  CIDR         GATEWAY"), "{out}");
        assert!(
            lines[1].contains("18,446,744,073,709,551,615")
                && lines[1].contains("18,446,744,073,709,551,612")
                && lines[1].ends_with("<0.1%"),
            "{out}"
        );
        assert!(
            lines[2].contains("10.0.0.1") && lines[2].ends_with("0.8%"),
            "{out}"
        );
        // Right-aligned numbers end in the same column.
        let end = |l: &str, s: &str| l.find(s).unwrap() + s.len();
        assert_eq!(
            end(lines[1], "18,446,744,073,709,551,615"),
            end(lines[2], "253")
        );
    }

    #[test]
    fn pool_details_list_reserved_and_labels() {
        let mut p = pool("vms", "10.0.0.0/24", "244", "0", 0.0);
        p.reserved = vec!["10.0.0.2-10.0.0.9".into(), "10.0.0.100".into()];
        p.labels = [("env".to_string(), "prod".to_string())].into();
        let out = pool_details(&p);
        assert!(out.contains("gateway      -\n"), "{out}");
        assert!(
            out.contains("reserved     10.0.0.2-10.0.0.9\n             10.0.0.100\n"),
            "{out}"
        );
        assert!(out.contains("labels       env=prod\n"), "{out}");
        assert!(out.contains("utilization  0.0%\n"), "{out}");
    }

    #[test]
    fn cluster_status_marks_leader_and_this_node() {
        let s = ClusterStatus {
            id: 2,
            leader: Some(1),
            term: 3,
            last_log_index: 10,
            applied_index: 9,
            commit_index: 10,
            feature_level: 1,
            members: vec![
                Member {
                    id: 1,
                    addr: "127.0.0.1:7470".into(),
                    role: MemberRole::Voter,
                    feature_level: Some(2),
                },
                Member {
                    id: 2,
                    addr: "127.0.0.1:7471".into(),
                    role: MemberRole::Learner,
                    feature_level: None,
                },
            ],
        };
        let out = cluster_status(&s);
        assert!(out.contains("leader          1\n"), "{out}");
        assert!(out.contains("feature level   1\n"), "{out}");
        assert!(
            out.contains(" 1  127.0.0.1:7470  voter        2  leader\n"),
            "{out}"
        );
        assert!(
            out.contains(" 2  127.0.0.1:7471  learner      ?  this node\n"),
            "{out}"
        );
    }
}
