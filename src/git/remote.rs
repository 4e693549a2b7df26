//! Talking to remotes: clone, pull, push, and the options every transfer shares (credentials
//! from the request or the credential store, TLS verification, proxies from the environment).

use std::cell::Cell;
use std::path::Path;

use git2::build::{CheckoutBuilder, CloneLocal, RepoBuilder};
use git2::{
    AnnotatedCommit, AutotagOption, BranchType, CertificateCheckStatus, Cred, CredentialType,
    FetchOptions, MergeAnalysis, Oid, PushOptions, RemoteCallbacks, Repository,
};

use super::shallow::{self, Plan};
use super::{error, git_error, url_has_password, workdir, Auth, CredentialStore, Git};
use crate::error::{Error, ErrorKind, Result};

/// `POST /git/clone`.
#[derive(Debug, Clone, Default)]
pub struct CloneRequest {
    /// What to clone.
    pub url: String,
    /// Where (must not exist, or be an empty directory).
    pub path: String,
    /// Only this branch, checked out.
    pub branch: Option<String>,
    /// Check out this commit (detached) after cloning.
    pub commit_id: Option<String>,
    /// Shallow: this many commits (over http(s) and for `file://` URLs; a plain path copies
    /// everything, as git does, and the report says so).
    pub depth: Option<u32>,
    /// Credentials.
    pub auth: Auth,
    /// Accept any TLS certificate.
    pub insecure_skip_tls: bool,
}

/// What a clone has to tell besides success.
#[derive(Debug, Clone, Default)]
pub struct CloneReport {
    /// Something the clone did not do as asked, and why (a depth a plain path ignores).
    pub warning: Option<String>,
}

/// What a clone is doing, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneStage {
    /// Objects arriving from the remote (`done` of `total` objects).
    Receiving,
    /// Deltas being resolved (`done` of `total` deltas).
    Resolving,
    /// Files being written into the work tree (`done` of `total` files).
    CheckingOut,
}

/// One progress report of a clone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloneProgress {
    /// The stage.
    pub stage: CloneStage,
    /// Items done in this stage.
    pub done: usize,
    /// Items in this stage (0 while unknown).
    pub total: usize,
}

/// Watches a clone from the cloning thread: told each progress report, and asked whether to
/// stop (a stopped clone fails with `Cancelled` and leaves the directory as it was).
pub trait CloneObserver: Sync {
    /// One progress report.
    fn progress(&self, report: CloneProgress);
    /// True once the clone should stop.
    fn cancelled(&self) -> bool;
}

/// `POST /git/pull`.
#[derive(Debug, Clone, Default)]
pub struct PullRequest {
    /// The repository.
    pub path: String,
    /// Default: the branch's upstream remote, else `origin`.
    pub remote: Option<String>,
    /// Default: the branch's upstream branch, else the current branch's name.
    pub branch: Option<String>,
    /// Credentials.
    pub auth: Auth,
}

/// `POST /git/push`.
#[derive(Debug, Clone, Default)]
pub struct PushRequest {
    /// The repository.
    pub path: String,
    /// Default: `origin`.
    pub remote: Option<String>,
    /// Default: the current branch.
    pub branch: Option<String>,
    /// Record `remote/branch` as the branch's upstream.
    pub set_upstream: bool,
    /// Credentials.
    pub auth: Auth,
}

/// Callbacks and options for one transfer.
struct Transfer<'a> {
    auth: &'a Auth,
    store: CredentialStore,
    insecure: bool,
    /// Set once a credential was offered: a second ask means it was refused.
    offered: Cell<u32>,
    /// Told about received objects and resolved deltas.
    observer: Option<&'a dyn CloneObserver>,
    /// Set when the observer asked to stop.
    stopped: Cell<bool>,
}

