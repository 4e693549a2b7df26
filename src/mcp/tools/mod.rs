//! The tools, one file per capability. Each file is an `impl Toolbox` block whose `#[tool]`s
//! parse their arguments (a type whose JSON Schema is the tool's input schema: a value that does
//! not fit is a protocol error, `-32602`), call the capability, and convert what it answers (a
//! type whose JSON Schema is the output schema; an `Error` is an `isError` result). Annotations
//! say honestly what a tool does: `read_only_hint` (changes nothing), `destructive_hint` (may
//! overwrite or delete), `idempotent_hint` (a repeat changes nothing more), `open_world_hint`
//! (reaches beyond the sandbox: networks, arbitrary programs).

mod code;
mod files;
mod git;
mod preview;
mod process;
mod search;
mod session;

use std::borrow::Cow;

use rmcp::handler::server::common::FromContextPart;
use rmcp::handler::server::tool::ToolCallContext;
use serde::de::DeserializeOwned;

use super::Toolbox;

/// A tool's arguments parsed into `T`, whose JSON Schema is the tool's input schema. Arguments
/// that do not fit are a protocol error (`-32602`, naming the field), not a tool result: rmcp's
/// own `Parameters` makes them an `isError` result, which MCP 2025-11-25 allows, but a client
/// that sent arguments its tool list says are wrong has a bug to see, not a result to read.
pub struct Parameters<T>(pub T);

impl<T: schemars::JsonSchema> schemars::JsonSchema for Parameters<T> {
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

impl<T: DeserializeOwned> FromContextPart<ToolCallContext<'_, Toolbox>> for Parameters<T> {
    fn from_context_part(
        context: &mut ToolCallContext<'_, Toolbox>,
    ) -> Result<Self, rmcp::ErrorData> {
        let arguments = context.arguments.take().unwrap_or_default();
        serde_path_to_error::deserialize(serde_json::Value::Object(arguments))
            .map(Parameters)
            .map_err(|err| {
                let field = err.path().to_string();
                let message = if field == "." {
                    format!("invalid arguments for {}: {}", context.name, err.inner())
                } else {
                    format!(
                        "invalid argument `{field}` for {}: {}",
                        context.name,
                        err.inner()
                    )
                };
                rmcp::ErrorData::invalid_params(message, None)
            })
    }
}
