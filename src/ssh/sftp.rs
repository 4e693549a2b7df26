//! The `sftp` subsystem (SFTP version 3 with OpenSSH's extensions), which `sftp`, `scp` (OpenSSH
//! 9 speaks SFTP), IDEs and SFTP libraries use. Packets are cut out of the channel's input by an
//! async framer, handled in order on a thread of their own (every filesystem call blocks), and
//! the answers go back through a bounded queue, so a client may keep many requests in flight
//! (OpenSSH's keeps 64) while memory stays bounded. Packet types and their encoding come from
//! `russh-sftp`.
//!
//! Files are opened through `files::OpenFile`: a file opened to be replaced (write + truncate,
//! as `scp` and `sftp put` do) is staged and renamed over its target on close, so a transfer that
//! is cut leaves the old content and no temp file; opens for update or append write the real
//! file, each acknowledged write in place. Relative paths resolve against the work dir, `~`
//! (`expand-path@openssh.com`) against HOME. Names must be UTF-8 (russh-sftp's strings).

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use russh_sftp::extensions::{
    ExpandPathExtension, FsyncExtension, HardlinkExtension, LimitsExtension, Statvfs,
    StatvfsExtension,
};
use russh_sftp::protocol::{
    Attrs, Data, ExtendedReply, File as Entry, FileAttributes, Handle, Name, OpenFlags, Packet,
    Status, StatusCode, Version,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::channel::{Inbox, Output};
use crate::error::{Error, ErrorKind, Result};
use crate::files::{Files, OpenFile, OpenMode};

/// The largest packet a client may send (OpenSSH's sftp-server takes the same).
const MAX_PACKET: usize = 256 * 1024;
/// The most a READ returns and a WRITE should carry (`limits@openssh.com`).
const MAX_IO: usize = MAX_PACKET - 1024;
/// Files and directories a session may hold open.
const MAX_HANDLES: usize = 256;
/// Entries per READDIR answer.
const DIR_BATCH: usize = 100;
/// Requests waiting for the worker, and answers waiting for the client.
const QUEUE: usize = 64;
/// Rename paths this side of an unused `posix-rename`.
const POSIX_RENAME: &str = "posix-rename@openssh.com";

/// The order of SYMLINK's two paths. OpenSSH's sftp-server reads the target first and the link
/// second, the reverse of the draft, and most clients send that order to every server (OpenSSH,
/// paramiko, Go's sftp); a few follow the draft with servers that are not OpenSSH (AsyncSSH,
/// libssh), as toolboxd is. The client's identification string tells which.
pub fn symlink_order(client_id: &[u8]) -> SymlinkOrder {
    let id = String::from_utf8_lossy(client_id);
    if ["AsyncSSH", "libssh_"].iter().any(|name| id.contains(name)) {
        SymlinkOrder::Draft
    } else {
        SymlinkOrder::OpenSsh
    }
}

/// See [`symlink_order`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymlinkOrder {
    /// Link path, then target.
    Draft,
    /// Target, then link path.
    OpenSsh,
}

