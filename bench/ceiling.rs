//! Loopback ceiling for bench/transfer.py: the same bytes through a plain TCP socket on
//! 127.0.0.1 from a file into a file, with no HTTP and no framing. Standard library only;
//! transfer.py compiles it with `rustc -O` into the results dir.
//!
//!   ceiling recv DST        # binds 127.0.0.1:0, prints the port, writes one connection to DST,
//!                           # prints the byte count when the file is closed
//!   ceiling send PORT SRC   # connects to 127.0.0.1:PORT and sends SRC with sendfile(2)
//!
//! (`std::io::copy` from a File to a TcpStream does NOT use sendfile: std refuses File -> socket
//! sendfile/splice to keep io::copy's semantics and falls back to 8 KiB read + send. So the
//! sender calls sendfile(2) itself, through glibc.)
//!
//! The HTTP client floor: the least any HTTP server could cost the same curl command.
//!
//!   ceiling http-sink DST   # prints the port; one request: writes its Content-Length body
//!                           # (multipart framing and all) to DST, answers 200, exits
//!   ceiling http-source SRC # prints the port; one request: answers 200 with SRC as the body
//!
//! The native HTTP/1.1 client: as lean as `send`/`recv` above, so the client is not what limits
//! a transfer through the daemon (curl is: see the curl floors). One request per run on a fresh
//! connection to 127.0.0.1:PORT (`Connection: close`, no `Expect`, TCP_NODELAY like curl).
//!
//!   ceiling bulk-upload PORT SRC DST    # POST /files/bulk-upload, multipart: part
//!                                       # `files[0].path` = DST, part `files[0].file` = SRC
//!                                       # (sendfile); computed Content-Length, no chunking
//!   ceiling upload-v2 PORT SRC DST      # POST /files/upload-v2?path=DST, raw body = SRC (sendfile)
//!       both print the (de-chunked) response body on stdout; any status but 200 is an error
//!   ceiling bulk-download PORT SRC OUT  # POST /files/bulk-download {"paths":[SRC]}; reads the
//!                                       # response with 1 MiB reads, decodes chunked framing,
//!                                       # parses the one part's headers and writes exactly its
//!                                       # Content-Length bytes to OUT, then checks the closing
//!                                       # delimiter `\r\n--BOUNDARY--`, BOUNDARY being the one
//!                                       # the response's Content-Type names (random per response)
//!   ceiling download PORT SRC OUT       # GET /files/download?path=SRC; body (1 MiB reads) to OUT
//!       both print the number of bytes written to OUT
//!
//! The preview proxy's upstream and client (bench/proxy.py): the same lean client against any
//! path, and an app that is no slower than the socket.
//!
//!   ceiling http-serve SRC              # prints the port; serves keep-alive HTTP/1.1 until
//!                                       # killed, a thread per connection: GET /small answers
//!                                       # `ok`, any other GET answers SRC (sendfile), a POST's
//!                                       # body (Content-Length or chunked) is read and dropped
//!                                       # and its length is the answer
//!   ceiling get PORT PATH               # GET PATH; reads the body (1 MiB reads) and drops it;
//!                                       # prints the byte count
//!   ceiling post PORT PATH SRC          # POST PATH, raw body = SRC (sendfile); prints the answer

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("recv") => {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let mut stdout = io::stdout().lock();
            writeln!(stdout, "{}", listener.local_addr()?.port())?;
            stdout.flush()?;
            let (mut conn, _) = listener.accept()?;
            let mut out = File::create(&args[2])?;
            let mut buf = vec![0u8; 1 << 20];
            let mut total: u64 = 0;
            loop {
                let n = conn.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])?;
                total += n as u64;
            }
            drop(out);
            writeln!(stdout, "{total}")?;
            Ok(())
        }
        Some("send") => {
            let conn = TcpStream::connect(("127.0.0.1", args[2].parse::<u16>().expect("port")))?;
            let src = File::open(&args[3])?;
            send_file(&conn, &src, src.metadata()?.len())?;
            conn.shutdown(std::net::Shutdown::Write)?;
            // Wait for the receiver to close, so the time covers the whole transfer.
            let _ = io::BufReader::new(conn).fill_buf();
            Ok(())
        }
        Some("http-sink") => {
            let (mut conn, head_rest) = accept_request()?;
            let head = String::from_utf8_lossy(&head_rest.0).to_ascii_lowercase();
            let length: u64 = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().expect("content-length"))
                .expect("the client must send Content-Length");
            let mut out = File::create(&args[2])?;
            out.write_all(&head_rest.1)?;
            let mut left = length - head_rest.1.len() as u64;
            let mut buf = vec![0u8; 1 << 20];
            while left > 0 {
                let n = conn.read(&mut buf[..left.min(1 << 20) as usize])?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])?;
                left -= n as u64;
            }
            drop(out);
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")?;
            Ok(())
        }
        Some("http-source") => {
            let (mut conn, _) = accept_request()?;
            let src = File::open(&args[2])?;
            let len = src.metadata()?.len();
            write!(conn, "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n")?;
            send_file(&conn, &src, len)?;
            Ok(())
        }
        Some(mode @ ("bulk-upload" | "upload-v2")) if args.len() == 5 => {
            let port = parse_port(&args[2]);
            let body = client_upload(port, mode == "bulk-upload", &args[3], &args[4])?;
            io::stdout().lock().write_all(&body)?;
            Ok(())
        }
        Some(mode @ ("bulk-download" | "download")) if args.len() == 5 => {
            let port = parse_port(&args[2]);
            let written = client_download(port, mode == "bulk-download", &args[3], &args[4])?;
            println!("{written}");
            Ok(())
        }
        Some("http-serve") if args.len() == 3 => http_serve(&args[2]),
        Some("get") if args.len() == 4 => {
            let received = client_get(parse_port(&args[2]), &args[3])?;
            println!("{received}");
            Ok(())
        }
        Some("post") if args.len() == 5 => {
            let body = client_post(
                parse_port(&args[2]),
                &args[3],
                "application/octet-stream",
                "",
                &args[4],
                "",
            )?;
            io::stdout().lock().write_all(&body)?;
            Ok(())
        }
        _ => {
            eprintln!(
                "usage: ceiling recv DST | send PORT SRC | http-sink DST | http-source SRC\n       \
                 ceiling bulk-upload|upload-v2 PORT SRC DST | bulk-download|download PORT SRC OUT\n       \
                 ceiling http-serve SRC | get PORT PATH | post PORT PATH SRC"
            );
            std::process::exit(2);
        }
    }
}

