//! The audit trail and the privacy filter end to end.
//!
//! The real binary in front of json-server on a copy of the shared dataset, with the manifest of
//! `budget.rs` and its helpers: results are checked for redaction, the store file, stdout (the
//! JSON Lines sink) and the debug log for leaks, every refusal for its one record, and the trail
//! for durability across restarts and kill -9, and for its query API.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use ithil_tests::gateway::GatewayOptions;

use crate::budget::{
    Answer, BUDGET_CODE, Bounded, Stack, by_tag, dataset, load_until_killed, tokens, unix_seconds,
};

/// What the downstream holds that must never leave the gateway unredacted.
const ORIGINALS: [&str; 8] = [
    "4111 1111 1111 1111",
    "123-45-6789",
    "ada.marsh@example.com",
    "EMP-004211",
    "ACC0012345678",
    "cleo.lindqvist@example.com",
    "greta.alvarez@example.com",
    "ops-team@example.net",
];

/// The replacements of the two custom rules.
const EMPLOYEE: &str = "[EMPLOYEE ID]";
const ACCOUNT: &str = "[ACCOUNT]";

/// `value` with every string's `originals` replaced, and every `email` member redacted: what
/// the filter must make of a dataset object.
fn redacted(value: &Value, replacements: &[(&str, &str)]) -> Value {
    match value {
        Value::String(s) => {
            let mut s = s.clone();
            for (from, to) in replacements {
                s = s.replace(from, to);
            }
            Value::String(s)
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| redacted(v, replacements)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    if k == "email" {
                        (k.clone(), json!("[EMAIL REDACTED]"))
                    } else {
                        (k.clone(), redacted(v, replacements))
                    }
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Every replacement the filter should make in the dataset's users and posts.
const REPLACEMENTS: [(&str, &str); 6] = [
    ("4111 1111 1111 1111", "[CARD REDACTED]"),
    ("123-45-6789", "[SSN REDACTED]"),
    ("ada.marsh@example.com", "[EMAIL REDACTED]"),
    ("ops-team@example.net", "[EMAIL REDACTED]"),
    ("EMP-004211", EMPLOYEE),
    ("ACC0012345678", ACCOUNT),
];

/// Checks a successful result: its text is valid JSON equal to `expected`, and so is its
/// structured content.
fn assert_result(answer: &Answer, expected: &Value) {
    assert!(answer.is_result(), "{}", answer.body);
    assert_eq!(&answer.json(), expected, "{}", answer.body);
    let structured = &answer.body["result"]["structuredContent"];
    if !structured.is_null() {
        assert_eq!(structured, expected, "{}", answer.body);
    }
}

#[tokio::test]
async fn personal_data_is_redacted_and_absent_from_the_store_stdout_and_log() {
    // One custom rule from the environment, one from the file under the alias key.
    let opts = GatewayOptions::new()
        .rust_log("debug")
        .env("Ithil__Privacy__CustomRules__0__Pattern", r"EMP-\d{6}")
        .env("Ithil__Privacy__CustomRules__0__Replacement", EMPLOYEE)
        .config(json!({"privacyFilter": {"customRules": [
            {"pattern": r"ACC\d{10}", "replacement": ACCOUNT}
        ]}}));
    let mut stack = Stack::start(opts).await;
    let (id, token) = stack.agent(json!({"label": "privacy"})).await;
    let mcp = stack.mcp(&token).await;
    let data = dataset();

    // User 3: card and SSN in its notes, and its email.
    let user = mcp.call("getUser", json!({"id": 3})).await.unwrap();
    let expected = redacted(&data["users"][2], &REPLACEMENTS);
    assert_eq!(
        expected["notes"],
        "Billing contact; card on file [CARD REDACTED], tax id [SSN REDACTED]."
    );
    assert_result(&user, &expected);

    // Post 5: its author's email in the body.
    let post = mcp.call("getPost", json!({"id": 5})).await.unwrap();
    let expected = redacted(&data["posts"][4], &REPLACEMENTS);
    assert!(
        expected["body"]
            .as_str()
            .unwrap()
            .ends_with("Write to [EMAIL REDACTED]")
    );
    assert_result(&post, &expected);

    // User 7: the custom rules, after the built-in email rule.
    let user = mcp.call("getUser", json!({"id": 7})).await.unwrap();
    let expected = redacted(&data["users"][6], &REPLACEMENTS);
    assert_eq!(
        expected["notes"],
        "Employee [EMPLOYEE ID], account [ACCOUNT], backup email [EMAIL REDACTED]"
    );
    assert_result(&user, &expected);

    // Every user at once: a JSON array, filtered inside its strings only.
    let users = mcp.call("listUsers", json!({})).await.unwrap();
    assert_result(&users, &redacted(&data["users"], &REPLACEMENTS));

    // Arguments carrying personal data reach the trail filtered.
    let tag = "card 4111 1111 1111 1111 of EMP-004211, ada.marsh@example.com";
    let todo = mcp
        .call("getTodo", json!({"id": 1, "tag": tag}))
        .await
        .unwrap();
    assert_result(&todo, &data["todos"][0]);
    let calls = stack.calls(&id).await;
    assert_eq!(calls.len(), 5, "{calls:?}");
    let tagged = by_tag(&calls);
    let filtered_tag = "card [CARD REDACTED] of [EMPLOYEE ID], [EMAIL REDACTED]";
    assert_eq!(tagged[filtered_tag]["arguments"]["tag"], filtered_tag);

    // The three places a leak could stay: the store file, stdout and the debug log.
    stack.gateway.stop();
    let store = std::fs::read(stack.gateway.data_dir().join("ithil.redb")).expect("the store");
    let stdout = stack.gateway.stdout_lines().join("\n");
    let log = stack.gateway.stderr();

    // The search can find what is there: the store and stdout hold the records, the log
    // holds per-request detail.
    assert!(
        contains(&store, filtered_tag.as_bytes()),
        "the store holds no record"
    );
    assert!(
        stdout.contains(filtered_tag),
        "stdout holds no record: {stdout}"
    );
    assert!(log.contains("DEBUG"), "the log is not at debug: {log}");
    assert!(log.contains(&id), "the log has no per-request detail");

    for original in ORIGINALS {
        assert!(
            !contains(&store, original.as_bytes()),
            "the store holds {original}"
        );
        assert!(!stdout.contains(original), "stdout holds {original}");
        let line = log.lines().find(|l| l.contains(original));
        assert!(line.is_none(), "the log holds {original}: {line:?}");
    }
}

#[tokio::test]
async fn other_shapes_of_personal_data_are_redacted_and_look_alikes_survive() {
    let mut stack = Stack::start(GatewayOptions::new()).await;
    let (id, token) = stack.agent(json!({"label": "shapes"})).await;
    let mcp = stack.mcp(&token).await;

    // A user written straight into json-server's copy: cards with dashes, in 4-6-5 groups
    // and as a JSON number, an email as an object key, an SSN in an array, and digit strings
    // that only look like cards (a failing checksum, a leading 1, a timestamp).
    let user = json!({
        "id": 11,
        "name": "Edge Case",
        "email": "edge@example.com",
        "notes": "cards 5555-5555-5555-4444 and 3782 822463 10005; \
                  order 1234 5678 9012 3456 at 20260504123000, phone 555-0103",
        "contacts": {"ada.marsh@example.com": "primary"},
        "cardNumber": 4000056655665556u64,
        "ssns": ["987-65-4321"],
        "orderNumber": 1234567890123456u64,
        "timestamp": 1717171717171u64
    });
    let downstream = std::net::SocketAddr::from(([127, 0, 0, 1], stack.downstream.port()));
    let (status, _, body) = crate::budget::post(downstream, "/users", &[], user.to_string())
        .await
        .unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));

    let answer = mcp.call("getUser", json!({"id": 11})).await.unwrap();
    let expected = json!({
        "id": 11,
        "name": "Edge Case",
        "email": "[EMAIL REDACTED]",
        "notes": "cards [CARD REDACTED] and [CARD REDACTED]; \
                  order 1234 5678 9012 3456 at 20260504123000, phone 555-0103",
        "contacts": {"[EMAIL REDACTED]": "primary"},
        "cardNumber": "[CARD REDACTED]",
        "ssns": ["[SSN REDACTED]"],
        "orderNumber": 1234567890123456u64,
        "timestamp": 1717171717171u64
    });
    assert_result(&answer, &expected);

    // A truncated answer is filtered before it is cut, so no part of an address survives,
    // and its charge stays within the tool's limit.
    let answer = mcp
        .call("listCommentsShort", json!({"_limit": 50}))
        .await
        .unwrap();
    assert!(answer.is_result(), "{}", answer.body);
    let text = answer.text();
    assert!(text.contains("[EMAIL REDACTED]"), "{text}");
    assert!(!text.contains('@'), "{text}");
    assert!(text.contains("truncated"), "{text}");
    let calls = stack.calls(&id).await;
    let cut = calls
        .iter()
        .find(|r| r["tool"] == "listCommentsShort")
        .unwrap();
    assert!(tokens(cut) > 0 && tokens(cut) <= 300, "{cut}");

    stack.gateway.stop();
    let store = std::fs::read(stack.gateway.data_dir().join("ithil.redb")).expect("the store");
    let stdout = stack.gateway.stdout_lines().join("\n");
    for original in [
        "5555-5555-5555-4444",
        "3782 822463 10005",
        "4000056655665556",
        "987-65-4321",
        "edge@example.com",
    ] {
        assert!(
            !contains(&store, original.as_bytes()),
            "the store holds {original}"
        );
        assert!(!stdout.contains(original), "stdout holds {original}");
        assert!(
            !stack.gateway.stderr().contains(original),
            "the log holds {original}"
        );
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn every_outcome_of_a_tool_call_produces_exactly_one_record() {
    let stack = Stack::start(GatewayOptions::new()).await;
    let (id, token) = stack
        .agent(json!({
            "label": "refusals",
            "allowedTools": ["getUser", "getTodo", "listCommentsStrict", "createPost",
                             "getSecretTodo", "getDeadTodo"],
        }))
        .await;
    let mcp = stack.mcp(&token).await;
    // json-server's own readiness probe is in its log too.
    let baseline = |needle: &str| stack.downstream_requests(needle);
    let before = [
        baseline("GET /todos/"),
        baseline("GET /comments"),
        baseline("GET /posts"),
        baseline("POST "),
    ];

    let answer = mcp.call("getTodo", json!({"id": 1})).await.unwrap();
    assert!(answer.is_result(), "ok: {}", answer.body);

    let answer = mcp.call("getTodo", json!({"id": 999})).await.unwrap();
    assert_eq!(
        answer.body["result"]["isError"], true,
        "tool_error: {}",
        answer.body
    );
    assert!(answer.text().contains("404"), "{}", answer.body);

    for (tool, arguments, code) in [
        ("getPost", json!({"id": 1}), -32003),
        ("getSecretTodo", json!({"id": 1}), -32003),
        ("createPost", json!({"title": "never sent"}), -32003),
        ("getTodo", json!({"id": "one"}), -32602),
        ("noSuchTool", json!({}), -32602),
        ("getDeadTodo", json!({"id": 1}), -32002),
    ] {
        let answer = mcp.call(tool, arguments).await.unwrap();
        assert_eq!(answer.error_code(), Some(code), "{tool}: {}", answer.body);
    }

    let answer = mcp
        .call("listCommentsStrict", json!({"_limit": 5}))
        .await
        .unwrap();
    assert_eq!(
        answer.body["result"]["isError"], true,
        "rejected: {}",
        answer.body
    );
    assert!(answer.text().contains("too large"), "{}", answer.body);

    // One token left: the next result does not fit and is withheld.
    let used = stack.used(&id).await;
    let put = stack
        .put_budget(&id, &json!({"dailyTokenBudget": used + 1}).to_string())
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let answer = mcp.call("getTodo", json!({"id": 2})).await.unwrap();
    answer.assert_withheld();

    // Nothing left: refused before the downstream.
    let put = stack
        .put_budget(&id, &json!({"dailyTokenBudget": used}).to_string())
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let answer = mcp.call("getTodo", json!({"id": 3})).await.unwrap();
    assert_eq!(answer.error_code(), Some(BUDGET_CODE), "{}", answer.body);

    // One record per call, one call per outcome; the tool, the downstream status and the
    // charge of each as the call went.
    let trail = stack.audit(&format!("/management/agents/{id}/audit")).await;
    let actions: Vec<&str> = trail
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a != "tools/call").count(),
        2,
        "initialize and notifications/initialized: {actions:?}"
    );
    let calls: Vec<&Value> = trail
        .iter()
        .filter(|r| r["action"] == "tools/call")
        .collect();
    let mut by_outcome = BTreeMap::new();
    for record in &calls {
        let outcome = record["outcome"].as_str().unwrap().to_owned();
        let earlier = by_outcome.insert(outcome.clone(), (*record).clone());
        assert!(
            earlier.is_none(),
            "two records with outcome {outcome}: {calls:?}"
        );
    }
    let expected: [(&str, &str, Option<u16>, bool); 11] = [
        ("ok", "getTodo", Some(200), true),
        ("tool_error", "getTodo", Some(404), true),
        ("denied_allowlist", "getPost", None, false),
        ("denied_scope", "getSecretTodo", None, false),
        ("write_blocked", "createPost", None, false),
        ("invalid_arguments", "getTodo", None, false),
        ("unknown_tool", "noSuchTool", None, false),
        ("downstream_error", "getDeadTodo", None, false),
        ("rejected_too_large", "listCommentsStrict", Some(200), true),
        ("withheld_over_budget", "getTodo", Some(200), false),
        ("budget_exhausted", "getTodo", None, false),
    ];
    assert_eq!(
        by_outcome
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        expected.iter().map(|e| e.0).collect::<BTreeSet<_>>(),
        "{calls:?}"
    );
    for (outcome, tool, status, charged) in expected {
        let record = &by_outcome[outcome];
        assert_eq!(record["tool"], tool, "{record}");
        assert_eq!(record["agentId"], id.as_str(), "{record}");
        assert_eq!(
            record["downstreamStatus"].as_u64(),
            status.map(u64::from),
            "{record}"
        );
        assert_eq!(tokens(record) > 0, charged, "{record}");
        assert_eq!(
            record["latencyMs"].is_u64(),
            status.is_some(),
            "latency of the downstream call: {record}"
        );
        assert!(record["arguments"].is_object(), "{record}");
        assert!(
            record["requestId"].as_str().is_some_and(|r| !r.is_empty()),
            "{record}"
        );
    }
    let recorded: u64 = calls.iter().map(|r| tokens(r)).sum();
    assert_eq!(recorded, stack.used(&id).await);

    // Only the calls that passed every check reached json-server.
    let after = [
        baseline("GET /todos/"),
        baseline("GET /comments"),
        baseline("GET /posts"),
        baseline("POST "),
    ];
    let sent: Vec<usize> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    assert_eq!(sent, [3, 1, 0, 0], "todos, comments, posts, writes");

    // The stdout sink wrote each of these records as it is stored.
    let sink: Vec<Value> = stack
        .gateway
        .stdout_lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for record in &trail {
        let lines = sink.iter().filter(|l| l["id"] == record["id"]).count();
        assert_eq!(lines, 1, "{record} on stdout {lines} times");
        assert!(sink.contains(record), "{record} differs on stdout");
    }
}

#[tokio::test]
async fn records_survive_a_restart_and_match_the_budget() {
    let mut stack = Stack::start(GatewayOptions::new()).await;
    let (id, token) = stack.agent(json!({"label": "durable"})).await;
    let mcp = stack.mcp(&token).await;
    for todo in 1..=5 {
        let answer = mcp.call("getTodo", json!({"id": todo})).await.unwrap();
        assert!(answer.is_result(), "{}", answer.body);
    }
    let answer = mcp
        .call("createPost", json!({"title": "no"}))
        .await
        .unwrap();
    assert!(answer.error_code().is_some(), "{}", answer.body);
    let answer = mcp.call("getTodo", json!({"id": 999})).await.unwrap();
    assert_eq!(answer.body["result"]["isError"], true, "{}", answer.body);

    let before = stack.audit("/management/audit").await;
    let used = stack.used(&id).await;
    let charged: u64 = stack.calls(&id).await.iter().map(tokens).sum();
    assert_eq!(charged, used);
    assert!(before.len() >= 10, "{before:?}");

    let status = stack.gateway.restart().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status:?}");

    let last = before
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .max()
        .unwrap();
    let after = stack.audit("/management/audit").await;
    let kept: Vec<Value> = after
        .iter()
        .filter(|r| r["id"].as_u64().unwrap() <= last)
        .cloned()
        .collect();
    assert_eq!(kept, before);
    assert_eq!(stack.used(&id).await, used);

    // New records continue the sequence.
    let mcp = stack.mcp(&token).await;
    let answer = mcp.call("getTodo", json!({"id": 6})).await.unwrap();
    assert!(answer.is_result(), "{}", answer.body);
    let calls = stack.calls(&id).await;
    assert!(calls[0]["id"].as_u64().unwrap() > last, "{:?}", calls[0]);
    assert_eq!(calls[0]["arguments"]["id"], 6);
    assert_eq!(calls.iter().map(tokens).sum::<u64>(), stack.used(&id).await);
}