/// Serves SFTP on the channel until the client closes it.
pub async fn run(
    files: Files,
    home: PathBuf,
    symlinks: SymlinkOrder,
    output: Output,
    inbox: Arc<Inbox>,
    ended: CancellationToken,
) {
    let (requests, incoming) = mpsc::channel::<Bytes>(QUEUE);
    let (answers, mut outgoing) = mpsc::channel::<Bytes>(QUEUE);
    let worker = std::thread::Builder::new()
        .name("sftp".into())
        .spawn(move || Server::new(files, home, symlinks).serve(incoming, answers));
    if let Err(err) = worker {
        tracing::warn!("ssh: cannot start an sftp thread: {err}");
        output.finish().await;
        return;
    }
    let output = Arc::new(output);
    let sender = output.clone();
    let writer = tokio::spawn(async move {
        while let Some(answer) = outgoing.recv().await {
            if !sender.data(answer).await {
                break;
            }
        }
    });
    let mut buffer = BytesMut::new();
    'input: while let Some(chunk) = inbox.recv().await {
        buffer.extend_from_slice(&chunk);
        while buffer.len() >= 4 {
            let len = u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
            if len == 0 || len > MAX_PACKET {
                tracing::debug!("ssh: sftp packet of {len} bytes refused; ending the session");
                break 'input;
            }
            if buffer.len() < 4 + len {
                break;
            }
            buffer.advance(4);
            let packet = buffer.split_to(len).freeze();
            if requests.send(packet).await.is_err() {
                break 'input;
            }
        }
    }
    // The worker answers what it has, then its queue closes and the writer ends.
    drop(requests);
    let _ = writer.await;
    if ended.is_cancelled() {
        output.close().await;
    } else {
        // As sftp-server exiting 0: scp's exit status depends on it.
        output.exit_status(0).await;
        output.finish().await;
    }
}

/// One session's open files and directories (on the worker thread).
struct Server {
    files: Files,
    home: PathBuf,
    symlinks: SymlinkOrder,
    handles: HashMap<String, Open>,
    next_handle: u64,
}

enum Open {
    File(OpenFile),
    Dir {
        path: PathBuf,
        entries: std::fs::ReadDir,
        /// `.` and `..` go first, as readdir(3) gives them.
        dots: bool,
    },
}

impl Server {
    fn new(files: Files, home: PathBuf, symlinks: SymlinkOrder) -> Server {
        Server {
            files,
            home,
            symlinks,
            handles: HashMap::new(),
            next_handle: 0,
        }
    }

    /// Handles requests in order until the framer is done; open handles close with the session
    /// (a staged file that was never closed is discarded).
    fn serve(mut self, mut incoming: mpsc::Receiver<Bytes>, answers: mpsc::Sender<Bytes>) {
        while let Some(mut packet) = incoming.blocking_recv() {
            let id = request_id(&packet);
            let answer = match Packet::try_from(&mut packet) {
                Ok(request) => self.handle(request),
                Err(err) => status(id, StatusCode::BadMessage, &format!("bad packet: {err}")),
            };
            let Ok(bytes) = Bytes::try_from(answer) else {
                continue;
            };
            if answers.blocking_send(bytes).is_err() {
                return;
            }
        }
    }

