//! Keys: the host key (made on first start, kept in a file), and the authorized keys a login is
//! checked against (read from their files at every login, so a key added takes effect at once).

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::authorized_keys::ConfigOptsIter;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{HashAlg, PrivateKey, PublicKey};

/// Blocking. Reads the host key at `path`, or makes an ed25519 key and writes it there (mode
/// 0600, parents created 0700) when there is no file yet. A file that exists but cannot be read
/// or is not an unencrypted private key is an error: it is never replaced. A key that cannot be
/// saved is used anyway, with a warning: clients then see a new host key after a restart.
pub fn load_host_key(path: &Path) -> Result<PrivateKey, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = PrivateKey::from_openssh(text.as_bytes()).map_err(|err| {
                format!(
                    "ssh host key {}: not an OpenSSH private key ({err})",
                    path.display()
                )
            })?;
            if key.is_encrypted() {
                return Err(format!(
                    "ssh host key {}: the key is encrypted; toolboxd needs it without a passphrase",
                    path.display()
                ));
            }
            Ok(key)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let key = generate()?;
            match save(path, &key) {
                Ok(Some(saved)) => {
                    tracing::info!(path = %path.display(), "ssh: created host key {}", fingerprint(saved.public_key()));
                    Ok(saved)
                }
                // Another process wrote it first: use theirs.
                Ok(None) => load_host_key(path),
                Err(err) => {
                    tracing::warn!(
                        path = %path.display(),
                        "ssh: cannot save the new host key ({err}); using it for this run only, \
                         so clients will see a different host key after a restart"
                    );
                    Ok(key)
                }
            }
        }
        Err(err) => Err(format!("ssh host key {}: {err}", path.display())),
    }
}

/// A new ed25519 key from the kernel's random source.
fn generate() -> Result<PrivateKey, String> {
    let mut seed = [0u8; 32];
    let mut filled = 0;
    while filled < seed.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `seed`.
        let got =
            unsafe { libc::getrandom(seed[filled..].as_mut_ptr().cast(), seed.len() - filled, 0) };
        if got < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("cannot make an ssh host key: getrandom: {err}"));
        }
        filled += got as usize;
    }
    let keypair = Ed25519Keypair::from_seed(&seed);
    let mut key = PrivateKey::from(keypair);
    key.set_comment("toolboxd host key");
    Ok(key)
}

/// Writes `key` to `path` through a 0600 temp file renamed into place without replacing
/// anything; `None` when a file appeared there meanwhile.
fn save(path: &Path, key: &PrivateKey) -> std::io::Result<Option<PrivateKey>> {
    use std::os::unix::fs::DirBuilderExt;
    let parent = crate::files::parent_of(path);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&parent)?;
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|err| std::io::Error::other(err.to_string()))?;
    // NamedTempFile is created 0600.
    let mut temp = tempfile::Builder::new()
        .prefix(".ssh_host_key")
        .tempfile_in(&parent)?;
    temp.write_all(text.as_bytes())?;
    temp.as_file().sync_all()?;
    match temp.persist_noclobber(path) {
        Ok(_) => Ok(Some(key.clone())),
        Err(err) if err.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
        Err(err) => Err(err.error),
    }
}

/// `SHA256:…`, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// What an authorized key allows beyond a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// A terminal may be allocated (not `no-pty`).
    pub pty: bool,
    /// `ssh -L` forwarding is allowed (not `no-port-forwarding`).
    pub port_forwarding: bool,
}

impl Grant {
    /// Everything (a key without options, or any key under `--ssh-insecure-accept-any-key`).
    pub const ALL: Grant = Grant {
        pty: true,
        port_forwarding: true,
    };
}

/// The outcome of looking a key up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Listed, with what its options allow.
    Authorized(Grant),
    /// Not listed; `listed` keys were found in the files.
    Unknown {
        /// Usable keys found (0: nothing is configured).
        listed: usize,
    },
}

/// Options toolboxd enforces or that restrict nothing it offers. A key with any other option
/// (`command=`, `from=`, `permitopen=`, `environment=`, `expiry-time=`, …) is skipped: toolboxd
/// does not enforce those, and a key its owner restricted must not get more than they allowed.
fn apply_option(grant: &mut Grant, option: &str) -> Result<(), String> {
    let name = option
        .split('=')
        .next()
        .unwrap_or(option)
        .to_ascii_lowercase();
    match name.as_str() {
        "restrict" => {
            grant.pty = false;
            grant.port_forwarding = false;
        }
        "no-pty" => grant.pty = false,
        "pty" => grant.pty = true,
        "no-port-forwarding" => grant.port_forwarding = false,
        "port-forwarding" => grant.port_forwarding = true,
        // toolboxd forwards no agent, no X11 and runs no ~/.ssh/rc: these restrict nothing more.
        "no-agent-forwarding"
        | "agent-forwarding"
        | "no-x11-forwarding"
        | "x11-forwarding"
        | "no-user-rc"
        | "user-rc" => {}
        _ => return Err(name),
    }
    Ok(())
}

