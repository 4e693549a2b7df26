//! Configuration at each scope, remotes, and the credential store (git's own
//! `~/.git-credentials` format, so the git CLI reads the same file).

use std::path::{Path, PathBuf};

use git2::Config;

use super::{git_error, Auth, Git};
use crate::error::{Error, ErrorKind, Result};

/// Where a config value lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigScope {
    /// `~/.gitconfig` (the default).
    Global,
    /// The repository's `config` (needs a path).
    Local,
    /// `/etc/gitconfig`.
    System,
}

impl ConfigScope {
    /// Parses `global|local|system` (empty is global).
    pub fn parse(text: Option<&str>) -> Result<ConfigScope> {
        Ok(
            match text.unwrap_or("").trim().to_ascii_lowercase().as_str() {
                "" | "global" => ConfigScope::Global,
                "local" => ConfigScope::Local,
                "system" => ConfigScope::System,
                other => {
                    return Err(Error::bad_request(format!(
                        "invalid scope {other:?}: expected global, local or system"
                    )))
                }
            },
        )
    }
}

impl Git {
    fn config_at(&self, scope: ConfigScope, path: Option<&str>) -> Result<Config> {
        let file: PathBuf = match scope {
            ConfigScope::Global => self.home().join(".gitconfig"),
            ConfigScope::System => PathBuf::from("/etc/gitconfig"),
            ConfigScope::Local => {
                let path = path
                    .filter(|p| !p.trim().is_empty())
                    .ok_or_else(|| Error::bad_request("scope local needs the repository path"))?;
                return self
                    .open(path)?
                    .config()
                    .and_then(|c| c.open_level(git2::ConfigLevel::Local))
                    .map_err(|e| git_error(e, &[]));
            }
        };
        self.libgit2();
        Config::open(&file).map_err(|e| git_error(e, &[]))
    }

    /// A config value at `scope`, `None` when unset.
    pub fn get_config(
        &self,
        key: &str,
        scope: ConfigScope,
        path: Option<&str>,
    ) -> Result<Option<String>> {
        check_key(key)?;
        let _serial = config_lock();
        let config = self.config_at(scope, path)?;
        match config.get_string(key) {
            Ok(value) => Ok(Some(value)),
            Err(err) if err.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(err) => Err(git_error(err, &[])),
        }
    }

    /// Sets a config value at `scope`.
    pub fn set_config(
        &self,
        key: &str,
        value: &str,
        scope: ConfigScope,
        path: Option<&str>,
    ) -> Result<()> {
        check_key(key)?;
        let _serial = config_lock();
        let mut config = self.config_at(scope, path)?;
        config.set_str(key, value).map_err(|err| {
            let mapped = git_error(err, &[]);
            if mapped.message.contains("ermission") {
                Error::new(ErrorKind::AccessDenied, mapped.message)
            } else {
                mapped
            }
        })
    }

    /// Remotes with their fetch URLs, by name.
    pub fn remotes(&self, path: &std::ffi::OsStr) -> Result<Vec<(String, String)>> {
        let repo = self.open(path)?;
        let names = repo.remotes().map_err(|e| git_error(e, &[]))?;
        let mut remotes = Vec::new();
        for name in names.iter().flatten() {
            let remote = repo.find_remote(name).map_err(|e| git_error(e, &[]))?;
            remotes.push((
                name.to_string(),
                remote.url().unwrap_or_default().to_string(),
            ));
        }
        Ok(remotes)
    }

    /// Adds (or with `overwrite`, repoints) a remote, and fetches it when asked.
    pub fn add_remote(
        &self,
        path: &str,
        name: &str,
        url: &str,
        fetch: bool,
        overwrite: bool,
    ) -> Result<()> {
        let repo = self.open(path)?;
        if name.trim().is_empty() {
            return Err(Error::missing("name"));
        }
        if url.trim().is_empty() {
            return Err(Error::missing("url"));
        }
        if repo.find_remote(name).is_ok() {
            if !overwrite {
                return Err(Error::conflict(format!(
                    "remote already exists: {name} (set overwrite to replace it)"
                )));
            }
            repo.remote_set_url(name, url)
                .map_err(|e| git_error(e, &[]))?;
        } else {
            repo.remote(name, url).map_err(|e| git_error(e, &[]))?;
        }
        if fetch {
            self.fetch_remote(&repo, name, &Auth::default())?;
        }
        Ok(())
    }

    /// Stores credentials for `protocol://host` in `~/.git-credentials` (mode 0600), replacing
    /// any earlier ones for the same host, and turns on `credential.helper=store`.
    pub fn store_credentials(
        &self,
        username: &str,
        password: &str,
        host: &str,
        protocol: &str,
    ) -> Result<()> {
        if username.is_empty() || password.is_empty() {
            return Err(Error::bad_request("username and password are required"));
        }
        if host.contains(['/', '@', ' ', '\n']) || protocol.contains([':', '/', ' ', '\n']) {
            return Err(Error::bad_request(
                "host is a name with an optional port, protocol a scheme such as https",
            ));
        }
        CredentialStore::new(self.home()).store(protocol, host, username, password)?;
        let _serial = config_lock();
        let mut config = self.config_at(ConfigScope::Global, None)?;
        if config.get_string("credential.helper").is_err() {
            config
                .set_str("credential.helper", "store")
                .map_err(|e| git_error(e, &[]))?;
        }
        Ok(())
    }
}