#[tokio::test]
async fn records_survive_kill_9_during_load_and_match_the_charges() {
    let mut stack = Stack::start(GatewayOptions::new()).await;
    let (id, token) = stack
        .agent(json!({"label": "killed", "dailyTokenBudget": 1_000_000_000u64}))
        .await;

    let run = load_until_killed(&stack, &token, 12, 120).await;
    assert!(run.received.len() >= 120);
    // Give the stdout reader the process's last lines.
    std::thread::sleep(Duration::from_millis(200));
    let sink: Vec<Value> = stack
        .gateway
        .stdout_lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    stack.gateway.restart().unwrap_or_else(|e| panic!("{e}"));

    // Whatever the sink wrote was committed, so the store still has it, unchanged.
    let trail = stack.audit("/management/audit").await;
    let stored: BTreeMap<u64, &Value> = trail
        .iter()
        .map(|r| (r["id"].as_u64().unwrap(), r))
        .collect();
    assert_eq!(stored.len(), trail.len(), "record ids repeat");
    for record in &sink {
        let id = record["id"].as_u64().unwrap();
        assert_eq!(
            stored.get(&id),
            Some(&record),
            "record {id} lost or changed"
        );
    }

    // Every result a client received has its record, charged.
    let calls = stack.calls(&id).await;
    let tagged = by_tag(&calls);
    for got in &run.received {
        let record = tagged
            .get(&got.tag)
            .unwrap_or_else(|| panic!("no record of received call {}", got.tag));
        assert_eq!(record["outcome"], "ok", "{record}");
        assert!(tokens(record) > 0, "{record}");
    }
    assert_eq!(calls.iter().map(tokens).sum::<u64>(), stack.used(&id).await);
    eprintln!(
        "{} received, {} on stdout, {} stored calls after the kill",
        run.received.len(),
        sink.len(),
        calls.len()
    );
}

