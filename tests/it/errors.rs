//! The error contract: unknown routes, wrong methods, no trailing-slash redirects, bad bodies.

use crate::harness::*;

#[test]
fn unknown_routes_are_json_404s_and_wrong_methods_json_405s() {
    let daemon = Toolboxd::start();
    let body = assert_error(daemon.get("/nope"), 404, "NOT_FOUND");
    assert_eq!(body["path"], "/nope");
    let body = assert_error(
        daemon.client.put(daemon.url("/files")).send().unwrap(),
        405,
        "METHOD_NOT_ALLOWED",
    );
    assert_eq!(body["method"], "PUT");
    assert_error(daemon.get("/files/bulk-upload"), 405, "METHOD_NOT_ALLOWED");
}

#[test]
fn trailing_slashes_never_redirect() {
    let daemon = Toolboxd::start();
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .get(daemon.url("/files/info/?path=."))
        .send()
        .unwrap();
    assert!(!response.status().is_redirection());
    assert_error(response, 404, "NOT_FOUND");
    assert_eq!(
        client.get(daemon.url("/files/")).send().unwrap().status(),
        200
    );
}

#[test]
fn malformed_json_bodies_are_400s_that_say_why() {
    let daemon = Toolboxd::start();
    let send = |body: &'static str| {
        daemon
            .client
            .post(daemon.url("/files/replace"))
            .body(body)
            .send()
            .unwrap()
    };
    let empty = assert_error(send(""), 400, "INVALID_REQUEST_BODY");
    assert!(empty["message"].as_str().unwrap().contains("empty"));
    let broken = assert_error(send("{\"files\":"), 400, "INVALID_REQUEST_BODY");
    assert!(broken["message"].as_str().unwrap().contains("JSON"));
    let wrong_type = assert_error(
        send("{\"files\":\"a\",\"pattern\":\"x\",\"newValue\":\"y\"}"),
        400,
        "INVALID_REQUEST_BODY",
    );
    assert!(wrong_type["message"].as_str().unwrap().contains("files"));
    assert_error(
        send("{\"files\":[\"a\"],\"pattern\":\"x\"}"),
        400,
        "INVALID_REQUEST_BODY",
    );
    assert_error(
        daemon.get("/files/find?path=.&pattern=x&maxResults=-1"),
        400,
        "BAD_REQUEST",
    );
}

#[test]
fn nul_bytes_in_paths_are_rejected() {
    let daemon = Toolboxd::start();
    assert_error(
        daemon.get("/files/info?path=a%00b"),
        400,
        "INVALID_FILE_PATH",
    );
}
