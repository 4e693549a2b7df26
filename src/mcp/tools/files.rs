//! File tools: the names and parameters of Daytona's MCP server (`download_file`,
//! `upload_file`, `create_folder`, `get_file_info`, `list_files`, `move_file`, `delete_file`).

use super::Parameters;
use base64::Engine;
use rmcp::handler::server::tool::schema_for_output;
use rmcp::model::{CallToolResult, ContentBlock};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::super::output::{self, floor_char, MAX_TEXT};
use super::super::{blocking, Toolbox};
use crate::error::{Error, ErrorKind};
use crate::files::FileInfo;
use crate::http::wire;

/// The largest image `download_file` returns as image content (base64 in the result).
pub const MAX_IMAGE: usize = 5 * 1024 * 1024;
/// The most entries `list_files` returns.
pub const MAX_ENTRIES: usize = 1000;

/// `{file_path}`
#[derive(Debug, Deserialize, JsonSchema)]
pub struct FilePathArgs {
    /// The file: relative to the work dir unless absolute.
    pub file_path: String,
}

/// `upload_file`
#[derive(Debug, Deserialize, JsonSchema)]
pub struct UploadArgs {
    /// Where to write: relative to the work dir unless absolute. Missing parent directories are
    /// created.
    pub file_path: String,
    /// The content: text, or base64 when `encoding` is `base64`.
    pub content: String,
    /// How `content` is encoded (default `text`).
    pub encoding: Option<Encoding>,
    /// Replace the file if it exists (default false: an existing file is an error).
    pub overwrite: Option<bool>,
}

/// How `upload_file`'s content is encoded.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// UTF-8 text, written as is.
    Text,
    /// Base64 (standard alphabet) of the bytes to write.
    Base64,
}

/// `create_folder`
#[derive(Debug, Deserialize, JsonSchema)]
pub struct FolderArgs {
    /// The directory to create, with missing parents: relative to the work dir unless absolute.
    pub folder_path: String,
    /// Octal permissions, e.g. `755` (the default) or `0700`.
    pub mode: Option<String>,
}

/// `list_files`
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListArgs {
    /// The directory to list (default: the work dir).
    pub path: Option<String>,
    /// Levels to descend (default 1: the directory's own entries).
    pub depth: Option<u32>,
}

/// `move_file`
#[derive(Debug, Deserialize, JsonSchema)]
pub struct MoveArgs {
    /// What to move.
    pub source_path: String,
    /// Where to; must not exist.
    pub dest_path: String,
}

/// `delete_file`
#[derive(Debug, Deserialize, JsonSchema)]
pub struct DeleteArgs {
    /// The file, link or directory to delete.
    pub file_path: String,
    /// Delete a directory with everything in it (default false: only files and links). A tree is
    /// deleted whole or not at all.
    pub recursive: Option<bool>,
}

/// One file or directory.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FileEntry {
    /// Base name.
    pub name: String,
    /// Absolute path.
    pub path: String,
    /// True for a directory.
    pub is_dir: bool,
    /// Size in bytes.
    pub size: u64,
    /// Type and permissions as `ls -l` shows them, e.g. `-rw-r--r--`.
    pub mode: String,
    /// Last modification, RFC 3339.
    pub modified: String,
    /// Owner uid.
    pub owner: u32,
    /// Group gid.
    pub group: u32,
}

impl FileEntry {
    fn from_info(info: FileInfo) -> FileEntry {
        FileEntry {
            name: info.name,
            path: info.path.to_string_lossy().into_owned(),
            is_dir: info.is_dir,
            size: info.size,
            mode: wire::go_mode_string(info.mode),
            modified: wire::rfc3339_nano(info.modified),
            owner: info.uid,
            group: info.gid,
        }
    }
}

/// What `list_files` found.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Listing {
    /// The directory listed.
    pub path: String,
    /// Its entries sorted by name, parents before their children.
    pub entries: Vec<FileEntry>,
    /// True when there were more than the 1000 entries returned.
    pub truncated: bool,
}

/// A path that was created, written or deleted.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PathDone {
    /// The absolute path.
    pub path: String,
}

/// What `upload_file` wrote.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Uploaded {
    /// The absolute path written.
    pub path: String,
    /// Bytes written.
    pub bytes: u64,
}

/// What `move_file` did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Moved {
    /// The old absolute path.
    pub source: String,
    /// The new absolute path.
    pub destination: String,
}

fn shown(path: &std::path::Path) -> String {
    path.to_string_lossy().into_owned()
}

#[rmcp::tool_router(router = files_router, vis = "pub(crate)")]
impl Toolbox {
    /// Reads a file: text as text (the first 100 KiB, with a notice past that), an image (PNG,
    /// JPEG, GIF, WebP up to 5 MiB) as image content, other binary data as base64 text.
    #[rmcp::tool(annotations(
        title = "Download file",
        read_only_hint = true,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn download_file(
        &self,
        Parameters(args): Parameters<FilePathArgs>,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        let files = self.app.files.clone();
        let read = async move {
            let path = files.resolve(&args.file_path)?;
            let image = image_type(&path);
            let limit = if image.is_some() { MAX_IMAGE } else { MAX_TEXT };
            let shown = shown(&path);
            let (head, size) = blocking(move || files.read_head(&path, limit + 1)).await?;
            Ok::<_, Error>(file_content(&shown, head, size, image))
        };
        Ok(read.await.unwrap_or_else(|err| output::failure(&err)))
    }

