//! `AppState`: one cheap-to-clone handle per capability, shared by every handler.

use std::sync::Arc;

use crate::config::Config;
use crate::files::Files;

/// What handlers reach the capabilities through.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The resolved configuration.
    pub config: Arc<Config>,
    /// The file capability.
    pub files: Files,
}

impl AppState {
    /// Builds every capability from the configuration.
    pub fn new(config: Config) -> AppState {
        let files = Files::new(config.workdir.clone(), config.umask);
        AppState {
            config: Arc::new(config),
            files,
        }
    }
}
