//! `audit query` and `audit tail`: pages of the trail, and new records as they are committed.
//!
//! The API gives records newest first, ordered by their time and then their id, and ids grow
//! strictly in commit order. So `--follow` remembers the largest id it has printed: a record
//! committed later has a larger id, whatever its time. Each poll reads the records from a little
//! before the newest time seen (a record's time is taken just before its commit, so a late
//! commit cannot be older than that window) and prints those with a larger id, oldest first.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::client::{Gateway, with_query};
use super::render::{Table, cell, note, out};
use super::{Failure, QueryArgs, TailArgs};

/// How far before the newest record seen each poll of `--follow` reads again.
const OVERLAP: time::Duration = time::Duration::seconds(30);
/// The page size of each poll.
const POLL_PAGE: usize = 1000;
/// The pages one poll reads at most, so a flood of records cannot stall the loop.
const MAX_POLL_PAGES: usize = 10;

/// The record columns: header and the field each shows.
const COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("TIME", "time"),
    ("AGENT", "agentId"),
    ("ACTION", "action"),
    ("TOOL", "tool"),
    ("OUTCOME", "outcome"),
    ("TOKENS", "tokens"),
    ("STATUS", "downstreamStatus"),
    ("MS", "latencyMs"),
];

/// The widths `tail` starts with, so that rows printed later line up with the first ones.
const TAIL_WIDTHS: &[usize] = &[4, 30, 12, 12, 12, 16, 6, 6, 5];

/// One page of `GET /management/audit`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    records: Vec<Value>,
    next_cursor: Option<String>,
}

/// Parses `--since` and `--until`: an RFC 3339 time as given, or an age (`30s`, `15m`, `2h`,
/// `7d`) as the RFC 3339 time that long before now.
///
/// # Errors
///
/// The message clap shows for anything else.
pub fn parse_time(text: &str) -> Result<String, String> {
    parse_time_at(text, OffsetDateTime::now_utc())
}

fn parse_time_at(text: &str, now: OffsetDateTime) -> Result<String, String> {
    const EXPECTED: &str =
        "expected an RFC 3339 time such as 2026-05-06T12:00:00Z, or an age such as 30m, 2h or 7d";

    if OffsetDateTime::parse(text, &Rfc3339).is_ok() {
        return Ok(text.to_owned());
    }
    let split = text.len().saturating_sub(1);
    let (digits, unit) = (text.get(..split).unwrap_or(""), text.get(split..));
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EXPECTED.to_owned());
    }
    // At most a hundred years, so that no unit overflows.
    let number: i64 = digits
        .parse()
        .ok()
        .filter(|n| *n <= 36_500 * 86_400)
        .ok_or(EXPECTED)?;
    let seconds = match unit {
        Some("s") => number,
        Some("m") => number * 60,
        Some("h") => number * 3600,
        Some("d") => number * 86_400,
        _ => return Err(EXPECTED.to_owned()),
    };
    let then = now
        .checked_sub(time::Duration::seconds(seconds))
        .and_then(|t| t.replace_nanosecond(0).ok())
        .ok_or(EXPECTED)?;
    then.format(&Rfc3339).map_err(|_| EXPECTED.to_owned())
}

/// `ithil audit query`: one page, newest first; the cursor of the next page goes to stderr.
///
/// # Errors
///
/// As [`super::run`].
pub async fn query(gateway: &Gateway, json: bool, args: QueryArgs) -> Result<(), Failure> {
    let limit = args.limit.map(|n| n.to_string());
    let path = with_query(
        "/management/audit",
        &[
            ("agentId", args.agent.as_deref()),
            ("tool", args.tool.as_deref()),
            ("outcome", args.outcome.as_deref()),
            ("since", args.since.as_deref()),
            ("until", args.until.as_deref()),
            ("limit", limit.as_deref()),
            ("cursor", args.cursor.as_deref()),
        ],
    );
    let answer = gateway.get(&path).await?;
    if json {
        return out(&answer.raw());
    }
    let page: Page = answer.json()?;
    let mut table = table();
    for record in &page.records {
        table.row(row(record));
    }
    out(&table.render())?;
    if let Some(cursor) = page.next_cursor {
        note(&format!("more records: add --cursor {cursor}"));
    }
    Ok(())
}

/// `ithil audit tail`: the newest records oldest first; with `--follow`, then each new record
/// until Ctrl-C. With `--json`, one record per line (JSON Lines).
///
/// # Errors
///
/// As [`super::run`]; a failed poll ends `--follow` with its failure.
pub async fn tail(gateway: &Gateway, json: bool, args: TailArgs) -> Result<(), Failure> {
    let agent = args.agent.as_deref();

    // The newest records; with none asked for, the newest one still sets the mark.
    let limit = if args.lines == 0 && args.follow {
        1
    } else {
        usize::from(args.lines)
    };
    let mut records = if limit == 0 {
        Vec::new()
    } else {
        let path = with_query(
            "/management/audit",
            &[("agentId", agent), ("limit", Some(&limit.to_string()))],
        );
        gateway.get(&path).await?.json::<Page>()?.records
    };
    records.reverse();
    let mut mark = Mark::default();
    mark.advance(&records);
    if args.lines == 0 {
        records.clear();
    }

    let mut table = table();
    for record in &records {
        table.row(row(record));
    }
    let widths = table.widths(TAIL_WIDTHS);
    if json {
        print_lines(&records)?;
    } else {
        out(&format!("{}{}", table.header(&widths), table.body(&widths)))?;
    }
    if !args.follow {
        return Ok(());
    }

    // One Ctrl-C future for the whole loop: a signal during a poll is not lost.
    let interval = Duration::from_secs(args.interval);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let step = async {
            tokio::time::sleep(interval).await;
            poll(gateway, agent, &mark).await
        };
        let (fresh, flooded) = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            polled = step => polled?,
        };
        if flooded {
            note("new records arrive faster than one poll reads them; some may not be shown");
        }
        mark.advance(&fresh);
        if json {
            print_lines(&fresh)?;
        } else {
            let mut table = self::table();
            for record in &fresh {
                table.row(row(record));
            }
            out(&table.body(&widths))?;
        }
    }
}