    fn handle(&mut self, request: Packet) -> Packet {
        let id = request.get_request_id();
        let answer = match request {
            Packet::Init(_) => return Packet::Version(version()),
            Packet::Open(open) => self.open(id, &open.filename, open.pflags, &open.attrs),
            Packet::Close(close) => self.close(id, &close.handle),
            Packet::Read(read) => self.read(id, &read.handle, read.offset, read.len),
            Packet::Write(write) => self.write(id, &write.handle, write.offset, &write.data),
            Packet::Lstat(lstat) => self
                .path(&lstat.path)
                .and_then(|path| metadata(&path, false))
                .map(|metadata| attrs_packet(id, &metadata)),
            Packet::Stat(stat) => self
                .path(&stat.path)
                .and_then(|path| metadata(&path, true))
                .map(|metadata| attrs_packet(id, &metadata)),
            Packet::Fstat(fstat) => self
                .file(&fstat.handle)
                .and_then(OpenFile::metadata)
                .map(|metadata| attrs_packet(id, &metadata)),
            Packet::SetStat(setstat) => self
                .path(&setstat.path)
                .and_then(|path| set_attrs(&path, &setstat.attrs))
                .map(|()| ok(id)),
            Packet::FSetStat(fsetstat) => self.fsetstat(id, &fsetstat.handle, &fsetstat.attrs),
            Packet::OpenDir(opendir) => self.opendir(id, &opendir.path),
            Packet::ReadDir(readdir) => self.readdir(id, &readdir.handle),
            Packet::Remove(remove) => self
                .path(&remove.filename)
                .and_then(|path| self.files.delete(&path, false))
                .map(|()| ok(id)),
            Packet::MkDir(mkdir) => self.path(&mkdir.path).and_then(|path| {
                let mode = mkdir.attrs.permissions.unwrap_or(0o777) & 0o7777;
                std::fs::DirBuilder::new()
                    .mode(mode)
                    .create(&path)
                    .map_err(|err| Error::io("mkdir", &path, &err))
                    .map(|()| ok(id))
            }),
            Packet::RmDir(rmdir) => self.path(&rmdir.path).and_then(|path| {
                std::fs::remove_dir(&path)
                    .map_err(|err| Error::io("rmdir", &path, &err))
                    .map(|()| ok(id))
            }),
            Packet::RealPath(realpath) => self
                .path(&realpath.path)
                .map(|path| name_packet(id, &canonical(&path))),
            Packet::Rename(rename) => self.path(&rename.oldpath).and_then(|old| {
                let new = self.path(&rename.newpath)?;
                self.files.move_path(&old, &new).map(|()| ok(id))
            }),
            Packet::ReadLink(readlink) => self.path(&readlink.path).and_then(|path| {
                std::fs::read_link(&path)
                    .map_err(|err| Error::io("readlink", &path, &err))
                    .map(|target| name_packet(id, &target))
            }),
            Packet::Symlink(symlink) => {
                // russh-sftp names the fields in the draft's order.
                let (target, link) = match self.symlinks {
                    SymlinkOrder::Draft => (symlink.targetpath, symlink.linkpath),
                    SymlinkOrder::OpenSsh => (symlink.linkpath, symlink.targetpath),
                };
                self.path(&link).and_then(|link| {
                    std::os::unix::fs::symlink(&target, &link)
                        .map_err(|err| Error::io("symlink", &link, &err))
                        .map(|()| ok(id))
                })
            }
            Packet::Extended(extended) => self.extended(id, &extended.request, extended.data),
            _ => Ok(status(id, StatusCode::OpUnsupported, "not a request")),
        };
        answer.unwrap_or_else(|err| error_packet(id, &err))
    }

    /// A client path: relative to the work dir, `""` is `.`.
    fn path(&self, path: &str) -> Result<PathBuf> {
        self.files.resolve(if path.is_empty() { "." } else { path })
    }

    fn file(&self, handle: &str) -> Result<&OpenFile> {
        match self.handles.get(handle) {
            Some(Open::File(file)) => Ok(file),
            _ => Err(bad_handle(handle)),
        }
    }

