use std::path::{Path, PathBuf};

use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::*;

const T0: OffsetDateTime = datetime!(2026-05-06 12:00:00 UTC);

struct Store {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Store {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ithil.redb");
        Self { _dir: dir, path }
    }

    fn open(&self) -> Registry {
        Registry::open(database(&self.path)).unwrap()
    }
}

fn database(path: &Path) -> Arc<Database> {
    Arc::new(Database::create(path).unwrap())
}

fn full_agent() -> NewAgent {
    NewAgent {
        label: "  My Claude Agent ".into(),
        daily_token_budget: Some(50_000),
        allowed_tools: Some(vec!["get_post".into(), "list_posts".into()]),
        scopes: vec!["read".into(), "posts:write".into()],
        is_active: true,
    }
}

#[test]
fn created_agent_is_returned_and_found_by_id() {
    let store = Store::new();
    let registry = store.open();

    let agent = registry.create(full_agent(), T0).unwrap();

    assert_eq!(agent.label, "My Claude Agent");
    assert_eq!(agent.daily_token_budget, Some(50_000));
    assert_eq!(
        agent.allowed_tools,
        Some(vec!["get_post".to_owned(), "list_posts".to_owned()])
    );
    assert_eq!(agent.scopes, ["read", "posts:write"]);
    assert!(agent.is_active);
    assert_eq!(agent.created_at, T0);
    assert_eq!(agent.updated_at, T0);
    assert_eq!(*registry.get(&agent.agent_id).unwrap(), agent);
    assert_eq!(registry.len(), 1);
}

#[test]
fn agent_id_is_agt_and_eight_lowercase_hex_digits() {
    let store = Store::new();
    let registry = store.open();

    let mut ids = Vec::new();
    for i in 0..40 {
        let agent = registry.create(NewAgent::new(format!("a{i}")), T0).unwrap();
        let hex = agent.agent_id.strip_prefix("agt_").unwrap();
        assert_eq!(hex.len(), 8, "{}", agent.agent_id);
        assert!(
            hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{}",
            agent.agent_id
        );
        assert!(is_agent_id(&agent.agent_id));
        ids.push(agent.agent_id);
    }

    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "ids must be distinct");
}

#[test]
fn is_agent_id_refuses_other_shapes() {
    for id in [
        "",
        "agt_",
        "agt_3f9a1c2",
        "agt_3f9a1c2b0",
        "agt_3F9A1C2B",
        "agt-3f9a1c2b",
        "AGT_3f9a1c2b",
        "agt_3f9a1c2g",
        "agt_3f9a1c2\u{e9}",
    ] {
        assert!(!is_agent_id(id), "{id:?}");
    }
    assert!(is_agent_id("agt_3f9a1c2b"));
}

#[test]
fn creation_time_is_kept_in_utc_whole_seconds() {
    let store = Store::new();
    let registry = store.open();

    let local = datetime!(2026-05-06 14:00:00.987654321 +02:00);
    let agent = registry.create(NewAgent::new("a"), local).unwrap();

    assert_eq!(agent.created_at, T0);
    assert_eq!(agent.created_at.offset(), UtcOffset::UTC);
}

#[test]
fn invalid_new_agent_stores_nothing() {
    let store = Store::new();
    let registry = store.open();

    let bad = [
        NewAgent::new("   "),
        NewAgent::new("x".repeat(201)),
        NewAgent::new("line\nbreak"),
        NewAgent {
            daily_token_budget: Some(0),
            ..NewAgent::new("a")
        },
        NewAgent {
            daily_token_budget: Some(MAX_DAILY_TOKEN_BUDGET_PLUS_ONE),
            ..NewAgent::new("a")
        },
        NewAgent {
            allowed_tools: Some(vec!["".into()]),
            ..NewAgent::new("a")
        },
        NewAgent {
            scopes: vec!["two words".into()],
            ..NewAgent::new("a")
        },
    ];
    for new in bad {
        let err = registry.create(new.clone(), T0).unwrap_err();
        assert!(err.is_invalid_input(), "{new:?}: {err}");
    }

    assert!(registry.is_empty());
    drop(registry);
    assert!(store.open().is_empty());
}

