//! Integration tests of `ithil-budget`, one binary with topic modules.

mod crash;