    fn add(&mut self, open: Open) -> Result<String> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("too many open handles (at most {MAX_HANDLES}): close some first"),
            ));
        }
        self.next_handle += 1;
        let handle = self.next_handle.to_string();
        self.handles.insert(handle.clone(), open);
        Ok(handle)
    }

    fn open(
        &mut self,
        id: u32,
        filename: &str,
        flags: OpenFlags,
        attrs: &FileAttributes,
    ) -> Result<Packet> {
        let path = self.path(filename)?;
        let mode = OpenMode {
            read: flags.contains(OpenFlags::READ),
            write: flags.contains(OpenFlags::WRITE),
            append: flags.contains(OpenFlags::APPEND),
            create: flags.contains(OpenFlags::CREATE),
            truncate: flags.contains(OpenFlags::TRUNCATE),
            exclusive: flags.contains(OpenFlags::EXCLUDE),
        };
        let file = self.files.open_file(&path, mode, attrs.permissions)?;
        let handle = self.add(Open::File(file))?;
        Ok(Packet::Handle(Handle { id, handle }))
    }

    fn close(&mut self, id: u32, handle: &str) -> Result<Packet> {
        match self.handles.remove(handle) {
            Some(Open::File(file)) => file.close().map(|()| ok(id)),
            Some(Open::Dir { .. }) => Ok(ok(id)),
            None => Err(bad_handle(handle)),
        }
    }

    fn read(&mut self, id: u32, handle: &str, offset: u64, len: u32) -> Result<Packet> {
        let file = self.file(handle)?;
        let data = file.read_at(offset, (len as usize).min(MAX_IO))?;
        if data.is_empty() && len > 0 {
            return Ok(status(id, StatusCode::Eof, "end of file"));
        }
        Ok(Packet::Data(Data { id, data }))
    }

    fn write(&mut self, id: u32, handle: &str, offset: u64, data: &[u8]) -> Result<Packet> {
        match self.handles.get_mut(handle) {
            Some(Open::File(file)) => file.write_at(offset, data).map(|()| ok(id)),
            _ => Err(bad_handle(handle)),
        }
    }

    fn fsetstat(&mut self, id: u32, handle: &str, attrs: &FileAttributes) -> Result<Packet> {
        let file = match self.handles.get_mut(handle) {
            Some(Open::File(file)) => file,
            Some(Open::Dir { path, .. }) => {
                let path = path.clone();
                return set_attrs(&path, attrs).map(|()| ok(id));
            }
            None => return Err(bad_handle(handle)),
        };
        if attrs.uid.is_some() || attrs.gid.is_some() {
            let fd = std::os::fd::AsFd::as_fd(file.file());
            nix::unistd::fchown(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                attrs.uid.map(nix::unistd::Uid::from_raw),
                attrs.gid.map(nix::unistd::Gid::from_raw),
            )
            .map_err(|errno| {
                Error::io(
                    "chown",
                    Path::new(handle),
                    &std::io::Error::from_raw_os_error(errno as i32),
                )
            })?;
        }
        file.set(attrs.size, attrs.permissions, times(attrs))?;
        Ok(ok(id))
    }

    fn opendir(&mut self, id: u32, path: &str) -> Result<Packet> {
        let path = self.path(path)?;
        let entries = std::fs::read_dir(&path).map_err(|err| Error::io("opendir", &path, &err))?;
        let handle = self.add(Open::Dir {
            path,
            entries,
            dots: true,
        })?;
        Ok(Packet::Handle(Handle { id, handle }))
    }

    fn readdir(&mut self, id: u32, handle: &str) -> Result<Packet> {
        let Some(Open::Dir {
            path,
            entries,
            dots,
        }) = self.handles.get_mut(handle)
        else {
            return Err(bad_handle(handle));
        };
        let mut files = Vec::new();
        if std::mem::take(dots) {
            for name in [".", ".."] {
                if let Ok(metadata) = std::fs::symlink_metadata(path.join(name)) {
                    files.push(entry(name, &metadata));
                }
            }
        }
        while files.len() < DIR_BATCH {
            let Some(next) = entries.next() else {
                break;
            };
            let Ok(next) = next else {
                continue;
            };
            let name = next.file_name().to_string_lossy().into_owned();
            // Gone since it was listed: skipped, as ls would.
            if let Ok(metadata) = std::fs::symlink_metadata(next.path()) {
                files.push(entry(&name, &metadata));
            }
        }
        if files.is_empty() {
            return Ok(status(id, StatusCode::Eof, "no more entries"));
        }
        Ok(Packet::Name(Name { id, files }))
    }

    fn extended(&mut self, id: u32, request: &str, data: Vec<u8>) -> Result<Packet> {
        fn decode<T: serde::de::DeserializeOwned>(request: &str, data: &mut Bytes) -> Result<T> {
            russh_sftp::de::from_bytes(data)
                .map_err(|err| Error::bad_request(format!("bad {request} request: {err}")))
        }
        let mut data = Bytes::from(data);
        match request {
            "limits@openssh.com" => {
                let limits = LimitsExtension {
                    max_packet_len: MAX_PACKET as u64,
                    max_read_len: MAX_IO as u64,
                    max_write_len: MAX_IO as u64,
                    max_open_handles: (MAX_HANDLES - self.handles.len()) as u64,
                };
                extended_reply(id, &limits)
            }
            POSIX_RENAME => {
                let paths: HardlinkExtension = decode(request, &mut data)?;
                let (old, new) = (self.path(&paths.oldpath)?, self.path(&paths.newpath)?);
                std::fs::rename(&old, &new)
                    .map_err(|err| Error::io("rename", &old, &err))
                    .map(|()| ok(id))
            }
            "hardlink@openssh.com" => {
                let paths: HardlinkExtension = decode(request, &mut data)?;
                let (old, new) = (self.path(&paths.oldpath)?, self.path(&paths.newpath)?);
                std::fs::hard_link(&old, &new)
                    .map_err(|err| Error::io("link", &old, &err))
                    .map(|()| ok(id))
            }
            "fsync@openssh.com" => {
                let fsync: FsyncExtension = decode(request, &mut data)?;
                self.file(&fsync.handle)?.sync().map(|()| ok(id))
            }
            "statvfs@openssh.com" => {
                let statvfs: StatvfsExtension = decode(request, &mut data)?;
                let path = self.path(&statvfs.path)?;
                let stats = nix::sys::statvfs::statvfs(&path).map_err(|errno| {
                    Error::io(
                        "statvfs",
                        &path,
                        &std::io::Error::from_raw_os_error(errno as i32),
                    )
                })?;
                extended_reply(
                    id,
                    &Statvfs {
                        block_size: stats.block_size(),
                        fragment_size: stats.fragment_size(),
                        blocks: stats.blocks(),
                        blocks_free: stats.blocks_free(),
                        blocks_avail: stats.blocks_available(),
                        inodes: stats.files(),
                        inodes_free: stats.files_free(),
                        inodes_avail: stats.files_available(),
                        fs_id: stats.filesystem_id(),
                        flags: u64::from(
                            stats
                                .flags()
                                .contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
                        ) | (u64::from(
                            stats
                                .flags()
                                .contains(nix::sys::statvfs::FsFlags::ST_NOSUID),
                        ) << 1),
                        name_max: stats.name_max(),
                    },
                )
            }
            "expand-path@openssh.com" => {
                let expand: ExpandPathExtension = decode(request, &mut data)?;
                let path = match expand.path.as_str() {
                    "~" => self.home.clone(),
                    tilde if tilde.starts_with("~/") => self.home.join(&tilde[2..]),
                    other => self.path(other)?,
                };
                Ok(name_packet(id, &canonical(&path)))
            }
            _ => Ok(status(
                id,
                StatusCode::OpUnsupported,
                &format!("{request} is not supported"),
            )),
        }
    }
}