const MAX_DAILY_TOKEN_BUDGET_PLUS_ONE: u64 = crate::MAX_DAILY_TOKEN_BUDGET + 1;

#[test]
fn label_bounds_hold_through_create_and_update() {
    let store = Store::new();
    let registry = store.open();

    let one = registry.create(NewAgent::new("a"), T0).unwrap();
    assert_eq!(one.label, "a");

    let longest = "ü".repeat(200);
    let agent = registry.create(NewAgent::new(longest.clone()), T0).unwrap();
    assert_eq!(agent.label, longest);

    for bad in ["", "x".repeat(201).as_str(), "tab\there"] {
        let patch = AgentPatch {
            label: Some(bad.into()),
            ..AgentPatch::default()
        };
        assert!(matches!(
            registry.update(&agent.agent_id, patch, T0 + Duration::HOUR),
            Err(RegistryError::InvalidLabel { .. })
        ));
    }
    assert_eq!(*registry.get(&agent.agent_id).unwrap(), agent);
}

#[test]
fn list_is_ordered_by_id_and_pages_with_after_and_limit() {
    let store = Store::new();
    let registry = store.open();
    let mut ids: Vec<String> = (0..7)
        .map(|i| {
            registry
                .create(NewAgent::new(format!("agent {i}")), T0)
                .unwrap()
                .agent_id
        })
        .collect();
    ids.sort();

    let all: Vec<String> = registry
        .list(None, 100)
        .iter()
        .map(|a| a.agent_id.clone())
        .collect();
    assert_eq!(all, ids);

    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = registry.list(after.as_deref(), 3);
        paged.extend(page.iter().map(|a| a.agent_id.clone()));
        if page.len() < 3 {
            break;
        }
        after = page.last().map(|a| a.agent_id.clone());
    }
    assert_eq!(paged, ids);

    assert!(registry.list(None, 0).is_empty());
    assert!(registry.list(Some(&ids[6]), 10).is_empty());
}

#[test]
fn list_cursor_survives_deletion_of_its_agent() {
    let store = Store::new();
    let registry = store.open();
    let mut ids: Vec<String> = (0..4)
        .map(|i| {
            registry
                .create(NewAgent::new(format!("a{i}")), T0)
                .unwrap()
                .agent_id
        })
        .collect();
    ids.sort();

    registry.delete(&ids[1]).unwrap();
    let rest: Vec<String> = registry
        .list(Some(&ids[1]), 10)
        .iter()
        .map(|a| a.agent_id.clone())
        .collect();

    assert_eq!(rest, &ids[2..]);
}

#[test]
fn patch_changes_only_the_fields_it_names() {
    let store = Store::new();
    let registry = store.open();
    let before = registry.create(full_agent(), T0).unwrap();
    let later = T0 + Duration::minutes(5);

    let patch = AgentPatch {
        daily_token_budget: Some(Some(100_000)),
        ..AgentPatch::default()
    };
    let after = registry.update(&before.agent_id, patch, later).unwrap();

    let expected = Agent {
        daily_token_budget: Some(100_000),
        updated_at: later,
        ..before.clone()
    };
    assert_eq!(after, expected);
    assert_eq!(*registry.get(&before.agent_id).unwrap(), expected);
}

#[test]
fn patch_can_change_every_field_at_once() {
    let store = Store::new();
    let registry = store.open();
    let before = registry.create(full_agent(), T0).unwrap();

    let patch = AgentPatch {
        label: Some(" Renamed ".into()),
        daily_token_budget: Some(None),
        allowed_tools: Some(None),
        scopes: Some(Vec::new()),
        is_active: Some(false),
    };
    let after = registry
        .update(&before.agent_id, patch, T0 + Duration::DAY)
        .unwrap();

    assert_eq!(after.label, "Renamed");
    assert_eq!(after.daily_token_budget, None);
    assert_eq!(after.allowed_tools, None);
    assert!(after.scopes.is_empty());
    assert!(!after.is_active);
    assert_eq!(after.created_at, T0);
    assert_eq!(after.updated_at, T0 + Duration::DAY);
}

