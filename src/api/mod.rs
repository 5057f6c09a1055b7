//! The OpenAI-compatible client surface: request, response and stream-chunk types.
//!
//! Clients speak the OpenAI Chat Completions format to tollgate whatever provider serves
//! them, so these types are the canonical in-memory form of a chat request. Unknown fields
//! are kept in `extra` maps so that a request forwarded to an OpenAI-format upstream loses
//! nothing, while translators for other providers read only the typed fields.

pub mod chat;
pub mod limits;
pub mod response;

pub use chat::{
    ChatRequest, Content, ContentPart, FunctionCall, FunctionDef, ImageUrl, Message, Role, Stop,
    StreamOptions, Tool, ToolCall, ToolChoice,
};
pub use limits::RequestLimits;
pub use response::{
    ChatChunk, ChatCompletion, Choice, ChunkChoice, Delta, FunctionDelta, ResponseMessage,
    ToolCallDelta, UsageJson,
};
