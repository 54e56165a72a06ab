//! Properties of request building over arbitrary argument values: no value changes the shape of
//! the downstream request.

use ithil_proxy::catalog::{Catalog, LoadOptions, load_manifest};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::support::object;

fn catalog() -> Catalog {
    let manifest = json!({
        "downstreams": {"api": {"baseUrl": "http://127.0.0.1:5200/base"}},
        "tools": [{
            "name": "probe", "downstream": "api", "method": "GET", "route": "/items/{id}/detail",
            "inputSchema": {
                "properties": {"id": {"type": "string"}, "q": {"type": "string"}, "h": {"type": "string"}},
                "required": ["id"]
            },
            "params": [{"name": "h", "in": "header", "wireName": "X-Probe"}]
        }]
    });
    let part = load_manifest(
        "probe.json",
        manifest.to_string().as_bytes(),
        &LoadOptions::default(),
    )
    .unwrap();
    Catalog::merge([part]).unwrap()
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

fn build(catalog: &Catalog, args: Value) -> Result<http::Request<bytes::Bytes>, String> {
    let tool = catalog.tool("probe").unwrap();
    let args = object(args);
    tool.validate_arguments(&args).map_err(|e| e.to_string())?;
    tool.build_request(catalog.downstream_of(tool).unwrap(), &args, "trace")
        .map_err(|e| e.to_string())
}

/// Strings biased towards the characters that matter for URLs and headers.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[./%?#&=+;:@\\\\ \r\n\t\u{0}a-z0-9ü😀-]{1,24}",
    ]
}

proptest! {
    #[test]
    fn any_path_value_fills_exactly_one_segment_and_round_trips(id in hostile()) {
        prop_assume!(!id.is_empty());
        let catalog = catalog();
        let request = build(&catalog, json!({"id": id})).unwrap();
        let uri = request.uri();
        prop_assert_eq!(uri.host(), Some("127.0.0.1"));
        prop_assert_eq!(uri.port_u16(), Some(5200));
        prop_assert_eq!(uri.query(), None);
        let segments: Vec<&str> = uri.path().split('/').collect();
        prop_assert_eq!(segments.len(), 5);
        prop_assert_eq!(&segments[..3], &["", "base", "items"]);
        prop_assert_eq!(segments[4], "detail");
        prop_assert!(!segments[3].contains('.'));
        prop_assert_eq!(percent_decode(segments[3]), id.as_bytes());
    }

    #[test]
    fn any_query_value_is_exactly_one_pair_and_round_trips(q in hostile()) {
        let catalog = catalog();
        let request = build(&catalog, json!({"id": "1", "q": q})).unwrap();
        let query = request.uri().query().unwrap();
        let pairs: Vec<&str> = query.split('&').collect();
        prop_assert_eq!(pairs.len(), 1);
        let value = pairs[0].strip_prefix("q=").unwrap();
        prop_assert_eq!(percent_decode(value), q.as_bytes());
        prop_assert_eq!(request.uri().path(), "/base/items/1/detail");
    }

    #[test]
    fn any_header_value_is_sent_verbatim_or_refused(h in hostile()) {
        let catalog = catalog();
        match build(&catalog, json!({"id": "1", "h": h})) {
            Ok(request) => {
                prop_assert!(!h.contains(['\r', '\n', '\0']));
                prop_assert_eq!(request.headers()["x-probe"].as_bytes(), h.as_bytes());
                prop_assert_eq!(request.headers().len(), 3);
            }
            Err(message) => {
                prop_assert!(h.chars().any(|c| c.is_ascii_control() && c != '\t'));
                prop_assert!(message.starts_with("argument h "), "{}", message);
            }
        }
    }
}
