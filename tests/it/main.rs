//! The single integration-test binary: every test spawns the real `toolboxd` on 127.0.0.1:0
//! with a temp work dir and HOME, and drives it over HTTP.

mod harness;

mod auth;
mod cli;
mod code;
mod download;
mod entrypoint;
mod errors;
mod faults;
mod files;
mod files_remove;
mod fuzz_findings;
mod git;
mod git_support;
mod interpreter;
mod json_bodies;
mod limits;
mod lsp;
mod mcp;
mod memory;
mod observe;
mod oom;
mod openapi;
mod ports;
mod process;
mod proxy;
mod pty;
mod sdk_api;
mod search;
mod session;
mod session_formats;
mod session_logs;
mod ssh;
mod streaming;
mod terminal;
mod transfer_support;
mod upload;
mod watch;
