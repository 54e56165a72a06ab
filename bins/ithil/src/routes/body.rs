//! Reading request bodies: the size limit, the content type, and JSON objects field by field.
//!
//! Bodies are read no further than the limit. JSON bodies are read into an object whose fields
//! are taken one at a time, so that an error names the field: an unknown one, one of the wrong
//! type, or a repeated one.

use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};
use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::error::ApiError;

/// How long a client may take to send a whole body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads a whole body, refusing one longer than `limit` bytes with 413 without reading past it.
///
/// # Errors
///
/// 413 when the declared or actual length is over the limit, 400 when the body breaks off,
/// 408 when it takes longer than 30 seconds (a client trickling bytes holds no connection
/// forever).
pub async fn read<B>(body: B, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large(limit));
    }

    let collected = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time",
            )
        })?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large(limit)),
        Err(_) => Err(ApiError::bad_request(
            "invalid_body",
            "the request body could not be read",
        )),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is larger than {limit} bytes"),
    )
}

/// Checks that a non-empty body is declared `application/json` (UTF-8, the only charset JSON
/// has).
///
/// # Errors
///
/// 415 for another or a missing content type.
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let unsupported = || {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the request body must be sent as Content-Type: application/json",
        )
    };

    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(unsupported());
    };
    let value = value.to_str().map_err(|_| unsupported())?;
    let mut parts = value.split(';');
    let media_type = parts.next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(unsupported());
    }
    for parameter in parts {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        let value = value.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset")
            && !value.eq_ignore_ascii_case("utf-8")
            && !value.eq_ignore_ascii_case("utf8")
        {
            return Err(unsupported());
        }
    }
    Ok(())
}

/// A JSON object from a request body, whose fields are taken one by one.
#[derive(Debug)]
pub struct JsonObject {
    fields: Map<String, Value>,
}

impl JsonObject {
    /// Parses a body that must be one JSON object with only the `allowed` fields.
    ///
    /// # Errors
    ///
    /// 400 `malformed_json` for invalid JSON (repeated keys included), `invalid_body` for a
    /// value that is not an object, `unknown_field` naming the first field not allowed.
    pub fn parse(body: &[u8], allowed: &[&str]) -> Result<JsonObject, ApiError> {
        let value: UniqueKeys = serde_json::from_slice(body).map_err(|error| {
            ApiError::bad_request(
                "malformed_json",
                format!("the request body is not valid JSON: {error}"),
            )
        })?;
        let Value::Object(fields) = value.0 else {
            return Err(ApiError::bad_request(
                "invalid_body",
                "the request body must be a JSON object",
            ));
        };
        if let Some(unknown) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ApiError::bad_request(
                "unknown_field",
                format!(
                    "unknown field `{}`; accepted fields are {}",
                    printable(unknown),
                    allowed.join(", ")
                ),
            ));
        }
        Ok(JsonObject { fields })
    }

    /// Whether the body names the field.
    pub fn contains(&self, name: &str) -> bool {
        self.fields.contains_key(name)
    }

    /// A field that must be present and not null.
    ///
    /// # Errors
    ///
    /// 400 `missing_field` or `invalid_field`.
    pub fn required<T: DeserializeOwned>(
        &mut self,
        name: &str,
        expected: &str,
    ) -> Result<T, ApiError> {
        self.optional(name, expected)?.ok_or_else(|| {
            ApiError::bad_request("missing_field", format!("field `{name}` is required"))
        })
    }

    /// A field that may be absent; `null` is refused.
    ///
    /// # Errors
    ///
    /// 400 `invalid_field` for `null` or a value of the wrong type.
    pub fn optional<T: DeserializeOwned>(
        &mut self,
        name: &str,
        expected: &str,
    ) -> Result<Option<T>, ApiError> {
        match self.fields.remove(name) {
            None => Ok(None),
            Some(Value::Null) => Err(invalid(name, expected)),
            Some(value) => T::deserialize(value)
                .map(Some)
                .map_err(|_| invalid(name, expected)),
        }
    }

    /// A field where absence means "keep" and `null` means "unset": `None`, `Some(None)` or
    /// `Some(Some(value))`.
    ///
    /// # Errors
    ///
    /// 400 `invalid_field` for a value of the wrong type.
    pub fn nullable<T: DeserializeOwned>(
        &mut self,
        name: &str,
        expected: &str,
    ) -> Result<Option<Option<T>>, ApiError> {
        match self.fields.remove(name) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(value) => T::deserialize(value)
                .map(|v| Some(Some(v)))
                .map_err(|_| invalid(name, expected)),
        }
    }
}

/// 400 `invalid_field` naming the field and the form it needs.
pub fn invalid(name: &str, expected: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_field",
        format!("field `{name}` must be {expected}"),
    )
}

/// A client-chosen name as it may appear in a message: at most 64 characters, no controls.
fn printable(name: &str) -> String {
    let mut out: String = name
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if name.chars().count() > 64 {
        out.push_str("...");
    }
    out
}