/// The sort key of the trail: time in nanoseconds since the epoch, then id.
fn position(record: &Value) -> (i128, u64) {
    let time = record["time"].as_str().expect("a time");
    let nanos = time
        .get(19..time.len() - 1)
        .and_then(|f| f.strip_prefix('.'))
        .map_or(0, |digits| {
            let mut padded = digits.to_owned();
            padded.extend(std::iter::repeat_n(
                '0',
                9usize.saturating_sub(digits.len()),
            ));
            padded.parse::<i128>().expect("a fraction")
        });
    let secs = i128::from(unix_seconds(time));
    (secs * 1_000_000_000 + nanos, record["id"].as_u64().unwrap())
}

fn filtered(records: &[Value], keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    records.iter().filter(|r| keep(r)).cloned().collect()
}

#[tokio::test]
async fn the_audit_api_filters_pages_and_exports_newest_first() {
    let stack = Stack::start(GatewayOptions::new()).await;
    let (a, a_token) = stack.agent(json!({"label": "a"})).await;
    let (b, b_token) = stack.agent(json!({"label": "b"})).await;
    let a_mcp = stack.mcp(&a_token).await;
    let b_mcp = stack.mcp(&b_token).await;

    // Two phases more than a second apart, so that a time filter can split them.
    let mut phase1 = Vec::new();
    for (mcp, tool, arguments) in [
        (&a_mcp, "getTodo", json!({"id": 1})),
        (&a_mcp, "getTodo", json!({"id": 2})),
        (&a_mcp, "getTodo", json!({"id": 3})),
        (&a_mcp, "getPost", json!({"id": 1})),
        (&a_mcp, "noSuchTool", json!({"id": 1})),
        (&b_mcp, "getTodo", json!({"id": 4})),
        (&b_mcp, "getPost", json!({"id": 2})),
    ] {
        mcp.call(tool, arguments.clone()).await.unwrap();
        phase1.push((json!(tool), arguments));
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for (mcp, tool, arguments) in [
        (&a_mcp, "getTodo", json!({"id": 5})),
        (&a_mcp, "getPost", json!({"id": 3})),
        (&b_mcp, "getTodo", json!({"id": 6})),
    ] {
        mcp.call(tool, arguments).await.unwrap();
    }

    // The whole trail, newest first.
    let all = stack.audit("/management/audit").await;
    for pair in all.windows(2) {
        assert!(position(&pair[0]) > position(&pair[1]), "{pair:?}");
        // Everything here ran one request at a time, so ids follow the same order.
        assert!(pair[0]["id"].as_u64() > pair[1]["id"].as_u64(), "{pair:?}");
    }

    // Management actions are the admin's, with the admin token's id as operator.
    for action in ["agent.create", "token.issue"] {
        let records = filtered(&all, |r| r["action"] == action);
        assert_eq!(records.len(), 2, "{action}: {records:?}");
        for record in records {
            assert_eq!(record["agentId"], "admin", "{record}");
            assert!(
                record["operator"].as_str().is_some_and(|o| !o.is_empty()),
                "{record}"
            );
        }
    }
    let phase2_start = all
        .iter()
        .filter(|r| r["action"] == "tools/call")
        .filter(|r| !phase1.contains(&(r["tool"].clone(), r["arguments"].clone())))
        .map(position)
        .min()
        .unwrap();

    let stack = &stack;
    let query = |q: String| async move { stack.audit(&format!("/management/audit?{q}")).await };
    let of_a = filtered(&all, |r| r["agentId"] == a.as_str());
    assert_eq!(of_a.len(), 2 + 7, "{of_a:?}");
    assert_eq!(query(format!("agentId={a}")).await, of_a);
    assert_eq!(
        stack.audit(&format!("/management/agents/{a}/audit")).await,
        of_a
    );
    let get_post = filtered(&all, |r| r["tool"] == "getPost");
    assert_eq!(get_post.len(), 3);
    assert_eq!(query("tool=getPost".into()).await, get_post);
    let unknown = query("outcome=unknown_tool".into()).await;
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert_eq!(unknown[0]["tool"], "noSuchTool");
    let a_todos = filtered(&of_a, |r| r["tool"] == "getTodo");
    assert_eq!(a_todos.len(), 4);
    assert_eq!(
        query(format!("agentId={a}&tool=getTodo&outcome=ok")).await,
        a_todos
    );

    // since is inclusive, until exclusive; the phase-2 boundary splits the agent's calls.
    let boundary = all
        .iter()
        .find(|r| position(r).0 == phase2_start.0)
        .map(|r| r["time"].as_str().unwrap().to_owned())
        .unwrap();
    let since = query(format!("agentId={a}&since={boundary}")).await;
    assert_eq!(since, filtered(&of_a, |r| position(r).0 >= phase2_start.0));
    assert_eq!(since.len(), 2, "{since:?}");
    let until = query(format!("agentId={a}&until={boundary}")).await;
    assert_eq!(until, filtered(&of_a, |r| position(r).0 < phase2_start.0));
    assert_eq!(until.len(), 7, "{until:?}");
    let first = of_a.last().unwrap()["time"].as_str().unwrap().to_owned();
    let window = query(format!("since={first}&until={boundary}&tool=getTodo")).await;
    assert_eq!(window.len(), 4, "a's three and b's one: {window:?}");

    // Pages of two, chained by the cursor, give the same records once each.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        assert!(page <= of_a.len(), "the cursor does not end");
        let mut url = format!("/management/audit?agentId={a}&limit=2");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let answer = stack.get(&url).await.json();
        let records = answer["records"].as_array().unwrap();
        assert!(records.len() <= 2, "{answer}");
        paged.extend(records.iter().cloned());
        match answer["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, of_a);

    for bad in [
        "limit=0",
        "limit=1001",
        "since=yesterday",
        "until=2026-13-01T00:00:00Z",
        "colour=red",
    ] {
        let answer = stack.get(&format!("/management/audit?{bad}")).await;
        assert_eq!(answer.status, 400, "{bad}: {}", answer.text());
    }

    // A deleted agent's records stay.
    let deleted = stack
        .client()
        .delete(&format!("/management/agents/{b}"))
        .bearer(&stack.admin)
        .send()
        .bounded()
        .await;
    assert_eq!(deleted.status, 204);
    let of_b = query(format!("agentId={b}")).await;
    assert_eq!(of_b, filtered(&all, |r| r["agentId"] == b.as_str()));
    assert_eq!(of_b.len(), 2 + 3);

    // The export streams the same records as JSON Lines, newest first.
    let export = stack
        .get(&format!("/management/audit/export?agentId={a}"))
        .await;
    assert_eq!(export.status, 200, "{}", export.text());
    assert_eq!(export.header("content-type"), Some("application/x-ndjson"));
    let text = export.text();
    assert!(text.ends_with('\n'), "{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines, of_a);
    let export = stack.get("/management/audit/export").await;
    let lines: Vec<Value> = export
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, stack.audit("/management/audit").await);
    assert!(lines.len() > all.len(), "the exports are recorded too");
    assert_eq!(lines[0]["action"], "audit.export");
}

/// Starts the gateway with a valid first custom rule and an invalid second one; returns how it
/// exited and what it wrote to stderr.
fn start_with_an_invalid_rule() -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let output = GatewayOptions::new()
        .env("Ithil__Privacy__CustomRules__0__Pattern", r"EMP-\d{6}")
        .env("Ithil__Privacy__CustomRules__1__Pattern", r"ACC(\d{10}")
        .refused_start(dir.path(), "the gateway started with an invalid rule");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_invalid_custom_rule_stops_the_start_naming_the_rule() {
    let (status, stderr) = start_with_an_invalid_rule();
    assert!(!status.success(), "{status:?}: {stderr}");
    assert!(stderr.contains("privacy.customRules.1"), "{stderr}");
    assert!(!stderr.contains("privacy.customRules.0"), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
}

/// docs/configuration.md: exit code 2 for invalid configuration, 1 when the server cannot run.
#[test]
fn an_invalid_custom_rule_exits_with_the_configuration_error_code() {
    let (status, stderr) = start_with_an_invalid_rule();
    assert_eq!(status.code(), Some(2), "{stderr}");
}

/// A cursor the gateway never issued, or a time range that ends before it starts, is the
/// caller's mistake: 400, as for every other bad filter.
#[tokio::test]
async fn a_malformed_cursor_or_a_reversed_time_range_is_a_client_error() {
    let gateway = ithil_tests::gateway::GatewayProcess::start(
        GatewayOptions::new().api_key(crate::budget::API_KEY),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let client = gateway.client();
    let admin = crate::budget::admin_token(&client, crate::budget::API_KEY).await;
    for path in [
        "/management/audit?cursor=garbage",
        "/management/audit?since=2026-05-07T00:00:00Z&until=2026-05-06T00:00:00Z",
        "/management/agents/agt_00000000/audit?cursor=AAAA",
        "/management/audit/export?cursor=garbage",
    ] {
        let answer = client.get(path).bearer(&admin).send().bounded().await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.text());
        assert_eq!(answer.error_code(), "invalid_query", "{path}");
    }
}
