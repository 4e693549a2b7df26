//! Local SDK mode: the record of the one sandbox this toolboxd is, as a minimal Daytona control
//! plane sees it (state, name, labels, env). The HTTP side lives in `http::sdk_api`.

mod signing;

pub use signing::{verify_query, SigningKey};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::error::{Error, Result};

/// Lifecycle states the SDKs poll for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxState {
    /// Serving.
    Started,
    /// Stopped by `stop()` (the toolbox keeps serving: this is a record, not a VM).
    Stopped,
    /// Deleted: `get` answers 404 until the next `create`.
    Destroyed,
}

impl SandboxState {
    /// The control plane's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxState::Started => "started",
            SandboxState::Stopped => "stopped",
            SandboxState::Destroyed => "destroyed",
        }
    }
}

/// A snapshot of the sandbox record.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Fixed id (`DAYTONA_SANDBOX_ID` or `local`).
    pub id: String,
    /// Name given at create (default: the id).
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Env given at create (recorded, not applied).
    pub env: BTreeMap<String, String>,
    /// Lifecycle state.
    pub state: SandboxState,
    /// When it was (re)created.
    pub created_at: SystemTime,
    /// Last change.
    pub updated_at: SystemTime,
    /// The OS user toolboxd runs as (looked up once: NSS may be slow).
    pub user: String,
}

/// What `create` may set.
#[derive(Debug, Default, Clone)]
pub struct CreateSandbox {
    /// Name; default the id.
    pub name: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Env.
    pub env: BTreeMap<String, String>,
}

/// The one sandbox, shared by the control-plane handlers.
#[derive(Debug, Clone)]
pub struct SandboxStore {
    inner: Arc<Mutex<Sandbox>>,
}

impl SandboxStore {
    /// A started sandbox with id `id`.
    pub fn new(id: String) -> SandboxStore {
        let now = SystemTime::now();
        let sandbox = Sandbox {
            name: id.clone(),
            id,
            labels: BTreeMap::new(),
            env: BTreeMap::new(),
            state: SandboxState::Started,
            created_at: now,
            updated_at: now,
            user: current_user(),
        };
        SandboxStore {
            inner: Arc::new(Mutex::new(sandbox)),
        }
    }

    fn with<T>(&self, change: impl FnOnce(&mut Sandbox) -> T) -> T {
        let mut sandbox = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut sandbox)
    }

    /// The sandbox id.
    pub fn id(&self) -> String {
        self.with(|sandbox| sandbox.id.clone())
    }

    /// (Re)creates the sandbox: there is only one, so create hands it out with the new name,
    /// labels and env, started.
    pub fn create(&self, request: CreateSandbox) -> Sandbox {
        self.with(|sandbox| {
            let now = SystemTime::now();
            sandbox.name = request
                .name
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| sandbox.id.clone());
            sandbox.labels = request.labels;
            sandbox.env = request.env;
            sandbox.state = SandboxState::Started;
            sandbox.created_at = now;
            sandbox.updated_at = now;
            sandbox.clone()
        })
    }

    /// The sandbox when `id_or_name` names it and it is not destroyed.
    pub fn get(&self, id_or_name: &str) -> Result<Sandbox> {
        self.with(|sandbox| {
            let named = sandbox.id == id_or_name || sandbox.name == id_or_name;
            if named && sandbox.state != SandboxState::Destroyed {
                Ok(sandbox.clone())
            } else {
                Err(Error::not_found(format!("sandbox {id_or_name} not found")))
            }
        })
    }

    /// The sandboxes (zero or one) whose labels include every pair of `labels`.
    pub fn list(&self, labels: &BTreeMap<String, String>) -> Vec<Sandbox> {
        self.with(|sandbox| {
            let alive = sandbox.state != SandboxState::Destroyed;
            let matches = labels
                .iter()
                .all(|(key, value)| sandbox.labels.get(key) == Some(value));
            if alive && matches {
                vec![sandbox.clone()]
            } else {
                Vec::new()
            }
        })
    }

    /// Moves the sandbox to `state`.
    pub fn set_state(&self, id_or_name: &str, state: SandboxState) -> Result<Sandbox> {
        self.change(id_or_name, |sandbox| sandbox.state = state)
    }

    /// Replaces the labels.
    pub fn set_labels(
        &self,
        id_or_name: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Sandbox> {
        self.change(id_or_name, |sandbox| sandbox.labels = labels)
    }

    /// Applies `edit` to the live sandbox named `id_or_name`, under one lock (a concurrent
    /// delete cannot be undone by a late start).
    fn change(&self, id_or_name: &str, edit: impl FnOnce(&mut Sandbox)) -> Result<Sandbox> {
        self.with(|sandbox| {
            let named = sandbox.id == id_or_name || sandbox.name == id_or_name;
            if !named || sandbox.state == SandboxState::Destroyed {
                return Err(Error::not_found(format!("sandbox {id_or_name} not found")));
            }
            edit(sandbox);
            sandbox.updated_at = SystemTime::now();
            Ok(sandbox.clone())
        })
    }
}

fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|user| user.name)
        .unwrap_or_else(|| nix::unistd::geteuid().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_of_the_one_sandbox() {
        let store = SandboxStore::new("sb1".to_string());
        let labels = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let created = store.create(CreateSandbox {
            name: Some("named".into()),
            labels: labels.clone(),
            ..Default::default()
        });
        assert_eq!(created.name, "named");
        assert!(store.get("named").is_ok());
        assert_eq!(store.list(&labels).len(), 1);
        assert!(store
            .list(&BTreeMap::from([("k".to_string(), "x".to_string())]))
            .is_empty());
        store.set_state("sb1", SandboxState::Destroyed).unwrap();
        assert!(store.get("sb1").is_err());
        assert!(store.list(&BTreeMap::new()).is_empty());
        assert_eq!(
            store.create(CreateSandbox::default()).state,
            SandboxState::Started
        );
    }
}