/// Blocking. Looks `key` up in `files` (authorized_keys format; missing files count as empty).
/// The first line that lists the key decides.
pub fn lookup(files: &[PathBuf], key: &PublicKey) -> Lookup {
    let mut listed = 0;
    for path in files {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for (number, line) in text.lines().enumerate() {
            let Some(entry) = parse_line(line) else {
                continue;
            };
            let grant = match grant_of(&entry) {
                Ok(grant) => grant,
                Err(option) => {
                    tracing::debug!(
                        "ssh: key at {}:{} skipped: option {option:?} is not supported",
                        path.display(),
                        number + 1
                    );
                    continue;
                }
            };
            listed += 1;
            if entry.key.key_data() == key.key_data() {
                return Lookup::Authorized(grant);
            }
        }
    }
    Lookup::Unknown { listed }
}

/// Blocking. Describes what `files` hold, for the log at start: usable keys, and lines skipped
/// for an option toolboxd does not support.
pub fn survey(files: &[PathBuf]) -> (usize, Vec<String>) {
    let mut usable = 0;
    let mut skipped = Vec::new();
    for path in files {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for (number, line) in text.lines().enumerate() {
            let Some(entry) = parse_line(line) else {
                continue;
            };
            match grant_of(&entry) {
                Ok(_) => usable += 1,
                Err(option) => skipped.push(format!(
                    "{}:{} (option {option:?} is not supported)",
                    path.display(),
                    number + 1
                )),
            }
        }
    }
    (usable, skipped)
}

/// One line of an authorized_keys file: its options (possibly empty) and its key. (ssh-key's
/// own parser takes `restrict KEY` without a comment for a key that does not parse.)
struct Entry {
    options: String,
    key: PublicKey,
}

fn parse_line(line: &str) -> Option<Entry> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    if let Ok(key) = PublicKey::from_openssh(line) {
        return Some(Entry {
            options: String::new(),
            key,
        });
    }
    // Options first, up to the first blank outside double quotes.
    let mut quoted = false;
    let end = line.char_indices().find_map(|(at, c)| match c {
        '"' => {
            quoted = !quoted;
            None
        }
        ' ' | '\t' if !quoted => Some(at),
        _ => None,
    })?;
    let (options, rest) = line.split_at(end);
    ConfigOptsIter::new(options).ok()?;
    let key = PublicKey::from_openssh(rest.trim_start()).ok()?;
    Some(Entry {
        options: options.to_string(),
        key,
    })
}

fn grant_of(entry: &Entry) -> Result<Grant, String> {
    let mut grant = Grant::ALL;
    let options = ConfigOptsIter::new(&entry.options).map_err(|_| entry.options.clone())?;
    for option in options {
        apply_option(&mut grant, option)?;
    }
    Ok(grant)
}

/// Whether `ip` is a loopback address (IPv4-mapped IPv6 included).
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOHyj58mvEIfYkXfgZyF3EUMNJLVo1jZqXSj0+A2FH56";
    const OTHER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAf+z6gi1hDeeSXWUF/mQWqRyUsV23BKD8CTi+a83IKt";

    fn lookup_in(text: &str, key: &str) -> Lookup {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authorized_keys");
        std::fs::write(&path, text).unwrap();
        let key = PublicKey::from_openssh(key).unwrap();
        lookup(&[dir.path().join("missing"), path], &key)
    }

    #[test]
    fn listed_keys_are_found_with_their_options() {
        let text =
            format!("# comment\n\n{OTHER} other\nno-pty,no-agent-forwarding {KEY} me@host\n");
        assert_eq!(
            lookup_in(&text, KEY),
            Lookup::Authorized(Grant {
                pty: false,
                port_forwarding: true
            })
        );
        assert_eq!(
            lookup_in(&format!("restrict,pty {KEY}\n"), KEY),
            Lookup::Authorized(Grant {
                pty: true,
                port_forwarding: false
            })
        );
        assert_eq!(
            lookup_in(&text, &format!("{KEY} other comment")),
            lookup_in(&text, KEY)
        );
    }

    #[test]
    fn unknown_keys_and_unsupported_options_are_refused() {
        assert_eq!(
            lookup_in(&format!("{OTHER}\nnot a key\n"), KEY),
            Lookup::Unknown { listed: 1 }
        );
        for option in [
            "command=\"true\"",
            "command=\"echo a, b\",no-pty",
            "from=\"10.0.0.1\"",
            "permitopen=\"localhost:80\"",
            "expiry-time=\"20200101\"",
        ] {
            assert_eq!(
                lookup_in(&format!("{option} {KEY}\n"), KEY),
                Lookup::Unknown { listed: 0 },
                "{option}"
            );
        }
        assert_eq!(lookup_in("", KEY), Lookup::Unknown { listed: 0 });
    }

    #[test]
    fn the_host_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/ssh_host_ed25519_key");
        let first = load_host_key(&path).unwrap();
        let second = load_host_key(&path).unwrap();
        assert_eq!(first.public_key(), second.public_key());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&path, "garbage").unwrap();
        assert!(load_host_key(&path)
            .unwrap_err()
            .contains("not an OpenSSH private key"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "garbage");
    }
}
