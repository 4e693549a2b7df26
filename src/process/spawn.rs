//! `Spawn`: the description of a child, and the only code that starts one (called by
//! `Reaper::spawn`, which registers it). Every child gets its own process group, an explicit
//! environment and working directory, stdio that is `/dev/null` or a pipe, and optionally extra
//! descriptors as fd 3, 4, ….
//!
//! A child may instead get a terminal (`Spawn::terminal`): it starts as the leader of a new
//! session, opens the PTY slave by its path (which makes it the session's controlling terminal:
//! `posix_spawn` runs its file actions after `POSIX_SPAWN_SETSID`) and has it as fds 0, 1 and 2.
//!
//! Children start with `posix_spawn` (glibc's `CLONE_VFORK`: no copy of the daemon's page tables,
//! no copy-on-write faults afterwards, no TLB shootdowns across its threads). The standard
//! library would fall back to `fork` in the static binary (it finds `posix_spawn`'s chdir action
//! through `dlsym`, which a static binary lacks), so toolboxd calls glibc directly. A child that
//! must start in a cgroup leaf is cloned straight into it (`clone3` with `CLONE_INTO_CGROUP`);
//! where clone3 is refused it is forked and writes itself into the leaf before it execs.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::cgroup;

/// What one of the child's standard descriptors is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Io {
    /// `/dev/null`.
    #[default]
    Null,
    /// A pipe whose other end the parent gets in `Child`.
    Piped,
}

/// A child to start.
#[derive(Debug)]
pub struct Spawn {
    program: PathBuf,
    args: Vec<OsString>,
    cwd: PathBuf,
    env: BTreeMap<OsString, OsString>,
    stdio: [Io; 3],
    fds: Vec<OwnedFd>,
    cgroup: Option<String>,
    terminal: Option<PathBuf>,
}

/// A started child. Nobody waits on it but the reaper.
#[derive(Debug)]
pub struct Child {
    /// Its pid, which is also its process group.
    pub pid: i32,
    /// The write end of its stdin, when piped.
    pub stdin: Option<File>,
    /// The read end of its stdout, when piped.
    pub stdout: Option<File>,
    /// The read end of its stderr, when piped.
    pub stderr: Option<File>,
}

impl Spawn {
    /// `program` (a path, or a name looked up on the child's `PATH`) in `cwd`, with an empty
    /// environment and `/dev/null` as stdin, stdout and stderr.
    pub fn new(program: impl Into<PathBuf>, cwd: impl Into<PathBuf>) -> Spawn {
        Spawn {
            program: program.into(),
            args: Vec::new(),
            cwd: cwd.into(),
            env: BTreeMap::new(),
            stdio: [Io::Null; 3],
            fds: Vec::new(),
            cgroup: None,
            terminal: None,
        }
    }