extern "C" {
    /// glibc's sendfile(2) (64-bit off_t on x86_64 and aarch64).
    fn sendfile(out_fd: i32, in_fd: i32, offset: *mut i64, count: usize) -> isize;
}

/// Sends exactly `len` bytes of `file` (from offset 0) to `conn` with sendfile(2), in as few
/// calls as the kernel allows (at most 0x7ffff000 bytes each).
fn send_file(conn: &TcpStream, file: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut offset: i64 = 0;
    while (offset as u64) < len {
        let count = (len - offset as u64).min(0x7fff_f000) as usize;
        // SAFETY: both descriptors are open for the duration of the call; `offset` is a valid i64.
        let sent = unsafe { sendfile(conn.as_raw_fd(), file.as_raw_fd(), &mut offset, count) };
        if sent < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if sent == 0 {
            return fail(format!("file ended at {offset} of {len} bytes (it shrank while being sent)"));
        }
    }
    Ok(())
}

/// Binds 127.0.0.1:0, prints the port, accepts one connection and reads the request head.
/// Returns the connection, the head and whatever body bytes came with it.
fn accept_request() -> io::Result<(TcpStream, (Vec<u8>, Vec<u8>))> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{}", listener.local_addr()?.port())?;
    stdout.flush()?;
    let (mut conn, _) = listener.accept()?;
    let mut data = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no request head"));
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = data.split_off(end + 4);
            return Ok((conn, (data, rest)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Native HTTP/1.1 client.

/// The boundary of this client's multipart uploads.
const UPLOAD_BOUNDARY: &str = "DAYTONA-FILE-BOUNDARY";
/// Read size of every response read, as in `recv`.
const READ: usize = 1 << 20;

fn parse_port(text: &str) -> u16 {
    text.parse().expect("PORT must be a port number")
}

fn fail<T>(message: String) -> io::Result<T> {
    Err(io::Error::new(io::ErrorKind::InvalidData, message))
}

fn connect(port: u16) -> io::Result<TcpStream> {
    let conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_nodelay(true)?;
    Ok(conn)
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Percent-encodes a query value (keeps unreserved characters and `/`).
fn query_value(text: &str) -> String {
    let mut out = String::new();
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// POST /files/bulk-upload (multipart) or /files/upload-v2 (raw) of `src` to `dst`.
fn client_upload(port: u16, multipart: bool, src: &str, dst: &str) -> io::Result<Vec<u8>> {
    let (target, content_type, preamble, trailer) = if multipart {
        let name = std::path::Path::new(src)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        (
            "/files/bulk-upload".to_string(),
            format!("multipart/form-data; boundary={UPLOAD_BOUNDARY}"),
            format!(
                "--{UPLOAD_BOUNDARY}\r\nContent-Disposition: form-data; name=\"files[0].path\"\r\n\r\n{dst}\r\n\
                 --{UPLOAD_BOUNDARY}\r\nContent-Disposition: form-data; name=\"files[0].file\"; filename={}\r\n\
                 Content-Type: application/octet-stream\r\n\r\n",
                json_string(&name)
            ),
            format!("\r\n--{UPLOAD_BOUNDARY}--\r\n"),
        )
    } else {
        (
            format!("/files/upload-v2?path={}", query_value(dst)),
            "application/octet-stream".to_string(),
            String::new(),
            String::new(),
        )
    };
    client_post(port, &target, &content_type, &preamble, src, &trailer)
}

/// Sends the head + `preamble`, then all of `src` (sendfile, as `send` does), then `trailer`:
/// one POST with a computed Content-Length. Returns the response body (any status but 200 is
/// an error).
fn client_post(
    port: u16,
    target: &str,
    content_type: &str,
    preamble: &str,
    src: &str,
    trailer: &str,
) -> io::Result<Vec<u8>> {
    let file = File::open(src)?;
    let size = file.metadata()?.len();
    let length = preamble.len() as u64 + size + trailer.len() as u64;
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: toolboxd-bench\r\n\
         Accept: */*\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\
         Connection: close\r\n\r\n{preamble}"
    );
    let mut conn = connect(port)?;
    let sent = (|| -> io::Result<()> {
        conn.write_all(head.as_bytes())?;
        send_file(&conn, &file, size)?;
        conn.write_all(trailer.as_bytes())
    })();
    // A server that refuses early answers and closes: show its answer rather than EPIPE.
    let answer = read_head(&mut conn).and_then(|response| {
        let mut body = Vec::new();
        read_body(&mut conn, response.clone(), &mut |data: &[u8]| {
            body.extend_from_slice(data);
            Ok(())
        })?;
        Ok((response.status, body))
    });
    match (sent, answer) {
        (Ok(()), Ok((200, body))) => Ok(body),
        (_, Ok((status, body))) => fail(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(2000)])
        )),
        (Err(err), Err(_)) | (Ok(()), Err(err)) => Err(err),
    }
}

/// GET /files/download or POST /files/bulk-download; writes the file's bytes to `out`.
fn client_download(port: u16, multipart: bool, src: &str, out: &str) -> io::Result<u64> {
    let request = if multipart {
        let body = format!("{{\"paths\":[{}]}}", json_string(src));
        format!(
            "POST /files/bulk-download HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: toolboxd-bench\r\n\
             Accept: */*\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        format!(
            "GET /files/download?path={} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             User-Agent: toolboxd-bench\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            query_value(src)
        )
    };
    let mut conn = connect(port)?;
    conn.write_all(request.as_bytes())?;
    let response = read_head(&mut conn)?;
    if response.status != 200 {
        let mut body = Vec::new();
        let _ = read_body(&mut conn, response.clone(), &mut |data: &[u8]| {
            body.extend_from_slice(&data[..data.len().min(4096)]);
            Ok(())
        });
        return fail(format!("HTTP {}: {}", response.status, String::from_utf8_lossy(&body)));
    }
    let content_type = header(&response.head, "content-type").unwrap_or_default();
    // The daemon picks a random boundary per response; the part and the closing delimiter must
    // use the one its Content-Type names.
    let boundary = match content_type.strip_prefix("multipart/form-data; boundary=") {
        Some(boundary) if !boundary.is_empty() && !boundary.contains([';', '"', ' ']) => boundary.to_string(),
        _ if multipart => return fail(format!("unexpected Content-Type {content_type:?}")),
        _ => String::new(),
    };
    let mut file = File::create(out)?;
    let mut written: u64 = 0;
    if multipart {
        let mut part = OnePart { boundary, state: PartState::Head(Vec::new()) };
        read_body(&mut conn, response, &mut |data: &[u8]| part.feed(data, &mut file, &mut written))?;
        part.finish()?;
    } else {
        read_body(&mut conn, response, &mut |data: &[u8]| {
            written += data.len() as u64;
            file.write_all(data)
        })?;
    }
    drop(file);
    Ok(written)
}

/// GET `path`; reads the body and drops it. Returns its length (any status but 200 is an error).
fn client_get(port: u16, path: &str) -> io::Result<u64> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: toolboxd-bench\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    );
    let mut conn = connect(port)?;
    conn.write_all(request.as_bytes())?;
    let response = read_head(&mut conn)?;
    let status = response.status;
    let mut received: u64 = 0;
    let mut start = Vec::new();
    read_body(&mut conn, response, &mut |data: &[u8]| {
        if status != 200 && start.len() < 4096 {
            start.extend_from_slice(&data[..data.len().min(4096)]);
        }
        received += data.len() as u64;
        Ok(())
    })?;
    if status != 200 {
        return fail(format!("HTTP {status}: {}", String::from_utf8_lossy(&start)));
    }
    Ok(received)
}

/// `http-serve`: binds 127.0.0.1:0, prints the port, serves until killed.
fn http_serve(src: &str) -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{}", listener.local_addr()?.port())?;
    stdout.flush()?;
    drop(stdout);
    let src = std::sync::Arc::new(src.to_string());
    for conn in listener.incoming() {
        let conn = conn?;
        let src = src.clone();
        std::thread::spawn(move || {
            if let Err(err) = serve_connection(conn, &src) {
                eprintln!("http-serve: {err}");
            }
        });
    }
    Ok(())
}

