//! The results: every run's raw figures, their medians, the table and the JSON file.

use std::{collections::BTreeMap, fmt::Write as _};

use serde_json::{Value, json};

use super::{
    cases::{Case, Outcome, Sizes},
    server::{Kind, Transport},
};

/// One case on one server in one run.
#[derive(Debug, Clone)]
pub struct Record {
    /// The repetition (0-based).
    pub run: usize,
    /// The case's name.
    pub case: String,
    /// How the clients reached the server.
    pub transport: Transport,
    /// The server.
    pub server: Kind,
    /// Its figures and counts, or why it failed.
    pub result: Result<Outcome, String>,
}

impl Record {
    /// The case's name with its transport's suffix (`idle-10000`, `idle-10000-wss`), as in
    /// the progress lines and the JSON's medians.
    pub fn key(&self) -> String {
        format!("{}{}", self.case, self.transport.suffix())
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "run": self.run,
            "case": self.key(),
            "transport": self.transport.name(),
            "server": self.server.name(),
        });
        match &self.result {
            Ok(o) => {
                v["figures"] = json!(o.figures);
                v["counts"] = json!(o.counts);
            }
            Err(e) => v["error"] = json!(e),
        }
        v
    }
}

/// The median of `v` (the mean of the middle two for an even count).
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        f64::midpoint(v[mid - 1], v[mid])
    } else {
        v[mid]
    })
}

/// The median of `figure` of `case` over `transport` on `server` over the runs that passed.
pub fn median_of(
    records: &[Record],
    (case, transport): (&str, Transport),
    server: Kind,
    figure: &str,
) -> Option<f64> {
    let mut values: Vec<f64> = records
        .iter()
        .filter(|r| r.case == case && r.transport == transport && r.server == server)
        .filter_map(|r| r.result.as_ref().ok()?.figures.get(figure).copied())
        .collect();
    median(&mut values)
}

/// A row of the table: its label, the case and figure it shows, and decimals.
struct Row {
    label: String,
    case: String,
    figure: &'static str,
    decimals: usize,
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn row(label: String, case: String, figure: &'static str, decimals: usize) -> Row {
    Row {
        label,
        case,
        figure,
        decimals,
    }
}

/// The table's rows, in order.
fn rows(sizes: &Sizes) -> Vec<Row> {
    let mut rows = idle_rows(sizes);
    rows.extend(relay_rows(sizes));
    rows.extend(storm_rows(sizes));
    rows
}

fn idle_rows(sizes: &Sizes) -> Vec<Row> {
    let mut rows = Vec::new();
    for &n in &sizes.idle {
        rows.push(row(
            format!(
                "bytes per idle joined connection, {} in rooms of 4",
                thousands(n)
            ),
            Case::Idle(n).name(),
            "bytes_per_conn",
            0,
        ));
    }
    if let Some(&n) = sizes.idle.iter().max() {
        let case = Case::Idle(n).name();
        rows.push(row(
            "RSS of the empty server, MiB".into(),
            case.clone(),
            "rss_empty_mib",
            1,
        ));
        rows.push(row(
            format!("RSS after all {} closed, MiB", thousands(n)),
            case,
            "rss_closed_mib",
            1,
        ));
    }
    rows
}

fn relay_rows(sizes: &Sizes) -> Vec<Row> {
    let mut rows = Vec::new();
    for room in [2, 4] {
        let case = Case::Moderate(room).name();
        let what = format!(
            "{} conns, 1 msg / {} ms each, rooms of {room}",
            thousands(sizes.moderate),
            sizes.period.as_millis()
        );
        rows.push(row(
            format!("server CPU µs per relayed 4 KB message, {what}"),
            case.clone(),
            "cpu_us_per_delivery",
            1,
        ));
        for (q, figure) in [("p50", "p50_ms"), ("p99", "p99_ms"), ("p99.9", "p999_ms")] {
            rows.push(row(
                format!("relay latency {q}, ms, {what}"),
                case.clone(),
                figure,
                2,
            ));
        }
        rows.push(row(
            format!(
                "bytes per connection after relaying 4 KB messages ({} conns, rooms of {room})",
                thousands(sizes.moderate)
            ),
            case,
            "bytes_per_conn_after_relay",
            0,
        ));
    }
    for room in [2, 4] {
        let case = Case::Saturated(room).name();
        let what = format!(
            "saturated ({} conns, {} in flight each, rooms of {room})",
            thousands(sizes.saturated),
            sizes.inflight
        );
        rows.push(row(
            format!("deliveries per second, {what}"),
            case.clone(),
            "deliveries_per_s",
            0,
        ));
        rows.push(row(
            format!("server CPU µs per delivery, {what}"),
            case,
            "cpu_us_per_delivery",
            1,
        ));
    }
    rows
}

fn storm_rows(sizes: &Sizes) -> Vec<Row> {
    let mut rows = Vec::new();
    let storm = Case::Storm.name();
    let what = format!("{} conns into rooms of 2", thousands(sizes.storm));
    rows.push(row(
        format!("joins per second, {what}"),
        storm.clone(),
        "joins_per_s",
        0,
    ));
    rows.push(row(
        format!("server CPU µs per join, {what}"),
        storm.clone(),
        "cpu_us_per_join",
        1,
    ));
    rows.push(row(
        "new member's connect → existing member notified, median, ms (storm)".into(),
        storm.clone(),
        "notify_p50_ms",
        2,
    ));
    rows.push(row(
        "same, p99, ms (storm)".into(),
        storm.clone(),
        "notify_p99_ms",
        2,
    ));
    rows.push(row(
        "same, median, ms, idle server (rooms of 2 opened one at a time)".into(),
        storm,
        "notify_idle_p50_ms",
        2,
    ));
    rows
}

fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "—".to_owned(), |x| format!("{x:.decimals$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}×", a / b),
        _ => "—".to_owned(),
    }
}

