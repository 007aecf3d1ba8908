//! The WebAssembly sandbox policy plugins run in.
//!
//! A plugin is a component of the `fstgate:policy` world (plugin-sdk/wit/policy.wit). The host
//! offers it one import, `log`, and nothing else: a component that imports WASI or anything
//! outside the world is refused before it runs. Each evaluation gets a fresh store with its own
//! fuel (CPU), epoch deadline (wall clock), memory/instance/table limits, and bounded input and
//! output, and one memory budget for all its linear memories together. Compiled plugins are
//! cached by the sha256 of their bytes, so only the first evaluation of a plugin pays for
//! compilation; on disk each entry carries an HMAC under a key made for this cache, and an entry
//! that does not verify (planted, copied from elsewhere, damaged) is compiled again rather than
//! loaded as native code.
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap};

use crate::error::{Error, Result};

// Generated from plugin-sdk/wit/policy.wit: the world is documented there, for plugin authors.
#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "plugin-sdk/wit",
        world: "policy",
        imports: { default: trappable },
    });
}

pub use bindings::{Decision as GuestDecision, Level, Measurement, Verdict as GuestVerdict};
use bindings::{Policy as PolicyWorld, PolicyImports, PolicyPre};

/// The version of the world this host serves.
pub const WORLD: &str = "fstgate:policy/policy@0.1.0";

/// Plugin files larger than this are refused unread (Python components are about 40 MB).
const MAX_PLUGIN_BYTES: u64 = 256 << 20;

/// How often the wall-clock deadline is checked.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// What one evaluation of one plugin may use. The defaults are generous for a rule over a
/// report of a few kilobytes and small enough that a hostile plugin costs the gate little.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// WebAssembly fuel (about one unit per instruction).
    pub fuel: u64,
    /// Wall-clock limit per evaluation, in milliseconds.
    pub wall_clock_ms: u64,
    /// Largest linear memory, in bytes.
    pub memory_bytes: usize,
    /// Core instances, tables and memories a plugin may create (a componentize-py plugin
    /// creates 38 instances).
    pub instances: usize,
    /// Tables a plugin may create.
    pub tables: usize,
    /// Linear memories a plugin may create (together within `memory_bytes`).
    pub memories: usize,
    /// Largest table, in elements.
    pub table_elements: usize,
    /// Report plus configuration, in bytes.
    pub max_input_bytes: usize,
    /// Reasons, measurement names and error text together, in bytes.
    pub max_output_bytes: usize,
    /// Log lines kept per evaluation; later lines are counted and dropped.
    pub max_log_lines: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 2_000_000_000,
            wall_clock_ms: 2_000,
            memory_bytes: 64 << 20,
            instances: 64,
            tables: 16,
            memories: 4,
            table_elements: 100_000,
            max_input_bytes: 8 << 20,
            max_output_bytes: 64 << 10,
            max_log_lines: 200,
        }
    }
}

/// Why a plugin could not give a verdict. Every one of these makes the gate deny.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PluginFailure {
    /// The plugin's file could not be read, or is over the size limit.
    #[error("cannot read the plugin: {0}")]
    Read(String),
    /// The bytes are not a WebAssembly component (a core module, or invalid).
    #[error("is not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// The component imports something other than `log`.
    #[error("imports {0}, which the {WORLD} world does not offer (plugins may import only `log`)")]
    ForbiddenImports(String),
    /// The component does not export the world's `evaluate`.
    #[error("does not implement the {WORLD} world: {0}")]
    WrongExports(String),
    /// The report and configuration together are over `max_input_bytes`.
    #[error("input of {size} bytes exceeds the limit of {limit} bytes")]
    InputTooLarge {
        /// Report plus configuration, in bytes.
        size: usize,
        /// The limit (`max_input_bytes`), in bytes.
        limit: usize,
    },
    /// The plugin used up its fuel; the limit, in units.
    #[error("ran out of fuel (limit {0} units)")]
    OutOfFuel(u64),
    /// The plugin ran past its wall-clock limit.
    #[error("exceeded the wall-clock limit of {limit_ms} ms (stopped after {elapsed_ms} ms)")]
    Timeout {
        /// The limit (`wall_clock_ms`), in milliseconds.
        limit_ms: u64,
        /// Wall-clock time from instantiation until the plugin was stopped, in milliseconds.
        elapsed_ms: u64,
    },
    /// The plugin's linear memories outgrew the memory limit; the limit, in bytes.
    #[error("exceeded the memory limit of {0} bytes")]
    OutOfMemory(usize),
    /// The plugin trapped; the trap and its causes.
    #[error("trapped: {0}")]
    Trap(String),
    /// The reasons, measurement names or error text are over `max_output_bytes`.
    #[error("returned {size} bytes of output, over the limit of {limit} bytes")]
    OutputTooLarge {
        /// Output size as counted against the limit, in bytes.
        size: usize,
        /// The limit (`max_output_bytes`), in bytes.
        limit: usize,
    },
    /// The verdict breaks the rules: a non-finite measurement, or a deny without a reason.
    #[error("returned a malformed verdict: {0}")]
    Malformed(String),
    /// The plugin returned an error instead of a verdict (e.g. a bad configuration).
    #[error("could not judge the report: {0}")]
    Rejected(String),
}

