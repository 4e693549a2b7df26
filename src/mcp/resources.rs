//! The work dir's files as MCP resources: `file://` URIs, listed in pages (a walk that honours
//! `.gitignore` and skips hidden entries, as an editor's file list does), read as text or base64,
//! and subscribed to: the watch hub (`src/watch/`) tells of every change, and the session gets
//! `notifications/resources/updated` for the file. Subscriptions end with the MCP session.

use base64::Engine;
use lsp_types::Url;
use rmcp::model::{
    ListResourcesResult, ReadResourceResponse, ReadResourceResult, Resource, ResourceContents,
    ResourceUpdatedNotificationParam, SubscriptionFilter,
};
use rmcp::service::{Peer, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer};

use super::{blocking, Toolbox};
use crate::error::{Error, ErrorKind};

/// Resources per page of `resources/list`.
pub const PAGE: usize = 100;
/// The largest file `resources/read` returns.
pub const MAX_RESOURCE: u64 = 8 * 1024 * 1024;

impl Toolbox {
    /// One page of the work dir's files, from `cursor` (an opaque position from the previous
    /// page). Files created or removed between pages may shift it.
    pub(super) async fn resources_page(
        &self,
        cursor: Option<String>,
    ) -> Result<ListResourcesResult, McpError> {
        let start = match cursor.as_deref() {
            None | Some("") => 0,
            Some(text) => text
                .parse::<usize>()
                .map_err(|_| McpError::invalid_params(format!("invalid cursor {text:?}"), None))?,
        };
        let root = self.app.config.workdir.clone();
        let (resources, more) = blocking(move || Ok(walk_page(&root, start)))
            .await
            .map_err(|err| McpError::internal_error(err.message, None))?;
        let mut page = ListResourcesResult::with_all_items(resources);
        if more {
            page.next_cursor = Some((start + PAGE).to_string());
        }
        Ok(page)
    }

