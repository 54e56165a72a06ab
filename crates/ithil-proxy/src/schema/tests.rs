//! Tests of argument validation.

use super::*;
use serde_json::json;

fn schema(value: Value) -> CompiledSchema {
    CompiledSchema::compile(&value).expect("schema compiles")
}

fn args(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("arguments must be an object"),
    }
}

fn check(s: &CompiledSchema, value: Value) -> Result<(), ArgumentError> {
    s.validate_arguments(&args(value))
}

fn message(s: &CompiledSchema, value: Value) -> String {
    check(s, value)
        .expect_err("arguments are refused")
        .to_string()
}

#[test]
fn integer_accepts_whole_floats_and_refuses_fractions_and_strings() {
    let s = schema(json!({"type": "object", "properties": {"id": {"type": "integer"}}}));
    check(&s, json!({"id": 5})).unwrap();
    check(&s, json!({"id": 5.0})).unwrap();
    check(&s, json!({"id": -3})).unwrap();
    assert_eq!(
        message(&s, json!({"id": 5.5})),
        "argument id must be integer, not a number"
    );
    assert_eq!(
        message(&s, json!({"id": "5"})),
        "argument id must be integer, not a string"
    );
}

#[test]
fn each_type_name_matches_only_its_values() {
    let cases = [
        ("string", json!("x"), json!(1)),
        ("number", json!(1.5), json!("1.5")),
        ("boolean", json!(true), json!(0)),
        ("object", json!({}), json!([])),
        ("array", json!([]), json!({})),
        ("null", json!(null), json!(false)),
    ];
    for (name, good, bad) in cases {
        let s = schema(json!({"properties": {"v": {"type": name}}, "required": ["v"]}));
        check(&s, json!({ "v": good })).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(check(&s, json!({ "v": bad })).is_err(), "{name}");
    }
}

#[test]
fn type_arrays_and_nullable_accept_any_listed_type() {
    let s = schema(json!({"properties": {
        "a": {"type": ["string", "null"]},
        "b": {"type": "integer", "nullable": true},
    }}));
    check(&s, json!({"a": "x", "b": null})).unwrap();
    check(&s, json!({"a": null, "b": 2})).unwrap();
    assert_eq!(
        message(&s, json!({"a": 1})),
        "argument a must be string or null, not an integer"
    );
}

#[test]
fn missing_required_argument_is_named() {
    let s = schema(json!({"properties": {"id": {"type": "integer"}}, "required": ["id"]}));
    assert_eq!(message(&s, json!({})), "missing required argument id");
}

#[test]
fn null_for_optional_argument_counts_as_omitted_but_not_for_required_one() {
    let s = schema(json!({
        "properties": {"id": {"type": "integer"}, "limit": {"type": "integer"}},
        "required": ["id"],
    }));
    check(&s, json!({"id": 1, "limit": null})).unwrap();
    assert_eq!(
        message(&s, json!({"id": null})),
        "missing required argument id"
    );
    assert!(s.is_omitted("limit", Some(&Value::Null)));
    assert!(!s.is_omitted("id", Some(&Value::Null)));
    assert!(s.is_omitted("limit", None));
}

#[test]
fn null_inside_an_object_is_checked_strictly() {
    let s = schema(json!({"properties": {
        "address": {"type": "object", "properties": {"city": {"type": "string"}}},
    }}));
    assert_eq!(
        message(&s, json!({"address": {"city": null}})),
        "argument address.city must be string, not null"
    );
}

#[test]
fn additional_properties_false_refuses_unknown_arguments() {
    let s = schema(json!({"properties": {"a": {}}, "additionalProperties": false}));
    check(&s, json!({"a": 1})).unwrap();
    assert_eq!(message(&s, json!({"b": 1})), "unknown argument b");

    let open = schema(json!({"properties": {"a": {}}}));
    check(&open, json!({"b": 1})).unwrap();
}

#[test]
fn enum_and_const_compare_numbers_by_value() {
    let s = schema(json!({"properties": {
        "e": {"enum": ["a", 2]},
        "c": {"const": 3},
    }}));
    check(&s, json!({"e": 2.0, "c": 3.0})).unwrap();
    assert_eq!(
        message(&s, json!({"e": "b"})),
        "argument e must be one of \"a\", 2"
    );
    assert_eq!(message(&s, json!({"c": 4})), "argument c must be 3");
}

#[test]
fn numeric_bounds_in_both_spellings() {
    let s = schema(json!({"properties": {
        "a": {"minimum": 1, "maximum": 100},
        "b": {"exclusiveMinimum": 0, "exclusiveMaximum": 10},
        "c": {"minimum": 0, "exclusiveMinimum": true, "maximum": 1, "exclusiveMaximum": true},
        "d": {"minimum": 5, "exclusiveMinimum": 0, "maximum": 10, "exclusiveMaximum": 20},
    }}));
    check(&s, json!({"d": 5})).unwrap();
    assert_eq!(
        message(&s, json!({"d": 1})),
        "argument d must be at least 5"
    );
    assert_eq!(
        message(&s, json!({"d": 11})),
        "argument d must be at most 10"
    );
    check(&s, json!({"a": 1, "b": 0.5, "c": 0.5})).unwrap();
    check(&s, json!({"a": 100})).unwrap();
    assert_eq!(
        message(&s, json!({"a": 0})),
        "argument a must be at least 1"
    );
    assert_eq!(
        message(&s, json!({"a": 100.5})),
        "argument a must be at most 100"
    );
    assert_eq!(
        message(&s, json!({"b": 0})),
        "argument b must be greater than 0"
    );
    assert_eq!(
        message(&s, json!({"b": 10})),
        "argument b must be less than 10"
    );
    assert_eq!(
        message(&s, json!({"c": 1})),
        "argument c must be less than 1"
    );
    assert_eq!(
        message(&s, json!({"c": 0})),
        "argument c must be greater than 0"
    );
}

