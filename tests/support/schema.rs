//! A JSON Schema check of the keywords the Helm chart's `values.schema.json` uses: `type`
//! (one or a list), `properties`, `required`, `additionalProperties` (false or a schema),
//! `items`, `minItems`, `uniqueItems`, `enum`, `minLength`, `minimum`, `maximum`. A keyword
//! it does not know fails the check, so the schema cannot grow past what is checked.
//!
//! Not the `jsonschema` crate: it turns on serde_json's `float_roundtrip` for every test
//! binary (Cargo unifies a package's dev-dependency features), and that changes how the
//! Prophet fixture tests read their floats.

use serde_json::Value;

/// Keywords that only annotate.
const ANNOTATIONS: [&str; 3] = ["$schema", "title", "description"];

/// Every way `value` breaks `schema`, as `path: why`.
pub fn errors(schema: &Value, value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    check(schema, value, "", &mut found);
    found
}

fn check(schema: &Value, value: &Value, path: &str, found: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        found.push(format!("{path}: the schema here is not an object"));
        return;
    };
    for (keyword, rule) in schema {
        match keyword.as_str() {
            "type" => {
                let allowed: Vec<&str> = match rule {
                    Value::String(one) => vec![one.as_str()],
                    Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                    _ => vec![],
                };
                if !allowed.iter().any(|kind| has_type(value, kind)) {
                    found.push(format!("{path}: {value} is not of type {allowed:?}"));
                }
            }
            "properties" => {
                if let (Some(properties), Some(object)) = (rule.as_object(), value.as_object()) {
                    for (name, property) in properties {
                        if let Some(inner) = object.get(name) {
                            check(property, inner, &format!("{path}/{name}"), found);
                        }
                    }
                }
            }
            "required" => {
                if let Some(object) = value.as_object() {
                    for name in rule
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                    {
                        if !object.contains_key(name) {
                            found.push(format!("{path}: `{name}` is required"));
                        }
                    }
                }
            }
            "additionalProperties" => {
                let Some(object) = value.as_object() else {
                    continue;
                };
                let declared = schema.get("properties").and_then(Value::as_object);
                for (name, inner) in object {
                    if declared.is_some_and(|declared| declared.contains_key(name)) {
                        continue;
                    }
                    match rule {
                        Value::Bool(false) => {
                            found.push(format!("{path}: `{name}` is not a declared property"))
                        }
                        Value::Bool(true) => {}
                        other => check(other, inner, &format!("{path}/{name}"), found),
                    }
                }
            }
            "items" => {
                for (index, item) in value.as_array().into_iter().flatten().enumerate() {
                    check(rule, item, &format!("{path}/{index}"), found);
                }
            }
            "minItems" => {
                if let (Some(least), Some(items)) = (rule.as_u64(), value.as_array())
                    && (items.len() as u64) < least
                {
                    found.push(format!("{path}: fewer than {least} items"));
                }
            }
            "uniqueItems" => {
                if rule.as_bool() == Some(true)
                    && let Some(items) = value.as_array()
                {
                    for (index, item) in items.iter().enumerate() {
                        if items[..index].contains(item) {
                            found.push(format!("{path}: {item} appears twice"));
                        }
                    }
                }
            }
            "enum" => {
                if !rule
                    .as_array()
                    .is_some_and(|options| options.contains(value))
                {
                    found.push(format!("{path}: {value} is not one of {rule}"));
                }
            }
            "minLength" => {
                if let (Some(least), Some(text)) = (rule.as_u64(), value.as_str())
                    && (text.chars().count() as u64) < least
                {
                    found.push(format!("{path}: shorter than {least} characters"));
                }
            }
            "minimum" => {
                if let (Some(least), Some(number)) = (rule.as_f64(), value.as_f64())
                    && number < least
                {
                    found.push(format!("{path}: {number} is below {least}"));
                }
            }
            "maximum" => {
                if let (Some(most), Some(number)) = (rule.as_f64(), value.as_f64())
                    && number > most
                {
                    found.push(format!("{path}: {number} is above {most}"));
                }
            }
            annotation if ANNOTATIONS.contains(&annotation) => {}
            unknown => found.push(format!(
                "{path}: the schema uses `{unknown}`, which this check does not know"
            )),
        }
    }
}

fn has_type(value: &Value, kind: &str) -> bool {
    match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.as_i64().is_some() || value.as_u64().is_some(),
        "number" => value.is_number(),
        "null" => value.is_null(),
        _ => false,
    }
}
