//! The broker's own recovery tests, against the in-memory drop-in and the durable type; the
//! durable type's own promises (reopen, degraded mode, write-through); and a property test
//! against the reference transcription.

mod durable;
mod memory;
mod migration;
mod model;
mod promises;
