//! Harness for the end-to-end tests: starts the gateway binary and its downstreams.

pub mod gateway;
pub mod tools;