/// A plugin compiled for this host and checked against the world.
#[derive(Clone)]
pub struct Plugin {
    sha256: String,
    pre: PolicyPre<HostState>,
}

impl Plugin {
    /// sha256 of the component's bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// One evaluation's result and what the plugin logged.
pub struct Outcome {
    /// The plugin's verdict, or why it gave none.
    pub verdict: Result<GuestVerdict, PluginFailure>,
    /// The lines the plugin logged, in order, with their levels (control characters blanked).
    pub log: Vec<(Level, String)>,
}

/// Compiles, caches and runs plugins. Cheap to share: evaluations may run concurrently.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<HostState>,
    limits: Limits,
    compiled: Mutex<HashMap<String, Plugin>>,
    disk_cache: Option<DiskCache>,
    ticker: EpochTicker,
}

/// The on-disk cache of compiled plugins: a private directory and the key its entries are
/// authenticated with.
struct DiskCache {
    dir: PathBuf,
    key: [u8; 32],
}

/// The cache key's file in the cache directory (mode 0600, made on first use).
const CACHE_KEY_FILE: &str = "cache.key";
/// Length of an entry's authentication tag (HMAC-SHA256), stored before the compiled bytes.
const TAG_BYTES: usize = 32;

impl DiskCache {
    /// Opens `dir`'s key, making one (32 random bytes) if it has none.
    fn open(dir: &Path) -> Result<DiskCache> {
        let path = dir.join(CACHE_KEY_FILE);
        let key = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?;
                std::io::Write::write_all(&mut file, &key).map_err(|e| Error::io(&path, e))?;
                key.to_vec()
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let key =
            key.try_into().map_err(|_| Error::PluginHost(format!("{} is not a 32-byte cache key", path.display())))?;
        Ok(DiskCache { dir: dir.to_path_buf(), key })
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length")
    }

    /// `compiled` with its tag in front.
    fn seal(&self, compiled: &[u8]) -> Vec<u8> {
        let mut mac = self.mac();
        mac.update(compiled);
        let mut sealed = mac.finalize().into_bytes().to_vec();
        sealed.extend_from_slice(compiled);
        sealed
    }

    /// The compiled bytes of a sealed entry, if its tag verifies.
    fn open_entry<'a>(&self, sealed: &'a [u8]) -> Option<&'a [u8]> {
        let (tag, compiled) = sealed.split_at_checked(TAG_BYTES)?;
        let mut mac = self.mac();
        mac.update(compiled);
        mac.verify_slice(tag).ok().map(|()| compiled)
    }
}

impl PluginHost {
    /// A host that runs plugins under `limits`, with its epoch ticker started; no disk cache.
    pub fn new(limits: Limits) -> Result<Self> {
        let mut config = Config::new();
        config.consume_fuel(true).epoch_interruption(true).max_wasm_stack(1 << 20);
        let engine = Engine::new(&config).map_err(|e| Error::PluginHost(chain(&e)))?;
        let mut linker = Linker::new(&engine);
        PolicyWorld::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(|e| Error::PluginHost(chain(&e)))?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(PluginHost { engine, linker, limits, compiled: Mutex::new(HashMap::new()), disk_cache: None, ticker })
    }