    /// The content of the file a `file://` URI names.
    pub(super) async fn read_file_resource(
        &self,
        uri: &str,
    ) -> Result<ReadResourceResponse, McpError> {
        let path = file_path(uri)?;
        let files = self.app.files.clone();
        let uri = uri.to_string();
        let shown = path.display().to_string();
        let (bytes, size) = blocking(move || files.read_head(&path, MAX_RESOURCE as usize + 1))
            .await
            .map_err(|err| resource_error(&uri, &err))?;
        if size > MAX_RESOURCE || bytes.len() as u64 > MAX_RESOURCE {
            return Err(McpError::invalid_params(
                format!(
                    "{shown} is {size} bytes, over the {} MiB a resource read returns: read it in \
                     parts with the download_file tool or GET /files/download",
                    MAX_RESOURCE / (1024 * 1024)
                ),
                None,
            ));
        }
        let mime = mime_guess::from_path(&shown).first_raw();
        let text = (!bytes.contains(&0))
            .then(|| String::from_utf8(bytes.clone()).ok())
            .flatten();
        let contents = match text {
            Some(text) => {
                ResourceContents::text(text, &uri).with_mime_type(mime.unwrap_or("text/plain"))
            }
            None => ResourceContents::blob(
                base64::engine::general_purpose::STANDARD.encode(&bytes),
                &uri,
            )
            .with_mime_type(mime.unwrap_or("application/octet-stream")),
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    /// Starts telling this session about changes to the file `uri` names (again: no-op).
    pub(super) async fn subscribe_resource(
        &self,
        uri: String,
        peer: Peer<RoleServer>,
    ) -> Result<(), McpError> {
        let path = file_path(&uri)?;
        if self.lock_subscriptions().contains_key(&uri) {
            return Ok(());
        }
        let watch = self.app.watch.clone();
        let mut subscription = blocking(move || watch.subscribe(&path, false, false))
            .await
            .map_err(|err| resource_error(&uri, &err))?;
        let notified = uri.clone();
        let task = tokio::spawn(async move {
            while subscription.events.recv().await.is_some() {
                if peer
                    .notify_resource_updated(ResourceUpdatedNotificationParam::new(
                        notified.as_str(),
                    ))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        if let Some(old) = self.lock_subscriptions().insert(uri, task) {
            old.abort();
        }
        Ok(())
    }

    /// The `subscriptions/listen` stream (2026-07-28): tells of changes to every `file://` URI
    /// it accepted until the client closes it.
    pub(super) async fn listen_resources(
        &self,
        context: SubscriptionContext,
    ) -> Result<(), McpError> {
        let uris = context
            .accepted()
            .resource_subscriptions
            .clone()
            .unwrap_or_default();
        let (changed, mut changes) = tokio::sync::mpsc::channel::<String>(64);
        let mut watchers = tokio::task::JoinSet::new();
        for uri in uris {
            let path = file_path(&uri)?;
            let watch = self.app.watch.clone();
            let mut subscription =
                match blocking(move || watch.subscribe(&path, false, false)).await {
                    Ok(subscription) => subscription,
                    // Removed since the ack: there is nothing to tell about it.
                    Err(err) => {
                        tracing::debug!(%uri, "resource not watched: {}", err.message);
                        continue;
                    }
                };
            let changed = changed.clone();
            watchers.spawn(async move {
                while subscription.events.recv().await.is_some() {
                    if changed.send(uri.clone()).await.is_err() {
                        break;
                    }
                }
            });
        }
        drop(changed);
        loop {
            tokio::select! {
                () = context.cancelled() => break,
                uri = changes.recv() => {
                    let Some(uri) = uri else {
                        // Every watched file is gone: nothing more will come.
                        context.cancelled().await;
                        break;
                    };
                    if context.sink().notify_resource_updated(uri).await.is_err() {
                        break;
                    }
                }
            }
        }
        // Dropping the set aborts the watchers, which releases their kernel watches.
        drop(watchers);
        Ok(())
    }

    /// Stops telling this session about `uri`.
    pub(super) fn unsubscribe_resource(&self, uri: &str) {
        if let Some(task) = self.lock_subscriptions().remove(uri) {
            task.abort();
        }
    }

    fn lock_subscriptions(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, tokio::task::JoinHandle<()>>>
    {
        self.subscriptions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The path of a `file://` URI (absolute, percent-decoded).
fn file_path(uri: &str) -> Result<std::path::PathBuf, McpError> {
    let url = Url::parse(uri).map_err(|err| {
        McpError::invalid_params(format!("invalid resource URI {uri:?}: {err}"), None)
    })?;
    if url.scheme() != "file" {
        return Err(McpError::invalid_params(
            format!("unsupported resource URI {uri:?}: resources are file:// URIs"),
            None,
        ));
    }
    url.to_file_path().map_err(|()| {
        McpError::invalid_params(format!("resource URI {uri:?} names no local file"), None)
    })
}

/// The part of a `subscriptions/listen` filter served: resource updates for `file://` URIs (a
/// file that cannot be watched when the stream starts, e.g. a missing one, tells nothing).
pub(super) fn accepted_filter(requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
    let uris: Vec<String> = requested
        .resource_subscriptions
        .iter()
        .flatten()
        .filter(|uri| file_path(uri).is_ok())
        .cloned()
        .collect();
    let mut filter = SubscriptionFilter::new();
    filter.resource_subscriptions = Some(uris);
    Some(filter)
}

/// A capability error as the protocol error of a resource request.
fn resource_error(uri: &str, err: &Error) -> McpError {
    match err.kind {
        ErrorKind::FileNotFound => McpError::resource_not_found(
            err.message.clone(),
            Some(serde_json::json!({ "uri": uri })),
        ),
        kind if kind.status() < 500 => McpError::invalid_params(err.message.clone(), None),
        _ => McpError::internal_error(err.message.clone(), None),
    }
}

/// Files `start..start + PAGE` of a sorted walk of `root`, and whether more follow.
fn walk_page(root: &std::path::Path, start: usize) -> (Vec<Resource>, bool) {
    let walk = ignore::WalkBuilder::new(root)
        .sort_by_file_name(|a, b| a.cmp(b))
        .build()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_some_and(|t| t.is_file()));
    let mut page = Vec::new();
    let mut more = false;
    for entry in walk.skip(start) {
        if page.len() == PAGE {
            more = true;
            break;
        }
        let path = entry.path();
        let Ok(url) = Url::from_file_path(path) else {
            continue;
        };
        let name = path
            .strip_prefix(root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        let mut resource = Resource::new(url.to_string(), name);
        if let Some(mime) = mime_guess::from_path(path).first_raw() {
            resource = resource.with_mime_type(mime);
        }
        if let Ok(metadata) = entry.metadata() {
            resource = resource.with_size(metadata.len());
        }
        page.push(resource);
    }
    (page, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_local_files() {
        let path = file_path("file:///tmp/a%20b.txt").expect("path");
        assert_eq!(path, std::path::Path::new("/tmp/a b.txt"));
        assert!(file_path("https://example.com/x").is_err());
        assert!(file_path("not a uri").is_err());
    }

    #[test]
    fn pages_walk_sorted_files_without_hidden_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        for i in 0..(PAGE + 5) {
            std::fs::write(dir.path().join(format!("f{i:03}.txt")), "x").expect("write");
        }
        std::fs::create_dir(dir.path().join(".hidden")).expect("mkdir");
        std::fs::write(dir.path().join(".hidden/secret"), "x").expect("write");
        let (first, more) = walk_page(dir.path(), 0);
        assert_eq!(first.len(), PAGE);
        assert!(more);
        assert_eq!(first[0].name, "f000.txt");
        assert!(first[0].uri.starts_with("file:///"));
        let (rest, more) = walk_page(dir.path(), PAGE);
        assert_eq!(rest.len(), 5);
        assert!(!more);
        assert_eq!(rest[4].name, "f104.txt");
    }
}
