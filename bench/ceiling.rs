//! Loopback ceiling for bench/transfer.py: the same bytes through a plain TCP socket on
//! 127.0.0.1 from a file into a file, with no HTTP and no framing. Standard library only;
//! transfer.py compiles it with `rustc -O` into the results dir.
//!
//!   ceiling recv DST        # binds 127.0.0.1:0, prints the port, writes one connection to DST,
//!                           # prints the byte count when the file is closed
//!   ceiling send PORT SRC   # connects to 127.0.0.1:PORT and sends SRC (std::io::copy: sendfile)
//!
//! The HTTP client floor: the least any HTTP server could cost the same curl command.
//!
//!   ceiling http-sink DST   # prints the port; one request: writes its Content-Length body
//!                           # (multipart framing and all) to DST, answers 200, exits
//!   ceiling http-source SRC # prints the port; one request: answers 200 with SRC as the body

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
            let mut conn = TcpStream::connect(("127.0.0.1", args[2].parse::<u16>().expect("port")))?;
            let mut src = File::open(&args[3])?;
            io::copy(&mut src, &mut conn)?;
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
            let mut src = File::open(&args[2])?;
            let len = src.metadata()?.len();
            write!(conn, "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n")?;
            io::copy(&mut src, &mut conn)?;
            Ok(())
        }
        _ => {
            eprintln!("usage: ceiling recv DST | send PORT SRC | http-sink DST | http-source SRC");
            std::process::exit(2);
        }
    }
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
