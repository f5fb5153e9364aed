//! Integration tests against a real `notesaga-broker` process: the HTTP API through
//! `tower::ServiceExt::oneshot`, interoperation with `schema_registry_converter` over a
//! loopback socket, and durability across registry and broker restarts. One test binary,
//! so the crate and its dependencies are linked once.

mod support;

mod auth;
mod http;
mod interop;
mod restart;
mod topic;
