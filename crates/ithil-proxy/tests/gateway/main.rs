//! The MCP endpoint driven through `Gateway::handle_mcp`, without a socket on the gateway's
//! side, against a real local downstream.

mod auth;
mod budget;
mod calls;
mod discovery;
mod protocol;
mod sessions;
mod support;
