//! Parsing and printing route patterns such as `/posts/{id}/comments`.

use std::fmt;

use super::model::{RoutePattern, Segment};

/// Why a route pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid route {route:?}: {reason}")]
pub struct RouteError {
    /// The route as written.
    pub route: String,
    /// What is wrong with it.
    pub reason: String,
}

impl RoutePattern {
    /// Parses a route: segments separated by `/`, each either literal text or a whole-segment
    /// parameter `{name}`. A leading `/` is optional; `""` and `/` are the base URL itself.
    ///
    /// Literal segments may hold the characters RFC 3986 allows in a path segment (including
    /// `%XX` escapes); they are sent as written. Parameter names are 1 to 128 characters of
    /// `[A-Za-z0-9_.-]` and must be unique.
    ///
    /// # Errors
    ///
    /// [`RouteError`] for an empty segment (`a//b`, or a trailing `/`), a `.` or `..` segment, a
    /// segment mixing text and a parameter (`{name}.json`), a character that is not allowed in a
    /// path segment (`?`, `#`, a space), an invalid or repeated parameter name.
    pub fn parse(route: &str) -> Result<RoutePattern, RouteError> {
        let fail = |reason: &str| RouteError {
            route: route.to_owned(),
            reason: reason.to_owned(),
        };
        let body = route.strip_prefix('/').unwrap_or(route);
        let mut segments = Vec::new();
        if body.is_empty() {
            return Ok(RoutePattern { segments });
        }

        for text in body.split('/') {
            if text.is_empty() {
                return Err(fail("empty segment (a doubled or trailing slash)"));
            }
            if let Some(inner) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                if !is_param_name(inner) {
                    return Err(fail(
                        "a parameter name must be 1 to 128 characters of A-Z a-z 0-9 _ . -",
                    ));
                }
                if segments
                    .iter()
                    .any(|s| matches!(s, Segment::Param(p) if p == inner))
                {
                    return Err(fail(&format!("parameter {inner} appears twice")));
                }
                segments.push(Segment::Param(inner.to_owned()));
                continue;
            }
            if text.contains(['{', '}']) {
                return Err(fail(
                    "a parameter must fill a whole segment ({name}); mixed segments are not supported",
                ));
            }
            if text == "." || text == ".." {
                return Err(fail("dot segments are not allowed"));
            }
            if !is_literal_segment(text) {
                return Err(fail("a character is not allowed in a path segment"));
            }
            segments.push(Segment::Literal(text.to_owned()));
        }
        Ok(RoutePattern { segments })
    }

    /// The parameter names, in route order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Whether `name` is one of the route's parameters.
    pub fn has_param(&self, name: &str) -> bool {
        self.params().any(|p| p == name)
    }
}

impl fmt::Display for RoutePattern {
    /// Writes the route with a leading slash: `/posts/{id}`, or `/` for the base URL itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => write!(f, "/{text}")?,
                Segment::Param(name) => write!(f, "/{{{name}}}")?,
            }
        }
        Ok(())
    }
}

/// Whether `name` is a valid route parameter name.
pub(crate) fn is_param_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Whether `text` is a valid RFC 3986 path segment: pchar = unreserved / pct-encoded /
/// sub-delims / ":" / "@".
fn is_literal_segment(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        let allowed = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
            );
        if !allowed {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_with_and_without_leading_slash_parses_the_same() {
        let a = RoutePattern::parse("/posts/{id}/comments").unwrap();
        let b = RoutePattern::parse("posts/{id}/comments").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.segments,
            vec![
                Segment::Literal("posts".into()),
                Segment::Param("id".into()),
                Segment::Literal("comments".into()),
            ]
        );
        assert_eq!(a.to_string(), "/posts/{id}/comments");
        assert_eq!(a.params().collect::<Vec<_>>(), ["id"]);
    }

    #[test]
    fn empty_route_is_the_base_url() {
        assert!(RoutePattern::parse("").unwrap().segments.is_empty());
        assert_eq!(RoutePattern::parse("/").unwrap().to_string(), "/");
    }

    #[test]
    fn malformed_routes_are_refused_with_a_reason() {
        let cases = [
            ("/posts//x", "empty segment"),
            ("/posts/", "empty segment"),
            ("/a/../b", "dot segments"),
            ("/files/{name}.json", "whole segment"),
            ("/a?b=1", "not allowed"),
            ("/a#b", "not allowed"),
            ("/a b", "not allowed"),
            ("/a/%zz", "not allowed"),
            ("/{}", "parameter name"),
            ("/{a b}", "parameter name"),
            ("/{id}/x/{id}", "appears twice"),
        ];
        for (route, expected) in cases {
            let error = RoutePattern::parse(route).expect_err(route);
            assert!(error.to_string().contains(expected), "{route}: {error}");
        }
    }

    #[test]
    fn literal_segments_may_hold_sub_delimiters_and_escapes() {
        let route = RoutePattern::parse("/v1:beta/a%20b/@me/x=y").unwrap();
        assert_eq!(route.to_string(), "/v1:beta/a%20b/@me/x=y");
    }
}
