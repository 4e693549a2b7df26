//! Wrong-type JSON bodies are 400 `INVALID_REQUEST_BODY` on every JSON-body route: the routes
//! are read from `openapi/toolbox.json`, so a new route is covered without editing this table.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::harness::*;

/// Every operation with an `application/json` body, with the body's schema (refs resolved).
fn json_routes(spec: &Value) -> Vec<(String, String, Value)> {
    let mut routes = Vec::new();
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
            // MCP is JSON-RPC served by rmcp, which answers in JSON-RPC errors of its own.
            if schema.is_null() || path == "/mcp" {
                continue;
            }
            let path = path
                .replace("{session_id}", "no-such-session")
                .replace("{command_id}", "no-such-command");
            routes.push((method.to_uppercase(), path, resolve(spec, schema)));
        }
    }
    routes
}

fn resolve(spec: &Value, schema: &Value) -> Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap();
            resolve(spec, &spec["components"]["schemas"][name])
        }
        None => schema.clone(),
    }
}

/// The JSON types a property allows (`object` for a reference to another schema).
fn allowed_types(spec: &Value, schema: &Value) -> Vec<String> {
    if schema.get("$ref").is_some() {
        return allowed_types(spec, &resolve(spec, schema));
    }
    let mut types = Vec::new();
    match &schema["type"] {
        Value::String(name) => types.push(name.clone()),
        Value::Array(names) => types.extend(names.iter().map(|n| n.as_str().unwrap().to_string())),
        _ => {}
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        for branch in schema[key].as_array().into_iter().flatten() {
            types.extend(allowed_types(spec, branch));
        }
    }
    if types.is_empty() && schema.get("properties").is_some() {
        types.push("object".into());
    }
    types
}

/// A value of none of the allowed types (`None` when the property takes any JSON).
fn wrong_value(types: &[String]) -> Option<Value> {
    let candidates = [
        ("array", json!([1])),
        ("object", json!({"unexpected": [1]})),
        ("string", json!("text")),
        ("number", json!(1.5)),
        ("boolean", json!(true)),
    ];
    if types.is_empty() {
        return None;
    }
    candidates
        .into_iter()
        .find(|(name, _)| !types.iter().any(|t| t == name))
        .map(|(_, value)| value)
}

#[test]
fn wrong_type_bodies_are_400s_on_every_json_route() {
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi/toolbox.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let daemon = Toolboxd::start();
    let routes = json_routes(&spec);
    assert!(routes.len() >= 30, "only {} JSON routes", routes.len());
    let mut checked = 0;
    for (method, path, schema) in &routes {
        let send = |body: &Value| {
            daemon
                .client
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                    daemon.url(path),
                )
                .json(body)
                .send()
                .unwrap()
        };
        // The body itself of the wrong type: arrays (which serde takes for a struct's fields in
        // order), strings, numbers, booleans, null.
        for body in [
            json!([]),
            json!([null]),
            json!("text"),
            json!(7),
            json!(true),
            Value::Null,
        ] {
            let response = send(&body);
            let status = response.status().as_u16();
            let text = response.text().unwrap();
            assert_eq!(status, 400, "{method} {path} with body {body}: {text}");
            assert!(
                text.contains("INVALID_REQUEST_BODY"),
                "{method} {path} with body {body}: {text}"
            );
            checked += 1;
        }
        // Each documented field, alone, with a value of a type it does not allow.
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            let Some(value) = wrong_value(&allowed_types(&spec, property)) else {
                continue;
            };
            let body = json!({ name: value });
            let response = send(&body);
            let status = response.status().as_u16();
            let text = response.text().unwrap();
            assert_eq!(status, 400, "{method} {path} with body {body}: {text}");
            assert!(
                text.contains(&format!("field `{name}")),
                "{method} {path} with body {body}: {text}"
            );
            checked += 1;
        }
    }
    assert!(checked > 200, "only {checked} bodies sent");
}