#[test]
fn empty_allowlist_in_a_patch_is_kept_as_exact() {
    let store = Store::new();
    let registry = store.open();
    let agent = registry.create(NewAgent::new("a"), T0).unwrap();

    let patch = AgentPatch {
        allowed_tools: Some(Some(Vec::new())),
        ..AgentPatch::default()
    };
    let agent = registry.update(&agent.agent_id, patch, T0).unwrap();

    assert_eq!(agent.allowed_tools, Some(Vec::new()));
    assert!(!agent.allows_tool("get_post"));
}

#[test]
fn invalid_patch_changes_nothing() {
    let store = Store::new();
    let registry = store.open();
    let before = registry.create(full_agent(), T0).unwrap();

    // A valid field beside an invalid one must not be applied either.
    let patches = [
        AgentPatch {
            is_active: Some(false),
            label: Some(String::new()),
            ..AgentPatch::default()
        },
        AgentPatch {
            is_active: Some(false),
            daily_token_budget: Some(Some(0)),
            ..AgentPatch::default()
        },
        AgentPatch {
            label: Some("fine".into()),
            allowed_tools: Some(Some(vec!["ok".into(), "not ok".into()])),
            ..AgentPatch::default()
        },
        AgentPatch {
            label: Some("fine".into()),
            scopes: Some(vec![String::new()]),
            ..AgentPatch::default()
        },
    ];
    for patch in patches {
        let err = registry
            .update(&before.agent_id, patch.clone(), T0 + Duration::HOUR)
            .unwrap_err();
        assert!(err.is_invalid_input(), "{patch:?}: {err}");
    }

    assert_eq!(*registry.get(&before.agent_id).unwrap(), before);
    drop(registry);
    assert_eq!(*store.open().get(&before.agent_id).unwrap(), before);
}

#[test]
fn empty_patch_writes_nothing() {
    let store = Store::new();
    let registry = store.open();
    let before = registry.create(NewAgent::new("a"), T0).unwrap();

    let after = registry
        .update(&before.agent_id, AgentPatch::default(), T0 + Duration::DAY)
        .unwrap();

    assert_eq!(after, before);
}

#[test]
fn unknown_agent_cannot_be_updated_or_deleted() {
    let store = Store::new();
    let registry = store.open();

    let err = registry
        .update("agt_00000000", AgentPatch::default(), T0)
        .unwrap_err();
    assert_eq!(err.to_string(), "agent agt_00000000 not found");

    assert!(matches!(
        registry.delete("agt_00000000"),
        Err(RegistryError::NotFound(id)) if id == "agt_00000000"
    ));
}

#[test]
fn deleted_agent_is_gone_at_once_and_after_reopen() {
    let store = Store::new();
    let registry = store.open();
    let kept = registry.create(NewAgent::new("kept"), T0).unwrap();
    let gone = registry.create(NewAgent::new("gone"), T0).unwrap();

    registry.delete(&gone.agent_id).unwrap();

    assert!(registry.get(&gone.agent_id).is_none());
    assert_eq!(registry.len(), 1);
    assert!(matches!(
        registry.delete(&gone.agent_id),
        Err(RegistryError::NotFound(_))
    ));

    drop(registry);
    let registry = store.open();
    assert!(registry.get(&gone.agent_id).is_none());
    assert_eq!(*registry.get(&kept.agent_id).unwrap(), kept);
}

#[test]
fn deactivation_is_seen_by_the_very_next_get_on_another_thread() {
    let store = Store::new();
    let registry = Arc::new(store.open());
    let agent = registry.create(NewAgent::new("a"), T0).unwrap();

    let patch = AgentPatch {
        is_active: Some(false),
        ..AgentPatch::default()
    };
    registry.update(&agent.agent_id, patch, T0).unwrap();

    let reader = Arc::clone(&registry);
    let id = agent.agent_id.clone();
    let seen = std::thread::spawn(move || reader.get(&id).unwrap().is_active)
        .join()
        .unwrap();
    assert!(!seen);
}

