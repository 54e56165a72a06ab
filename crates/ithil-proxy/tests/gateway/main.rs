//! The MCP endpoint driven through `Gateway::handle_mcp`, without a socket on the gateway's
//! side, against a real local downstream.

mod audit;
mod auth;
mod budget;
mod calls;
mod circuit;
mod discovery;
mod midcall;
mod protocol;
mod sessions;
mod support;