/// Config reads and writes one at a time: libgit2 rewrites a config file through a `.lock`
/// file and a rename, and a reader or a second writer meanwhile fails (`could not read`,
/// `failed to lock file`), which concurrent requests made 500s and 409s.
fn config_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What git accepts as a config key: `section.name` or `section.subsection.name`; the section
/// of letters, digits and `-`, the subsection anything but a newline or NUL, the name a letter
/// then letters, digits and `-`. The OpenAPI document declares the same pattern.
pub const CONFIG_KEY_PATTERN: &str = r"^[A-Za-z0-9-]+(\.[^\n\x00]*)?\.[A-Za-z][A-Za-z0-9-]*$";

/// A config key must be `section.name` (or `section.sub.name`), as [`CONFIG_KEY_PATTERN`] says.
fn check_key(key: &str) -> Result<()> {
    static KEY: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(CONFIG_KEY_PATTERN).expect("valid pattern"));
    if key.trim().is_empty() {
        return Err(Error::missing("key"));
    }
    if !KEY.is_match(key) {
        return Err(Error::bad_request(format!(
            "invalid config key {key:?}: expected section.name"
        )));
    }
    Ok(())
}

/// git's plain-text credential store: one `protocol://user:password@host` URL per line, the
/// user and password percent-encoded.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    file: PathBuf,
}

impl CredentialStore {
    /// The store in `home`.
    pub fn new(home: &Path) -> CredentialStore {
        CredentialStore {
            file: home.join(".git-credentials"),
        }
    }

    /// The stored `(user, password)` for `url`'s scheme and host (and user, when the URL names
    /// one).
    pub fn lookup(&self, url: &str, user: Option<&str>) -> Option<(String, String)> {
        let (protocol, host) = scheme_and_host(url)?;
        let text = std::fs::read_to_string(&self.file).ok()?;
        text.lines().find_map(|line| {
            let entry = parse_entry(line.trim())?;
            let same = entry.protocol == protocol
                && entry.host.eq_ignore_ascii_case(&host)
                && user.is_none_or(|u| u == entry.user);
            same.then_some((entry.user, entry.password))
        })
    }

    fn store(&self, protocol: &str, host: &str, user: &str, password: &str) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let kept: Vec<String> = std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .filter(|line| {
                parse_entry(line.trim())
                    .is_none_or(|e| !(e.protocol == protocol && e.host.eq_ignore_ascii_case(host)))
            })
            .map(str::to_string)
            .collect();
        let encode =
            |s: &str| percent_encoding::utf8_percent_encode(s, super::USERINFO).to_string();
        let mut text = format!(
            "{protocol}://{}:{}@{host}\n",
            encode(user),
            encode(password)
        );
        for line in kept.iter().filter(|l| !l.trim().is_empty()) {
            text.push_str(line);
            text.push('\n');
        }
        let dir = self.file.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, &e))?;
        let mut temp =
            tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io("create", dir, &e))?;
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io("chmod", &self.file, &e))?;
        temp.write_all(text.as_bytes())
            .map_err(|e| Error::io("write", &self.file, &e))?;
        temp.persist(&self.file)
            .map_err(|e| Error::io("write", &self.file, &e.error))?;
        Ok(())
    }
}

struct Entry {
    protocol: String,
    host: String,
    user: String,
    password: String,
}

fn parse_entry(line: &str) -> Option<Entry> {
    let (protocol, rest) = line.split_once("://")?;
    let (userinfo, host) = rest.rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':')?;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    Some(Entry {
        protocol: protocol.to_string(),
        host: host.trim_end_matches('/').to_string(),
        user: decode(user),
        password: decode(password),
    })
}

/// `("https", "host:port")` of a URL.
fn scheme_and_host(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some((scheme.to_ascii_lowercase(), host.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_round_trip_in_gits_format() {
        let home = tempfile::tempdir().unwrap();
        let store = CredentialStore::new(home.path());
        store
            .store("https", "example.com", "bob", "p@ss:w/rd")
            .unwrap();
        store.store("http", "127.0.0.1:8080", "al", "x").unwrap();
        store.store("https", "example.com", "bob", "new").unwrap();
        let text = std::fs::read_to_string(home.path().join(".git-credentials")).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("http://al:x@127.0.0.1:8080"));
        assert_eq!(
            store.lookup("https://example.com/o/r.git", None),
            Some(("bob".into(), "new".into()))
        );
        assert_eq!(store.lookup("https://example.com/x", Some("eve")), None);
        assert_eq!(
            store.lookup("http://127.0.0.1:8080/r.git", None),
            Some(("al".into(), "x".into()))
        );
        store.store("https", "h", "u", "p@ss:w/rd").unwrap();
        assert_eq!(store.lookup("https://h/r", None).unwrap().1, "p@ss:w/rd");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.path().join(".git-credentials"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