    /// Writes a file from text or base64, atomically (a failed write leaves the old content).
    /// Creates missing parent directories. An existing file is replaced only with `overwrite`.
    #[rmcp::tool(
        annotations(
            title = "Upload file",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        ),
        output_schema = schema_for_output::<Uploaded>()
    )]
    async fn upload_file(
        &self,
        Parameters(args): Parameters<UploadArgs>,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        let files = self.app.files.clone();
        let write = async move {
            let path = files.resolve(&args.file_path)?;
            let bytes = match args.encoding.unwrap_or(Encoding::Text) {
                Encoding::Text => args.content.into_bytes(),
                Encoding::Base64 => base64::engine::general_purpose::STANDARD
                    .decode(args.content.trim())
                    .map_err(|err| {
                        Error::bad_request(format!(
                            "content is not valid base64 ({err}): encode the bytes with the \
                             standard alphabet, or use encoding `text`"
                        ))
                    })?,
            };
            let overwrite = args.overwrite.unwrap_or(false);
            let target = path.clone();
            let written = blocking(move || {
                let mut file = files.create_atomic(&target)?;
                file.write_all(&bytes)?;
                if overwrite {
                    file.commit()
                } else {
                    file.commit_new().map_err(|err| match err.kind {
                        ErrorKind::Conflict => Error::conflict(format!(
                            "{}: set `overwrite` to true to replace it",
                            err.message
                        )),
                        _ => err,
                    })
                }
            })
            .await?;
            Ok(Uploaded {
                path: shown(&path),
                bytes: written,
            })
        };
        Ok(output::outcome(write.await))
    }

    /// Creates a directory and any missing parents (an existing directory is fine).
    #[rmcp::tool(
        annotations(
            title = "Create folder",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        ),
        output_schema = schema_for_output::<PathDone>()
    )]
    async fn create_folder(
        &self,
        Parameters(args): Parameters<FolderArgs>,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        let files = self.app.files.clone();
        let create = async move {
            let path = files.resolve(&args.folder_path)?;
            let target = path.clone();
            let mode = args.mode.filter(|m| !m.is_empty());
            blocking(move || files.create_folder(&target, mode.as_deref())).await?;
            Ok(PathDone { path: shown(&path) })
        };
        Ok(output::outcome(create.await))
    }

    /// Describes a file or directory: type, size, permissions, owner, modification time.
    #[rmcp::tool(
        annotations(
            title = "Get file info",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        ),
        output_schema = schema_for_output::<FileEntry>()
    )]
    async fn get_file_info(
        &self,
        Parameters(args): Parameters<FilePathArgs>,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        let files = self.app.files.clone();
        let info = async move {
            let path = files.resolve(&args.file_path)?;
            let info = blocking(move || files.info(&path)).await?;
            Ok(FileEntry::from_info(info))
        };
        Ok(output::outcome(info.await))
    }

    /// Lists a directory (sorted by name; `depth` levels deep), at most 1000 entries.
    #[rmcp::tool(
        annotations(
            title = "List files",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        ),
        output_schema = schema_for_output::<Listing>()
    )]
    async fn list_files(
        &self,
        Parameters(args): Parameters<ListArgs>,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        let files = self.app.files.clone();
        let list = async move {
            let path = files.resolve(
                args.path
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .unwrap_or("."),
            )?;
            let depth = args.depth.unwrap_or(1).max(1);
            let shown = shown(&path);
            let (entries, truncated) = blocking(move || {
                let mut listing = files.open_listing(&path, depth)?;
                let entries: Vec<FileEntry> = listing
                    .by_ref()
                    .take(MAX_ENTRIES)
                    .map(FileEntry::from_info)
                    .collect();
                Ok((entries, listing.next().is_some()))
            })
            .await?;
            Ok(Listing {
                path: shown,
                entries,
                truncated,
            })
        };
        Ok(output::outcome(list.await))
    }

    /// Moves or renames a file or directory (across filesystems too). The destination must not
    /// exist; a failed move changes nothing.
    #[rmcp::tool(
        annotations(
            title = "Move file",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        ),
        output_schema = schema_for_output::<Moved>()
    )]
    async fn move_file(
        &self,
        Parameters(args): Parameters<MoveArgs>,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        let files = self.app.files.clone();
        let moved = async move {
            let source = files.resolve(&args.source_path)?;
            let destination = files.resolve(&args.dest_path)?;
            let (from, to) = (source.clone(), destination.clone());
            blocking(move || files.move_path(&from, &to)).await?;
            Ok(Moved {
                source: shown(&source),
                destination: shown(&destination),
            })
        };
        Ok(output::outcome(moved.await))
    }

    /// Deletes a file or link, or with `recursive` a directory tree (whole or not at all).
    #[rmcp::tool(
        annotations(
            title = "Delete file",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        ),
        output_schema = schema_for_output::<PathDone>()
    )]
    async fn delete_file(
        &self,
        Parameters(args): Parameters<DeleteArgs>,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        let files = self.app.files.clone();
        let delete = async move {
            let path = files.resolve(&args.file_path)?;
            let target = path.clone();
            let recursive = args.recursive.unwrap_or(false);
            blocking(move || files.delete(&target, recursive))
                .await
                .map_err(|err| {
                    if err.message.contains("without recursive flag") {
                        Error::new(
                            err.kind,
                            format!("{}: set `recursive` to true", err.message),
                        )
                    } else {
                        err
                    }
                })?;
            Ok(PathDone { path: shown(&path) })
        };
        Ok(output::outcome(delete.await))
    }
}

