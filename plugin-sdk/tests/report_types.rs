//! The rules by which build/report_types.rs renders the SDK's report types from
//! schemas/policy-input.schema.json must be able to fail: a property added to the schema shows in
//! the rendering, a nullable struct becomes an `Option`, and an enumeration stays a string.
#[path = "../build/report_types.rs"]
mod report_types;

use report_types::render;
use serde_json::Value;

#[test]
fn rendering_follows_the_schema() {
    let schema: Value = serde_json::from_str(
        r##"{"description": "Root.", "type": "object", "required": ["a", "b", "kind"],
            "properties": {
              "a": {"type": "integer", "format": "uint64", "description": "Count."},
              "b": {"type": ["array", "null"], "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
              "kind": {"$ref": "#/$defs/Kind"},
              "inner": {"anyOf": [{"$ref": "#/$defs/Inner"}, {"type": "null"}]},
              "extra": {"type": "string"}},
            "$defs": {
              "Kind": {"oneOf": [{"const": "x", "type": "string"}, {"const": "y", "type": "string"}]},
              "Inner": {"type": "object", "required": ["ops"],
                        "properties": {"ops": {"type": "object", "additionalProperties": {"type": "integer"}}}}}}"##,
    )
    .unwrap();
    let rendered = render(&schema);
    for expected in [
        "/// Root.\n#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]\npub struct Report {",
        "    /// Count.\n    pub a: u64,\n",
        "    pub b: Option<[f64; 2]>,\n",
        "    /// One of: `x`, `y`.\n    pub kind: String,\n",
        "    #[serde(default)]\n    pub extra: String,\n",
        "    #[serde(default)]\n    pub inner: Option<Inner>,\n",
        "pub struct Inner {\n    pub ops: std::collections::BTreeMap<String, i64>,\n}",
    ] {
        assert!(rendered.contains(expected), "{expected:?} not in:\n{rendered}");
    }
    assert!(!rendered.contains("struct Kind"), "an enumeration is not a struct:\n{rendered}");
}
