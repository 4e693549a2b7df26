//! Local SDK mode: the control-plane calls and the `/toolbox/{id}` proxy.

use serde_json::json;

use crate::harness::*;

fn sdk(daemon: &Toolboxd, path: &str) -> String {
    format!("{}{}", daemon.sdk_base.as_ref().unwrap(), path)
}

#[test]
fn control_plane_serves_the_one_sandbox_lifecycle() {
    let daemon = Toolboxd::start_with(StartOptions {
        sdk_api: true,
        ..Default::default()
    });
    let client = &daemon.client;
    let body =
        json!({"name": "demo", "labels": {"code-toolbox-language": "python"}, "env": {"A": "1"}});
    let created = json(
        client
            .post(sdk(&daemon, "/api/sandbox"))
            .json(&body)
            .send()
            .unwrap(),
        200,
    );
    for field in [
        "id",
        "organizationId",
        "name",
        "user",
        "target",
        "toolboxProxyUrl",
        "state",
    ] {
        assert!(created[field].is_string(), "{field}: {created}");
    }
    for field in ["public", "networkBlockAll", "kvm"] {
        assert!(created[field].is_boolean(), "{field}: {created}");
    }
    for field in ["cpu", "gpu", "memory", "disk"] {
        assert!(created[field].is_u64(), "{field}: {created}");
    }
    assert_eq!(created["state"], "started");
    assert_eq!(created["env"]["A"], "1");
    let id = created["id"].as_str().unwrap().to_string();

    assert_eq!(
        json(
            client
                .get(sdk(&daemon, "/api/sandbox/demo"))
                .send()
                .unwrap(),
            200
        )["id"],
        id
    );
    let listed = json(
        client
            .get(sdk(
                &daemon,
                "/api/sandbox?labels=%7B%22code-toolbox-language%22%3A%22python%22%7D",
            ))
            .send()
            .unwrap(),
        200,
    );
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert!(listed["nextCursor"].is_null());
    let other = json(
        client
            .get(sdk(&daemon, "/api/sandbox?labels=%7B%22x%22%3A%22y%22%7D"))
            .send()
            .unwrap(),
        200,
    );
    assert_eq!(other["items"], json!([]));

    let labels = json(
        client
            .put(sdk(&daemon, &format!("/api/sandbox/{id}/labels")))
            .json(&json!({"labels": {"k": "v"}}))
            .send()
            .unwrap(),
        200,
    );
    assert_eq!(labels["labels"], json!({"k": "v"}));
    let stopped = json(
        client
            .post(sdk(&daemon, &format!("/api/sandbox/{id}/stop")))
            .send()
            .unwrap(),
        200,
    );
    assert_eq!(stopped["state"], "stopped");
    let started = json(
        client
            .post(sdk(&daemon, &format!("/api/sandbox/{id}/start")))
            .send()
            .unwrap(),
        200,
    );
    assert_eq!(started["state"], "started");
    let proxy = json(
        client
            .get(sdk(
                &daemon,
                &format!("/api/sandbox/{id}/toolbox-proxy-url"),
            ))
            .send()
            .unwrap(),
        200,
    );
    assert_eq!(proxy["url"], created["toolboxProxyUrl"]);
    let preview = json(
        client
            .get(sdk(
                &daemon,
                &format!("/api/sandbox/{id}/ports/3000/preview-url"),
            ))
            .send()
            .unwrap(),
        200,
    );
    assert!(preview["url"].as_str().unwrap().ends_with("/proxy/3000"));
    assert_eq!(preview["sandboxId"], id);

    let deleted = json(
        client
            .delete(sdk(&daemon, &format!("/api/sandbox/{id}")))
            .send()
            .unwrap(),
        200,
    );
    assert_eq!(deleted["state"], "destroyed");
    assert_error(
        client
            .get(sdk(&daemon, &format!("/api/sandbox/{id}")))
            .send()
            .unwrap(),
        404,
        "NOT_FOUND",
    );
}

/// A daemon in local SDK mode whose sandbox was created with defaults, and the sandbox JSON.
fn daemon_with_sandbox() -> (Toolboxd, serde_json::Value) {
    let daemon = Toolboxd::start_with(StartOptions {
        sdk_api: true,
        ..Default::default()
    });
    let created = daemon
        .client
        .post(sdk(&daemon, "/api/sandbox"))
        .json(&json!({}))
        .send()
        .unwrap();
    let created = json(created, 200);
    (daemon, created)
}