/// The table of medians (Markdown) over `transport`, for the cases and servers that ran.
pub fn table(records: &[Record], sizes: &Sizes, servers: &[Kind], transport: Transport) -> String {
    let mut out = String::from("| figure |");
    for k in Kind::ALL {
        let _ = write!(out, " {k} |");
    }
    out.push_str(" meshcall ÷ matchbox | meshcall ÷ peerjs |\n|---|");
    out.push_str(&"---:|".repeat(5));
    out.push('\n');
    for row in rows(sizes) {
        if !records
            .iter()
            .any(|r| r.case == row.case && r.transport == transport)
        {
            continue;
        }
        let value = |k: Kind| {
            servers
                .contains(&k)
                .then(|| median_of(records, (&row.case, transport), k, row.figure))
                .flatten()
        };
        let (m, x, p) = (
            value(Kind::Meshcall),
            value(Kind::Matchbox),
            value(Kind::Peerjs),
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            row.label,
            cell(m, row.decimals),
            cell(x, row.decimals),
            cell(p, row.decimals),
            ratio(m, x),
            ratio(m, p)
        );
    }
    out
}

/// The same figures over `ws` and `wss`, side by side, with the ratio wss ÷ ws, for each
/// server in `servers` that has both (Markdown); empty unless both transports ran.
pub fn transport_table(records: &[Record], sizes: &Sizes, servers: &[Kind]) -> String {
    let both: Vec<Kind> = servers
        .iter()
        .copied()
        .filter(|&k| {
            k.serves(Transport::Wss)
                && Transport::ALL
                    .iter()
                    .all(|&t| records.iter().any(|r| r.server == k && r.transport == t))
        })
        .collect();
    if both.is_empty() {
        return String::new();
    }
    let mut out = String::from("| figure |");
    for k in &both {
        let _ = write!(out, " {k} ws | {k} wss | {k} wss ÷ ws |");
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(3 * both.len()));
    out.push('\n');
    for row in rows(sizes) {
        let ran = |t: Transport| {
            records
                .iter()
                .any(|r| r.case == row.case && r.transport == t)
        };
        if !(ran(Transport::Ws) && ran(Transport::Wss)) {
            continue;
        }
        let _ = write!(out, "| {} |", row.label);
        for &k in &both {
            let ws = median_of(records, (&row.case, Transport::Ws), k, row.figure);
            let wss = median_of(records, (&row.case, Transport::Wss), k, row.figure);
            let _ = write!(
                out,
                " {} | {} | {} |",
                cell(ws, row.decimals),
                cell(wss, row.decimals),
                ratio(wss, ws)
            );
        }
        out.push('\n');
    }
    out
}

