//! Local port forwarding (`direct-tcpip`: `ssh -L`, IDE port forwards) to services inside the
//! sandbox: loopback targets only (127.0.0.0/8, ::1, `localhost`). Anything else is refused, so
//! the sandbox is never a relay to other hosts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::channel::{Inbox, Output};

/// How long a connection to the target may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_CHUNK: usize = 64 * 1024;

/// Where a forward may connect: the loopback addresses `host` names, or why not.
pub fn targets(host: &str, port: u32) -> Result<Vec<SocketAddr>, String> {
    let Ok(port) = u16::try_from(port) else {
        return Err(format!("port {port} is out of range"));
    };
    if port == 0 {
        return Err("port 0 is not a destination".to_string());
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") || host.eq_ignore_ascii_case("localhost.") {
        return Ok(vec![
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        ]);
    }
    match host.parse::<IpAddr>() {
        Ok(ip) if super::keys::is_loopback(ip) => Ok(vec![SocketAddr::new(ip, port)]),
        Ok(ip) => Err(format!(
            "{ip} is not a loopback address: only services inside the sandbox (127.0.0.0/8, ::1, \
             localhost) can be forwarded to"
        )),
        Err(_) => Err(format!(
            "{host:?} is not a loopback address: only services inside the sandbox (127.0.0.0/8, \
             ::1, localhost) can be forwarded to"
        )),
    }
}

/// Connects to the first of `addrs` that answers.
pub async fn connect(addrs: &[SocketAddr]) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(err)) => last = err,
            Err(_) => {
                last = std::io::Error::new(std::io::ErrorKind::TimedOut, "connection timed out")
            }
        }
    }
    Err(last)
}

/// Copies between the channel and `stream` until both directions are done or the channel ends.
pub async fn run(stream: TcpStream, output: Output, inbox: Arc<Inbox>, ended: CancellationToken) {
    let (mut from_target, mut to_target) = stream.into_split();
    let upload = async {
        while let Some(chunk) = inbox.recv().await {
            if to_target.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // The client sent EOF: so does the target's side.
        let _ = to_target.shutdown().await;
    };
    let download = async {
        let mut buffer = BytesMut::with_capacity(READ_CHUNK);
        loop {
            buffer.reserve(READ_CHUNK);
            match from_target.read_buf(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if !output.data(buffer.split().freeze()).await {
                        return;
                    }
                }
            }
        }
        // The target is done sending: so is the channel.
        output.eof().await;
    };
    tokio::select! {
        _ = async { tokio::join!(upload, download) } => {}
        () = ended.cancelled() => {}
    }
    output.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_allowed() {
        assert_eq!(targets("localhost", 80).unwrap().len(), 2);
        assert_eq!(
            targets("127.0.0.2", 8080).unwrap(),
            vec!["127.0.0.2:8080".parse().unwrap()]
        );
        assert_eq!(
            targets("[::1]", 22).unwrap(),
            vec!["[::1]:22".parse().unwrap()]
        );
        assert!(targets("10.0.0.1", 80).is_err());
        assert!(targets("example.com", 80).is_err());
        assert!(targets("127.0.0.1", 70000).is_err());
        assert!(targets("0.0.0.0", 80).is_err());
    }
}
