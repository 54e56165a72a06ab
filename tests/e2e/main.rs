//! End-to-end tests: the real binary, a real downstream, real MCP clients.

mod audit;
mod budget;
mod circuit;
mod cli;
mod guides;
mod hostile;
mod management;
mod mcp_clients;
mod metrics;