    /// Also keeps compiled plugins in `dir`, so that another process loads a plugin compiled
    /// before in milliseconds instead of seconds (a Python plugin takes about 8 s to compile).
    /// The files are native code, so the directory must be private: it is made mode 0700 and
    /// refused when another user owns it; and each entry is authenticated with the directory's
    /// own key, so an entry made anywhere else is never loaded.
    pub fn set_disk_cache(&mut self, dir: &Path) -> Result<()> {
        let io = |e| Error::io(dir, e);
        std::fs::create_dir_all(dir).map_err(io)?;
        let probe = tempfile::tempfile_in(dir).map_err(io)?;
        let owner = std::fs::metadata(dir).map_err(io)?.uid();
        if owner != probe.metadata().map_err(io)?.uid() {
            return Err(Error::PluginHost(format!("plugin cache {} belongs to another user", dir.display())));
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        self.disk_cache = Some(DiskCache::open(dir)?);
        Ok(())
    }

    /// The limits every evaluation runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles `bytes` (a component, binary or text) or returns the cached compilation.
    pub fn load(&self, bytes: &[u8]) -> Result<Plugin, PluginFailure> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        if let Some(plugin) = self.compiled.lock().expect("plugin cache lock").get(&sha256) {
            return Ok(plugin.clone());
        }
        let plugin = Plugin { pre: self.compile(&sha256, bytes)?, sha256: sha256.clone() };
        self.compiled.lock().expect("plugin cache lock").insert(sha256, plugin.clone());
        Ok(plugin)
    }

    /// The compiled component, from the disk cache when it holds one for this engine.
    fn component(&self, sha256: &str, bytes: &[u8]) -> Result<Component, PluginFailure> {
        let cached = self.disk_cache.as_ref().map(|cache| {
            let mut engine = std::hash::DefaultHasher::new();
            self.engine.precompile_compatibility_hash().hash(&mut engine);
            (cache, cache.dir.join(format!("{sha256}-{:016x}.cwasm", engine.finish())))
        });
        if let Some((cache, path)) = &cached
            && let Ok(sealed) = std::fs::read(path)
        {
            // Read, not mapped: a file truncated under a mapping would crash the process.
            match cache.open_entry(&sealed) {
                // SAFETY: the bytes carry this cache's tag, so `Component::serialize` below made
                // them, from the plugin with this digest, for an engine with this configuration.
                Some(compiled) => match unsafe { Component::deserialize(&self.engine, compiled) } {
                    Ok(component) => return Ok(component),
                    Err(e) => tracing::warn!("recompiling a damaged cached plugin: {}", chain(&e)),
                },
                None => tracing::warn!("recompiling a cached plugin whose tag does not verify: {}", path.display()),
            }
        }
        let component = Component::new(&self.engine, bytes).map_err(|e| PluginFailure::NotAComponent(chain(&e)))?;
        if let Some((cache, path)) = &cached {
            let written = component.serialize().map_err(|e| chain(&e)).and_then(|compiled| {
                crate::fsutil::write_atomic(path, &cache.seal(&compiled)).map_err(|e| e.to_string())
            });
            if let Err(e) = written {
                tracing::warn!("cannot cache the compiled plugin in {}: {e}", path.display());
            }
        }
        Ok(component)
    }

    fn compile(&self, sha256: &str, bytes: &[u8]) -> Result<PolicyPre<HostState>, PluginFailure> {
        if bytes.len() as u64 > MAX_PLUGIN_BYTES {
            return Err(PluginFailure::Read(format!("{} bytes, over the {MAX_PLUGIN_BYTES}-byte limit", bytes.len())));
        }
        if is_core_module(bytes) {
            return Err(PluginFailure::NotAComponent(
                "it is a core module; turn it into a component with fstgate-componentize (see plugin-sdk/README.md)"
                    .into(),
            ));
        }
        let component = self.component(sha256, bytes)?;
        let forbidden: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .filter(|(name, item)| !(*name == "log" && matches!(item.ty, ComponentItem::ComponentFunc(_))))
            .map(|(name, _)| format!("`{name}`"))
            .collect();
        if !forbidden.is_empty() {
            return Err(PluginFailure::ForbiddenImports(forbidden.join(", ")));
        }
        let instance_pre =
            self.linker.instantiate_pre(&component).map_err(|e| PluginFailure::ForbiddenImports(chain(&e)))?;
        PolicyPre::new(instance_pre).map_err(|e| PluginFailure::WrongExports(chain(&e)))
    }