/// Every median, by case (with its transport's suffix), server and figure.
fn medians(records: &[Record]) -> Value {
    let mut keys: BTreeMap<(String, Transport, Kind), Vec<String>> = BTreeMap::new();
    for r in records {
        if let Ok(o) = &r.result {
            let entry = keys
                .entry((r.case.clone(), r.transport, r.server))
                .or_default();
            for k in o.figures.keys() {
                if !entry.contains(k) {
                    entry.push(k.clone());
                }
            }
        }
    }
    let mut out = json!({});
    for ((case, transport, server), figures) in keys {
        let key = format!("{case}{}", transport.suffix());
        for figure in figures {
            if let Some(m) = median_of(records, (&case, transport), server, &figure) {
                out[&key][server.name()][&figure] = json!(m);
            }
        }
    }
    out
}

/// The JSON document: `meta` (machine, versions, settings) plus every record and the
/// medians.
pub fn document(meta: Value, records: &[Record]) -> Value {
    let mut doc = json!({
        "records": records.iter().map(Record::to_json).collect::<Vec<_>>(),
        "medians": medians(records),
    });
    doc["meta"] = meta;
    doc
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time (UTC).
pub fn timestamp(unix_secs: u64) -> String {
    let days = i64::try_from(unix_secs / 86_400).unwrap_or(0);
    let secs = unix_secs % 86_400;
    // Civil date from days since 1970-01-01 (the proleptic Gregorian calendar, counted in
    // 400-year eras of 146 097 days that start on 1 March).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
        assert_eq!(ratio(Some(1.0), Some(4.0)), "0.25×");
        assert_eq!(ratio(Some(1.0), None), "—");
        assert_eq!(thousands(10_000), "10 000");
        assert_eq!(thousands(100), "100");
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0), "19700101T000000Z");
        assert_eq!(timestamp(951_782_400), "20000229T000000Z");
        assert_eq!(timestamp(1_796_278_870), "20261203T062110Z");
    }

    #[test]
    fn table_shows_medians_of_passing_runs() {
        let sizes = Sizes::quick();
        let rec = |run, server, v: f64| Record {
            run,
            case: "storm".into(),
            transport: Transport::Ws,
            server,
            result: Ok(Outcome {
                figures: [("joins_per_s".to_owned(), v)].into(),
                counts: BTreeMap::new(),
            }),
        };
        let records = vec![
            rec(0, Kind::Meshcall, 100.0),
            rec(1, Kind::Meshcall, 300.0),
            rec(2, Kind::Meshcall, 200.0),
            rec(0, Kind::Matchbox, 400.0),
            Record {
                run: 0,
                case: "storm".into(),
                transport: Transport::Ws,
                server: Kind::Peerjs,
                result: Err("lost".into()),
            },
        ];
        let t = table(&records, &sizes, &Kind::ALL, Transport::Ws);
        assert!(
            t.contains(
                "| joins per second, 500 conns into rooms of 2 | 200 | 400 | — | 0.50× | — |"
            ),
            "{t}"
        );
        assert!(!t.contains("bytes per idle"));
        assert!(
            table(&records, &sizes, &Kind::ALL, Transport::Wss)
                .lines()
                .count()
                == 2
        );
        assert_eq!(transport_table(&records, &sizes, &Kind::ALL), "");
    }

    #[test]
    fn transport_table_shows_wss_beside_ws() {
        let sizes = Sizes::quick();
        let rec = |transport, server, v: f64| Record {
            run: 0,
            case: "idle-1000".into(),
            transport,
            server,
            result: Ok(Outcome {
                figures: [("bytes_per_conn".to_owned(), v)].into(),
                counts: BTreeMap::new(),
            }),
        };
        let records = vec![
            rec(Transport::Ws, Kind::Meshcall, 3000.0),
            rec(Transport::Wss, Kind::Meshcall, 4500.0),
            rec(Transport::Ws, Kind::Matchbox, 140_000.0),
            rec(Transport::Ws, Kind::Peerjs, 8000.0),
            rec(Transport::Wss, Kind::Peerjs, 16_000.0),
        ];
        let t = transport_table(&records, &sizes, &Kind::ALL);
        assert!(
            t.starts_with(
                "| figure | meshcall ws | meshcall wss | meshcall wss ÷ ws | peerjs ws | peerjs wss | peerjs wss ÷ ws |"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "| bytes per idle joined connection, 1 000 in rooms of 4 | 3000 | 4500 | 1.50× | 8000 | 16000 | 2.00× |"
            ),
            "{t}"
        );
        assert_eq!(records[1].key(), "idle-1000-wss");
    }
}