impl<'a> Transfer<'a> {
    fn new(git: &Git, auth: &'a Auth, insecure: bool) -> Transfer<'a> {
        Transfer {
            auth,
            store: CredentialStore::new(git.home()),
            insecure,
            offered: Cell::new(0),
            observer: None,
            stopped: Cell::new(false),
        }
    }

    fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(move |url, username_from_url, allowed| {
            let attempt = self.offered.get();
            self.offered.set(attempt + 1);
            if attempt > 0 {
                return Err(git2::Error::new(
                    git2::ErrorCode::Auth,
                    git2::ErrorClass::Http,
                    "authentication failed: the remote refused the credentials",
                ));
            }
            if !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                return Err(git2::Error::new(
                    git2::ErrorCode::Auth,
                    git2::ErrorClass::Http,
                    "authentication required: only username/password (https) is supported",
                ));
            }
            let from_request = self.auth.password.as_deref().map(|password| {
                let user = self
                    .auth
                    .username
                    .as_deref()
                    .filter(|u| !u.is_empty())
                    .or(username_from_url)
                    .unwrap_or("git");
                (user.to_string(), password.to_string())
            });
            match from_request.or_else(|| self.store.lookup(url, username_from_url)) {
                Some((user, password)) => Cred::userpass_plaintext(&user, &password),
                // libgit2 offers a URL's `user:password@` itself, before asking: they were refused.
                None if url_has_password(url) => Err(git2::Error::new(
                    git2::ErrorCode::Auth,
                    git2::ErrorClass::Http,
                    "authentication failed: the remote refused the username and password in the \
                     URL",
                )),
                None => Err(git2::Error::new(
                    git2::ErrorCode::Auth,
                    git2::ErrorClass::Http,
                    "authentication required: give username and password, or store them with \
                     /git/credentials",
                )),
            }
        });
        if let Some(observer) = self.observer {
            callbacks.transfer_progress(move |stats| {
                let resolving =
                    stats.total_deltas() > 0 && stats.received_objects() == stats.total_objects();
                let report = if resolving {
                    CloneProgress {
                        stage: CloneStage::Resolving,
                        done: stats.indexed_deltas(),
                        total: stats.total_deltas(),
                    }
                } else {
                    CloneProgress {
                        stage: CloneStage::Receiving,
                        done: stats.received_objects(),
                        total: stats.total_objects(),
                    }
                };
                observer.progress(report);
                if observer.cancelled() {
                    self.stopped.set(true);
                    return false;
                }
                true
            });
        }
        let insecure = self.insecure;
        // Only TLS certificates: an SSH host key is never waved through.
        callbacks.certificate_check(move |cert, _| {
            Ok(if insecure && cert.as_x509().is_some() {
                CertificateCheckStatus::CertificateOk
            } else {
                CertificateCheckStatus::CertificatePassthrough
            })
        });
        callbacks
    }

    fn fetch_options(&self) -> FetchOptions<'_> {
        let mut options = FetchOptions::new();
        options.remote_callbacks(self.callbacks());
        let mut proxy = git2::ProxyOptions::new();
        proxy.auto();
        options.proxy_options(proxy);
        options
    }

    fn secrets(&self) -> Vec<&str> {
        self.auth.password.as_deref().into_iter().collect()
    }

    /// Maps a transfer error; a refused credential is always an auth failure.
    fn error(&self, err: git2::Error) -> Error {
        if self.stopped.get() {
            return cancelled();
        }
        let mapped = git_error(err, &self.secrets());
        if self.offered.get() > 1 && mapped.kind != ErrorKind::GitAuthFailed {
            return Error::new(ErrorKind::GitAuthFailed, mapped.message);
        }
        mapped
    }
}

/// The error of a clone its observer stopped.
fn cancelled() -> Error {
    Error::new(
        ErrorKind::Cancelled,
        "cancelled: the clone was stopped and its directory left as it was",
    )
}

impl Git {
    /// Clones `request.url` into `request.path`, streaming the pack to disk.
    pub fn clone_repo(&self, request: &CloneRequest) -> Result<CloneReport> {
        self.clone_repo_observed(request, None)
    }