    /// Appends arguments (after argv\[0\], which is the program as given).
    pub fn args<I, S>(mut self, args: I) -> Spawn
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Sets environment variables (later ones win).
    pub fn envs<I, K, V>(mut self, vars: I) -> Spawn
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (key, value) in vars {
            self.env
                .insert(key.as_ref().to_os_string(), value.as_ref().to_os_string());
        }
        self
    }

    /// Sets one environment variable.
    pub fn env(self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Spawn {
        self.envs([(key, value)])
    }

    /// What stdin, stdout and stderr are.
    pub fn stdio(mut self, stdin: Io, stdout: Io, stderr: Io) -> Spawn {
        self.stdio = [stdin, stdout, stderr];
        self
    }

    /// Makes `fds` the child's descriptors 3, 4, … in order; the parent's copies close once the
    /// child is started.
    pub fn pass_fds(mut self, fds: Vec<OwnedFd>) -> Spawn {
        self.fds = fds;
        self
    }

    /// Starts the child in the cgroup v2 leaf named by `marker` where toolboxd may make one
    /// (elsewhere this changes nothing).
    pub fn cgroup(mut self, marker: &str) -> Spawn {
        self.cgroup = Some(marker.to_string());
        self
    }

    /// Starts the child as the leader of a new session (its own process group too) whose
    /// controlling terminal is the PTY slave at `slave` (`/dev/pts/N`), which is also its stdin,
    /// stdout and stderr (whatever `stdio` says).
    pub fn terminal(mut self, slave: impl Into<PathBuf>) -> Spawn {
        self.terminal = Some(slave.into());
        self
    }

    /// The program, for messages.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Checks and converts everything that can fail before the child is started, so that the
    /// start itself (under the reaper's lock) does nothing slow.
    pub(super) fn prepare(self) -> io::Result<Prepared> {
        let invalid = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what} contains a NUL byte"),
            )
        };
        let cstring = |bytes: &[u8], what: &str| CString::new(bytes).map_err(|_| invalid(what));
        let path = resolve(
            &self.program,
            self.env.get(OsStr::new("PATH")).map(|p| &**p),
        )?;
        let mut argv = vec![cstring(self.program.as_os_str().as_bytes(), "the program")?];
        for arg in &self.args {
            argv.push(cstring(arg.as_bytes(), "an argument")?);
        }
        let mut envp = Vec::with_capacity(self.env.len());
        for (key, value) in &self.env {
            if key.is_empty() || key.as_bytes().contains(&b'=') {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("invalid environment variable name {key:?}"),
                ));
            }
            let mut pair = key.as_bytes().to_vec();
            pair.push(b'=');
            pair.extend_from_slice(value.as_bytes());
            envp.push(cstring(&pair, "an environment variable")?);
        }
        let cgroup = self.cgroup.as_deref().and_then(cgroup::prepare);
        let terminal = match &self.terminal {
            Some(slave) => Some(cstring(slave.as_os_str().as_bytes(), "the terminal path")?),
            None => None,
        };
        Ok(Prepared {
            terminal,
            path: cstring(path.as_os_str().as_bytes(), "the program")?,
            cwd: cstring(self.cwd.as_os_str().as_bytes(), "the working directory")?,
            argv,
            envp,
            spawn: self,
            cgroup,
        })
    }
}

/// A `Spawn` whose strings are ready for the C calls.
#[derive(Debug)]
pub(super) struct Prepared {
    spawn: Spawn,
    path: CString,
    cwd: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// The leaf the child must start in, if any.
    cgroup: Option<cgroup::Leaf>,
    /// The PTY slave to open as the controlling terminal, if any.
    terminal: Option<CString>,
}

impl Prepared {
    /// Starts the child.
    pub(super) fn start(mut self) -> io::Result<Child> {
        let Some(leaf) = self.cgroup.take() else {
            return self.posix_spawn();
        };
        if !CLONE3_UNSUPPORTED.load(Ordering::Relaxed) {
            match self.clone_into_cgroup(&leaf) {
                Ok(child) => return Ok(child),
                Err(Clone3Error::Failed(err)) => return Err(err),
                // Old kernels and some seccomp profiles (Docker's, for a while) refuse clone3.
                Err(Clone3Error::Unsupported) => CLONE3_UNSUPPORTED.store(true, Ordering::Relaxed),
            }
        }
        self.fork_into_cgroup(leaf.procs)
    }