    /// Runs `evaluate(report, config)` in a fresh store under the host's limits.
    pub fn evaluate(&self, plugin: &Plugin, report: &str, config: &str) -> Outcome {
        let limits = &self.limits;
        let input = report.len() + config.len();
        if input > limits.max_input_bytes {
            let failure = PluginFailure::InputTooLarge { size: input, limit: limits.max_input_bytes };
            return Outcome { verdict: Err(failure), log: Vec::new() };
        }
        let state = HostState {
            limits: PluginLimiter {
                store: StoreLimitsBuilder::new()
                    .memory_size(limits.memory_bytes)
                    .instances(limits.instances)
                    .tables(limits.tables)
                    .memories(limits.memories)
                    .table_elements(limits.table_elements)
                    .trap_on_grow_failure(true)
                    .build(),
                memory_budget: limits.memory_bytes,
                memory_used: 0,
            },
            log: Vec::new(),
            dropped_log_lines: 0,
            max_log_lines: limits.max_log_lines,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store.set_fuel(limits.fuel).expect("fuel is enabled");
        store.set_epoch_deadline(self.ticker.ticks_for(Duration::from_millis(limits.wall_clock_ms)));
        store.epoch_deadline_trap();

        let started = Instant::now();
        let result =
            plugin.pre.instantiate(&mut store).and_then(|policy| policy.call_evaluate(&mut store, report, config));
        let verdict = match result {
            Ok(Ok(verdict)) => self.check_output(verdict),
            Ok(Err(message)) => self.check_rejection(message),
            Err(error) => Err(self.classify(&error, started.elapsed())),
        };
        let state = store.into_data();
        let mut log = state.log;
        if state.dropped_log_lines > 0 {
            log.push((Level::Warn, format!("{} more log lines dropped", state.dropped_log_lines)));
        }
        Outcome { verdict, log }
    }

    fn check_output(&self, verdict: GuestVerdict) -> Result<GuestVerdict, PluginFailure> {
        let size = verdict.reasons.iter().map(String::len).sum::<usize>()
            + verdict.measurements.iter().map(|m| m.name.len() + 8).sum::<usize>();
        if size > self.limits.max_output_bytes {
            return Err(PluginFailure::OutputTooLarge { size, limit: self.limits.max_output_bytes });
        }
        if let Some(m) = verdict.measurements.iter().find(|m| !m.value.is_finite()) {
            return Err(PluginFailure::Malformed(format!("measurement `{}` is {}", m.name, m.value)));
        }
        if verdict.decision == GuestDecision::Deny && verdict.reasons.is_empty() {
            return Err(PluginFailure::Malformed("a deny verdict without a reason".into()));
        }
        Ok(verdict)
    }

    fn check_rejection(&self, message: String) -> Result<GuestVerdict, PluginFailure> {
        if message.len() > self.limits.max_output_bytes {
            return Err(PluginFailure::OutputTooLarge { size: message.len(), limit: self.limits.max_output_bytes });
        }
        Err(PluginFailure::Rejected(message))
    }

    fn classify(&self, error: &wasmtime::Error, elapsed: Duration) -> PluginFailure {
        match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => PluginFailure::OutOfFuel(self.limits.fuel),
            Some(Trap::Interrupt) => {
                PluginFailure::Timeout { limit_ms: self.limits.wall_clock_ms, elapsed_ms: elapsed.as_millis() as u64 }
            }
            _ if chain(error).contains("forcing trap when growing memory") => {
                PluginFailure::OutOfMemory(self.limits.memory_bytes)
            }
            _ => PluginFailure::Trap(chain(error)),
        }
    }
}

