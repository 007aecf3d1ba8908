//! Lines for the gate's log, attributed to the plugin (the host caps how many it keeps).
//!
//! Inside the gate they go through the world's `log` import; in host-side unit tests, where
//! there is no gate, to stderr.
use crate::bindings::Level;

/// A debug line: detail for whoever investigates a verdict.
pub fn debug(message: &str) {
    write(Level::Debug, message);
}

/// An informational line.
pub fn info(message: &str) {
    write(Level::Info, message);
}

/// A warning: something the operator should look at.
pub fn warn(message: &str) {
    write(Level::Warn, message);
}

/// An error line: something failed (the verdict says what it means for the release).
pub fn error(message: &str) {
    write(Level::Error, message);
}

#[cfg(target_arch = "wasm32")]
fn write(level: Level, message: &str) {
    crate::bindings::log(level, message);
}

#[cfg(not(target_arch = "wasm32"))]
fn write(level: Level, message: &str) {
    eprintln!("[{level:?}] {message}");
}