#[test]
fn reopened_store_holds_every_agent_unchanged() {
    let store = Store::new();
    let registry = store.open();
    let mut agents: Vec<Agent> = vec![
        registry.create(full_agent(), T0).unwrap(),
        registry.create(NewAgent::new("plain"), T0).unwrap(),
        registry
            .create(
                NewAgent {
                    is_active: false,
                    allowed_tools: Some(Vec::new()),
                    ..NewAgent::new("名前 🦀")
                },
                T0 + Duration::SECOND,
            )
            .unwrap(),
    ];
    let patch = AgentPatch {
        daily_token_budget: Some(Some(7)),
        ..AgentPatch::default()
    };
    agents[1] = registry
        .update(&agents[1].agent_id, patch, T0 + Duration::DAY)
        .unwrap();
    agents.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
    drop(registry);

    let reopened = store.open();
    let listed: Vec<Agent> = reopened
        .list(None, 10)
        .into_iter()
        .map(|a| Agent::clone(&a))
        .collect();

    assert_eq!(listed, agents);
}

#[test]
fn store_with_another_schema_version_is_refused() {
    let store = Store::new();
    let db = database(&store.path);
    let txn = db.begin_write().unwrap();
    txn.open_table(META)
        .unwrap()
        .insert(SCHEMA_KEY, SCHEMA_VERSION + 1)
        .unwrap();
    txn.commit().unwrap();

    let err = Registry::open(db).unwrap_err();

    assert!(matches!(
        err,
        RegistryError::UnsupportedSchema {
            found: 2,
            supported: 1
        }
    ));
}

#[test]
fn first_open_records_the_schema_version() {
    let store = Store::new();
    let db = database(&store.path);
    drop(Registry::open(Arc::clone(&db)).unwrap());

    let txn = db.begin_write().unwrap();
    let version = txn
        .open_table(META)
        .unwrap()
        .get(SCHEMA_KEY)
        .unwrap()
        .map(|v| v.value());

    assert_eq!(version, Some(SCHEMA_VERSION));
}

#[test]
fn unreadable_record_fails_open_and_names_its_key() {
    let store = Store::new();
    let db = database(&store.path);
    drop(Registry::open(Arc::clone(&db)).unwrap());
    let txn = db.begin_write().unwrap();
    txn.open_table(AGENTS)
        .unwrap()
        .insert("agt_deadbeef", b"{not json".as_slice())
        .unwrap();
    txn.commit().unwrap();

    let err = Registry::open(db).unwrap_err();

    assert_eq!(
        err.to_string(),
        "stored agent record agt_deadbeef is unreadable"
    );
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn debug_shows_the_agent_count_and_no_records() {
    let store = Store::new();
    let registry = store.open();
    registry.create(NewAgent::new("secret label"), T0).unwrap();

    let debug = format!("{registry:?}");

    assert_eq!(debug, "Registry { agents: 1, .. }");
}

#[test]
fn concurrent_creates_all_land_with_distinct_ids() {
    let store = Store::new();
    let registry = Arc::new(store.open());

    let threads: Vec<_> = (0..4)
        .map(|t| {
            let registry = Arc::clone(&registry);
            std::thread::spawn(move || {
                (0..10)
                    .map(|i| {
                        let new = NewAgent::new(format!("thread {t} agent {i}"));
                        registry.create(new, T0).unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut created: Vec<Agent> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    created.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));

    assert_eq!(registry.len(), 40);
    let listed: Vec<Agent> = registry
        .list(None, 100)
        .iter()
        .map(|a| Agent::clone(a))
        .collect();
    assert_eq!(listed, created);

    drop(registry);
    let reopened: Vec<Agent> = store
        .open()
        .list(None, 100)
        .iter()
        .map(|a| Agent::clone(a))
        .collect();
    assert_eq!(reopened, created);
}
