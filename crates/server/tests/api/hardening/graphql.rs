//! Hardening: graphql.
