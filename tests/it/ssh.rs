//! SSH (`--ssh-addr`) with the real OpenSSH client: commands, stderr, a terminal that follows
//! window changes, scp and sftp both ways, rsync, `ssh -L`, refused keys and passwords, the
//! host key across restarts, idle and shutdown, and what a dropped client leaves behind.
//! Skipped (with a note) where `ssh` is not installed (Debian: openssh-client, rsync).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{is_alive, StartOptions, Toolboxd};

/// A daemon serving SSH, a key pair it authorizes and a known_hosts file of our own.
pub(crate) struct Fixture {
    pub(crate) daemon: Toolboxd,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) key: PathBuf,
    pub(crate) port: u16,
}

/// Whether the OpenSSH tools (and `extra`) are installed; says so when not.
pub(crate) fn have(extra: &[&str]) -> bool {
    for tool in ["ssh", "ssh-keygen", "scp", "sftp"].iter().chain(extra) {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|output| output.status.success());
        if !found {
            eprintln!("SKIP: {tool} is not installed (apt-get install openssh-client rsync)");
            return false;
        }
    }
    true
}

/// A new ed25519 key pair at `dir/name` (and `name.pub`).
fn keygen(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    key
}

fn public(key: &Path) -> String {
    std::fs::read_to_string(key.with_extension("pub")).unwrap()
}

impl Fixture {
    pub(crate) fn start() -> Fixture {
        Fixture::start_with(Vec::new(), Vec::new())
    }

    fn start_with(args: Vec<String>, env: Vec<(String, String)>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let key = keygen(dir.path(), "id_test");
        let daemon = Toolboxd::start_with(StartOptions {
            ssh: true,
            args,
            env,
            ..StartOptions::default()
        });
        // Written after the start: keys are read at every login.
        let ssh_dir = daemon.home.join(".ssh");
        std::fs::create_dir_all(&ssh_dir).unwrap();
        std::fs::write(ssh_dir.join("authorized_keys"), public(&key)).unwrap();
        let port = daemon.ssh_port.expect("ssh port");
        Fixture {
            daemon,
            dir,
            key,
            port,
        }
    }

    /// Options every OpenSSH tool here gets: no user config, our key only, our known_hosts,
    /// no prompts.
    pub(crate) fn options(&self, key: &Path) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            key.display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "IdentityAgent=none".into(),
            "-o".into(),
            "StrictHostKeyChecking=no".into(),
            "-o".into(),
            format!(
                "UserKnownHostsFile={}",
                self.dir.path().join("known_hosts").display()
            ),
            "-o".into(),
            "BatchMode=yes".into(),
        ]
    }

    /// `ssh -p PORT … test@127.0.0.1 ARGS…`, logging errors only.
    fn ssh(&self, args: &[&str]) -> Command {
        self.ssh_with_key(&self.key, args)
    }

    fn ssh_with_key(&self, key: &Path, args: &[&str]) -> Command {
        self.ssh_logging("ERROR", key, args)
    }

    /// The same with OpenSSH's log level `level` (the first one given wins).
    fn ssh_logging(&self, level: &str, key: &Path, args: &[&str]) -> Command {
        let mut command = Command::new("ssh");
        command
            .args(["-o", &format!("LogLevel={level}")])
            .args(self.options(key))
            .args(["-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null());
        command
    }

    /// `-e` for rsync.
    fn rsync_shell(&self) -> String {
        format!("ssh {} -p {}", self.options(&self.key).join(" "), self.port)
    }

    pub(crate) fn target(&self) -> &'static str {
        "test@127.0.0.1"
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(mut command: impl std::borrow::BorrowMut<Command>) -> Output {
    command.borrow_mut().output().unwrap()
}

/// `len` bytes that do not compress (xorshift), written to `path`.
pub(crate) fn random_file(path: &Path, len: usize) {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15 ^ len as u64;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(block.len());
        file.write_all(&block[..n]).unwrap();
        left -= n;
    }
    file.flush().unwrap();
}

/// Whether two files hold the same bytes (what equal sha256 sums say, without hashing 100 MiB
/// in a debug build).
fn same_content(a: &Path, b: &Path) -> bool {
    let (mut a, mut b) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let (mut left, mut right) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = read_full(&mut a, &mut left);
        let m = read_full(&mut b, &mut right);
        if n != m || left[..n] != right[..m] {
            return false;
        }
        if n == 0 {
            return true;
        }
    }
}

