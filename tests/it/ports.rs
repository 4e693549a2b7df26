//! `GET /port` and `GET /port/{port}/in-use` against listeners the test opens.

use std::net::TcpListener;

use serde_json::Value;

use crate::harness::*;

fn listed(daemon: &Toolboxd) -> Vec<u64> {
    let body = json(daemon.get("/port"), 200);
    body["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect()
}

fn in_use(daemon: &Toolboxd, port: u16) -> Value {
    json(daemon.get(&format!("/port/{port}/in-use")), 200)["isInUse"].clone()
}

#[test]
fn listeners_on_ipv4_and_ipv6_are_listed_and_in_use() {
    let daemon = Toolboxd::start();
    let own: u16 = daemon.base.rsplit(':').next().unwrap().parse().unwrap();
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let v4_port = v4.local_addr().unwrap().port();
    let v6 = TcpListener::bind("[::1]:0").unwrap();
    let v6_port = v6.local_addr().unwrap().port();

    let ports = listed(&daemon);
    for port in [own, v4_port, v6_port] {
        assert!(ports.contains(&(port as u64)), "{port} not in {ports:?}");
    }
    let mut sorted = ports.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ports, sorted, "sorted, each once");
    assert_eq!(in_use(&daemon, v4_port), true);
    assert_eq!(in_use(&daemon, v6_port), true);

    // A connected (not listening) socket does not count.
    let client = std::net::TcpStream::connect(("127.0.0.1", v4_port)).unwrap();
    let client_port = client.local_addr().unwrap().port();
    assert_eq!(in_use(&daemon, client_port), false);

    drop(v4);
    drop(v6);
    assert_eq!(in_use(&daemon, v4_port), false);
    assert_eq!(in_use(&daemon, v6_port), false);
    let ports = listed(&daemon);
    assert!(!ports.contains(&(v4_port as u64)) && !ports.contains(&(v6_port as u64)));
}

#[test]
fn bad_ports_are_400() {
    let daemon = Toolboxd::start();
    for bad in ["0", "65536", "abc", "-1", "%33"] {
        assert_error(
            daemon.get(&format!("/port/{bad}/in-use")),
            400,
            "BAD_REQUEST",
        );
    }
    assert!(json(daemon.get("/port/1/in-use"), 200)["isInUse"].is_boolean());
}