    /// `clone_repo`, reporting progress to `observer` (which may cancel it: then the clone fails
    /// with `Cancelled` and the directory is left as it was).
    pub fn clone_repo_observed(
        &self,
        request: &CloneRequest,
        observer: Option<&dyn CloneObserver>,
    ) -> Result<CloneReport> {
        self.libgit2();
        if request.url.trim().is_empty() {
            return Err(Error::missing("url"));
        }
        let target = self.resolve(&request.path)?;
        let created = match std::fs::read_dir(&target) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(Error::conflict(format!(
                        "cannot clone into {}: the directory exists and is not empty",
                        target.display()
                    )));
                }
                false
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => true,
            Err(err) => return Err(Error::io("open", &target, &err)),
        };
        let result = self.clone_into(request, &target, observer);
        if result.is_err() {
            // Leave nothing half-made behind: the directory as it was.
            if created {
                let _ = std::fs::remove_dir_all(&target);
            } else if let Ok(entries) = std::fs::read_dir(&target) {
                for entry in entries.flatten() {
                    let _ = std::fs::remove_dir_all(entry.path())
                        .or_else(|_| std::fs::remove_file(entry.path()));
                }
            }
        }
        result
    }

    fn clone_into(
        &self,
        request: &CloneRequest,
        target: &Path,
        observer: Option<&dyn CloneObserver>,
    ) -> Result<CloneReport> {
        let mut transfer = Transfer::new(self, &request.auth, request.insecure_skip_tls);
        transfer.observer = observer;
        let mut fetch = transfer.fetch_options();
        let branch = request.branch.as_deref().filter(|b| !b.is_empty());
        let mut report = CloneReport::default();
        // How the depth is honoured: libgit2 fetches shallow over http(s); a `file://` clone is
        // packed here (`shallow.rs`); a plain path copies everything, as git does.
        let mut plan = None;
        let mut fetch_depth = None;
        if let Some(depth) = request.depth.filter(|d| *d > 0) {
            if !is_local(&request.url) {
                let depth = depth.min(i32::MAX as u32) as i32;
                fetch_depth = Some(depth);
                fetch.depth(depth);
            } else if let Some(path) = shallow::file_url_path(&request.url) {
                plan = Plan::new(&path, branch, depth)?;
            } else if !request.url.starts_with("file://") {
                report.warning = Some(format!(
                    "depth is ignored for a local path, as git ignores it: the whole history of \
                     {} was copied; give a file:// URL for a shallow clone",
                    request.url
                ));
            }
        }
        let mut repo = match &plan {
            Some(plan) => clone_shallow(&request.url, branch, target, plan)?,
            None => {
                let mut builder = RepoBuilder::new();
                builder.fetch_options(fetch);
                if is_local(&request.url) {
                    // Copy (hard-link where possible) the source's packs instead of having
                    // libgit2's local transport build a new pack in memory: git's own behaviour
                    // for plain paths, and the difference between 1 GiB and a few MiB of daemon
                    // memory on a big repository.
                    builder.clone_local(CloneLocal::Local);
                }
                if let Some(branch) = branch {
                    builder.branch(branch);
                    let spec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
                    builder.remote_create(move |repo, name, url| {
                        repo.remote_with_fetch(name, url, &spec)
                    });
                }
                if let Some(observer) = observer {
                    // The checkout cannot be stopped part way: a cancel asked for during it is
                    // honoured once it is done (and the clone removed again, by the caller).
                    let mut checkout = CheckoutBuilder::new();
                    checkout.progress(move |_, done, total| {
                        observer.progress(CloneProgress {
                            stage: CloneStage::CheckingOut,
                            done,
                            total,
                        });
                    });
                    builder.with_checkout(checkout);
                }
                builder.clone(&request.url, target).map_err(|err| {
                    let missing_branch = err.class() == git2::ErrorClass::Reference
                        && err.code() == git2::ErrorCode::NotFound;
                    let mapped = transfer.error(err);
                    match &request.branch {
                        Some(branch) if missing_branch => error(
                            ErrorKind::GitBranchNotFound,
                            format!("branch not found on the remote: {branch}"),
                        ),
                        _ => mapped,
                    }
                })?
            }
        };
        if request.insecure_skip_tls && is_http(&request.url) {
            // Later pulls and pushes (which have no such flag on the wire) honour it for this
            // URL only, as git honours `http.<url>.sslVerify` in the repository's config.
            repo.config()
                .and_then(|mut config| {
                    config.set_bool(&format!("http.{}.sslVerify", request.url), false)
                })
                .map_err(|e| git_error(e, &[]))?;
        }
        if let Some(commit) = request.commit_id.as_deref().filter(|c| !c.is_empty()) {
            let found = repo.revparse_single(commit).map(|object| object.id());
            let oid = match (found, &plan) {
                (Ok(oid), _) => oid,
                // Not in the shallow history of a `file://` clone: pack it from the source.
                (Err(_), Some(plan)) => {
                    let oid = plan.fetch_commit(&repo, commit)?;
                    repo = reopen(&repo)?;
                    oid
                }
                // Not in the (shallow or single-branch) history: ask the remote for it.
                (Err(_), None) => {
                    let oid = Oid::from_str(commit).map_err(|_| {
                        error(
                            ErrorKind::GitBranchNotFound,
                            format!("commit not found: {commit}"),
                        )
                    })?;
                    let mut remote = repo.find_remote("origin").map_err(|e| git_error(e, &[]))?;
                    // A transfer of its own: the clone's has offered the credentials already,
                    // and would take a second ask for a refusal.
                    let refetch = Transfer::new(self, &request.auth, request.insecure_skip_tls);
                    let mut fetch = refetch.fetch_options();
                    if let Some(depth) = fetch_depth {
                        fetch.depth(depth);
                    }
                    remote
                        .fetch(&[commit], Some(&mut fetch), None)
                        .map_err(|err| {
                            // A server refusing an unknown commit answers with a protocol
                            // error; refused credentials and certificates say what they are.
                            let tls = err.class() == git2::ErrorClass::Ssl
                                || err.code() == git2::ErrorCode::Certificate;
                            let mapped = refetch.error(err);
                            if tls || mapped.kind == ErrorKind::GitAuthFailed {
                                return mapped;
                            }
                            error(
                                ErrorKind::GitBranchNotFound,
                                format!("commit not found on the remote: {commit}"),
                            )
                        })?;
                    oid
                }
            };
            let object = repo.find_object(oid, None).map_err(|_| {
                error(
                    ErrorKind::GitBranchNotFound,
                    format!("commit not found: {commit}"),
                )
            })?;
            repo.checkout_tree(&object, Some(CheckoutBuilder::new().force()))
                .map_err(|e| git_error(e, &[]))?;
            repo.set_head_detached(object.peel_to_commit().map_err(|e| git_error(e, &[]))?.id())
                .map_err(|e| git_error(e, &[]))?;
        }
        // A cancel that came during the checkout: the clone is complete but unwanted.
        if observer.is_some_and(|observer| observer.cancelled()) {
            return Err(cancelled());
        }
        Ok(report)
    }

    /// Fetches the branch and fast-forwards, or merges with a merge commit. Conflicts or local
    /// changes in the way leave everything as it was.
    pub fn pull(&self, request: &PullRequest) -> Result<()> {
        let mut repo = self.open(&request.path)?;
        workdir(&repo)?;
        let head_branch = current_branch(&repo);
        let (remote_name, branch) = self.pull_target(&repo, request, head_branch.as_deref())?;
        let mut remote = repo
            .find_remote(&remote_name)
            .map_err(|_| Error::not_found(format!("remote not found: {remote_name}")))?;
        let transfer = Transfer::new(self, &request.auth, skips_tls_verify(&repo, &remote));
        let tracking = format!("refs/remotes/{remote_name}/{branch}");
        let spec = format!("+refs/heads/{branch}:{tracking}");
        let roots = roots_at_risk(&repo, &remote)?;
        let fetched = remote.fetch(&[&spec], Some(&mut transfer.fetch_options()), None);
        drop(remote);
        let restored = shallow::keep(repo.path(), &roots)?;
        fetched.map_err(|err| transfer.error(err))?;
        if restored {
            repo = reopen(&repo)?;
        }
        let theirs = repo.find_reference(&tracking).map_err(|_| {
            error(
                ErrorKind::GitBranchNotFound,
                format!("branch not found on {remote_name}: {branch}"),
            )
        })?;
        let their_commit = repo
            .reference_to_annotated_commit(&theirs)
            .map_err(|e| git_error(e, &[]))?;
        let (analysis, _) = repo
            .merge_analysis(&[&their_commit])
            .map_err(|e| git_error(e, &[]))?;
        if analysis.contains(MergeAnalysis::ANALYSIS_UP_TO_DATE) {
            return Ok(());
        }
        if analysis.contains(MergeAnalysis::ANALYSIS_UNBORN) {
            let name = head_branch.unwrap_or_else(|| branch.clone());
            return fast_forward(&repo, &format!("refs/heads/{name}"), &their_commit, true);
        }
        if analysis.contains(MergeAnalysis::ANALYSIS_FASTFORWARD) {
            let head = repo.head().map_err(|e| git_error(e, &[]))?;
            let name = head.name().unwrap_or("HEAD").to_string();
            return fast_forward(&repo, &name, &their_commit, false);
        }
        merge(&repo, &their_commit, &format!("{remote_name}/{branch}"))
    }

    fn pull_target(
        &self,
        repo: &Repository,
        request: &PullRequest,
        head_branch: Option<&str>,
    ) -> Result<(String, String)> {
        let upstream = head_branch.and_then(|name| upstream_of(repo, name));
        let remote = request
            .remote
            .clone()
            .filter(|r| !r.is_empty())
            .or_else(|| upstream.as_ref().map(|(remote, _)| remote.clone()))
            .unwrap_or_else(|| "origin".to_string());
        let branch = request
            .branch
            .clone()
            .filter(|b| !b.is_empty())
            .or_else(|| upstream.map(|(_, branch)| branch))
            .or_else(|| head_branch.map(str::to_string))
            .ok_or_else(|| Error::bad_request("HEAD is detached: name the branch to pull"))?;
        Ok((remote, branch))
    }

    /// Pushes a branch; a non-fast-forward is refused, never forced.
    pub fn push(&self, request: &PushRequest) -> Result<()> {
        let repo = self.open(&request.path)?;
        let branch = match request.branch.as_deref().filter(|b| !b.is_empty()) {
            Some(branch) => branch.to_string(),
            None => current_branch(&repo)
                .ok_or_else(|| Error::bad_request("HEAD is detached: name the branch to push"))?,
        };
        let local = repo.find_branch(&branch, BranchType::Local).map_err(|_| {
            error(
                ErrorKind::GitBranchNotFound,
                format!("branch not found: {branch}"),
            )
        })?;
        if local.get().target().is_none() {
            return Err(error(
                ErrorKind::GitBranchNotFound,
                format!("branch {branch} has no commits yet"),
            ));
        }
        let remote_name = request
            .remote
            .clone()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "origin".to_string());
        let mut remote = repo
            .find_remote(&remote_name)
            .map_err(|_| Error::not_found(format!("remote not found: {remote_name}")))?;
        let transfer = Transfer::new(self, &request.auth, skips_tls_verify(&repo, &remote));
        let rejected: std::cell::RefCell<Option<String>> = Default::default();
        let mut callbacks = transfer.callbacks();
        callbacks.push_update_reference(|reference, status| {
            if let Some(status) = status {
                *rejected.borrow_mut() = Some(format!("{reference}: {status}"));
            }
            Ok(())
        });
        let mut options = PushOptions::new();
        options.remote_callbacks(callbacks);
        let mut proxy = git2::ProxyOptions::new();
        proxy.auto();
        options.proxy_options(proxy);
        let spec = format!("refs/heads/{branch}:refs/heads/{branch}");
        remote
            .push(&[&spec], Some(&mut options))
            .map_err(|err| push_error(transfer.error(err)))?;
        drop(options);
        if let Some(reason) = rejected.into_inner() {
            let kind = if reason.contains("non-fast-forward") || reason.contains("fetch first") {
                ErrorKind::GitPushRejected
            } else {
                ErrorKind::GitRemoteRejected
            };
            return Err(error(
                kind,
                format!("the remote rejected the push: {reason}"),
            ));
        }
        if request.set_upstream {
            let mut local = repo
                .find_branch(&branch, BranchType::Local)
                .map_err(|e| git_error(e, &[]))?;
            let mut config = repo.config().map_err(|e| git_error(e, &[]))?;
            config
                .set_str(&format!("branch.{branch}.remote"), &remote_name)
                .and_then(|_| {
                    config.set_str(
                        &format!("branch.{branch}.merge"),
                        &format!("refs/heads/{branch}"),
                    )
                })
                .map_err(|e| git_error(e, &[]))?;
            // Make sure the tracking ref exists so status shows it at once.
            let tip = local.get().target();
            if let Some(tip) = tip {
                let _ = repo.reference(
                    &format!("refs/remotes/{remote_name}/{branch}"),
                    tip,
                    true,
                    "push: set upstream",
                );
            }
            let _ = local.set_upstream(Some(&format!("{remote_name}/{branch}")));
        }
        Ok(())
    }
}