/// One keep-alive connection of `http-serve`: requests one after another until the client
/// closes or sends `Connection: close`.
fn serve_connection(mut conn: TcpStream, src: &str) -> io::Result<()> {
    conn.set_nodelay(true)?;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; READ];
    loop {
        let head_end = loop {
            if let Some(pos) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            let n = conn.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            pending.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
        pending.drain(..head_end);
        let mut request_line = head.split("\r\n").next().unwrap_or_default().split(' ');
        let method = request_line.next().unwrap_or_default().to_string();
        let path = request_line.next().unwrap_or_default().to_string();
        let close = header(&head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if method == "POST" {
            let mut received: u64 = 0;
            let early = std::mem::take(&mut pending);
            let chunked = header(&head, "transfer-encoding")
                .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
            if chunked {
                let mut decoder = Dechunk::Size(Vec::new());
                let mut count = |data: &[u8]| -> io::Result<()> {
                    received += data.len() as u64;
                    Ok(())
                };
                decoder.feed(&early, &mut count)?;
                while !matches!(decoder, Dechunk::Done) {
                    let n = conn.read(&mut buf)?;
                    if n == 0 {
                        return fail("connection closed inside the chunked body".into());
                    }
                    decoder.feed(&buf[..n], &mut count)?;
                }
            } else {
                let length: u64 = header(&head, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                received = early.len() as u64;
                while received < length {
                    let want = (length - received).min(READ as u64) as usize;
                    let n = conn.read(&mut buf[..want])?;
                    if n == 0 {
                        return fail("connection closed inside the body".into());
                    }
                    received += n as u64;
                }
            }
            let answer = received.to_string();
            write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{answer}",
                answer.len()
            )?;
        } else if path == "/small" {
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok")?;
        } else {
            let file = File::open(src)?;
            let len = file.metadata()?.len();
            write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {len}\r\n\r\n"
            )?;
            if method != "HEAD" {
                send_file(&conn, &file, len)?;
            }
        }
        if close {
            return Ok(());
        }
    }
}

