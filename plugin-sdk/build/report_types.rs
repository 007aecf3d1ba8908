//! Renders the report's Rust types from schemas/policy-input.schema.json, the schema fstgate
//! writes from its own types, so that the SDK has no hand-kept copy of the report. build.rs runs
//! it into OUT_DIR; tests/report_types.rs checks its rules.
//!
//! The rules (what a plugin author reads in the types' documentation):
//! - every object definition becomes a struct of the same name; the root is `Report`;
//! - a string enumeration (`oneOf` of constants) becomes `String`, its values listed in the field's
//!   documentation, so a plugin keeps working when fstgate learns a new value;
//! - `integer` is `i64`, or `u64` for the unsigned formats; `number` is `f64`; an array of fixed
//!   length is a Rust array; an object with `additionalProperties` a `BTreeMap<String, _>`;
//! - a nullable type (`["T", "null"]`, or `anyOf` with `null`) is `Option<T>`;
//! - a property the schema does not require reads as its type's empty value when absent
//!   (`#[serde(default)]`; a struct-typed one is an `Option`); required properties are required,
//!   except the few in [`TOLERATED_MISSING`].
use serde_json::{Map, Value};
use std::fmt::Write;

/// The root definition's name in the SDK.
const ROOT: &str = "Report";

/// Required properties a plugin still reads when missing, as their empty value, so that a policy
/// can judge their absence instead of failing to read the report: (struct, field, why).
const TOLERATED_MISSING: &[(&str, &str, &str)] = &[(
    "DataSource",
    "sha256",
    "Empty when the report lacks it (reports of gates before data digests), so that a policy can say so.",
)];

/// The types' source: the root and every definition it reaches, in reading order.
pub fn render(schema: &Value) -> String {
    let defs = schema["$defs"].as_object().cloned().unwrap_or_default();
    let mut out = String::new();
    let mut queue = std::collections::VecDeque::from([(ROOT.to_string(), schema.clone())]);
    let mut seen = vec![ROOT.to_string()];
    while let Some((name, definition)) = queue.pop_front() {
        out.push('\n');
        render_struct(&name, &definition, &defs, &mut out);
        for reached in references(&definition) {
            let def = &defs[&reached];
            if def["type"] == "object" && !seen.contains(&reached) {
                seen.push(reached.clone());
                queue.push_back((reached, def.clone()));
            }
        }
    }
    out
}

