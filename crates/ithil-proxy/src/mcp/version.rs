//! The MCP protocol revisions the gateway speaks, their negotiation, and the version header.

use http::HeaderMap;

/// The HTTP header that carries the negotiated revision on every request after `initialize`.
pub const PROTOCOL_VERSION_HEADER: &str = "mcp-protocol-version";

/// One MCP protocol revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// 2024-11-05, the first published revision.
    V2024_11_05,
    /// 2025-03-26, which introduced Streamable HTTP and JSON-RPC batches.
    V2025_03_26,
    /// 2025-06-18, which dropped batches and added the version header and structured content.
    V2025_06_18,
    /// 2025-11-25.
    V2025_11_25,
}

impl ProtocolVersion {
    /// Every supported revision, oldest first.
    pub const ALL: [ProtocolVersion; 4] = [
        ProtocolVersion::V2024_11_05,
        ProtocolVersion::V2025_03_26,
        ProtocolVersion::V2025_06_18,
        ProtocolVersion::V2025_11_25,
    ];

    /// The newest supported revision, offered to clients asking for one we do not speak.
    pub const LATEST: ProtocolVersion = ProtocolVersion::V2025_11_25;

    /// The revision assumed for a request that carries no version header, as the
    /// specification prescribes for servers that cannot tell otherwise.
    pub const HEADERLESS: ProtocolVersion = ProtocolVersion::V2025_03_26;

    /// Parses a revision name such as `2025-06-18`.
    pub fn parse(s: &str) -> Option<ProtocolVersion> {
        ProtocolVersion::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The revision's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolVersion::V2024_11_05 => "2024-11-05",
            ProtocolVersion::V2025_03_26 => "2025-03-26",
            ProtocolVersion::V2025_06_18 => "2025-06-18",
            ProtocolVersion::V2025_11_25 => "2025-11-25",
        }
    }

    /// Picks the revision to answer an `initialize` with: the client's when we speak it, else
    /// our newest.
    pub fn negotiate(requested: Option<&str>) -> ProtocolVersion {
        requested
            .and_then(ProtocolVersion::parse)
            .unwrap_or(ProtocolVersion::LATEST)
    }

    /// Whether a POST body may be a JSON-RPC batch. Only 2025-03-26 allows it: 2024-11-05 has
    /// no batches, and 2025-06-18 removed them again.
    pub fn allows_batches(self) -> bool {
        self == ProtocolVersion::V2025_03_26
    }

    /// Whether tool results may carry `structuredContent` (2025-06-18 and later).
    pub fn has_structured_content(self) -> bool {
        self >= ProtocolVersion::V2025_06_18
    }
}

impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request's version header was refused (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The header names a revision the gateway does not speak, or is not text.
    #[error("unsupported protocol version {0:?}")]
    Unsupported(String),
    /// The header names a supported revision other than the one the session negotiated.
    #[error("protocol version {header} does not match the session's {negotiated}")]
    Mismatch {
        /// The revision in the header.
        header: ProtocolVersion,
        /// The revision negotiated at `initialize`.
        negotiated: ProtocolVersion,
    },
}

/// Decides the revision a request within a session is handled under.
///
/// A request with the header must name a supported revision, and the one its session
/// negotiated. A request without it is taken as [`ProtocolVersion::HEADERLESS`] (2025-03-26),
/// as the specification says, whatever the session negotiated: clients of 2025-06-18 and later
/// always send it, so its absence marks an older client.
///
/// # Errors
///
/// Returns [`VersionError`] for an unsupported or mismatched header; the caller answers 400.
pub fn request_version(
    headers: &HeaderMap,
    negotiated: ProtocolVersion,
) -> Result<ProtocolVersion, VersionError> {
    let Some(value) = headers.get(PROTOCOL_VERSION_HEADER) else {
        return Ok(ProtocolVersion::HEADERLESS);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let header =
        ProtocolVersion::parse(text).ok_or_else(|| VersionError::Unsupported(text.to_owned()))?;
    if header != negotiated {
        return Err(VersionError::Mismatch { header, negotiated });
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(PROTOCOL_VERSION_HEADER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn every_revision_round_trips_through_its_name() {
        for v in ProtocolVersion::ALL {
            assert_eq!(ProtocolVersion::parse(v.as_str()), Some(v));
        }
        assert_eq!(ProtocolVersion::parse("2026-07-28"), None);
    }

    #[test]
    fn a_supported_requested_version_is_answered_with_itself() {
        for v in ProtocolVersion::ALL {
            assert_eq!(ProtocolVersion::negotiate(Some(v.as_str())), v);
        }
    }

    #[test]
    fn an_unknown_or_missing_requested_version_gets_the_newest() {
        assert_eq!(
            ProtocolVersion::negotiate(Some("2099-01-01")),
            ProtocolVersion::LATEST
        );
        assert_eq!(ProtocolVersion::negotiate(None), ProtocolVersion::LATEST);
    }

    #[test]
    fn only_2025_03_26_allows_batches() {
        let allowed: Vec<_> = ProtocolVersion::ALL
            .into_iter()
            .filter(|v| v.allows_batches())
            .collect();
        assert_eq!(allowed, vec![ProtocolVersion::V2025_03_26]);
    }

    #[test]
    fn structured_content_starts_with_2025_06_18() {
        assert!(!ProtocolVersion::V2025_03_26.has_structured_content());
        assert!(ProtocolVersion::V2025_06_18.has_structured_content());
        assert!(ProtocolVersion::V2025_11_25.has_structured_content());
    }

    #[test]
    fn a_missing_header_is_taken_as_2025_03_26() {
        let v = request_version(&headers(None), ProtocolVersion::V2025_11_25).unwrap();
        assert_eq!(v, ProtocolVersion::V2025_03_26);
    }

    #[test]
    fn a_matching_header_is_accepted() {
        let v = request_version(&headers(Some("2025-06-18")), ProtocolVersion::V2025_06_18);
        assert_eq!(v, Ok(ProtocolVersion::V2025_06_18));
    }

    #[test]
    fn an_unsupported_header_is_refused() {
        let err = request_version(&headers(Some("1900-01-01")), ProtocolVersion::V2025_06_18);
        assert_eq!(err, Err(VersionError::Unsupported("1900-01-01".into())));
    }

    #[test]
    fn a_header_other_than_the_negotiated_version_is_refused() {
        let err = request_version(&headers(Some("2025-06-18")), ProtocolVersion::V2025_11_25);
        assert!(matches!(err, Err(VersionError::Mismatch { .. })));
    }
}
