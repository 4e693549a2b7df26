//! The session shell: starting it through the reaper, preparing a command's directory, FIFOs and
//! log readers, and writing the control line that sources the command and then checks that the
//! shell can still run one.

use super::*;
use crate::process::exec::out_of_resources;

/// The shell variable that holds a command's status while the shell checks itself.
const STATUS_VAR: &str = "__toolboxd_status";

impl Sessions {
    /// Writes the command's files, opens the FIFO ends, starts the readers.
    pub(super) fn prepare(
        &self,
        session: &Arc<Session>,
        id: String,
        text: &str,
        run_async: bool,
        suppress_echo: bool,
    ) -> Result<Arc<Command>> {
        let dir = session.dir.join(&id);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|err| Error::io("create command dir", &dir, &err))?;
        let script = dir.join("cmd.sh");
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&script)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .map_err(|err| Error::io("write", &script, &err))?;
        let fifo = |name: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600))
                .map_err(|errno| Error::io("create fifo", &path, &std::io::Error::from(errno)))?;
            Ok(path)
        };
        let open_reader = |path: &Path| -> Result<File> {
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
                .map_err(|err| Error::io("open fifo", path, &err))
        };
        let stdout_pipe = open_reader(&fifo("stdout")?)?;
        let stderr_pipe = open_reader(&fifo("stderr")?)?;
        let stdin = if run_async {
            let path = fifo("stdin")?;
            // Read-write: never blocks, and the command sees no EOF until it completes.
            Some(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|err| Error::io("open fifo", &path, &err))?,
            )
        } else {
            None
        };
        let create = |name: &str| -> Result<File> {
            let path = dir.join(name);
            OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&path)
                .map_err(|err| Error::io("create", &path, &err))
        };
        let log = Arc::new(Mutex::new(LogWriter {
            cap: match self.process.max_log {
                0 => usize::MAX,
                cap => cap,
            },
            output: Some(create("output.log")?),
            stdout: Some(create("stdout.log")?),
            stderr: Some(create("stderr.log")?),
            last: None,
            sizes: [0; 3],
            truncated: [false; 3],
            lost: None,
        }));
        let (exit, _) = watch::channel(None);
        let command = Arc::new(Command {
            id,
            text: Some(text.to_string()),
            dir,
            session: Arc::downgrade(session),
            run_async,
            suppress_echo,
            max_reply: self.process.max_output.max(1),
            shell_pid: AtomicI32::new(0),
            started: watch::channel(false).0,
            exit,
            stdin: Mutex::new(stdin),
            input: Mutex::new(None),
            log,
            readers_done: Arc::new((Mutex::new(0), Condvar::new())),
            cancel: Arc::new(AtomicBool::new(false)),
            cause: Mutex::new(None),
        });
        for (pipe, stream) in [(stdout_pipe, Stream::Stdout), (stderr_pipe, Stream::Stderr)] {
            let log = command.log.clone();
            let done = command.readers_done.clone();
            let cancel = command.cancel.clone();
            std::thread::Builder::new()
                .name("session-reader".into())
                .spawn(move || {
                    drain(pipe, stream, &log, &cancel);
                    let (count, cvar) = &*done;
                    let mut ended = count.lock().unwrap_or_else(|e| e.into_inner());
                    *ended += 1;
                    if *ended == 2 {
                        log.lock().unwrap_or_else(|e| e.into_inner()).close();
                    }
                    drop(ended);
                    cvar.notify_all();
                })
                .map_err(|err| out_of_resources("cannot start a reader thread", err))?;
        }
        Ok(command)
    }

    /// Sends the command's control line, (re)starting the shell if it is gone.
    pub(super) fn send(&self, session: &Arc<Session>, command: &Arc<Command>) -> Result<()> {
        let stdin_path = if command.stdin_is_fifo() {
            command.dir.join("stdin")
        } else {
            PathBuf::from("/dev/null")
        };
        let printf = if self.process.shell.to_string_lossy().contains("bash") {
            "builtin printf"
        } else {
            "printf"
        };
        // After the command, the same redirections around an empty source tell whether the shell
        // can still run one (`ulimit -n 3` leaves it unable to): the last field is 0 if so.
        let line = format!(
            "{printf} '{START_PREFIX}%s\\n' {id}; \
             {{ . {script}; }} < {stdin} > {stdout} 2> {stderr}; {STATUS_VAR}=$?; \
             {{ . /dev/null; }} < /dev/null > /dev/null 2> /dev/null; \
             {printf} '{DONE_PREFIX}%s %s %s\\n' {id} \"${STATUS_VAR}\" \"$?\"\n",
            script = quote(&command.dir.join("cmd.sh")),
            stdin = quote(&stdin_path),
            stdout = quote(&command.dir.join("stdout")),
            stderr = quote(&command.dir.join("stderr")),
            id = command.id,
        );
        let mut shell = session.shell.lock().unwrap_or_else(|e| e.into_inner());
        for attempt in 0..2 {
            if shell.is_none() {
                if attempt == 0 {
                    tracing::warn!(session = %session.id, "session shell is gone; starting a new one");
                }
                *shell = Some(self.start_shell(session)?);
            }
            let Some(current) = shell.as_mut() else {
                continue;
            };
            command.shell_pid.store(current.pid, Ordering::SeqCst);
            match current
                .stdin
                .write_all(line.as_bytes())
                .and_then(|()| current.stdin.flush())
            {
                Ok(()) => return Ok(()),
                Err(err) => {
                    tracing::warn!(session = %session.id, "session shell stopped reading ({err})");
                    *shell = None;
                }
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            "cannot send the command to the session shell: it exits as soon as it starts",
        ))
    }

    pub(super) fn start_shell(&self, session: &Arc<Session>) -> Result<Shell> {
        let spawn = Spawn::new(&self.process.shell, &self.process.workdir)
            .envs(self.process.env_snapshot())
            .env(tree::MARKER_VAR, &session.marker)
            .stdio(Io::Piped, Io::Piped, Io::Null)
            .cgroup(&session.marker);
        self.process.trees.check_open()?;
        let (child, exit) = self.process.reaper.spawn(spawn).map_err(|err| {
            let err =
                super::super::exec::spawn_error(&self.process.shell, &self.process.workdir, &err);
            Error::new(
                err.kind,
                format!("cannot start the session shell: {}", err.message),
            )
        })?;
        let pid = child.pid;
        let registered = self.process.trees.register(pid, &session.marker);
        let (Some(mut stdin), Some(stdout)) = (child.stdin, child.stdout) else {
            return Err(Error::internal("session shell has no pipes"));
        };
        stdin
            .write_all(b"shopt -s expand_aliases 2>/dev/null; alias exit=return\n")
            .map_err(|err| Error::internal(format!("cannot set up the session shell: {err}")))?;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let reader_session = session.clone();
        std::thread::Builder::new()
            .name("session-status".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                    if let Some(cmd_id) = line.strip_prefix(START_PREFIX) {
                        if let Ok(command) = reader_session.command(cmd_id) {
                            command.started.send_replace(true);
                        }
                        continue;
                    }
                    let Some(rest) = line.strip_prefix(DONE_PREFIX) else {
                        continue;
                    };
                    let mut parts = rest.split(' ');
                    let (Some(cmd_id), Some(code)) = (parts.next(), parts.next()) else {
                        continue;
                    };
                    let code = code.trim().parse().unwrap_or(1);
                    let usable = parts.next().is_none_or(|probe| probe.trim() == "0");
                    let Ok(command) = reader_session.command(cmd_id) else {
                        continue;
                    };
                    if usable {
                        command.finish(code);
                        continue;
                    }
                    // Replaced before the command is reported, so the next one gets a new shell.
                    let replaced = {
                        let mut shell =
                            reader_session.shell.lock().unwrap_or_else(|e| e.into_inner());
                        if shell.as_ref().is_some_and(|s| s.pid == pid) {
                            shell.take()
                        } else {
                            None
                        }
                    };
                    if replaced.is_some() {
                        tracing::warn!(session = %reader_session.id,
                            "session shell can no longer run commands; the next command starts a new one");
                        // Only the shell: background jobs live on, as after `kill -9 $$`.
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            Signal::SIGKILL,
                        );
                    }
                    command.finish_with(code, ExitCause::ShellUnusable);
                }
                let _ = done_tx.send(());
            })
            .map_err(|err| out_of_resources("cannot start a status thread", err))?;
        let watcher = session.clone();
        tokio::spawn(async move {
            let status = exit.wait().await;
            let _ = done_rx.await;
            {
                let mut shell = watcher.shell.lock().unwrap_or_else(|e| e.into_inner());
                if shell.as_ref().is_some_and(|s| s.pid == pid) {
                    *shell = None;
                }
            }
            let pending: Vec<Arc<Command>> = watcher
                .commands
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter_map(|entry| match entry {
                    Entry::Live(c) => Some(c),
                    Entry::Done(_) => None,
                })
                .filter(|c| c.shell_pid.load(Ordering::SeqCst) == pid && c.exit.borrow().is_none())
                .cloned()
                .collect();
            if !watcher.deleted.load(Ordering::SeqCst) {
                tracing::warn!(session = %watcher.id, code = status.code(),
                    "session shell exited; {} running command(s) end with its status; the next command starts a new shell",
                    pending.len());
            }
            if !pending.is_empty() {
                let _ = tokio::task::spawn_blocking(move || {
                    for command in pending {
                        command.finish_with(status.code(), ExitCause::Killed);
                        // Nothing writes for a command the dead shell never started.
                        command.cancel.store(true, Ordering::SeqCst);
                    }
                })
                .await;
            }
        });
        Ok(Shell {
            pid,
            stdin,
            _registered: registered,
        })
    }
}
