//! `toolboxd entrypoint logs`: a small client of a running toolboxd that prints the entrypoint's
//! stdout and stderr to its own, polling the JSON logs until the entrypoint has exited.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

/// Prints the entrypoint logs from the toolboxd at `addr`; with `follow`, until it exits.
pub fn run(addr: SocketAddr, follow: bool) -> ExitCode {
    let mut printed = (0usize, 0usize);
    loop {
        // Read the state first: logs fetched after an exit was seen are complete.
        let finished = match get(addr, "/process/session/entrypoint") {
            Ok(session) => session["commands"][0].get("exitCode").is_some(),
            Err(err) => return fail(&err),
        };
        let logs = match get(addr, "/process/session/entrypoint/logs") {
            Ok(logs) => logs,
            Err(err) => return fail(&err),
        };
        let stdout = logs["stdout"].as_str().unwrap_or("");
        let stderr = logs["stderr"].as_str().unwrap_or("");
        let _ = std::io::stdout().write_all(stdout.get(printed.0..).unwrap_or("").as_bytes());
        let _ = std::io::stderr().write_all(stderr.get(printed.1..).unwrap_or("").as_bytes());
        let _ = std::io::stdout().flush();
        printed = (stdout.len(), stderr.len());
        if finished || !follow {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn fail(err: &str) -> ExitCode {
    eprintln!("toolboxd entrypoint logs: {err}");
    ExitCode::FAILURE
}

/// `GET path` over HTTP/1.1 with `Connection: close`; the body parsed as JSON.
fn get(addr: SocketAddr, path: &str) -> Result<Value, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|err| format!("cannot reach toolboxd at {addr}: {err}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|err| err.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|err| err.to_string())?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let mut body = response[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body)?;
    }
    let value: Value =
        serde_json::from_slice(&body).map_err(|err| format!("bad JSON from toolboxd: {err}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        let message = value["message"].as_str().unwrap_or("request failed");
        return Err(format!("{path}: {message}"));
    }
    Ok(value)
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunked body")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(body.get(..size).ok_or("short chunk")?);
        body = body.get(size + 2..).unwrap_or(&[]);
    }
}