#[test]
fn large_integers_are_compared_exactly() {
    let s = schema(json!({"properties": {"a": {"maximum": 9007199254740993_u64}}}));
    check(&s, json!({"a": 9007199254740993_u64})).unwrap();
    assert!(check(&s, json!({"a": 9007199254740994_u64})).is_err());
}

#[test]
fn string_lengths_count_characters_not_bytes() {
    let s = schema(json!({"properties": {"t": {"minLength": 2, "maxLength": 3}}}));
    check(&s, json!({"t": "äöü"})).unwrap();
    assert_eq!(
        message(&s, json!({"t": "a"})),
        "argument t must be at least 2 characters long"
    );
    assert_eq!(
        message(&s, json!({"t": "abcd"})),
        "argument t must be at most 3 characters long"
    );
}

#[test]
fn pattern_is_unanchored_and_compiled_at_load() {
    let s =
        schema(json!({"properties": {"code": {"pattern": "^[A-Z]{3}$"}, "any": {"pattern": "b"}}}));
    check(&s, json!({"code": "ABC", "any": "abc"})).unwrap();
    assert_eq!(
        message(&s, json!({"code": "abc"})),
        "argument code must match the pattern ^[A-Z]{3}$"
    );

    let broken = CompiledSchema::compile(&json!({"properties": {"x": {"pattern": "("}}}));
    let error = broken.expect_err("an invalid pattern is refused at compile time");
    assert_eq!(
        error.to_string(),
        "at /properties/x/pattern: invalid pattern"
    );
}

#[test]
fn array_items_and_counts_are_checked_with_the_index_in_the_message() {
    let s = schema(json!({"properties": {"tags": {
        "type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3,
    }}}));
    check(&s, json!({"tags": ["a", "b"]})).unwrap();
    assert_eq!(
        message(&s, json!({"tags": ["a", 2]})),
        "argument tags[1] must be string, not an integer"
    );
    assert_eq!(
        message(&s, json!({"tags": []})),
        "argument tags must have at least 1 items"
    );
    assert_eq!(
        message(&s, json!({"tags": ["a", "b", "c", "d"]})),
        "argument tags must have at most 3 items"
    );
}

#[test]
fn boolean_schemas_allow_everything_or_nothing() {
    let s = schema(json!({"properties": {"free": true, "never": false}}));
    check(&s, json!({"free": [1, {"x": null}]})).unwrap();
    assert_eq!(
        message(&s, json!({"never": 1})),
        "argument never is not allowed"
    );
}

#[test]
fn unknown_keywords_are_ignored() {
    let s = schema(json!({"properties": {"d": {"type": "string", "format": "date", "oneOf": []}}}));
    check(&s, json!({"d": "not a date"})).unwrap();
}

#[test]
fn messages_never_repeat_values_and_shorten_names() {
    let s = schema(json!({"properties": {"t": {"maxLength": 3}}, "additionalProperties": false}));
    let secret_value = "s3cr3t-".repeat(100);
    let text = message(&s, json!({ "t": secret_value }));
    assert!(!text.contains("s3cr3t"), "{text}");

    let long_name = format!("x\r\n{}", "y".repeat(500));
    let text = message(&s, json!({ long_name: 1 }));
    assert!(text.len() < 100, "{text}");
    assert!(!text.contains('\n'), "{text}");
}

#[test]
fn root_must_be_an_object_schema() {
    assert!(CompiledSchema::compile(&json!({"type": "string"})).is_err());
    assert!(CompiledSchema::compile(&json!({})).is_ok());
    assert!(CompiledSchema::compile(&json!({"type": "object"})).is_ok());
    let error = CompiledSchema::compile(&json!({"properties": {"a": {"type": "text"}}}))
        .expect_err("unknown type names are refused");
    assert_eq!(
        error.to_string(),
        "at /properties/a/type: unknown type \"text\""
    );
}

#[test]
fn too_deep_schema_is_refused_without_overflowing_the_stack() {
    let mut value = json!({"type": "string"});
    for _ in 0..200 {
        value = json!({"type": "array", "items": value});
    }
    let root = json!({"properties": {"deep": value}});
    let error = CompiledSchema::compile(&root).expect_err("deep schemas are refused");
    assert!(error.to_string().contains("nests too deeply"), "{error}");
}

#[test]
fn normalization_turns_whole_floats_into_integers_where_the_schema_asks() {
    let s = schema(json!({"properties": {
        "n": {"type": "integer"},
        "f": {"type": "number"},
        "o": {"type": "object", "properties": {"ids": {"type": "array", "items": {"type": "integer"}}}},
    }}));
    let mut n = json!(5.0);
    s.normalize_argument("n", &mut n);
    assert_eq!(n.to_string(), "5");
    let mut f = json!(5.0);
    s.normalize_argument("f", &mut f);
    assert_eq!(f.to_string(), "5.0");
    let mut o = json!({"ids": [1.0, 2.0]});
    s.normalize_argument("o", &mut o);
    assert_eq!(o.to_string(), r#"{"ids":[1,2]}"#);
}