/// A JSON value in which no object repeats a key: `{"isActive": true, "isActive": false}` is
/// refused instead of silently keeping the last.
struct UniqueKeys(Value);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueVisitor).map(UniqueKeys)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if fields.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "field `{}` appears twice",
                    printable(&key)
                )));
            }
            let UniqueKeys(value) = map.next_value()?;
            fields.insert(key, value);
        }
        Ok(Value::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use http_body_util::Full;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let body = Full::new(Bytes::from_static(b"0123456789"));
        assert_eq!(
            &read(body, &HeaderMap::new(), 10).await.unwrap()[..],
            b"0123456789"
        );
    }

    #[tokio::test]
    async fn a_body_over_the_limit_gets_413() {
        let body = Full::new(Bytes::from_static(b"0123456789A"));
        let error = read(body, &HeaderMap::new(), 10).await.unwrap_err();
        assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_gets_413_before_reading() {
        let body = Full::new(Bytes::new());
        let error = read(body, &headers(&[("content-length", "11")]), 10)
            .await
            .unwrap_err();
        assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn json_content_types_are_accepted() {
        for value in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
        ] {
            let map = {
                let mut map = HeaderMap::new();
                map.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
                map
            };
            assert!(require_json(&map).is_ok(), "{value}");
        }
    }

    #[test]
    fn other_content_types_get_415() {
        for map in [
            HeaderMap::new(),
            headers(&[("content-type", "application/x-www-form-urlencoded")]),
            headers(&[("content-type", "text/plain")]),
            headers(&[("content-type", "application/json; charset=latin1")]),
            headers(&[("content-type", "application/jsonx")]),
            headers(&[
                ("content-type", "application/json"),
                ("content-type", "text/plain"),
            ]),
        ] {
            let error = require_json(&map).unwrap_err();
            assert_eq!(
                error.status(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{map:?}"
            );
        }
    }

    #[test]
    fn fields_are_taken_with_their_types() {
        let mut object = JsonObject::parse(
            br#"{"label": "a", "n": 5, "gone": null}"#,
            &["label", "n", "gone", "absent"],
        )
        .unwrap();
        assert_eq!(object.required::<String>("label", "a string").unwrap(), "a");
        assert_eq!(object.optional::<u64>("n", "a number").unwrap(), Some(5));
        assert_eq!(
            object.nullable::<u64>("gone", "a number").unwrap(),
            Some(None)
        );
        assert_eq!(object.nullable::<u64>("absent", "a number").unwrap(), None);
        assert_eq!(object.optional::<u64>("absent", "a number").unwrap(), None);
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named() {
        let mut object = JsonObject::parse(br#"{"n": "5"}"#, &["n"]).unwrap();
        let error = object.optional::<u64>("n", "a whole number").unwrap_err();
        assert_eq!(error.code(), "invalid_field");

        let mut object = JsonObject::parse(br#"{"n": null}"#, &["n"]).unwrap();
        assert_eq!(
            object
                .optional::<u64>("n", "a whole number")
                .unwrap_err()
                .code(),
            "invalid_field"
        );

        let mut object = JsonObject::parse(br#"{}"#, &["n"]).unwrap();
        assert_eq!(
            object
                .required::<u64>("n", "a whole number")
                .unwrap_err()
                .code(),
            "missing_field"
        );
    }

    #[test]
    fn hostile_bodies_are_refused_with_their_reason() {
        for (body, code) in [
            (&b"{"[..], "malformed_json"),
            (b"", "malformed_json"),
            (b"{\"a\": 1} trailing", "malformed_json"),
            (b"{\"a\": 1, \"a\": 2}", "malformed_json"),
            (b"{\"n\": 1e400}", "malformed_json"),
            (b"[1]", "invalid_body"),
            (b"\"text\"", "invalid_body"),
            (b"{\"other\": 1}", "unknown_field"),
            (b"\xff\xfe", "malformed_json"),
        ] {
            let error = JsonObject::parse(body, &["a", "n"]).unwrap_err();
            assert_eq!(error.code(), code, "{}", String::from_utf8_lossy(body));
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn deeply_nested_json_is_refused_without_overflowing_the_stack() {
        let body = format!("{{\"a\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let error = JsonObject::parse(body.as_bytes(), &["a"]).unwrap_err();
        assert_eq!(error.code(), "malformed_json");
    }

    #[test]
    fn huge_numbers_are_refused_for_whole_number_fields() {
        let mut object = JsonObject::parse(br#"{"n": 100000000000000000000000}"#, &["n"]).unwrap();
        assert!(object.optional::<u64>("n", "a whole number").is_err());

        let mut object = JsonObject::parse(br#"{"n": -1}"#, &["n"]).unwrap();
        assert!(object.optional::<u64>("n", "a whole number").is_err());

        let mut object = JsonObject::parse(br#"{"n": 1.5}"#, &["n"]).unwrap();
        assert!(object.optional::<u64>("n", "a whole number").is_err());
    }
}