/// The single part of a bulk-download body: its headers, then exactly Content-Length bytes to
/// the file, then the closing boundary.
struct OnePart {
    /// The boundary the response's Content-Type names.
    boundary: String,
    state: PartState,
}

enum PartState {
    Head(Vec<u8>),
    Body(u64),
    Tail(Vec<u8>),
}

impl OnePart {
    fn feed(&mut self, mut data: &[u8], out: &mut File, written: &mut u64) -> io::Result<()> {
        while !data.is_empty() {
            match &mut self.state {
                PartState::Head(acc) => {
                    // Look for the end of the part headers without copying the whole read: only
                    // bytes up to it (at most 64 KiB) are kept.
                    let keep = data.len().min(65536 - acc.len().min(65536));
                    let old = acc.len();
                    acc.extend_from_slice(&data[..keep]);
                    let from = old.saturating_sub(3);
                    let Some(end) = acc[from..].windows(4).position(|w| w == b"\r\n\r\n") else {
                        if acc.len() >= 65536 {
                            return fail("no end of part headers in the first 64 KiB".into());
                        }
                        data = &data[keep..];
                        continue;
                    };
                    let end = from + end + 4;
                    let length = part_length(&acc[..end], &self.boundary)?;
                    data = &data[end - old..];
                    self.state = PartState::Body(length);
                }
                PartState::Body(left) => {
                    let n = (*left).min(data.len() as u64) as usize;
                    out.write_all(&data[..n])?;
                    *written += n as u64;
                    *left -= n as u64;
                    data = &data[n..];
                    if *left == 0 {
                        self.state = PartState::Tail(Vec::new());
                    }
                }
                PartState::Tail(acc) => {
                    if acc.len() + data.len() > 4096 {
                        return fail("more than 4 KiB after the part (a second part?)".into());
                    }
                    acc.extend_from_slice(data);
                    data = &[];
                }
            }
        }
        Ok(())
    }