/// The image type a path's extension names, among those MCP clients show.
fn image_type(path: &std::path::Path) -> Option<&'static str> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    match extension.as_str() {
        "png" => Some("image/png"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        "gif" => Some("image/gif"),
        "webp" => Some("image/webp"),
        _ => None,
    }
}

/// The content of a file read as `head` (at most one byte past the limit) of `size` bytes.
fn file_content(path: &str, head: Vec<u8>, size: u64, image: Option<&str>) -> CallToolResult {
    if let Some(mime) = image {
        if head.len() > MAX_IMAGE {
            return output::failure(&Error::bad_request(format!(
                "{path} is a {size}-byte image, over the {} MiB a result may carry: scale it \
                 down first (e.g. with execute_command)",
                MAX_IMAGE / (1024 * 1024)
            )));
        }
        let data = base64::engine::general_purpose::STANDARD.encode(&head);
        return CallToolResult::success(vec![ContentBlock::image(data, mime)]);
    }
    let cut = head.len() > MAX_TEXT;
    let probe = &head[..head.len().min(8192)];
    let binary = probe.contains(&0)
        || std::str::from_utf8(&head[..floor_char(&head, head.len().min(MAX_TEXT))]).is_err();
    if binary {
        // Base64 grows by 4/3: keep the text within the cap.
        let kept = if cut || head.len() > MAX_TEXT * 3 / 4 {
            MAX_TEXT * 3 / 4
        } else {
            head.len()
        };
        let mut text = base64::engine::general_purpose::STANDARD.encode(&head[..kept]);
        if kept < head.len() || (size as usize) > kept {
            text.push_str(&format!(
                "\n[toolboxd: binary file, {size} bytes; the first {kept} shown as base64. Read \
                 other parts with execute_command, e.g. `tail -c +{} {path} | head -c {kept} | \
                 base64`]",
                kept + 1
            ));
        } else {
            text.insert_str(
                0,
                &format!("[toolboxd: binary file, {size} bytes, as base64]\n"),
            );
        }
        return CallToolResult::success(vec![ContentBlock::text(text)]);
    }
    let kept = if cut {
        floor_char(&head, MAX_TEXT)
    } else {
        head.len()
    };
    let mut text = String::from_utf8_lossy(&head[..kept]).into_owned();
    if cut {
        text.push_str(&format!(
            "\n[toolboxd: {path} is {size} bytes; the first {kept} shown. Read on with \
             execute_command, e.g. `tail -c +{} {path} | head -c {MAX_TEXT}`, or search it with \
             search_files]",
            kept + 1
        ));
    }
    CallToolResult::success(vec![ContentBlock::text(text)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(result: &CallToolResult) -> String {
        result.content[0]
            .as_text()
            .map(|t| t.text.clone())
            .unwrap_or_default()
    }

    #[test]
    fn text_files_are_capped_with_a_notice() {
        let small = file_content("/w/a", b"hello\n".to_vec(), 6, None);
        assert_eq!(text_of(&small), "hello\n");
        let big = vec![b'x'; MAX_TEXT + 1];
        let result = file_content("/w/a", big, 10 * MAX_TEXT as u64, None);
        let text = text_of(&result);
        assert!(text.starts_with(&"x".repeat(MAX_TEXT)));
        assert!(
            text.contains("is 1024000 bytes; the first 102400 shown"),
            "{text}"
        );
    }

    #[test]
    fn binary_files_come_as_base64_and_images_as_images() {
        let result = file_content("/w/b", vec![0, 1, 2, 255], 4, None);
        assert!(
            text_of(&result).ends_with("AAEC/w=="),
            "{}",
            text_of(&result)
        );
        let image = file_content("/w/c.png", b"\x89PNG".to_vec(), 4, Some("image/png"));
        let block = image.content[0].as_image().expect("image content");
        assert_eq!(block.mime_type, "image/png");
        assert_eq!(
            image_type(std::path::Path::new("/a/B.JPG")),
            Some("image/jpeg")
        );
        assert_eq!(image_type(std::path::Path::new("/a/b.txt")), None);
    }
}
