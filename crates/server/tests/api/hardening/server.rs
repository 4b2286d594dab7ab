//! Hardening: server.