    fn posix_spawn(mut self) -> io::Result<Child> {
        let mut actions = FileActions::new()?;
        let mut child = Child {
            pid: 0,
            stdin: None,
            stdout: None,
            stderr: None,
        };
        // The child's ends of its pipes: closed here once it has its copies.
        let mut child_ends = Vec::new();
        if let Some(slave) = &self.terminal {
            // After setsid: opening the slave (no O_NOCTTY) makes it the controlling terminal.
            actions.open(0, slave, libc::O_RDWR)?;
            actions.dup2(0, 1)?;
            actions.dup2(0, 2)?;
        }
        let stdio = if self.terminal.is_some() {
            Vec::new()
        } else {
            self.spawn.stdio.to_vec()
        };
        for (target, io) in stdio.into_iter().enumerate() {
            let target = target as RawFd;
            match io {
                Io::Null => {
                    let flags = if target == 0 {
                        libc::O_RDONLY
                    } else {
                        libc::O_WRONLY
                    };
                    actions.open(target, c"/dev/null", flags)?;
                }
                Io::Piped => {
                    let (read, write) = pipe()?;
                    let (ours, theirs) = if target == 0 {
                        (write, read)
                    } else {
                        (read, write)
                    };
                    let ours = Some(File::from(ours));
                    match target {
                        0 => child.stdin = ours,
                        1 => child.stdout = ours,
                        _ => child.stderr = ours,
                    }
                    actions.dup2(theirs.as_raw_fd(), target)?;
                    child_ends.push(theirs);
                }
            }
        }
        // Sources must not sit on another source's target: lift any low one out of the way.
        let count = self.spawn.fds.len() as RawFd;
        for fd in &mut self.spawn.fds {
            if fd.as_raw_fd() < 3 + count {
                *fd = lift(fd)?;
            }
        }
        for (i, fd) in self.spawn.fds.iter().enumerate() {
            actions.dup2(fd.as_raw_fd(), 3 + i as RawFd)?;
        }
        actions.chdir(&self.cwd)?;
        let attr = Attributes::new(self.terminal.is_some())?;
        let argv = null_terminated(&self.argv);
        let envp = null_terminated(&self.envp);
        let mut pid: libc::pid_t = 0;
        // SAFETY: every pointer refers to a live, NUL-terminated string or a null-terminated
        // array of them, owned by `self` for the whole call; actions and attributes are
        // initialised.
        let rc = unsafe {
            libc::posix_spawn(
                &mut pid,
                self.path.as_ptr(),
                &actions.0,
                &attr.0,
                argv.as_ptr(),
                envp.as_ptr(),
            )
        };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        child.pid = pid;
        Ok(child)
    }