/// Whether git's config turns certificate checks off for `remote`'s URL, as git reads it: the
/// `http.<url>.sslVerify` whose URL is the longest prefix of the remote's (at a `/` boundary),
/// else `http.sslVerify`, from the repository's, the user's or the system's config.
fn skips_tls_verify(repo: &Repository, remote: &git2::Remote<'_>) -> bool {
    let (Ok(config), Some(url)) = (repo.config(), remote.url()) else {
        return false;
    };
    let mut best: Option<(usize, String)> = None;
    if let Ok(mut entries) = config.entries(Some(r"^http\..+\.sslverify$")) {
        while let Some(Ok(entry)) = entries.next() {
            let Some(name) = entry.name() else { continue };
            let Some(prefix) = name
                .strip_prefix("http.")
                .and_then(|rest| rest.get(..rest.len().saturating_sub(".sslverify".len())))
            else {
                continue;
            };
            let matches = url == prefix
                || (url.starts_with(prefix)
                    && (prefix.ends_with('/') || url[prefix.len()..].starts_with('/')));
            if matches && best.as_ref().is_none_or(|(len, _)| prefix.len() > *len) {
                best = Some((prefix.len(), name.to_string()));
            }
        }
    }
    let key = best.map_or_else(|| "http.sslVerify".to_string(), |(_, name)| name);
    config.get_bool(&key).is_ok_and(|verify| !verify)
}

