//! The log shapes older clients get (daytona-wire §4.2, §4.4), chosen by `X-Daytona-SDK-Version`
//! (or its WebSocket subprotocol form) and `X-Daytona-Split-Output`.

use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};

use crate::harness::*;
use crate::session_logs::follow_ws_with;

// Two pipes carry the streams, so pauses keep the arrival order certain.
const SCRIPT: &str = "printf 'out\\n'; sleep 0.3; printf 'err\\n' >&2; sleep 0.3; printf 'tail'";
const COMBINED: &str = "out\nerr\ntail";
const RAW: &str = "\u{1}\u{1}\u{1}out\n\u{2}\u{2}\u{2}err\n\u{1}\u{1}\u{1}tail";

/// A client that sends only the headers given per request (no SDK version).
fn bare() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

fn exec_as(daemon: &Toolboxd, headers: &[(&str, &str)]) -> Value {
    let mut request = bare()
        .post(daemon.url("/process/session/s/exec"))
        .json(&json!({"command": SCRIPT}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    json(request.send().unwrap(), 200)
}

fn logs_as(daemon: &Toolboxd, cmd: &str, headers: &[(&str, &str)]) -> Response {
    let mut request = bare().get(daemon.url(&format!("/process/session/s/command/{cmd}/logs")));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response
}

fn text_body(response: Response) -> String {
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(kind.starts_with("text/plain"), "{kind}");
    response.text().unwrap()
}

fn started() -> (Toolboxd, String) {
    let daemon = Toolboxd::start();
    let created = daemon.post_json("/process/session", &json!({"sessionId": "s"}));
    assert_eq!(created.status().as_u16(), 201);
    let current = exec_as(&daemon, &[("X-Daytona-SDK-Version", SDK_VERSION)]);
    assert_eq!(current["output"], COMBINED, "{current}");
    assert_eq!(current["stdout"], "out\ntail");
    assert_eq!(current["stderr"], "err\n");
    let cmd = current["cmdId"].as_str().unwrap().to_string();
    (daemon, cmd)
}

#[test]
fn sync_exec_answers_each_sdk_generation_in_its_shape() {
    let (daemon, _) = started();
    for (headers, output) in [
        (vec![], COMBINED),
        (vec![("X-Daytona-SDK-Version", "0.20.0")], COMBINED),
        (vec![("X-Daytona-SDK-Version", "0.100.0")], RAW),
        (vec![("X-Daytona-Split-Output", "true")], RAW),
        (vec![("X-Daytona-SDK-Version", "0.0.0-dev")], COMBINED),
    ] {
        let answer = exec_as(&daemon, &headers);
        assert_eq!(answer["output"], output, "{headers:?}: {answer}");
        assert_eq!(answer["exitCode"], 0);
        if headers.iter().any(|(_, v)| v.contains("dev")) {
            assert_eq!(answer["stdout"], "out\ntail");
        } else {
            assert!(
                answer["stdout"].is_null() && answer["stderr"].is_null(),
                "{answer}"
            );
        }
    }
}

#[test]
fn plain_logs_are_text_for_old_and_versionless_clients_and_json_on_request() {
    let (daemon, cmd) = started();
    assert_eq!(text_body(logs_as(&daemon, &cmd, &[])), COMBINED);
    let old = [("X-Daytona-SDK-Version", "0.26.0")];
    assert_eq!(text_body(logs_as(&daemon, &cmd, &old)), COMBINED);
    let mid = [("X-Daytona-SDK-Version", "0.166.0")];
    assert_eq!(text_body(logs_as(&daemon, &cmd, &mid)), RAW);
    let split = [("X-Daytona-Split-Output", "true")];
    assert_eq!(text_body(logs_as(&daemon, &cmd, &split)), RAW);
    let asked = [("Accept", "text/html, application/json;q=0.9")];
    let asked = logs_as(&daemon, &cmd, &asked).json::<Value>().unwrap();
    assert_eq!(asked["stderr"], "err\n");
    assert_eq!(asked["output"], COMBINED);
    let current = [("X-Daytona-SDK-Version", SDK_VERSION)];
    let current = logs_as(&daemon, &cmd, &current).json::<Value>().unwrap();
    assert_eq!(current, asked);
}

#[test]
fn websocket_strips_markers_only_for_combined_clients() {
    let (daemon, cmd) = started();
    let path = format!("/process/session/s/command/{cmd}/logs?follow=true");
    let versionless = follow_ws_with(&daemon, &path, &[]);
    assert_eq!(versionless.close_code, Some(1000));
    assert_eq!(String::from_utf8(versionless.bytes).unwrap(), COMBINED);
    // A browser announces its version in a subprotocol, which is echoed.
    let offered = "X-Daytona-SDK-Version~0.20.0";
    let browser = follow_ws_with(&daemon, &path, &[("Sec-WebSocket-Protocol", offered)]);
    assert_eq!(browser.protocol.as_deref(), Some(offered));
    assert_eq!(String::from_utf8(browser.bytes).unwrap(), COMBINED);
    let offered = "X-Daytona-SDK-Version~0.226.1";
    let current = follow_ws_with(&daemon, &path, &[("Sec-WebSocket-Protocol", offered)]);
    assert_eq!(String::from_utf8(current.bytes).unwrap(), RAW);
    let split = follow_ws_with(&daemon, &path, &[("X-Daytona-Split-Output", "true")]);
    assert_eq!(String::from_utf8(split.bytes).unwrap(), RAW);
}

#[test]
fn json_output_is_the_text_without_markers_even_when_cut() {
    // Many stream switches (96 bytes of output at least), and a reply cap among them.
    let daemon = Toolboxd::start_with(StartOptions {
        env: vec![("TOOLBOXD_MAX_OUTPUT".into(), "50".into())],
        ..StartOptions::default()
    });
    let created = daemon.post_json("/process/session", &json!({"sessionId": "s"}));
    assert_eq!(created.status().as_u16(), 201);
    let script = "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do \
                  printf oooo; sleep 0.02; printf eeee >&2; sleep 0.02; done";
    let current = [("X-Daytona-SDK-Version", SDK_VERSION)];
    let answer = json(
        bare()
            .post(daemon.url("/process/session/s/exec"))
            .header(current[0].0, current[0].1)
            .json(&json!({"command": script}))
            .send()
            .unwrap(),
        200,
    );
    let cmd = answer["cmdId"].as_str().unwrap().to_string();
    let logs = logs_as(&daemon, &cmd, &current).json::<Value>().unwrap();
    for body in [&answer, &logs] {
        let output = body["output"].as_str().unwrap();
        assert!(!output.contains(['\u{1}', '\u{2}']), "{body}");
        let (head, _) = output
            .split_once("\n[toolboxd: log cut at 50 of ")
            .expect("cut with a notice");
        assert!(head.starts_with('o') && head.len() < 50, "{body}");
        assert!(head.chars().all(|c| c == 'o' || c == 'e'), "{body}");
        assert!(body["stdout"].as_str().unwrap().starts_with("oooooooo"));
        assert!(body["stderr"].as_str().unwrap().starts_with("eeeeeeee"));
    }
}