    /// Starts the child with `clone3(CLONE_INTO_CGROUP)`: born in its leaf, so it never has to
    /// be moved into one (a migration waits for an RCU grace period: milliseconds). The child
    /// is a fork-like copy that only makes raw system calls (everything it touches was prepared
    /// before the clone; no allocation, no lock) until it execs.
    fn clone_into_cgroup(&mut self, leaf: &cgroup::Leaf) -> Result<Child, Clone3Error> {
        let failed = Clone3Error::Failed;
        let mut child = Child {
            pid: 0,
            stdin: None,
            stdout: None,
            stderr: None,
        };
        // What each of fds 0, 1, 2 becomes: a pipe end to dup2, or -1 for /dev/null.
        let mut stdio_from: [RawFd; 3] = [-1; 3];
        let mut child_ends = Vec::new();
        // The PTY slave to open after setsid instead of stdio, or null.
        let terminal = self
            .terminal
            .as_ref()
            .map_or(std::ptr::null(), |slave| slave.as_ptr());
        for (target, io) in self.spawn.stdio.into_iter().enumerate() {
            if io == Io::Piped && terminal.is_null() {
                let (read, write) = pipe().map_err(failed)?;
                let (ours, theirs) = if target == 0 {
                    (write, read)
                } else {
                    (read, write)
                };
                let ours = Some(File::from(ours));
                match target {
                    0 => child.stdin = ours,
                    1 => child.stdout = ours,
                    _ => child.stderr = ours,
                }
                stdio_from[target] = theirs.as_raw_fd();
                child_ends.push(theirs);
            }
        }
        // Every source above every target, so no dup2 clobbers a later source.
        for fd in &mut self.spawn.fds {
            if fd.as_raw_fd() < 64 {
                *fd = lift(fd).map_err(failed)?;
            }
        }
        let extra: Vec<RawFd> = self.spawn.fds.iter().map(|fd| fd.as_raw_fd()).collect();
        let argv = null_terminated(&self.argv);
        let envp = null_terminated(&self.envp);
        // The child reports a failed exec on this pipe (closed on a successful one).
        let (report_read, report_write) = {
            let (read, write) = pipe().map_err(failed)?;
            (read, lift(&write).map_err(failed)?)
        };
        let report = report_write.as_raw_fd();
        let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
        args.flags = CLONE_INTO_CGROUP;
        args.exit_signal = libc::SIGCHLD as u64;
        args.cgroup = leaf.dir.as_raw_fd() as u64;
        // SAFETY: signals are blocked around the clone so no handler of toolboxd's runs in the
        // child; the child below only makes async-signal-safe calls on memory prepared above and
        // leaves by execve or _exit.
        let pid = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut saved: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut saved);
            let pid = libc::syscall(
                libc::SYS_clone3,
                &mut args as *mut libc::clone_args,
                std::mem::size_of::<libc::clone_args>(),
            );
            if pid == 0 {
                for signal in 1..32 {
                    if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                        libc::signal(signal, libc::SIG_DFL);
                    }
                }
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut none);
                libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
                let fail = || -> ! {
                    let errno = *libc::__errno_location();
                    libc::write(report, (&errno as *const i32).cast(), 4);
                    libc::_exit(127)
                };
                if !terminal.is_null() {
                    // A new session, then the slave (no O_NOCTTY) as its controlling terminal.
                    if libc::setsid() < 0 {
                        fail();
                    }
                    let tty = libc::open(terminal, libc::O_RDWR);
                    if tty < 0 {
                        fail();
                    }
                    for target in 0..3 {
                        if libc::dup2(tty, target) < 0 {
                            fail();
                        }
                    }
                    if tty > 2 {
                        libc::close(tty);
                    }
                } else if libc::setpgid(0, 0) != 0 {
                    fail();
                }
                for (target, from) in stdio_from.iter().enumerate() {
                    if !terminal.is_null() {
                        break;
                    }
                    let from = if *from >= 0 {
                        *from
                    } else {
                        let flags = if target == 0 {
                            libc::O_RDONLY
                        } else {
                            libc::O_WRONLY
                        };
                        libc::open(c"/dev/null".as_ptr(), flags | libc::O_CLOEXEC)
                    };
                    if from < 0 || libc::dup2(from, target as RawFd) < 0 {
                        fail();
                    }
                }
                for (i, from) in extra.iter().enumerate() {
                    if libc::dup2(*from, 3 + i as RawFd) < 0 {
                        fail();
                    }
                }
                if libc::chdir(self.cwd.as_ptr()) != 0 {
                    fail();
                }
                libc::execve(
                    self.path.as_ptr(),
                    argv.as_ptr().cast(),
                    envp.as_ptr().cast(),
                );
                fail();
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut());
            pid
        };
        if pid < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::ENOSYS | libc::EINVAL | libc::E2BIG | libc::EPERM) => {
                    Clone3Error::Unsupported
                }
                _ => Clone3Error::Failed(err),
            });
        }
        drop(report_write);
        drop(child_ends);
        let mut report = File::from(report_read);
        let mut errno = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match io::Read::read(&mut report, &mut errno[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(failed(err)),
            }
        }
        if got == 4 {
            // The child has exited (127); the reaper reaps it like any orphan.
            return Err(failed(io::Error::from_raw_os_error(i32::from_ne_bytes(
                errno,
            ))));
        }
        child.pid = pid as i32;
        Ok(child)
    }

    fn fork_into_cgroup(self, procs: CString) -> io::Result<Child> {
        let spawn = self.spawn;
        let terminal = self.terminal;
        let mut command = std::process::Command::new(OsStr::from_bytes(self.path.as_bytes()));
        command
            .arg0(&spawn.program)
            .args(&spawn.args)
            .current_dir(&spawn.cwd)
            .env_clear()
            .envs(&spawn.env);
        if terminal.is_none() {
            // (A child with a terminal gets a new session below; a group leader cannot.)
            command.process_group(0);
        }
        let stdio = |io: Io| match io {
            Io::Piped if terminal.is_none() => std::process::Stdio::piped(),
            _ => std::process::Stdio::null(),
        };
        command
            .stdin(stdio(spawn.stdio[0]))
            .stdout(stdio(spawn.stdio[1]))
            .stderr(stdio(spawn.stdio[2]));
        pass_fds(&mut command, spawn.fds);
        // SAFETY: between fork and exec the closure only calls signal(), setsid(), open(),
        // dup2() and close() (async-signal-safe) on a path prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                for signal in 1..32 {
                    if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                        libc::signal(signal, libc::SIG_DFL);
                    }
                }
                if let Some(slave) = &terminal {
                    if libc::setsid() < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    let tty = libc::open(slave.as_ptr(), libc::O_RDWR);
                    if tty < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    for target in 0..3 {
                        if libc::dup2(tty, target) < 0 {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    if tty > 2 {
                        libc::close(tty);
                    }
                }
                Ok(())
            });
        }
        cgroup::join_before_exec(&mut command, procs);
        let mut started = command.spawn()?;
        let file = |fd: Option<OwnedFd>| fd.map(File::from);
        Ok(Child {
            pid: started.id() as i32,
            stdin: file(started.stdin.take().map(OwnedFd::from)),
            stdout: file(started.stdout.take().map(OwnedFd::from)),
            stderr: file(started.stderr.take().map(OwnedFd::from)),
        })
        // `command` drops here, closing the parent's copies of the passed descriptors.
    }
}