#[test]
fn toolbox_proxy_strips_the_sandbox_id() {
    let (daemon, created) = daemon_with_sandbox();
    let proxy_url = created["toolboxProxyUrl"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    write(&daemon.path("a b.txt"), "hi");
    let work = json(
        daemon
            .client
            .get(format!("{proxy_url}/{id}/work-dir"))
            .send()
            .unwrap(),
        200,
    );
    assert_eq!(
        work["dir"],
        std::fs::canonicalize(&daemon.workdir)
            .unwrap()
            .to_str()
            .unwrap()
    );
    let info = json(
        daemon
            .client
            .get(format!("{proxy_url}/{id}/files/info?path=a+b.txt"))
            .send()
            .unwrap(),
        200,
    );
    assert_eq!(info["size"], 2);
    let missing = assert_error(
        daemon
            .client
            .get(format!("{proxy_url}/{id}/files/info?path=zz"))
            .send()
            .unwrap(),
        404,
        "FILE_NOT_FOUND",
    );
    assert_eq!(
        missing["path"], "/files/info",
        "errors name the toolbox route"
    );
    assert_error(
        daemon
            .client
            .get(format!("{proxy_url}/other-id/version"))
            .send()
            .unwrap(),
        404,
        "NOT_FOUND",
    );
    assert_error(
        daemon
            .client
            .get(sdk(&daemon, "/api/nothing"))
            .send()
            .unwrap(),
        404,
        "NOT_FOUND",
    );
}

fn sign(key: &str, method: &str, path: &str, expires: &str) -> String {
    use base64::Engine;
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("v1:files:{method}:{path}:{expires}").as_bytes());
    format!(
        "v1_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

#[test]
fn signed_file_urls_are_verified_and_rotation_revokes_them() {
    let (daemon, created) = daemon_with_sandbox();
    let proxy_url = created["toolboxProxyUrl"].as_str().unwrap().to_string();
    let key_url = sdk(&daemon, "/api/sandbox/local/signing-key");
    let key = json(daemon.client.get(&key_url).send().unwrap(), 200)
        .as_str()
        .unwrap()
        .to_string();
    write(&daemon.path("s p.txt"), "signed");
    let path = daemon.path("s p.txt").to_str().unwrap().to_string();
    let url = |key: &str, method: &str, route: &str, expires: &str| {
        format!(
            "{proxy_url}/local{route}?path={}&expires={expires}&signature={}",
            form(&path),
            sign(key, method, &path, expires)
        )
    };
    let ok = daemon
        .client
        .get(url(&key, "GET", "/files/download", "0"))
        .send()
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().unwrap(), "signed");
    let upload = daemon
        .client
        .post(url(&key, "POST", "/files/upload-v2", "0"))
        .body("new")
        .send()
        .unwrap();
    assert_eq!(upload.status(), 200);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
    assert_error(
        daemon
            .client
            .get(url(&key, "POST", "/files/download", "0"))
            .send()
            .unwrap(),
        401,
        "UNAUTHORIZED",
    );
    assert_error(
        daemon
            .client
            .get(url(&key, "GET", "/files/download", "1"))
            .send()
            .unwrap(),
        401,
        "UNAUTHORIZED",
    );
    let rotated = json(
        daemon
            .client
            .post(format!("{key_url}/rotate"))
            .send()
            .unwrap(),
        200,
    );
    assert_ne!(rotated.as_str().unwrap(), key);
    assert_error(
        daemon
            .client
            .get(url(&key, "GET", "/files/download", "0"))
            .send()
            .unwrap(),
        401,
        "UNAUTHORIZED",
    );
    assert_eq!(
        daemon
            .client
            .get(url(
                rotated.as_str().unwrap(),
                "GET",
                "/files/download",
                "0"
            ))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn local_mode_refuses_foreign_hosts_and_origins() {
    let (daemon, _created) = daemon_with_sandbox();
    let url = sdk(&daemon, "/api/sandbox/local");
    let rebinding = daemon
        .client
        .get(&url)
        .header("Host", "evil.example:3000")
        .send()
        .unwrap();
    assert_error(rebinding, 403, "FORBIDDEN");
    let csrf = daemon
        .client
        .post(sdk(&daemon, "/toolbox/local/files/upload-v2?path=pwn.txt"))
        .header("Origin", "http://evil.example")
        .header("Content-Type", "text/plain")
        .body("x")
        .send()
        .unwrap();
    assert_error(csrf, 403, "FORBIDDEN");
    assert!(!daemon.path("pwn.txt").exists());
    let local_page = daemon
        .client
        .get(&url)
        .header("Origin", "http://localhost:5173")
        .send()
        .unwrap();
    assert_eq!(local_page.status(), 200);
    let duplicate = daemon
        .client
        .get(sdk(
            &daemon,
            "/toolbox/local/files/download?path=a&signature=x&signature=y&expires=0",
        ))
        .send()
        .unwrap();
    assert_error(duplicate, 401, "UNAUTHORIZED");
}

#[test]
fn an_sdk_api_key_is_required_when_configured() {
    let daemon = Toolboxd::start_with(StartOptions {
        sdk_api: true,
        env: vec![("TOOLBOXD_SDK_API_KEY".into(), "s3cret".into())],
        ..Default::default()
    });
    let url = sdk(&daemon, "/api/sandbox");
    assert_error(daemon.client.get(&url).send().unwrap(), 401, "UNAUTHORIZED");
    let wrong = daemon.client.get(&url).bearer_auth("nope").send().unwrap();
    assert_error(wrong, 401, "UNAUTHORIZED");
    assert_eq!(
        daemon
            .client
            .get(&url)
            .bearer_auth("s3cret")
            .send()
            .unwrap()
            .status(),
        200
    );
    write(&daemon.path("f.txt"), "signed");
    let key_url = sdk(&daemon, "/api/sandbox/local/signing-key");
    let key = json(
        daemon
            .client
            .get(&key_url)
            .bearer_auth("s3cret")
            .send()
            .unwrap(),
        200,
    );
    let path = daemon.path("f.txt").to_str().unwrap().to_string();
    let signed = format!(
        "{}?path={}&expires=0&signature={}",
        sdk(&daemon, "/toolbox/local/files/download"),
        form(&path),
        sign(key.as_str().unwrap(), "GET", &path, "0")
    );
    let response = daemon.client.get(signed).send().unwrap();
    assert_eq!(response.status(), 200, "a signed URL needs no bearer key");
    assert_eq!(response.text().unwrap(), "signed");
    let unsigned = sdk(
        &daemon,
        &format!("/toolbox/local/files/download?path={}", form(&path)),
    );
    assert_error(
        daemon.client.get(unsigned).send().unwrap(),
        401,
        "UNAUTHORIZED",
    );
}