/// A core module starts with version 1 and layer 0; a component has layer 1.
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}

/// The error and its causes (wasm backtrace included) on one line, for a report's reason.
fn chain(error: &wasmtime::Error) -> String {
    let text: Vec<String> = error.chain().map(|cause| cause.to_string()).collect();
    text.join(": ").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// wasmtime's per-store bounds, and one budget for all of a plugin's linear memories together:
/// with the per-memory bound alone, a component of several core instances could take it once
/// per memory.
struct PluginLimiter {
    store: StoreLimits,
    memory_budget: usize,
    memory_used: usize,
}

impl ResourceLimiter for PluginLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let used = self.memory_used - current.min(self.memory_used) + desired;
        if used > self.memory_budget {
            // The words `classify` reads as running out of memory, like wasmtime's own.
            wasmtime::bail!(
                "forcing trap when growing memory to {desired} bytes: {used} bytes in all memories, over {}",
                self.memory_budget
            );
        }
        let allowed = self.store.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_used = used;
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.store.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.store.instances()
    }

    fn tables(&self) -> usize {
        self.store.tables()
    }

    fn memories(&self) -> usize {
        self.store.memories()
    }
}

struct HostState {
    limits: PluginLimiter,
    log: Vec<(Level, String)>,
    dropped_log_lines: usize,
    max_log_lines: usize,
}

/// Longest log line kept; the rest is cut.
const MAX_LOG_LINE: usize = 1024;

impl PolicyImports for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        if self.log.len() >= self.max_log_lines {
            self.dropped_log_lines += 1;
            return Ok(());
        }
        // Control characters would let a plugin forge lines in the gate's own log.
        let mut line: String = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        if line.len() > MAX_LOG_LINE {
            let cut = (0..=MAX_LOG_LINE).rev().find(|&i| line.is_char_boundary(i)).unwrap_or(0);
            line.truncate(cut);
            line.push_str(" [cut]");
        }
        self.log.push((level, line));
        Ok(())
    }
}

/// Advances the engine's epoch every `EPOCH_TICK` until the host is dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("fstgate-plugin-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawn the plugin epoch thread");
        EpochTicker { stop }
    }

    /// Ticks that cover at least `limit`: the deadline may fire up to one tick late, never early.
    fn ticks_for(&self, limit: Duration) -> u64 {
        (limit.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64).max(1) + 1
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_memories_together_stay_within_one_budget() {
        let store = StoreLimitsBuilder::new().memory_size(16 << 20).memories(4).trap_on_grow_failure(true).build();
        let mut limiter = PluginLimiter { store, memory_budget: 16 << 20, memory_used: 0 };
        // Two memories of 6 MiB, then one grows to 10 MiB: 16 MiB in all, allowed.
        assert!(limiter.memory_growing(0, 6 << 20, None).unwrap());
        assert!(limiter.memory_growing(0, 6 << 20, None).unwrap());
        assert!(limiter.memory_growing(6 << 20, 10 << 20, None).unwrap());
        // A third memory of 1 MiB would pass the per-memory bound but not the budget.
        let refused = limiter.memory_growing(0, 1 << 20, None).unwrap_err().to_string();
        assert!(
            refused.contains("forcing trap when growing memory") && refused.contains("in all memories"),
            "{refused}"
        );
        assert_eq!(limiter.memory_used, 16 << 20);
    }

    #[test]
    fn cache_entries_verify_only_under_their_own_key() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path()).unwrap();
        let sealed = cache.seal(b"compiled code");
        assert_eq!(cache.open_entry(&sealed), Some(&b"compiled code"[..]));
        assert_eq!(DiskCache::open(dir.path()).unwrap().key, cache.key, "the key is kept");
        let other = DiskCache::open(tempfile::tempdir().unwrap().path()).unwrap();
        assert_eq!(other.open_entry(&sealed), None, "an entry made under another cache's key");
        let mut changed = sealed.clone();
        *changed.last_mut().unwrap() ^= 1;
        assert_eq!(cache.open_entry(&changed), None);
        assert_eq!(cache.open_entry(&sealed[..10]), None);
        let mode = std::fs::metadata(dir.path().join(CACHE_KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