/// The executable `program` names: itself when it has a slash, else the first executable file
/// of that name on `path` (the child's PATH, else toolboxd's, else a default).
fn resolve(program: &Path, path: Option<&OsStr>) -> io::Result<PathBuf> {
    if program.as_os_str().as_bytes().contains(&b'/') {
        return Ok(program.to_path_buf());
    }
    let inherited = std::env::var_os("PATH");
    let path = path
        .or(inherited.as_deref())
        .unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    std::env::split_paths(path)
        .map(|dir| {
            // An empty PATH entry is the current directory.
            if dir.as_os_str().is_empty() {
                Path::new(".").join(program)
            } else {
                dir.join(program)
            }
        })
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
}

/// `CLONE_INTO_CGROUP` (Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Set once clone3 was refused: every later leaf child is forked and joins by itself.
static CLONE3_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

#[derive(Debug)]
enum Clone3Error {
    /// The kernel (or a seccomp filter) has no clone3 with `CLONE_INTO_CGROUP`.
    Unsupported,
    /// It ran, and the child could not start.
    Failed(io::Error),
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// A close-on-exec duplicate of `fd` numbered 64 or above.
fn lift(fd: &OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own returns a new descriptor or -1.
    let raw = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 64) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn null_terminated(strings: &[CString]) -> Vec<*mut libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect()
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// `posix_spawn_file_actions_t`, destroyed on drop.
struct FileActions(libc::posix_spawn_file_actions_t);

impl FileActions {
    fn new() -> io::Result<FileActions> {
        // SAFETY: init fills the zeroed struct; it is destroyed exactly once, in Drop.
        unsafe {
            let mut actions = FileActions(std::mem::zeroed());
            check(libc::posix_spawn_file_actions_init(&mut actions.0))?;
            Ok(actions)
        }
    }

    fn open(&mut self, fd: RawFd, path: &CStr, flags: libc::c_int) -> io::Result<()> {
        // SAFETY: initialised actions; glibc copies the path.
        check(unsafe {
            libc::posix_spawn_file_actions_addopen(&mut self.0, fd, path.as_ptr(), flags, 0)
        })
    }

