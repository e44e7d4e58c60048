//! The integration suite: one test binary, one module per area.

mod util;

mod audit;
mod broker;
mod cli;
mod clockview;
mod crash;
mod creators;
mod damaged_rows;
mod format;
mod group;
mod handle;
mod history;
mod hostile;
mod migration;
mod model;
mod ownership;
mod processes;
mod recovery;
mod restore;
mod store;