fn is_http(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// A repository on this machine (`file://` or a plain path).
fn is_local(url: &str) -> bool {
    url.starts_with("file://") || !url.contains("://")
}

/// A shallow clone of a `file://` repository (`shallow.rs`), step by step as libgit2's clone
/// goes, with the planned objects in place before the fetch: the fetch then finds every branch
/// present and only creates the refs. (libgit2's clone itself cannot be used: without a depth
/// it asks for every tag, and the history of each would come along.)
fn clone_shallow(
    url: &str,
    branch: Option<&str>,
    target: &Path,
    plan: &Plan,
) -> Result<Repository> {
    let git = |e| git_error(e, &[]);
    let repo = Repository::init(target).map_err(git)?;
    let mut remote = match branch {
        Some(branch) => repo.remote_with_fetch(
            "origin",
            url,
            &format!("+refs/heads/{branch}:refs/remotes/origin/{branch}"),
        ),
        None => repo.remote("origin", url),
    }
    .map_err(git)?;
    plan.populate(&repo)?;
    let reflog = format!("clone: from {url}");
    let mut options = FetchOptions::new();
    // Tags pointing into the history only (a shallow clone's rule in libgit2 and git).
    options.download_tags(AutotagOption::Auto);
    options.update_fetchhead(false);
    let fetched = remote.fetch(&[] as &[&str], Some(&mut options), Some(&reflog));
    drop(remote);
    // Had the source moved since the plan, the fetch brought the moved branch's history and
    // removed `.git/shallow` (libgit2's local transport): the roots still hold.
    shallow::keep(repo.path(), plan.shallow())?;
    fetched.map_err(git)?;
    // Reopened: a `Repository` reads `.git/shallow` when it opens.
    let repo = reopen(&repo)?;
    // HEAD, the local branch and its upstream, and `origin/HEAD`, as libgit2's clone sets them.
    let head = plan.head();
    let origin_head = |default: &str| {
        repo.reference_symbolic(
            "refs/remotes/origin/HEAD",
            &format!("refs/remotes/origin/{default}"),
            true,
            &reflog,
        )
        .map(|_| ())
        .map_err(git)
    };
    match (branch, head) {
        (Some(branch), head) => {
            let tracking = repo
                .find_reference(&format!("refs/remotes/origin/{branch}"))
                .ok()
                .and_then(|reference| reference.target())
                .ok_or_else(|| {
                    error(
                        ErrorKind::GitBranchNotFound,
                        format!("branch not found on the remote: {branch}"),
                    )
                })?;
            track(&repo, branch, tracking, &reflog)?;
            if let shallow::Head::Branch(default, _) = head {
                if default == branch {
                    origin_head(default)?;
                }
            }
        }
        (None, shallow::Head::Branch(default, oid)) => {
            origin_head(default)?;
            track(&repo, default, *oid, &reflog)?;
        }
        (None, shallow::Head::Detached(oid)) => repo.set_head_detached(*oid).map_err(git)?,
        // Not planned (`Plan::new`): left unborn.
        (None, shallow::Head::Unknown) => {}
    }
    repo.checkout_head(Some(CheckoutBuilder::new().safe()))
        .map_err(git)?;
    Ok(repo)
}

/// Creates branch `name` at `oid` with `origin/name` as its upstream, and checks it out in HEAD.
fn track(repo: &Repository, name: &str, oid: Oid, reflog: &str) -> Result<()> {
    let git = |e| git_error(e, &[]);
    let reference = format!("refs/heads/{name}");
    repo.reference(&reference, oid, false, reflog)
        .map_err(git)?;
    let mut config = repo.config().map_err(git)?;
    config
        .set_str(&format!("branch.{name}.remote"), "origin")
        .and_then(|_| config.set_str(&format!("branch.{name}.merge"), &reference))
        .map_err(git)?;
    repo.set_head(&reference).map_err(git)
}

/// The shallow roots a fetch from `remote` would lose: libgit2's local transport rewrites
/// `.git/shallow` after every pack it brings as if the repository were complete. Put them back
/// with `shallow::keep`.
fn roots_at_risk(repo: &Repository, remote: &git2::Remote<'_>) -> Result<Vec<Oid>> {
    if remote.url().is_some_and(is_local) {
        shallow::read_roots(repo.path())
    } else {
        Ok(Vec::new())
    }
}

/// `repo` opened afresh (it reads `.git/shallow` only when it opens).
fn reopen(repo: &Repository) -> Result<Repository> {
    Repository::open(repo.workdir().unwrap_or(repo.path())).map_err(|e| git_error(e, &[]))
}

/// A push refused because the remote moved on is a rejection, not a missing object.
fn push_error(err: Error) -> Error {
    let lower = err.message.to_lowercase();
    if lower.contains("non-fastforward")
        || lower.contains("non-fast-forward")
        || lower.contains("not present locally")
        || lower.contains("fetch first")
    {
        return error(
            ErrorKind::GitPushRejected,
            format!(
                "push rejected (not a fast-forward): pull first. {}",
                err.message
            ),
        );
    }
    err
}

/// The branch HEAD points to (also when it has no commits yet).
pub(super) fn current_branch(repo: &Repository) -> Option<String> {
    let head = repo.find_reference("HEAD").ok()?;
    let target = head.symbolic_target()?;
    target.strip_prefix("refs/heads/").map(str::to_string)
}

/// `(remote, branch)` of `branch`'s configured upstream.
pub(super) fn upstream_of(repo: &Repository, branch: &str) -> Option<(String, String)> {
    let config = repo.config().ok()?;
    let remote = config.get_string(&format!("branch.{branch}.remote")).ok()?;
    let merge = config.get_string(&format!("branch.{branch}.merge")).ok()?;
    let merge = merge
        .strip_prefix("refs/heads/")
        .unwrap_or(&merge)
        .to_string();
    Some((remote, merge))
}

/// Moves `reference` to `theirs` and checks its tree out safely (local changes that would be
/// overwritten abort before anything moves).
fn fast_forward(
    repo: &Repository,
    reference: &str,
    theirs: &AnnotatedCommit<'_>,
    unborn: bool,
) -> Result<()> {
    let commit = repo
        .find_commit(theirs.id())
        .map_err(|e| git_error(e, &[]))?;
    repo.checkout_tree(commit.as_object(), Some(CheckoutBuilder::new().safe()))
        .map_err(dirty)?;
    repo.reference(reference, commit.id(), true, "pull: fast-forward")
        .map_err(|e| git_error(e, &[]))?;
    if unborn {
        repo.set_head(reference).map_err(|e| git_error(e, &[]))?;
    }
    Ok(())
}

/// A three-way merge done in memory first: conflicts are found before the work tree is touched.
fn merge(repo: &Repository, theirs: &AnnotatedCommit<'_>, their_name: &str) -> Result<()> {
    let head = repo.head().map_err(|e| git_error(e, &[]))?;
    let ours = head.peel_to_commit().map_err(|e| git_error(e, &[]))?;
    let their_commit = repo
        .find_commit(theirs.id())
        .map_err(|e| git_error(e, &[]))?;
    let mut index = repo
        .merge_commits(&ours, &their_commit, None)
        .map_err(|e| git_error(e, &[]))?;
    if index.has_conflicts() {
        let mut paths: Vec<String> = index
            .conflicts()
            .map_err(|e| git_error(e, &[]))?
            .flatten()
            .filter_map(|c| c.our.or(c.their).or(c.ancestor))
            .map(|entry| String::from_utf8_lossy(&entry.path).into_owned())
            .collect();
        paths.dedup();
        return Err(error(
            ErrorKind::GitMergeConflict,
            format!(
                "merge conflict with {their_name} in {}: nothing was changed; resolve by \
                 committing a fix or rebasing",
                paths.join(", ")
            ),
        ));
    }
    let tree_id = index.write_tree_to(repo).map_err(|e| git_error(e, &[]))?;
    let tree = repo.find_tree(tree_id).map_err(|e| git_error(e, &[]))?;
    let signature = super::worktree::signature(repo, None, None)?;
    let message = format!(
        "Merge {their_name} into {}",
        head.shorthand().unwrap_or("HEAD")
    );
    let merge_id = repo
        .commit(
            None,
            &signature,
            &signature,
            &message,
            &tree,
            &[&ours, &their_commit],
        )
        .map_err(|e| git_error(e, &[]))?;
    // Only now touch the work tree; local edits that would be lost abort it untouched.
    repo.checkout_tree(tree.as_object(), Some(CheckoutBuilder::new().safe()))
        .map_err(dirty)?;
    let name = head.name().unwrap_or("HEAD").to_string();
    repo.reference(&name, merge_id, true, "pull: merge")
        .map_err(|e| git_error(e, &[]))?;
    Ok(())
}

/// A checkout refused because of local changes.
pub(super) fn dirty(err: git2::Error) -> Error {
    let mapped = git_error(err, &[]);
    if mapped.kind == ErrorKind::GitDirtyWorktree || mapped.message.contains("conflict") {
        return error(
            ErrorKind::GitDirtyWorktree,
            format!(
                "local changes would be overwritten: commit, stash or discard them first ({})",
                mapped.message
            ),
        );
    }
    mapped
}

impl Git {
    /// Fetches a remote's configured refspecs.
    pub(super) fn fetch_remote(&self, repo: &Repository, name: &str, auth: &Auth) -> Result<()> {
        let mut remote = repo.find_remote(name).map_err(|e| git_error(e, &[]))?;
        let transfer = Transfer::new(self, auth, skips_tls_verify(repo, &remote));
        let roots = roots_at_risk(repo, &remote)?;
        let mut options = transfer.fetch_options();
        let fetched = remote.fetch(&[] as &[&str], Some(&mut options), None);
        drop(options);
        shallow::keep(repo.path(), &roots)?;
        fetched.map_err(|err| transfer.error(err))
    }
}
