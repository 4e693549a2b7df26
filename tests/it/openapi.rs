//! The contract test: `openapi/toolbox.json` equals what the code generates, and every path and
//! method in it is routed. `UPDATE_EXPECT=1` rewrites the checked-in file.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::harness::*;

fn checked_in() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi/toolbox.json")
}

#[test]
fn checked_in_openapi_is_current() {
    let output = Command::new(binary()).arg("openapi").output().unwrap();
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).unwrap();
    let spec: Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::create_dir_all(checked_in().parent().unwrap()).unwrap();
        std::fs::write(checked_in(), &generated).unwrap();
    }
    let current = std::fs::read_to_string(checked_in()).unwrap_or_default();
    assert!(
        current == generated,
        "openapi/toolbox.json is stale: run `UPDATE_EXPECT=1 cargo test --test it openapi` and commit it"
    );
    let daemon = Toolboxd::start();
    assert_eq!(json(daemon.get("/openapi.json"), 200), spec);
}

#[test]
fn every_error_status_is_documented_with_the_error_body_and_ids_are_unique() {
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(checked_in()).unwrap()).unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            // Generated clients name a function per operationId: each is unique.
            let id = operation["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_string()), "operationId {id} is used twice");
            if path == "/openapi.json" {
                continue;
            }
            let responses = operation["responses"].as_object().unwrap();
            // A WebSocket route says so: how to upgrade, its subprotocols and frames.
            if let Some(upgrade) = responses.get("101") {
                assert!(
                    upgrade["description"]
                        .as_str()
                        .unwrap()
                        .starts_with("Switching Protocols: a WebSocket"),
                    "{method} {path}"
                );
                let websocket = &operation["x-websocket"];
                for key in ["subprotocols", "client", "server"] {
                    assert!(
                        !websocket[key].is_null(),
                        "{method} {path}: x-websocket.{key}"
                    );
                }
            }
            let has_input = operation.get("parameters").is_some()
                || operation.get("requestBody").is_some()
                || responses.contains_key("101");
            let mut expected = vec!["500", "503"];
            if has_input {
                expected.push("400");
            }
            for status in expected {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} does not document {status}"
                );
            }
            for (status, response) in responses {
                // A 412 to a conditional GET has no body.
                if status.as_str() >= "400" && status != "412" {
                    // ErrorBody, or a body that extends it (UploadFailureBody).
                    assert!(
                        response["content"]["application/json"]["schema"]["$ref"]
                            .as_str()
                            .is_some_and(|name| name.ends_with("Body")),
                        "{method} {path} {status}: {response}"
                    );
                    assert_ne!(response["description"], "", "{method} {path} {status}");
                }
            }
        }
    }
}

#[test]
fn every_documented_route_is_served() {
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(checked_in()).unwrap()).unwrap();
    let daemon = Toolboxd::start();
    let mut checked = 0;
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = daemon
                .client
                .request(method.clone(), daemon.url(path))
                .send()
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().unwrap();
            assert_ne!(
                status, 405,
                "{method} {path} is documented but not routed: {body}"
            );
            assert!(
                !body.contains("no such route"),
                "{method} {path} is documented but not routed: {body}"
            );
            // What a bare request gets is a documented status, and an error is the wire body.
            assert!(
                operations[method.as_str().to_lowercase()]["responses"]
                    .get(status.to_string())
                    .is_some(),
                "{method} {path} answered {status}, which it does not document: {body}"
            );
            if status >= 400 && method != reqwest::Method::HEAD {
                let error: Value = serde_json::from_str(&body)
                    .unwrap_or_else(|_| panic!("{method} {path}: {status} is not JSON: {body}"));
                assert_eq!(error["statusCode"], status, "{method} {path}: {body}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 18, "only {checked} operations documented");
}
