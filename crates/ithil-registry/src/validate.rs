//! The rules every stored agent satisfies, checked before anything is written.

use crate::error::{RegistryError, Result};

/// The longest label accepted, in characters (Unicode scalar values) after trimming.
pub const MAX_LABEL_CHARS: usize = 200;

/// The largest daily token budget accepted: far above any real day, small enough that sums of
/// a few thousand budgets cannot overflow `u64`.
pub const MAX_DAILY_TOKEN_BUDGET: u64 = 1_000_000_000_000;

/// The most entries `allowedTools` may hold.
pub const MAX_ALLOWED_TOOLS: usize = 1024;

/// The most entries `scopes` may hold.
pub const MAX_SCOPES: usize = 64;

/// The longest tool name or scope accepted, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// Trims the label and checks it: 1 to 200 characters, no control characters.
pub(crate) fn label(raw: &str) -> Result<String> {
    let label = raw.trim();

    if label.is_empty() {
        return Err(RegistryError::InvalidLabel {
            reason: "must not be empty",
        });
    }
    if label.chars().count() > MAX_LABEL_CHARS {
        return Err(RegistryError::InvalidLabel {
            reason: "must be at most 200 characters",
        });
    }
    if label.chars().any(char::is_control) {
        return Err(RegistryError::InvalidLabel {
            reason: "must not contain control characters",
        });
    }

    Ok(label.to_owned())
}

/// Checks that a budget, when set, is in `1..=MAX_DAILY_TOKEN_BUDGET`.
pub(crate) fn budget(budget: Option<u64>) -> Result<Option<u64>> {
    match budget {
        Some(value) if !(1..=MAX_DAILY_TOKEN_BUDGET).contains(&value) => {
            Err(RegistryError::InvalidBudget { value })
        }
        other => Ok(other),
    }
}

/// Checks every tool name and drops repeats, keeping the first occurrence's position.
///
/// Repeats are dropped rather than refused because the list is a set in meaning; an operator
/// who names a tool twice has asked for nothing contradictory.
pub(crate) fn allowed_tools(tools: Option<Vec<String>>) -> Result<Option<Vec<String>>> {
    let Some(tools) = tools else {
        return Ok(None);
    };

    if tools.len() > MAX_ALLOWED_TOOLS {
        return Err(RegistryError::TooManyTools { count: tools.len() });
    }
    for (index, tool) in tools.iter().enumerate() {
        name(tool).map_err(|reason| RegistryError::InvalidToolName { index, reason })?;
    }

    Ok(Some(dedupe(tools)))
}

/// Checks every scope and drops repeats, keeping the first occurrence's position.
pub(crate) fn scopes(scopes: Vec<String>) -> Result<Vec<String>> {
    if scopes.len() > MAX_SCOPES {
        return Err(RegistryError::TooManyScopes {
            count: scopes.len(),
        });
    }
    for (index, scope) in scopes.iter().enumerate() {
        name(scope).map_err(|reason| RegistryError::InvalidScope { index, reason })?;
    }

    Ok(dedupe(scopes))
}

/// The shared rule for tool names and scopes: they are compared byte for byte with names from
/// the catalog and the token, so anything invisible or ambiguous is refused rather than
/// normalised.
fn name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("must not be empty");
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err("must be at most 128 characters");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters");
    }
    Ok(())
}

