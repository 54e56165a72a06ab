//! The MCP endpoint of the Ithil gateway: tool catalog, governance, forwarding and filters.

pub mod catalog;
pub mod circuit;
pub mod forward;
pub mod gateway;
pub mod mcp;
pub mod privacy;
pub mod request;
pub mod schema;
