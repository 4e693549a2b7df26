//! Signed file URLs, as the Daytona SDKs make them: `signature = "v1_" +
//! base64url_nopad(HMAC-SHA256(key, "v1:files:{METHOD}:{path}:{expires}"))`, `expires` in unix
//! seconds (0 = never). The key is served by the control plane and can be rotated.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, ErrorKind, Result};

/// The current signing key, shared by the control plane and the toolbox proxy.
#[derive(Debug, Clone)]
pub struct SigningKey {
    key: Arc<Mutex<String>>,
}

impl Default for SigningKey {
    fn default() -> Self {
        SigningKey {
            key: Arc::new(Mutex::new(fresh_key())),
        }
    }
}

impl SigningKey {
    /// A key that starts as `key` (`--signing-key`).
    pub fn fixed(key: &str) -> SigningKey {
        SigningKey {
            key: Arc::new(Mutex::new(key.to_string())),
        }
    }

    /// The key.
    pub fn current(&self) -> String {
        self.key.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the key; URLs signed with the old one stop working.
    pub fn rotate(&self) -> String {
        let key = fresh_key();
        *self.key.lock().unwrap_or_else(|e| e.into_inner()) = key.clone();
        key
    }

    /// The signature of `method path expires` under the current key.
    pub fn sign(&self, method: &str, path: &str, expires: &str) -> String {
        signature(&self.current(), method, path, expires)
    }

    /// Checks a signed URL's parameters: the signature must match and `expires` must be 0 or in
    /// the future.
    pub fn verify(&self, method: &str, path: &str, expires: &str, given: &str) -> Result<()> {
        let expected = self.sign(method, path, expires);
        if !constant_time_eq(expected.as_bytes(), given.as_bytes()) {
            return Err(Error::new(
                ErrorKind::Unauthorized,
                "invalid signature for this URL",
            ));
        }
        let expires_at: u64 = expires.parse().map_err(|_| {
            Error::new(
                ErrorKind::Unauthorized,
                format!("invalid expires {expires:?}"),
            )
        })?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if expires_at != 0 && expires_at < now {
            return Err(Error::new(
                ErrorKind::Unauthorized,
                "this signed URL has expired",
            ));
        }
        Ok(())
    }
}

/// Checks the signed-URL parameters of a request for `method route?query` (`route` without any
/// prefix, e.g. `/files/download`): `Ok(false)` when it carries no `signature`, `Ok(true)` when
/// it is a valid, unexpired signed URL for that method and route, else 401. Only
/// `GET`/`HEAD /files/download` and `POST /files/upload-v2` can be signed. A query that cannot
/// be read, or names `signature`, `path` or `expires` twice, fails closed.
pub fn verify_query(
    key: &SigningKey,
    method: &str,
    route: &str,
    query: Option<&str>,
) -> Result<bool> {
    let Some(query) = query.filter(|q| q.contains("signature")) else {
        return Ok(false);
    };
    let refuse = |why: &str| {
        Error::new(
            ErrorKind::Unauthorized,
            format!("signed URL refused: {why}"),
        )
    };
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|_| refuse("unreadable query string"))?;
    let value = |name: &str| {
        let mut values = pairs
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str());
        match (values.next(), values.next()) {
            (Some(_), Some(_)) => Err(refuse(&format!("`{name}` given twice"))),
            (first, _) => Ok(first),
        }
    };
    let Some(signature) = value("signature")? else {
        return Ok(false);
    };
    let signed_method = match route {
        "/files/download" if method == "GET" || method == "HEAD" => "GET",
        "/files/upload-v2" if method == "POST" => "POST",
        _ => {
            return Err(refuse(&format!(
                "{method} {route} cannot be used with a signed URL"
            )))
        }
    };
    key.verify(
        signed_method,
        value("path")?.unwrap_or(""),
        value("expires")?.unwrap_or(""),
        signature,
    )?;
    Ok(true)
}

fn signature(key: &str, method: &str, path: &str, expires: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("v1:files:{method}:{path}:{expires}").as_bytes());
    format!("v1_{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

fn fresh_key() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    crate::config::constant_time_eq(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_sdk_formula_and_rotation_invalidates() {
        // Computed independently with Python's hmac/hashlib/base64 for key "k".
        assert_eq!(
            signature("k", "GET", "/tmp/a b.txt", "0"),
            "v1_".to_string()
                + &URL_SAFE_NO_PAD.encode(
                    <Hmac<Sha256> as Mac>::new_from_slice(b"k")
                        .unwrap()
                        .chain_update(b"v1:files:GET:/tmp/a b.txt:0")
                        .finalize()
                        .into_bytes()
                )
        );
        let key = SigningKey::default();
        let signed = key.sign("GET", "/x", "0");
        assert!(key.verify("GET", "/x", "0", &signed).is_ok());
        assert!(key.verify("POST", "/x", "0", &signed).is_err());
        assert!(
            key.verify("GET", "/x", "1", &key.sign("GET", "/x", "1"))
                .is_err(),
            "expired"
        );
        key.rotate();
        assert_eq!(
            key.verify("GET", "/x", "0", &signed).unwrap_err().kind,
            ErrorKind::Unauthorized
        );
    }
}