    fn dup2(&mut self, from: RawFd, to: RawFd) -> io::Result<()> {
        // SAFETY: initialised actions. (glibc clears close-on-exec when `from == to`.)
        check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut self.0, from, to) })
    }

    fn chdir(&mut self, dir: &CStr) -> io::Result<()> {
        // SAFETY: initialised actions; glibc copies the path.
        check(unsafe { libc::posix_spawn_file_actions_addchdir_np(&mut self.0, dir.as_ptr()) })
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

/// `posix_spawnattr_t` for every child: a new process group (or, for a child with a terminal, a
/// new session, which is its own group too: a session leader cannot change its group), no
/// blocked signals, and every signal at its default disposition. toolboxd ignores SIGPIPE (and
/// may have been started with more ignored, as a background job or under nohup); ignored signals
/// would stay ignored across exec, and a command expects a clean slate.
struct Attributes(libc::posix_spawnattr_t);

impl Attributes {
    fn new(new_session: bool) -> io::Result<Attributes> {
        // SAFETY: init fills the zeroed struct (destroyed once, in Drop); the sigsets are
        // initialised by sigemptyset before use.
        unsafe {
            let mut attr = Attributes(std::mem::zeroed());
            check(libc::posix_spawnattr_init(&mut attr.0))?;
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            check(libc::posix_spawnattr_setsigmask(&mut attr.0, &empty))?;
            let mut defaults: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut defaults);
            check(libc::posix_spawnattr_setsigdefault(&mut attr.0, &defaults))?;
            let group = if new_session {
                libc::POSIX_SPAWN_SETSID as libc::c_int
            } else {
                check(libc::posix_spawnattr_setpgroup(&mut attr.0, 0))?;
                libc::POSIX_SPAWN_SETPGROUP
            };
            let flags = group | libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
            check(libc::posix_spawnattr_setflags(&mut attr.0, flags as _))?;
            Ok(attr)
        }
    }
}