fn dedupe(items: Vec<String>) -> Vec<String> {
    let mut kept: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        // Lists are at most a thousand short names, so a linear scan costs less than hashing.
        if !kept.contains(&item) {
            kept.push(item);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_is_trimmed() {
        assert_eq!(label("  My Claude Agent \t").unwrap(), "My Claude Agent");
        assert_eq!(label("\u{3000}名前\u{a0}").unwrap(), "名前");
    }

    #[test]
    fn label_of_one_and_two_hundred_characters_is_accepted() {
        assert_eq!(label("a").unwrap(), "a");

        let longest = "a".repeat(200);
        assert_eq!(label(&longest).unwrap(), longest);
    }

    #[test]
    fn label_bounds_count_characters_not_bytes() {
        // 200 four-byte characters are 800 bytes and still a valid label.
        let emoji = "🦀".repeat(200);
        assert_eq!(label(&emoji).unwrap(), emoji);

        let too_long = "é".repeat(201);
        assert!(matches!(
            label(&too_long),
            Err(RegistryError::InvalidLabel { .. })
        ));
    }

    #[test]
    fn empty_or_blank_label_is_refused() {
        for raw in ["", " ", "\t\n ", "\u{2003}"] {
            assert!(
                matches!(label(raw), Err(RegistryError::InvalidLabel { .. })),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn label_of_two_hundred_and_one_characters_is_refused() {
        let err = label(&"a".repeat(201)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid label: must be at most 200 characters"
        );
        assert_eq!(err.field(), Some("label"));
    }

    #[test]
    fn label_with_inner_control_characters_is_refused() {
        for raw in ["a\nb", "a\tb", "a\u{0}b", "a\u{7f}b", "a\u{9b}b"] {
            assert!(
                matches!(label(raw), Err(RegistryError::InvalidLabel { .. })),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn budget_must_be_between_one_and_the_maximum() {
        assert_eq!(budget(None).unwrap(), None);
        assert_eq!(budget(Some(1)).unwrap(), Some(1));
        assert_eq!(
            budget(Some(MAX_DAILY_TOKEN_BUDGET)).unwrap(),
            Some(MAX_DAILY_TOKEN_BUDGET)
        );

        for value in [0, MAX_DAILY_TOKEN_BUDGET + 1, u64::MAX] {
            assert!(matches!(
                budget(Some(value)),
                Err(RegistryError::InvalidBudget { value: v }) if v == value
            ));
        }
    }

    #[test]
    fn repeated_tools_are_dropped_keeping_first_positions() {
        let tools = vec!["b".into(), "a".into(), "b".into(), "c".into(), "a".into()];
        assert_eq!(
            allowed_tools(Some(tools)).unwrap(),
            Some(vec!["b".into(), "a".into(), "c".into()])
        );
        assert_eq!(allowed_tools(Some(Vec::new())).unwrap(), Some(Vec::new()));
        assert_eq!(allowed_tools(None).unwrap(), None);
    }

    #[test]
    fn bad_tool_names_are_refused_with_their_index() {
        for bad in ["", " get", "get posts", "get\u{0}", &"x".repeat(129)] {
            let err = allowed_tools(Some(vec!["ok".into(), bad.into()])).unwrap_err();
            assert!(
                matches!(err, RegistryError::InvalidToolName { index: 1, .. }),
                "{bad:?}: {err}"
            );
        }
        assert!(allowed_tools(Some(vec!["x".repeat(128)])).is_ok());

        let many = (0..=MAX_ALLOWED_TOOLS).map(|i| format!("t{i}")).collect();
        assert!(matches!(
            allowed_tools(Some(many)),
            Err(RegistryError::TooManyTools { count: 1025 })
        ));
    }

    #[test]
    fn bad_scopes_are_refused_and_repeats_dropped() {
        assert_eq!(
            scopes(vec!["read".into(), "write:posts".into(), "read".into()]).unwrap(),
            vec!["read".to_owned(), "write:posts".to_owned()]
        );

        for bad in ["", "read write", "read\n"] {
            let err = scopes(vec![bad.into()]).unwrap_err();
            assert!(matches!(err, RegistryError::InvalidScope { index: 0, .. }));
            assert_eq!(err.field(), Some("scopes"));
        }

        let many = (0..=MAX_SCOPES).map(|i| format!("s{i}")).collect();
        assert!(matches!(
            scopes(many),
            Err(RegistryError::TooManyScopes { count: 65 })
        ));
    }
}
