//! The integration suite: one test binary, one module per area.

mod util;

mod broker;
mod cli;
mod crash;
mod format;
mod group;
mod hostile;
mod model;
mod processes;
mod store;