/// The newest record printed so far.
#[derive(Debug, Default)]
struct Mark {
    id: u64,
    time: Option<OffsetDateTime>,
}

impl Mark {
    fn advance(&mut self, records: &[Value]) {
        for record in records {
            self.id = self.id.max(id(record));
            if let Some(time) = time(record) {
                self.time = Some(self.time.map_or(time, |t| t.max(time)));
            }
        }
    }

    /// Whether the record was committed after every record seen.
    fn is_new(&self, record: &Value) -> bool {
        id(record) > self.id
    }

    /// The lower time bound of the next poll.
    fn since(&self) -> Option<String> {
        self.time
            .and_then(|t| t.checked_sub(OVERLAP))
            .and_then(|t| t.format(&Rfc3339).ok())
    }
}

/// The records committed since `mark`, oldest first, and whether the page bound cut them off.
async fn poll(
    gateway: &Gateway,
    agent: Option<&str>,
    mark: &Mark,
) -> Result<(Vec<Value>, bool), Failure> {
    let since = mark.since();
    let limit = POLL_PAGE.to_string();
    let mut cursor: Option<String> = None;
    let mut fresh = Vec::new();
    let mut flooded = false;
    for page_number in 1..=MAX_POLL_PAGES {
        let path = with_query(
            "/management/audit",
            &[
                ("agentId", agent),
                ("since", since.as_deref()),
                ("limit", Some(&limit)),
                ("cursor", cursor.as_deref()),
            ],
        );
        let page: Page = gateway.get(&path).await?.json()?;
        let all_new = page.records.iter().all(|r| mark.is_new(r));
        fresh.extend(page.records.into_iter().filter(|r| mark.is_new(r)));
        match page.next_cursor {
            Some(next) if page_number < MAX_POLL_PAGES => cursor = Some(next),
            Some(_) => flooded = all_new,
            None => break,
        }
    }
    fresh.sort_by_key(id);
    Ok((fresh, flooded))
}

fn print_lines(records: &[Value]) -> Result<(), Failure> {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    out(&text)
}

fn table() -> Table {
    let headers: Vec<&'static str> = COLUMNS.iter().map(|(h, _)| *h).collect();
    Table::new(&headers)
}

fn row(record: &Value) -> Vec<String> {
    COLUMNS
        .iter()
        .map(|(_, field)| cell(&record[*field]))
        .collect()
}

fn id(record: &Value) -> u64 {
    record["id"].as_u64().unwrap_or(0)
}

fn time(record: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(record["time"].as_str()?, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-05-06 12:00:00.5 UTC);

    #[test]
    fn a_time_is_rfc_3339_or_an_age() {
        assert_eq!(
            parse_time_at("2026-05-06T10:00:00+02:00", NOW).unwrap(),
            "2026-05-06T10:00:00+02:00"
        );
        assert_eq!(parse_time_at("90s", NOW).unwrap(), "2026-05-06T11:58:30Z");
        assert_eq!(parse_time_at("30m", NOW).unwrap(), "2026-05-06T11:30:00Z");
        assert_eq!(parse_time_at("2h", NOW).unwrap(), "2026-05-06T10:00:00Z");
        assert_eq!(parse_time_at("7d", NOW).unwrap(), "2026-04-29T12:00:00Z");
        for bad in [
            "",
            "h",
            "2",
            "-2h",
            "+2h",
            "2w",
            "yesterday",
            "2026-05-06",
            "99999999999999d",
        ] {
            assert!(parse_time_at(bad, NOW).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_mark_keeps_the_largest_id_and_the_newest_time() {
        let mut mark = Mark::default();
        assert_eq!(mark.since(), None);
        mark.advance(&[
            json!({"id": 7, "time": "2026-05-06T12:00:10Z"}),
            json!({"id": 9, "time": "2026-05-06T12:00:05Z"}),
        ]);
        assert_eq!(mark.id, 9);
        assert_eq!(mark.since().as_deref(), Some("2026-05-06T11:59:40Z"));

        // A record committed later has a larger id even when its time is older.
        assert!(mark.is_new(&json!({"id": 10, "time": "2026-05-06T12:00:01Z"})));
        assert!(!mark.is_new(&json!({"id": 8, "time": "2026-05-06T12:00:20Z"})));
    }

    #[test]
    fn a_record_row_shows_every_column() {
        let record = json!({"id": 3, "time": "2026-05-06T12:00:00Z", "requestId": "r",
            "agentId": "agt_1", "operator": null, "action": "tools/call", "tool": "getPost",
            "outcome": "ok", "tokens": 12, "downstreamStatus": 200, "latencyMs": 4,
            "arguments": {"id": 1}});
        assert_eq!(
            row(&record),
            [
                "3",
                "2026-05-06T12:00:00Z",
                "agt_1",
                "tools/call",
                "getPost",
                "ok",
                "12",
                "200",
                "4"
            ]
        );
        assert_eq!(TAIL_WIDTHS.len(), COLUMNS.len());
    }
}
