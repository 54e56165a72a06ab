//! Integration tests of the tool catalog: the shared OpenAPI document, manifests, discovery and
//! the checks of merging, and the properties of request building.

mod discovery;
mod manifest;
mod merge;
mod openapi;
mod request;
mod support;