/// What the server offers in its VERSION (OpenSSH clients check the names and versions).
fn version() -> Version {
    let mut version = Version::new();
    for (name, revision) in [
        (POSIX_RENAME, "1"),
        ("statvfs@openssh.com", "2"),
        ("hardlink@openssh.com", "1"),
        ("fsync@openssh.com", "1"),
        ("limits@openssh.com", "1"),
        ("expand-path@openssh.com", "1"),
    ] {
        version
            .extensions
            .insert(name.to_string(), revision.to_string());
    }
    version
}

/// The request id of a raw request (after the type byte), for the answer to one that does not
/// decode; 0 for INIT or a packet too short to have one.
fn request_id(packet: &[u8]) -> u32 {
    match packet {
        [kind, a, b, c, d, ..] if *kind != 1 => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

fn status(id: u32, code: StatusCode, message: &str) -> Packet {
    Packet::Status(Status {
        id,
        status_code: code,
        error_message: message.to_string(),
        language_tag: "en-US".to_string(),
    })
}

fn ok(id: u32) -> Packet {
    status(id, StatusCode::Ok, "ok")
}

/// Our error as an SFTP status: the codes SFTP v3 has, the message as toolboxd words it.
fn error_packet(id: u32, err: &Error) -> Packet {
    let code = match err.kind {
        ErrorKind::FileNotFound => StatusCode::NoSuchFile,
        ErrorKind::AccessDenied => StatusCode::PermissionDenied,
        _ => StatusCode::Failure,
    };
    status(id, code, &err.message)
}

fn bad_handle(handle: &str) -> Error {
    Error::bad_request(format!("no open file or directory has handle {handle:?}"))
}

fn extended_reply<T: serde::Serialize>(id: u32, value: &T) -> Result<Packet> {
    let data = russh_sftp::ser::to_bytes(value)
        .map_err(|err| Error::internal(format!("cannot encode an sftp reply: {err}")))?;
    Ok(Packet::ExtendedReply(ExtendedReply {
        id,
        data: data.to_vec(),
    }))
}

fn metadata(path: &Path, follow: bool) -> Result<std::fs::Metadata> {
    let result = if follow {
        std::fs::metadata(path)
    } else {
        std::fs::symlink_metadata(path)
    };
    result.map_err(|err| Error::io("stat", path, &err))
}

/// SFTP attributes of `metadata` (the full `st_mode`, type bits included, as OpenSSH sends).
fn attributes(metadata: &std::fs::Metadata) -> FileAttributes {
    FileAttributes {
        size: Some(metadata.size()),
        uid: Some(metadata.uid()),
        user: None,
        gid: Some(metadata.gid()),
        group: None,
        permissions: Some(metadata.mode()),
        atime: Some(clamp_time(metadata.atime())),
        mtime: Some(clamp_time(metadata.mtime())),
    }
}

/// SFTP v3 times are unsigned 32-bit seconds.
fn clamp_time(seconds: i64) -> u32 {
    seconds.clamp(0, i64::from(u32::MAX)) as u32
}

fn attrs_packet(id: u32, metadata: &std::fs::Metadata) -> Packet {
    Packet::Attrs(Attrs {
        id,
        attrs: attributes(metadata),
    })
}

fn name_packet(id: u32, path: &Path) -> Packet {
    Packet::Name(Name {
        id,
        files: vec![Entry::dummy(path.to_string_lossy())],
    })
}

/// A directory entry with an `ls -l` style long name (numeric owner and group: no user
/// database lookups in a static binary).
fn entry(name: &str, metadata: &std::fs::Metadata) -> Entry {
    let mode = metadata.mode();
    let kind = match mode & libc::S_IFMT {
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        libc::S_IFIFO => 'p',
        libc::S_IFSOCK => 's',
        _ => '-',
    };
    let bit = |mask: u32, c: char| if mode & mask != 0 { c } else { '-' };
    let special = |exec: u32, special: u32, set: char| match (mode & exec != 0, mode & special != 0)
    {
        (true, true) => set,
        (false, true) => set.to_ascii_uppercase(),
        (true, false) => 'x',
        (false, false) => '-',
    };
    let perms: String = [
        kind,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        special(0o100, 0o4000, 's'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        special(0o010, 0o2000, 's'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        special(0o001, 0o1000, 't'),
    ]
    .into_iter()
    .collect();
    let modified = chrono::DateTime::<chrono::Utc>::from(
        UNIX_EPOCH + Duration::from_secs(metadata.mtime().max(0) as u64),
    );
    let recent = SystemTime::now()
        .duration_since(UNIX_EPOCH + Duration::from_secs(metadata.mtime().max(0) as u64))
        .is_ok_and(|age| age < Duration::from_secs(182 * 24 * 3600));
    let when = if recent {
        modified.format("%b %e %H:%M")
    } else {
        modified.format("%b %e  %Y")
    };
    Entry {
        filename: name.to_string(),
        longname: format!(
            "{perms} {:>4} {:<8} {:<8} {:>8} {when} {name}",
            metadata.nlink(),
            metadata.uid(),
            metadata.gid(),
            metadata.size()
        ),
        attrs: attributes(metadata),
    }
}

/// The access and modification times SFTP attributes set, if they set them.
fn times(attrs: &FileAttributes) -> Option<(SystemTime, SystemTime)> {
    let at = |seconds: u32| UNIX_EPOCH + Duration::from_secs(u64::from(seconds));
    match (attrs.atime, attrs.mtime) {
        (Some(atime), Some(mtime)) => Some((at(atime), at(mtime))),
        _ => None,
    }
}

/// SETSTAT on a path: size, owner, permission bits, times (in that order, as OpenSSH does).
fn set_attrs(path: &Path, attrs: &FileAttributes) -> Result<()> {
    if let Some(size) = attrs.size {
        // Non-blocking: a truncate through SETSTAT must not block on a FIFO.
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .and_then(|file| file.set_len(size))
            .map_err(|err| Error::io("truncate", path, &err))?;
    }
    if attrs.uid.is_some() || attrs.gid.is_some() {
        nix::unistd::chown(
            path,
            attrs.uid.map(nix::unistd::Uid::from_raw),
            attrs.gid.map(nix::unistd::Gid::from_raw),
        )
        .map_err(|errno| {
            Error::io(
                "chown",
                path,
                &std::io::Error::from_raw_os_error(errno as i32),
            )
        })?;
    }
    if let Some(mode) = attrs.permissions {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|err| Error::io("chmod", path, &err))?;
    }
    if let Some((accessed, modified)) = times(attrs) {
        let timespec = |time: SystemTime| {
            let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
            nix::sys::time::TimeSpec::new(since.as_secs() as i64, since.subsec_nanos() as i64)
        };
        nix::sys::stat::utimensat(
            None,
            path,
            &timespec(accessed),
            &timespec(modified),
            nix::sys::stat::UtimensatFlags::FollowSymlink,
        )
        .map_err(|errno| {
            Error::io(
                "set the times of",
                path,
                &std::io::Error::from_raw_os_error(errno as i32),
            )
        })?;
    }
    Ok(())
}

/// `realpath` as sftp-server answers it: symlinks resolved where the path exists; for a path
/// whose last part does not exist yet, its directory resolved and the name kept; otherwise the
/// path with `.` and `..` taken out by name.
fn canonical(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    if let (Some(parent), Some(name)) = (path.parent(), path.file_name()) {
        if let Ok(real) = std::fs::canonicalize(parent) {
            return real.join(name);
        }
    }
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(name) => out.push(name),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_look_like_ls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, "abc").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o4751)).unwrap();
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        let entry = entry("x", &metadata);
        assert!(
            entry.longname.starts_with("-rwsr-x--x "),
            "{}",
            entry.longname
        );
        assert!(entry.longname.ends_with(" x"));
        assert_eq!(entry.attrs.size, Some(3));
        assert_eq!(entry.attrs.permissions, Some(0o104751));
    }

    #[test]
    fn realpath_keeps_a_missing_last_name() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(canonical(&dir.path().join("new.txt")), real.join("new.txt"));
        assert_eq!(
            canonical(Path::new("/nonexistent-toolboxd/a/../b/./c")),
            Path::new("/nonexistent-toolboxd/b/c")
        );
        assert_eq!(request_id(&[3, 0, 0, 1, 2, 9]), 258);
        assert_eq!(
            symlink_order(b"SSH-2.0-OpenSSH_9.2p1 Debian-2"),
            SymlinkOrder::OpenSsh
        );
        assert_eq!(
            symlink_order(b"SSH-2.0-AsyncSSH_2.24.1"),
            SymlinkOrder::Draft
        );
        assert_eq!(symlink_order(b"SSH-2.0-Go"), SymlinkOrder::OpenSsh);
        assert_eq!(request_id(&[1, 0, 0, 0, 3]), 0);
    }
}