/// The definitions a definition's properties name, in property order.
fn references(definition: &Value) -> Vec<String> {
    let mut names = Vec::new();
    for (_, property) in ordered_properties(definition) {
        collect_refs(property, &mut names);
    }
    names
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(name) = map.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
                out.push(name.to_string());
            }
            map.iter().filter(|(k, _)| *k != "default").for_each(|(_, v)| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Properties in the order a reader wants them: the required ones as declared, then the rest
/// (the schema lists properties alphabetically).
fn ordered_properties(definition: &Value) -> Vec<(&str, &Value)> {
    let Some(properties) = definition["properties"].as_object() else { return Vec::new() };
    let required = required(definition);
    let mut ordered: Vec<(&str, &Value)> =
        required.iter().filter_map(|name| properties.get(*name).map(|p| (*name, p))).collect();
    ordered.extend(properties.iter().filter(|(k, _)| !required.contains(&k.as_str())).map(|(k, v)| (k.as_str(), v)));
    ordered
}

fn required(definition: &Value) -> Vec<&str> {
    definition["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

fn render_struct(name: &str, definition: &Value, defs: &Map<String, Value>, out: &mut String) {
    doc("", definition["description"].as_str(), out);
    out.push_str("#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]\n");
    writeln!(out, "pub struct {name} {{").unwrap();
    let required = required(definition);
    for (field, property) in ordered_properties(definition) {
        let tolerated = TOLERATED_MISSING.iter().find(|(s, f, _)| *s == name && *f == field);
        let mut rust = rust_type(property, defs);
        let mut description = property["description"].as_str().map(str::to_string);
        if let Some(values) = enumeration(property, defs) {
            let line = format!("One of: {}.", values.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", "));
            description = Some(description.map_or(line.clone(), |d| format!("{d}\n{line}")));
        }
        if let Some((_, _, why)) = tolerated {
            description = Some(description.map_or(why.to_string(), |d| format!("{d}\n{why}")));
        }
        let optional = !required.contains(&field);
        if optional && is_struct(&rust, defs) {
            rust = format!("Option<{rust}>");
        }
        doc("    ", description.as_deref(), out);
        if optional || tolerated.is_some() {
            out.push_str("    #[serde(default)]\n");
        }
        writeln!(out, "    pub {field}: {rust},").unwrap();
    }
    out.push_str("}\n");
}

fn doc(indent: &str, text: Option<&str>, out: &mut String) {
    for line in text.into_iter().flat_map(str::lines) {
        let line = line.trim_end();
        if line.is_empty() {
            writeln!(out, "{indent}///").unwrap();
        } else {
            writeln!(out, "{indent}/// {line}").unwrap();
        }
    }
}

/// Whether a rendered type names one of the generated structs.
fn is_struct(rust: &str, defs: &Map<String, Value>) -> bool {
    rust == ROOT || defs.get(rust).is_some_and(|d| d["type"] == "object")
}

/// The values of a string enumeration the property is (or holds, when nullable).
fn enumeration(property: &Value, defs: &Map<String, Value>) -> Option<Vec<String>> {
    let target = match property["$ref"].as_str().and_then(|r| r.strip_prefix("#/$defs/")) {
        Some(name) => &defs[name],
        None => match property["anyOf"].as_array() {
            Some(branches) => return branches.iter().find_map(|b| enumeration(b, defs)),
            None => property,
        },
    };
    let constants = target["oneOf"].as_array()?.iter().map(|v| v["const"].as_str().map(str::to_string));
    constants.collect()
}

/// The Rust type of a property's schema.
fn rust_type(schema: &Value, defs: &Map<String, Value>) -> String {
    if let Some(name) = schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/$defs/")) {
        let def = &defs[name];
        return if def["type"] == "object" { name.to_string() } else { rust_type(def, defs) };
    }
    if let Some(branches) = schema["anyOf"].as_array() {
        let present: Vec<&Value> = branches.iter().filter(|b| b["type"] != "null").collect();
        assert_eq!(present.len(), 1, "an anyOf other than `T or null`: {schema}");
        let inner = rust_type(present[0], defs);
        return if present.len() < branches.len() { format!("Option<{inner}>") } else { inner };
    }
    if schema["oneOf"].as_array().is_some_and(|b| b.iter().all(|v| v["type"] == "string")) {
        return "String".into();
    }
    match &schema["type"] {
        Value::Array(types) => {
            let present: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
            assert_eq!(present.len(), 1, "a type list other than `T or null`: {schema}");
            let mut single = schema.clone();
            single["type"] = present[0].clone();
            format!("Option<{}>", rust_type(&single, defs))
        }
        Value::String(kind) => match kind.as_str() {
            "string" => "String".into(),
            "boolean" => "bool".into(),
            "number" => "f64".into(),
            "integer" if schema["format"].as_str().is_some_and(|f| f.starts_with("uint")) => "u64".into(),
            "integer" => "i64".into(),
            "array" => {
                let item = rust_type(&schema["items"], defs);
                match (schema["minItems"].as_u64(), schema["maxItems"].as_u64()) {
                    (Some(min), Some(max)) if min == max => format!("[{item}; {min}]"),
                    _ => format!("Vec<{item}>"),
                }
            }
            "object" if schema.get("additionalProperties").is_some() => {
                format!("std::collections::BTreeMap<String, {}>", rust_type(&schema["additionalProperties"], defs))
            }
            other => panic!("no Rust type for a `{other}` property: {schema}"),
        },
        _ => panic!("no Rust type for {schema}"),
    }
}