    fn finish(&self) -> io::Result<()> {
        match &self.state {
            PartState::Tail(acc) => {
                let close = format!("\r\n--{}--", self.boundary);
                let rest = acc.strip_prefix(close.as_bytes());
                if rest.map_or(true, |rest| !rest.iter().all(u8::is_ascii_whitespace)) {
                    return fail(format!(
                        "expected the closing boundary {close:?} after the part, got {:?}",
                        String::from_utf8_lossy(acc)
                    ));
                }
                Ok(())
            }
            PartState::Head(acc) => fail(format!(
                "body ended inside the part headers: {:?}",
                String::from_utf8_lossy(&acc[..acc.len().min(500)])
            )),
            PartState::Body(left) => fail(format!("body ended {left} bytes short of the part")),
        }
    }
}

/// Checks a part head (`--BOUNDARY\r\n` + headers + `\r\n\r\n`) and returns its Content-Length.
fn part_length(head: &[u8], boundary: &str) -> io::Result<u64> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    if lines.next() != Some(&format!("--{boundary}")[..]) {
        return fail(format!("part does not start with --{boundary}: {text:?}"));
    }
    let headers = lines.take_while(|l| !l.is_empty()).collect::<Vec<_>>().join("\r\n");
    let disposition = header(&headers, "content-disposition").unwrap_or_default();
    if !disposition.contains("name=\"file\"") {
        return fail(format!("not a file part: {text:?}"));
    }
    match header(&headers, "content-length").map(|v| v.parse::<u64>()) {
        Some(Ok(length)) => Ok(length),
        _ => fail(format!("part has no usable Content-Length: {text:?}")),
    }
}

/// The value of header `name` (lower case) in a block of `Name: value` lines.
fn header(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_string())
    })
}

/// A response's status line and headers, and the body bytes that came in the same reads.
#[derive(Clone)]
struct ResponseHead {
    status: u16,
    head: String,
    early: Vec<u8>,
}