impl Drop for Attributes {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

/// Makes `fds` the child's descriptors 3, 4, … of a forked `command` (inheritable there); the
/// parent's copies close when `command` is dropped.
fn pass_fds(command: &mut std::process::Command, fds: Vec<OwnedFd>) {
    const MAX: usize = 8;
    assert!(fds.len() <= MAX, "at most {MAX} extra descriptors");
    if fds.is_empty() {
        return;
    }
    let mut raw = [-1; MAX];
    for (slot, fd) in raw.iter_mut().zip(&fds) {
        *slot = fd.as_raw_fd();
    }
    let count = fds.len();
    // SAFETY: between fork and exec the closure only calls fcntl and dup2 (async-signal-safe)
    // and touches no allocation; `fds` stays owned by the closure so the numbers stay valid.
    unsafe {
        command.pre_exec(move || {
            let _owned = &fds;
            // First move every source out of the way of the targets, then place them.
            let mut high = [-1; MAX];
            for i in 0..count {
                high[i] = libc::fcntl(raw[i], libc::F_DUPFD_CLOEXEC, 64);
                if high[i] < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (i, fd) in high.iter().enumerate().take(count) {
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_on_the_given_path_and_paths_stay() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        let not_exec = dir.path().join("plain");
        std::fs::write(&not_exec, "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = OsString::from(format!("/nonexistent:{}", dir.path().display()));
        assert_eq!(resolve(Path::new("tool"), Some(&path)).unwrap(), tool);
        assert_eq!(
            resolve(Path::new("plain"), Some(&path)).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            resolve(Path::new("./x/y"), Some(&path)).unwrap(),
            Path::new("./x/y")
        );
    }

    /// Starts `sh` on a fresh PTY with `start`, reads everything it writes there and reaps it.
    /// The shell prints its tty, its session, its group and its controlling terminal.
    fn run_on_a_terminal(start: impl FnOnce(Prepared) -> io::Result<Child>) -> Ran {
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty fills the two descriptors, which are owned below.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", io::Error::last_os_error());
        // SAFETY: fresh descriptors from openpty.
        let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let name = std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd())).unwrap();
        use std::os::unix::fs::MetadataExt;
        let rdev = std::fs::metadata(&name).unwrap().rdev();
        let script = "tty; read -r stat < /proc/$$/stat; echo \"$$ $stat\"";
        let prepared = Spawn::new("/bin/sh", "/")
            .args(["-c", script])
            .env("PATH", "/usr/bin:/bin")
            .stdio(Io::Piped, Io::Piped, Io::Piped)
            .terminal(&name)
            .prepare()
            .unwrap();
        let child = start(prepared).unwrap();
        assert!(child.stdin.is_none() && child.stdout.is_none() && child.stderr.is_none());
        drop(slave);
        let mut output = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match io::Read::read(&mut &master, &mut buf) {
                Ok(0) => break,
                Ok(n) => output.extend_from_slice(&buf[..n]),
                // EIO: every slave descriptor is closed.
                Err(err) if err.raw_os_error() == Some(libc::EIO) => break,
                Err(err) => panic!("reading the master: {err}"),
            }
        }
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child.pid), None).unwrap();
        Ran {
            name: name.display().to_string(),
            rdev,
            output: String::from_utf8_lossy(&output).into_owned(),
        }
    }

    struct Ran {
        name: String,
        rdev: u64,
        output: String,
    }

    /// Checks what `run_on_a_terminal` printed: the slave is its tty, and the shell leads its
    /// own session and group with the slave as controlling terminal (`tty_nr`).
    fn assert_controlling_terminal(ran: &Ran) {
        let (name, output) = (ran.name.as_str(), ran.output.as_str());
        let mut lines = output.lines();
        assert_eq!(lines.next().map(str::trim), Some(name), "{output}");
        let line = lines.next().unwrap_or_default();
        let pid: i32 = line.split(' ').next().unwrap().parse().unwrap();
        let fields: Vec<&str> = line[line.rfind(')').unwrap() + 2..].split(' ').collect();
        // state ppid pgrp session tty_nr
        assert_eq!(fields[2], pid.to_string(), "group: {output}");
        assert_eq!(fields[3], pid.to_string(), "session: {output}");
        let (major, minor) = (libc::major(ran.rdev), libc::minor(ran.rdev));
        let tty_nr = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
        assert_eq!(fields[4], tty_nr.to_string(), "tty_nr: {output}");
    }

    #[test]
    fn a_terminal_child_leads_a_session_with_the_slave_as_controlling_tty() {
        assert_controlling_terminal(&run_on_a_terminal(Prepared::posix_spawn));
    }

    #[test]
    fn the_forked_start_gives_a_terminal_child_the_same_session() {
        // A `cgroup.procs` that cannot be opened: the child stays where it is.
        let procs = CString::new("/nonexistent/cgroup.procs").unwrap();
        assert_controlling_terminal(&run_on_a_terminal(|prepared| {
            prepared.fork_into_cgroup(procs)
        }));
    }

    #[test]
    fn the_clone3_start_gives_a_terminal_child_the_same_session() {
        // Born in toolboxd's own cgroup v2 directory, where one is mounted and clone3 allowed.
        let Some(dir) = own_cgroup_v2_dir() else {
            eprintln!("skipped: no cgroup v2 directory");
            return;
        };
        let leaf = cgroup::Leaf {
            dir: File::open(&dir).unwrap().into(),
            procs: CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).unwrap(),
        };
        let mut unsupported = false;
        let ran = run_on_a_terminal(|mut prepared| {
            match prepared.clone_into_cgroup(&leaf) {
                Ok(child) => Ok(child),
                Err(Clone3Error::Failed(err)) => Err(err),
                Err(Clone3Error::Unsupported) => {
                    // Still check the terminal set-up, through posix_spawn.
                    unsupported = true;
                    prepared.posix_spawn()
                }
            }
        });
        if unsupported {
            eprintln!("clone3 into {} refused here", dir.display());
        }
        assert_controlling_terminal(&ran);
    }

    fn own_cgroup_v2_dir() -> Option<PathBuf> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mount = mountinfo.lines().find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split(' ').next()? == "cgroup2")
                .then(|| left.split(' ').nth(4).map(PathBuf::from))?
        })?;
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let path = own.lines().find_map(|line| line.strip_prefix("0::"))?;
        let dir = mount.join(path.trim_start_matches('/'));
        dir.join("cgroup.procs").exists().then_some(dir)
    }

    #[test]
    fn nul_bytes_and_bad_names_are_refused_before_starting() {
        let bad_arg = Spawn::new("/bin/true", "/").args(["a\0b"]).prepare();
        assert_eq!(bad_arg.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        let bad_env = Spawn::new("/bin/true", "/").env("A=B", "c").prepare();
        assert_eq!(bad_env.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
