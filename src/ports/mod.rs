//! Listening TCP ports, read from `/proc/net/tcp` and `/proc/net/tcp6` (the sockets of
//! toolboxd's network namespace, every user's, loopback-only listeners included). Blocking: the
//! edge runs these on the blocking pool.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The socket state `/proc/net/tcp*` writes for a listening socket (`TCP_LISTEN`).
const LISTEN: &str = "0A";

/// Where the socket tables are read from (`/proc/net` in production).
#[derive(Debug, Clone)]
pub struct Ports {
    proc_net: PathBuf,
}

impl Default for Ports {
    fn default() -> Ports {
        Ports::new("/proc/net")
    }
}

impl Ports {
    /// Reads `tcp` and `tcp6` under `proc_net`.
    pub fn new(proc_net: impl Into<PathBuf>) -> Ports {
        Ports {
            proc_net: proc_net.into(),
        }
    }

    /// Every port a TCP socket listens on, over IPv4 and IPv6, once each, ascending.
    /// A missing `tcp6` (IPv6 disabled) is an empty table; a missing `tcp` is an error.
    pub fn listening(&self) -> Result<Vec<u16>> {
        let mut ports = BTreeSet::new();
        for (name, required) in [("tcp", true), ("tcp6", false)] {
            let path = self.proc_net.join(name);
            match std::fs::read_to_string(&path) {
                Ok(table) => ports.extend(listening_in(&table)),
                Err(err) if !required && err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(table_error(&path, &err)),
            }
        }
        Ok(ports.into_iter().collect())
    }

    /// Whether a TCP socket listens on `port` (any address, IPv4 or IPv6).
    pub fn in_use(&self, port: u16) -> Result<bool> {
        Ok(self.listening()?.binary_search(&port).is_ok())
    }
}

/// Parses a port given on the wire: decimal 1–65535, nothing else.
pub fn parse_port(text: &str) -> Result<u16> {
    let valid = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u16>() {
        Ok(port) if valid && port != 0 => Ok(port),
        _ => Err(Error::bad_request(format!(
            "invalid port {text:?}: expected a number from 1 to 65535"
        ))),
    }
}

fn table_error(path: &Path, err: &io::Error) -> Error {
    Error::internal(format!(
        "cannot read the socket table {}: {err}",
        path.display()
    ))
}

/// The local ports of the LISTEN rows of one `/proc/net/tcp*` table. Rows read
/// `sl local_address rem_address st …` with the address as `HEXIP:HEXPORT`.
fn listening_in(table: &str) -> impl Iterator<Item = u16> + '_ {
    table.lines().skip(1).filter_map(|row| {
        let mut fields = row.split_whitespace();
        let local = fields.nth(1)?;
        let state = fields.nth(1)?;
        if state != LISTEN {
            return None;
        }
        let (_, port) = local.rsplit_once(':')?;
        u16::from_str_radix(port, 16).ok().filter(|&p| p != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0000000000000000 100 0 0 10 0
   1: 00000000:08E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0100007F:0BB8 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 3 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn listen_rows_of_both_tables_deduplicated_and_sorted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tcp"), TCP).unwrap();
        let ports = Ports::new(dir.path());
        // No tcp6 (IPv6 disabled): the IPv4 table alone.
        assert_eq!(ports.listening().unwrap(), vec![2280, 3000]);
        std::fs::write(dir.path().join("tcp6"), TCP6).unwrap();
        assert_eq!(ports.listening().unwrap(), vec![2280, 3000, 8080]);
        assert!(ports.in_use(8080).unwrap());
        // 50000 is only the remote end of an established connection.
        assert!(!ports.in_use(50000).unwrap());
        std::fs::remove_file(dir.path().join("tcp")).unwrap();
        assert!(ports.listening().is_err());
    }

    #[test]
    fn ports_on_the_wire_are_1_to_65535() {
        assert_eq!(parse_port("1").unwrap(), 1);
        assert_eq!(parse_port("65535").unwrap(), 65535);
        for bad in [
            "",
            "0",
            "65536",
            "-1",
            "+80",
            "8o",
            " 80",
            "99999999999",
            "0x50",
        ] {
            assert!(parse_port(bad).is_err(), "{bad:?} accepted");
        }
    }
}