fn read_full(file: &mut std::fs::File, buffer: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]).unwrap() {
            0 => break,
            n => filled += n,
        }
    }
    filled
}

/// Pids of live processes whose command line starts with `needle`.
fn processes_with(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmdline| {
                    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                    cmdline.starts_with(needle)
                })
                .unwrap_or(false)
                && is_alive(pid)
        })
        .collect()
}

/// Waits up to `limit` for `done`.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

#[test]
fn a_command_gives_its_output_and_exit_status() {
    if !have(&[]) {
        return;
    }
    let fx = Fixture::start();
    let output = run(fx.ssh(&[fx.target(), "echo hi; exit 3"]));
    assert_eq!(text(&output.stdout), "hi\n", "{}", text(&output.stderr));
    assert_eq!(output.status.code(), Some(3));
    // It ran in the work dir, through the shell, with what OpenSSH tells a command.
    let output = run(fx.ssh(&[fx.target(), "pwd; echo \"$SSH_CONNECTION\" | wc -w"]));
    let workdir = std::fs::canonicalize(&fx.daemon.workdir).unwrap();
    assert_eq!(
        text(&output.stdout),
        format!("{}\n4\n", workdir.display()),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn stderr_stays_apart_and_stdin_streams_in() {
    if !have(&[]) {
        return;
    }
    let fx = Fixture::start();
    let output = run(fx.ssh(&[fx.target(), "echo out; echo err >&2; echo out2"]));
    assert_eq!(text(&output.stdout), "out\nout2\n");
    assert_eq!(text(&output.stderr), "err\n");
    assert_eq!(output.status.code(), Some(0));
    // stdin in, while the output comes back: 20 MiB through `cat` (input and output at once).
    let input = fx.dir.path().join("in.bin");
    random_file(&input, 20 << 20);
    let output = fx
        .ssh(&[fx.target(), "cat; echo done >&2"])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert_eq!(output.stdout.len(), 20 << 20);
    assert_eq!(output.stdout, std::fs::read(&input).unwrap());
    assert_eq!(text(&output.stderr), "done\n");
}

#[test]
fn input_keeps_flowing_while_the_client_is_not_reading_the_output() {
    if !have(&[]) {
        return;
    }
    let fx = Fixture::start();
    // `cat` of 32 MiB whose output nobody reads for a while: its stdout fills and it stops
    // reading stdin, and all the while the client keeps sending. When the client reads again,
    // everything must come through (nothing may wait on a window adjustment the connection can
    // no longer read).
    let input = fx.dir.path().join("in.bin");
    random_file(&input, 32 << 20);
    let mut client = fx
        .ssh(&[fx.target(), "cat"])
        .stdin(std::fs::File::open(&input).unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let mut output = Vec::new();
    client
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut output)
        .unwrap();
    assert_eq!(client.wait().unwrap().code(), Some(0));
    assert_eq!(output.len(), 32 << 20);
    assert!(output == std::fs::read(&input).unwrap());
}

#[test]
fn env_requests_reach_the_command_and_a_signal_death_is_reported() {
    if !have(&[]) {
        return;
    }
    let fx = Fixture::start();
    let output = run(fx.ssh(&[
        "-o",
        "SetEnv=GREETING=hello TOOLBOXD_COMMAND_ID=spoofed",
        fx.target(),
        "echo $GREETING; test \"$TOOLBOXD_COMMAND_ID\" != spoofed && echo marker-kept",
    ]));
    assert_eq!(
        text(&output.stdout),
        "hello\nmarker-kept\n",
        "{}",
        text(&output.stderr)
    );
    // Killed by a signal: exit-signal (OpenSSH then exits 255 and logs it).
    let output = run(fx.ssh_logging("DEBUG", &fx.key, &[fx.target(), "kill -TERM $$"]));
    assert_eq!(output.status.code(), Some(255));
    assert!(
        text(&output.stderr).contains("exit-signal"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_terminal_follows_window_changes() {
    use portable_pty::{CommandBuilder, PtySize};
    if !have(&[]) {
        return;
    }
    let fx = Fixture::start();
    // ssh itself on a terminal we can resize: a resize sends it SIGWINCH, and it sends a
    // window-change to the server.
    let pair = portable_pty::native_pty_system()
        .openpty(PtySize {
            rows: 24,
            cols: 80,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut command = CommandBuilder::new("ssh");
    command.args(fx.options(&fx.key));
    command.args(["-tt", "-p", &fx.port.to_string(), fx.target()]);
    // ssh passes its TERM on in the pty-req.
    command.env("TERM", "vt220");
    let mut child = pair.slave.spawn_command(command).unwrap();
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().unwrap();
    let mut writer = pair.master.take_writer().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buffer) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    });
    // Asks until the answer shows up (the shell may still be starting).
    let mut ask_until = |ask: &[u8], wanted: &str| {
        let found = eventually(Duration::from_secs(30), || {
            writer.write_all(ask).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            seen.lock().unwrap().contains(wanted)
        });
        assert!(found, "no {wanted} in: {}", seen.lock().unwrap());
    };
    let size = b"echo size=$(stty size)=\r";
    ask_until(size, "size=24 80=");
    // The shell runs in the work dir with the client's TERM.
    let workdir = std::fs::canonicalize(&fx.daemon.workdir).unwrap();
    ask_until(
        b"echo \"term=$TERM dir=$(pwd -P)=\"\r",
        &format!("term=vt220 dir={}=", workdir.display()),
    );
    pair.master
        .resize(PtySize {
            rows: 40,
            cols: 120,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    ask_until(size, "size=40 120=");
    writer.write_all(b"exit 7\r").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.exit_code(), 7);
}

#[test]
fn a_terminal_waits_for_a_slow_client_and_loses_no_output() {
    if !have(&[]) {
        return;
    }
    let fx = Fixture::start();
    // 24 MiB of base64 lines on a terminal (three times what a PTY queues for a client), to a
    // client that reads nothing for a while: the program waits, as on a slow terminal.
    let mut client = fx
        .ssh(&[
            "-tt",
            fx.target(),
            "head -c 18874368 /dev/zero | base64 -w 76 | wc -c; head -c 18874368 /dev/zero | base64 -w 76; echo END",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let mut output = Vec::new();
    client
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut output)
        .unwrap();
    assert_eq!(client.wait().unwrap().code(), Some(0));
    let text = String::from_utf8_lossy(&output);
    let counted: usize = text.lines().next().unwrap().trim().parse().unwrap();
    assert!(
        text.trim_end().ends_with("END"),
        "{}",
        &text[text.len().saturating_sub(200)..]
    );
    // Every line arrived (the terminal turns each \n into \r\n).
    let lines = text
        .lines()
        .skip(1)
        .filter(|line| line.starts_with("AAAA"))
        .count();
    assert_eq!(lines, counted.div_ceil(77));
}

#[test]
fn scp_moves_100_mib_both_ways() {
    if !have(&[]) {
        return;
    }
    let fx = Fixture::start();
    let local = fx.dir.path().join("up.bin");
    random_file(&local, 100 << 20);
    let port = fx.port.to_string();
    let output = run(Command::new("scp")
        .args(fx.options(&fx.key))
        .args(["-P", &port])
        .arg(&local)
        .arg(format!("{}:scp.bin", fx.target())));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(same_content(&fx.daemon.path("scp.bin"), &local));
    let back = fx.dir.path().join("down.bin");
    let output = run(Command::new("scp")
        .args(fx.options(&fx.key))
        .args(["-P", &port])
        .arg(format!("{}:scp.bin", fx.target()))
        .arg(&back));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(same_content(&back, &local));
}

#[test]
fn sftp_moves_100_mib_both_ways_and_manages_files() {
    if !have(&[]) {
        return;
    }
    let fx = Fixture::start();
    let local = fx.dir.path().join("up.bin");
    random_file(&local, 100 << 20);
    let back = fx.dir.path().join("down.bin");
    let batch = fx.dir.path().join("batch");
    std::fs::write(
        &batch,
        format!(
            "put {} big.bin\nget big.bin {}\nmkdir dir\nrename big.bin dir/moved.bin\n\
             symlink dir/moved.bin link\nls -l dir\nchmod 600 dir/moved.bin\n",
            local.display(),
            back.display()
        ),
    )
    .unwrap();
    let output = run(Command::new("sftp")
        .args(fx.options(&fx.key))
        .args(["-P", &fx.port.to_string(), "-b"])
        .arg(&batch)
        .arg(fx.target()));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(same_content(&back, &local));
    let moved = fx.daemon.path("dir/moved.bin");
    assert!(same_content(&moved, &local));
    assert!(text(&output.stdout).contains("moved.bin"));
    assert_eq!(
        std::fs::read_link(fx.daemon.path("link")).unwrap(),
        Path::new("dir/moved.bin")
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&moved).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn an_upload_that_is_cut_leaves_the_old_file_and_no_temp_file() {
    if !have(&[]) {
        return;
    }
    let fx = Fixture::start();
    let target = fx.daemon.path("keep.bin");
    std::fs::write(&target, "old content").unwrap();
    let local = fx.dir.path().join("big.bin");
    random_file(&local, 200 << 20);
    let mut client = Command::new("sftp")
        .args(fx.options(&fx.key))
        // One request in flight at a time and small ones: the upload takes a while.
        .args([
            "-R",
            "1",
            "-B",
            "1024",
            "-P",
            &fx.port.to_string(),
            "-b",
            "-",
        ])
        .arg(fx.target())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(
        client.stdin.as_mut().unwrap(),
        "put {} keep.bin",
        local.display()
    )
    .unwrap();
    let temp = || {
        std::fs::read_dir(&fx.daemon.workdir)
            .unwrap()
            .flatten()
            .any(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".toolboxd-tmp")
            })
    };
    assert!(
        eventually(Duration::from_secs(30), temp),
        "the upload never started"
    );
    client.kill().unwrap();
    client.wait().unwrap();
    assert!(
        eventually(Duration::from_secs(10), || !temp()),
        "the temp file stayed"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "old content");
}

#[test]
fn rsync_syncs_a_tree() {
    if !have(&["rsync"]) {
        return;
    }
    let fx = Fixture::start();
    let source = fx.dir.path().join("tree");
    for (path, content) in [
        ("a.txt", "alpha\n"),
        ("sub/b.txt", "beta\n"),
        ("sub/deep/c.bin", "gamma"),
    ] {
        crate::harness::write(&source.join(path), content);
    }
    random_file(&source.join("sub/random.bin"), 3 << 20);
    std::os::unix::fs::symlink("a.txt", source.join("link")).unwrap();
    let sync = || {
        run(Command::new("rsync")
            .args(["-a", "--delete", "-e", &fx.rsync_shell()])
            .arg(format!("{}/", source.display()))
            .arg(format!("{}:copy/", fx.target())))
    };
    let output = sync();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let copy = fx.daemon.path("copy");
    assert_eq!(
        std::fs::read_to_string(copy.join("sub/b.txt")).unwrap(),
        "beta\n"
    );
    assert!(same_content(
        &copy.join("sub/random.bin"),
        &source.join("sub/random.bin")
    ));
    assert_eq!(
        std::fs::read_link(copy.join("link")).unwrap(),
        Path::new("a.txt")
    );
    // A change and a removal are synced too, and the copy comes back the same.
    std::fs::write(source.join("a.txt"), "changed\n").unwrap();
    std::fs::remove_file(source.join("sub/deep/c.bin")).unwrap();
    let output = sync();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        std::fs::read_to_string(copy.join("a.txt")).unwrap(),
        "changed\n"
    );
    assert!(!copy.join("sub/deep/c.bin").exists());
    let back = fx.dir.path().join("back");
    let output = run(Command::new("rsync")
        .args(["-a", "-e", &fx.rsync_shell()])
        .arg(format!("{}:copy/", fx.target()))
        .arg(&back));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(same_content(
        &back.join("sub/random.bin"),
        &source.join("sub/random.bin")
    ));
}

/// A one-request-per-connection HTTP server on 127.0.0.1: answers `body`.
fn http_server(body: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `ssh -N -L LOCAL:target` and fetches `/` through it.
fn fetch_through_forward(fx: &Fixture, target: &str) -> Result<String, String> {
    let local = free_port();
    let mut forward = fx
        .ssh(&[
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-L",
            &format!("127.0.0.1:{local}:{target}"),
            fx.target(),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let listening = eventually(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", local)).is_ok()
    });
    let result = if listening {
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        client
            .get(format!("http://127.0.0.1:{local}/"))
            .send()
            .and_then(|response| response.text())
            .map_err(|err| err.to_string())
    } else {
        Err("ssh -L never listened".to_string())
    };
    let _ = forward.kill();
    let _ = forward.wait();
    result
}

#[test]
fn a_local_forward_reaches_a_loopback_server_and_nothing_else() {
    if !have(&[]) {
        return;
    }
    let fx = Fixture::start();
    let port = http_server("hello through the tunnel");
    assert_eq!(
        fetch_through_forward(&fx, &format!("127.0.0.1:{port}")).unwrap(),
        "hello through the tunnel"
    );
    assert_eq!(
        fetch_through_forward(&fx, &format!("localhost:{port}")).unwrap(),
        "hello through the tunnel"
    );
    // Not loopback: refused by the server before any connection is made (TEST-NET-1).
    assert!(fetch_through_forward(&fx, "192.0.2.1:80").is_err());
}

#[test]
fn a_key_not_authorized_and_a_password_are_refused() {
    if !have(&[]) {
        return;
    }
    let fx = Fixture::start();
    let stranger = keygen(fx.dir.path(), "stranger");
    let output = run(fx.ssh_with_key(&stranger, &[fx.target(), "echo in"]));
    assert_eq!(output.status.code(), Some(255));
    assert!(output.stdout.is_empty());
    assert!(
        text(&output.stderr).contains("Permission denied"),
        "{}",
        text(&output.stderr)
    );
    // A password, typed by an askpass program: no password is accepted (none is configured).
    let askpass = fx.dir.path().join("askpass");
    std::fs::write(&askpass, "#!/bin/sh\necho sandbox-ssh\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = run(fx
        .ssh(&[
            "-o",
            "BatchMode=no",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            fx.target(),
            "echo in",
        ])
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0"));
    assert_eq!(output.status.code(), Some(255));
    assert!(output.stdout.is_empty());
    assert!(
        text(&output.stderr).contains("Permission denied"),
        "{}",
        text(&output.stderr)
    );
    // The right key still works, and a key added now works without a restart.
    let late = keygen(fx.dir.path(), "late");
    let keys = fx.daemon.home.join(".ssh/authorized_keys");
    let mut listed = std::fs::read_to_string(&keys).unwrap();
    listed.push_str(&public(&late));
    std::fs::write(&keys, listed).unwrap();
    let output = run(fx.ssh_with_key(&late, &[fx.target(), "echo in"]));
    assert_eq!(text(&output.stdout), "in\n", "{}", text(&output.stderr));
}

#[test]
fn nothing_logs_in_when_no_key_is_configured() {
    if !have(&[]) {
        return;
    }
    let fx = Fixture::start();
    std::fs::remove_file(fx.daemon.home.join(".ssh/authorized_keys")).unwrap();
    let output = run(fx.ssh(&[fx.target(), "echo in"]));
    assert_eq!(output.status.code(), Some(255));
    assert!(text(&output.stderr).contains("Permission denied"));
}

#[test]
fn refused_attempts_lock_the_address_out_for_a_while() {
    if !have(&[]) {
        return;
    }
    let fx = Fixture::start();
    let strangers: Vec<PathBuf> = (0..8)
        .map(|i| keygen(fx.dir.path(), &format!("stranger{i}")))
        .collect();
    // Each connection offers eight keys that are not authorized: three connections use up the
    // burst of 20 refusals.
    for _ in 0..3 {
        let mut args: Vec<String> = fx.options(&strangers[0]);
        for stranger in &strangers[1..] {
            args.push("-i".into());
            args.push(stranger.display().to_string());
        }
        let output = run(Command::new("ssh")
            .args(args)
            .args(["-p", &fx.port.to_string(), fx.target(), "true"])
            .stdin(Stdio::null()));
        assert_eq!(output.status.code(), Some(255));
    }
    let output = run(fx.ssh(&[fx.target(), "echo in"]));
    assert_eq!(output.status.code(), Some(255), "{}", text(&output.stdout));
    assert!(output.stdout.is_empty());
}

#[test]
fn the_host_key_is_the_same_after_a_restart() {
    if !have(&[]) {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let env = vec![("HOME".to_string(), home.path().display().to_string())];
    let first = Fixture::start_with(Vec::new(), env.clone());
    let key_file = home.path().join(".toolboxd/ssh_host_ed25519_key");
    // HOME as given: the harness's own home is replaced.
    std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
    std::fs::write(home.path().join(".ssh/authorized_keys"), public(&first.key)).unwrap();
    let output = run(first.ssh(&[first.target(), "true"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let saved = std::fs::read(&key_file).unwrap();
    let known_hosts = first.dir.path().join("known_hosts");
    let recorded = std::fs::read_to_string(&known_hosts).unwrap();
    let port = first.port;
    drop(first);
    let second = Fixture::start_with(Vec::new(), env);
    std::fs::write(
        home.path().join(".ssh/authorized_keys"),
        public(&second.key),
    )
    .unwrap();
    // The first daemon's host key, recorded under its port, now under the second's.
    std::fs::write(
        second.dir.path().join("known_hosts"),
        recorded.replace(&format!(":{port}]"), &format!(":{}]", second.port)),
    )
    .unwrap();
    let output = run(second.ssh(&[
        "-o",
        "StrictHostKeyChecking=yes",
        second.target(),
        "echo same",
    ]));
    assert_eq!(text(&output.stdout), "same\n", "{}", text(&output.stderr));
    assert_eq!(std::fs::read(&key_file).unwrap(), saved);
}

#[test]
fn closing_the_channel_ends_the_command_tree_but_not_what_it_left_behind() {
    if !have(&[]) {
        return;
    }
    let fx = Fixture::start();
    let needle = format!("sleep 1{}", std::process::id() % 1000 + 1000);
    let mut client = fx
        .ssh(&[fx.target(), &format!("{needle} & {needle}; wait")])
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(20), || processes_with(&needle).len()
            == 2),
        "the command never started"
    );
    // The client goes away without a word (the connection drops).
    client.kill().unwrap();
    client.wait().unwrap();
    assert!(
        eventually(Duration::from_secs(20), || processes_with(&needle)
            .is_empty()),
        "left behind: {:?}",
        processes_with(&needle)
    );
    // A command that exits by itself may leave a daemon running, as with OpenSSH.
    let kept = format!("sleep 2{}", std::process::id() % 1000 + 1000);
    let output = run(fx.ssh(&[fx.target(), &format!("nohup {kept} >/dev/null 2>&1 &")]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    // (nohup execs sleep a moment after the shell is gone.)
    assert!(eventually(Duration::from_secs(10), || processes_with(
        &kept
    )
    .len()
        == 1));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(processes_with(&kept).len(), 1);
    for pid in processes_with(&kept) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[test]
fn idle_connections_are_closed() {
    if !have(&[]) {
        return;
    }
    let fx = Fixture::start_with(vec!["--ssh-idle-timeout".into(), "1".into()], Vec::new());
    // -N: logged in, no channel.
    let started = Instant::now();
    let output = run(fx.ssh_logging("INFO", &fx.key, &["-N", fx.target()]));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(255));
    assert!(
        text(&output.stderr).contains("idle"),
        "{}",
        text(&output.stderr)
    );
    // A connection with a channel open is not idle, however quiet.
    let output = run(fx.ssh(&[fx.target(), "sleep 2; echo awake"]));
    assert_eq!(text(&output.stdout), "awake\n", "{}", text(&output.stderr));
}

#[test]
fn a_connection_is_idle_again_once_its_channels_have_ended() {
    if !have(&[]) {
        return;
    }
    let fx = Fixture::start_with(vec!["--ssh-idle-timeout".into(), "3".into()], Vec::new());
    // One connection (an OpenSSH master in the background), one command through it: the
    // command's channel ends (toolboxd closes it first), then the connection is idle.
    let control = fx.dir.path().join("control");
    let control_option = format!("ControlPath={}", control.display());
    let output = run(fx.ssh(&[
        "-M",
        "-o",
        &control_option,
        "-o",
        "ControlPersist=yes",
        "-f",
        "-N",
        fx.target(),
    ]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = run(fx.ssh(&[
        "-o",
        &control_option,
        fx.target(),
        "echo through the master",
    ]));
    assert_eq!(
        text(&output.stdout),
        "through the master\n",
        "{}",
        text(&output.stderr)
    );
    let master_alive = || {
        run(fx.ssh(&["-o", &control_option, "-O", "check", fx.target()]))
            .status
            .success()
    };
    assert!(
        eventually(Duration::from_secs(30), || !master_alive()),
        "the connection stayed open after its channel ended"
    );
}

#[test]
fn shutdown_ends_connections_and_their_programs() {
    if !have(&[]) {
        return;
    }
    let mut fx = Fixture::start();
    let needle = format!("sleep 3{}", std::process::id() % 1000 + 1000);
    let mut client = fx
        .ssh_logging("INFO", &fx.key, &[fx.target(), &needle])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(20), || processes_with(
        &needle
    )
    .len()
        == 1));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(fx.daemon.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = fx.daemon.wait_exit(Duration::from_secs(15));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    let mut stderr = String::new();
    client
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(client.wait().unwrap().code().is_some());
    assert!(stderr.contains("shutting down"), "{stderr}");
    assert!(processes_with(&needle).is_empty());
}

/// Issue 17: an exec command is the shell's `-c` argument, so it may hold what Linux takes in one
/// argument (128 KiB with its NUL): one byte more is refused with the limit named (stderr, exit
/// 127), and the connection's next command runs.
#[test]
fn exec_commands_are_taken_up_to_the_one_argument_limit() {
    if !have(&[]) {
        return;
    }
    let fx = Fixture::start();
    const MAX: usize = 128 * 1024 - 1;
    // OpenSSH joins its arguments with a space; each must fit in its own argv too.
    let command = |len: usize| {
        let head = "echo ok-$((6*7)) #".to_string();
        let half = (len - head.len() - 1) / 2;
        let first = format!("{head}{}", "x".repeat(half));
        let second = "y".repeat(len - first.len() - 1);
        (first, second)
    };
    let (first, second) = command(MAX);
    assert_eq!(first.len() + 1 + second.len(), MAX);
    let output = run(fx.ssh(&[fx.target(), &first, &second]));
    assert_eq!(text(&output.stdout), "ok-42\n", "{}", text(&output.stderr));
    let (first, second) = command(MAX + 1);
    let output = run(fx.ssh(&[fx.target(), &first, &second]));
    assert_eq!(output.status.code(), Some(127), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("at most 131071 bytes"),
        "{}",
        text(&output.stderr)
    );
    let output = run(fx.ssh(&[fx.target(), "echo still-$((6*7))"]));
    assert_eq!(text(&output.stdout), "still-42\n");
}

/// Issue 17: env requests are taken up to 256 variables and 256 KiB of names and values per
/// channel; one more is refused (the variable is missing) and the command still runs.
#[test]
fn env_requests_are_taken_up_to_their_limits() {
    if !have(&[]) {
        return;
    }
    let fx = Fixture::start();
    let count = |vars: usize| {
        let set: Vec<String> = (0..vars).map(|i| format!("TBV{i}=x")).collect();
        let output = run(fx.ssh(&[
            "-o",
            &format!("SetEnv={}", set.join(" ")),
            fx.target(),
            "env | grep -c '^TBV'",
        ]));
        text(&output.stdout).trim().to_string()
    };
    assert_eq!(count(256), "256");
    assert_eq!(count(257), "256");
    // 256 KiB of names and values, in three variables sent from ssh's own environment.
    let sizes = |extra: usize| {
        let budget = 256 * 1024 - 6 + extra;
        [budget / 3, budget / 3, budget - 2 * (budget / 3)]
    };
    let lengths = |extra: usize| {
        let mut command = fx.ssh(&[
            "-o",
            "SendEnv=BA BB BC",
            fx.target(),
            "echo ${#BA} ${#BB} ${#BC}",
        ]);
        for (name, size) in ["BA", "BB", "BC"].iter().zip(sizes(extra)) {
            command.env(name, "v".repeat(size));
        }
        let output = run(command);
        text(&output.stdout).trim().to_string()
    };
    let [a, b, c] = sizes(0);
    assert_eq!(lengths(0), format!("{a} {b} {c}"));
    let [a, b, _] = sizes(1);
    assert_eq!(lengths(1), format!("{a} {b} 0"));
}

/// Issue 17: an SFTP packet may hold 256 KiB (as with OpenSSH's sftp-server); a longer one ends
/// the SFTP session without an answer, and the next session is served.
#[test]
fn sftp_packets_are_taken_up_to_256_kib() {
    if !have(&[]) {
        return;
    }
    let fx = Fixture::start();
    // INIT (version 3), then STAT of a path that makes the packet `len` bytes long.
    let session = |len: u32| {
        let mut input = vec![0, 0, 0, 5, 1, 0, 0, 0, 3];
        let path_len = len - 1 - 4 - 4;
        input.extend_from_slice(&len.to_be_bytes());
        input.push(17); // SSH_FXP_STAT
        input.extend_from_slice(&7u32.to_be_bytes());
        input.extend_from_slice(&path_len.to_be_bytes());
        input.extend(std::iter::repeat_n(b'a', path_len as usize));
        let mut child = fx
            .ssh(&["-s", fx.target(), "sftp"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // The server may end the session before it has read all of it.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap();
        // The answers: VERSION (type 2), then what there is.
        let mut types = Vec::new();
        let mut rest = &output.stdout[..];
        while rest.len() >= 5 {
            let size = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            types.push(rest[4]);
            rest = &rest[(4 + size).min(rest.len())..];
        }
        types
    };
    const MAX: u32 = 256 * 1024;
    // A STATUS (101) for the STAT: the path is too long, but the packet was read.
    assert_eq!(session(MAX), vec![2, 101]);
    assert_eq!(session(MAX + 1), vec![2]);
    assert_eq!(session(64), vec![2, 101]);
}