/// Reads the status line and headers of a response (1 MiB reads).
fn read_head(conn: &mut TcpStream) -> io::Result<ResponseHead> {
    let mut buf = vec![0u8; READ];
    let mut filled = 0;
    let head_end = loop {
        if filled == buf.len() {
            return fail("response head larger than 1 MiB".into());
        }
        let n = conn.read(&mut buf[filled..])?;
        if n == 0 {
            return fail("connection closed before the response head".into());
        }
        let from = filled.saturating_sub(3);
        filled += n;
        if let Some(pos) = buf[from..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break from + pos + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status_line = head.split("\r\n").next().unwrap_or_default();
    let status: u16 = match status_line.split(' ').nth(1).map(str::parse) {
        Some(Ok(status)) if status_line.starts_with("HTTP/1.") => status,
        _ => return fail(format!("bad status line {status_line:?}")),
    };
    Ok(ResponseHead { status, head, early: buf[head_end..filled].to_vec() })
}

/// Reads the body after `response`'s head with `READ`-sized reads, by its framing (chunked,
/// Content-Length, or until close), handing each piece to `sink` as it arrives (no copies).
fn read_body(
    conn: &mut TcpStream,
    response: ResponseHead,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let head = &response.head;
    let early = &response.early;
    let chunked = header(head, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = match header(head, "content-length").map(|v| v.parse::<u64>()) {
        Some(Ok(length)) => Some(length),
        Some(Err(_)) => return fail("bad Content-Length".into()),
        None => None,
    };
    let mut buf = vec![0u8; READ];
    if chunked {
        let mut decoder = Dechunk::Size(Vec::new());
        decoder.feed(early, sink)?;
        while !matches!(decoder, Dechunk::Done) {
            let n = conn.read(&mut buf)?;
            if n == 0 {
                return fail("connection closed inside the chunked body".into());
            }
            decoder.feed(&buf[..n], sink)?;
        }
    } else if let Some(length) = length {
        if early.len() as u64 > length {
            return fail("more bytes than Content-Length".into());
        }
        sink(early)?;
        let mut left = length - early.len() as u64;
        while left > 0 {
            let want = left.min(READ as u64) as usize;
            let n = conn.read(&mut buf[..want])?;
            if n == 0 {
                return fail(format!("connection closed {left} bytes before the end of the body"));
            }
            sink(&buf[..n])?;
            left -= n as u64;
        }
    } else {
        sink(early)?;
        loop {
            let n = conn.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sink(&buf[..n])?;
        }
    }
    Ok(())
}

/// A streaming `Transfer-Encoding: chunked` decoder: chunk data goes to the sink straight from
/// the read buffer; sizes, extensions, CRLFs and trailers are parsed across read boundaries.
enum Dechunk {
    /// Collecting a chunk-size line.
    Size(Vec<u8>),
    /// Inside chunk data: bytes left.
    Data(u64),
    /// After chunk data: how many bytes of its CRLF have been seen.
    DataEnd(usize),
    /// After the last (zero) chunk: collecting a trailer line; an empty one ends the body.
    Trailer(Vec<u8>),
    Done,
}

impl Dechunk {
    fn feed(&mut self, mut data: &[u8], sink: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        while !data.is_empty() {
            match self {
                Dechunk::Size(line) | Dechunk::Trailer(line) => {
                    let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                        if line.len() + data.len() > 4096 {
                            return fail("chunk-size or trailer line over 4 KiB".into());
                        }
                        line.extend_from_slice(data);
                        return Ok(());
                    };
                    line.extend_from_slice(&data[..=nl]);
                    data = &data[nl + 1..];
                    let Some(text) = line.strip_suffix(b"\r\n") else {
                        return fail(format!("line not ended by CRLF: {:?}", String::from_utf8_lossy(line)));
                    };
                    let empty = text.is_empty();
                    let digits = String::from_utf8_lossy(text).into_owned();
                    if matches!(self, Dechunk::Trailer(_)) {
                        *self = if empty { Dechunk::Done } else { Dechunk::Trailer(Vec::new()) };
                        continue;
                    }
                    let digits = digits.split(';').next().unwrap_or_default().trim();
                    let Ok(size) = u64::from_str_radix(digits, 16) else {
                        return fail(format!("bad chunk size {digits:?}"));
                    };
                    *self = if size == 0 { Dechunk::Trailer(Vec::new()) } else { Dechunk::Data(size) };
                }
                Dechunk::Data(left) => {
                    let n = (*left).min(data.len() as u64) as usize;
                    sink(&data[..n])?;
                    *left -= n as u64;
                    data = &data[n..];
                    if *left == 0 {
                        *self = Dechunk::DataEnd(0);
                    }
                }
                Dechunk::DataEnd(seen) => {
                    if data[0] != b"\r\n"[*seen] {
                        return fail("chunk data not followed by CRLF".into());
                    }
                    data = &data[1..];
                    *seen += 1;
                    if *seen == 2 {
                        *self = Dechunk::Size(Vec::new());
                    }
                }
                Dechunk::Done => return fail("bytes after the end of the chunked body".into()),
            }
        }
        Ok(())
    }
}
