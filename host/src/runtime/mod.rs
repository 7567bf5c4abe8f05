//! The policy runtime: wasmtime, set up once per process.
//!
//! One [`wasmtime::Engine`] (pooling allocator, epoch interruption), one
//! [`Linker`] with the WASI sandbox and the `rollout:policy` imports, and a
//! disk cache of precompiled components. Loading a policy compiles it (or
//! loads it precompiled), checks which `rollout:policy` version it imports,
//! and pre-instantiates it; each rollout then gets a fresh [`Store`] that
//! owns its [`PolicyHost`] (the executor's session), with the CPU, memory
//! and deadline limits of [`Limits`].

mod cache;
mod error;
mod host;
mod limits;
mod sandbox;
mod source;
mod v0_1_0;
mod version;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

pub use error::PolicyError;
pub use host::{Call, Halt, PolicyHost};
pub use limits::Limits;
pub use source::{BUILTIN, PolicySource, read_component};

use crate::clock::SeenTime;
use crate::model::Outcome;
use limits::{LimitHit, StoreLimiter};

/// How often the epoch ticks; the CPU limit is checked at each tick.
const TICK: Duration = Duration::from_millis(10);

/// What a store holds while a policy runs.
pub struct PolicyState<H> {
    host: H,
    wasi: WasiCtx,
    stderr: MemoryOutputPipe,
    table: ResourceTable,
    limiter: StoreLimiter,
    /// Thread CPU time at the first epoch tick since the guest last called
    /// the host; the CPU limit counts from there (so it may allow one tick
    /// more). Read only at ticks, never per host call.
    guest_cpu_mark: Option<Duration>,
    cpu_limit: Duration,
    /// What its WASI clocks read.
    seen: SeenTime,
}

impl<H: Send + 'static> wasmtime_wasi::WasiView for PolicyState<H> {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl<H: PolicyHost> PolicyState<H> {
    /// Return a host call's result to the guest: the guest's CPU budget
    /// starts again, and a [`Halt`] traps.
    fn returned<T, U>(
        &mut self,
        r: Result<T, Halt>,
        f: impl FnOnce(T) -> U,
    ) -> wasmtime::Result<U> {
        self.guest_cpu_mark = None;
        self.saw();
        r.map(f).map_err(wasmtime::Error::from)
    }

    /// The guest's WASI clocks move to the time of the call just made.
    fn saw(&mut self) {
        self.seen.set(self.host.seen_ms());
    }
}

/// A policy compiled, version-checked and ready to instantiate against
/// hosts of type `H`.
pub struct LoadedPolicy<H: 'static> {
    /// Name for messages: the built-in name or the file path.
    pub name: String,
    /// The component, as loaded (so a rollout can pin exactly it).
    pub bytes: Arc<[u8]>,
    /// SHA-256 of the component, in hex.
    pub digest: String,
    /// The `rollout:policy` version it imports.
    pub wit: &'static str,
    pre: v0_1_0::PolicyPre<PolicyState<H>>,
}

/// The engine, linker and cache shared by every rollout of this process,
/// whose policies call a host of type `H`.
pub struct Runtime<H: 'static> {
    engine: Engine,
    linker: Linker<PolicyState<H>>,
    cache: Option<cache::ComponentCache>,
    limits: Limits,
    ticking: Arc<AtomicBool>,
}

impl<H: PolicyHost> Runtime<H> {
    /// Build the engine with `limits`; `cache_dir` keeps precompiled
    /// components between runs (none: compile every time).
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> Result<Self, PolicyError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(limits.instances)
            .total_core_instances(limits.instances * 8)
            .total_memories(limits.instances * 4)
            .total_tables(limits.instances * 8)
            .total_stacks(limits.instances)
            .max_core_instances_per_component(64)
            .max_memories_per_component(8)
            .max_tables_per_component(32)
            .max_memory_size(limits.memory_bytes)
            .table_elements(100_000);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(PolicyError::engine)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(PolicyError::engine)?;
        v0_1_0::add_to_linker(&mut linker).map_err(PolicyError::engine)?;

        let ticking = Arc::new(AtomicBool::new(true));
        let (ticker_engine, alive) = (engine.clone(), ticking.clone());
        std::thread::Builder::new()
            .name("rollout-epoch".into())
            .spawn(move || {
                while alive.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .map_err(|e| PolicyError::engine(e.into()))?;
        let cache = cache_dir.map(|dir| cache::ComponentCache::new(dir, &engine));
        Ok(Runtime {
            engine,
            linker,
            cache,
            limits,
            ticking,
        })
    }

    /// The limits every rollout runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compile (or load precompiled) and check a policy.
    pub fn load(&self, source: &PolicySource) -> Result<LoadedPolicy<H>, PolicyError> {
        let name = source.name();
        let bytes = source.bytes()?;
        let component = self.compile(&name, &bytes)?;
        version::check(&name, &self.engine, &component)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PolicyError::link(&name, e))?;
        let pre = v0_1_0::PolicyPre::new(instance_pre).map_err(|e| PolicyError::link(&name, e))?;
        let digest = hex_digest(&bytes);
        Ok(LoadedPolicy {
            name,
            bytes: Arc::from(bytes.as_ref()),
            digest,
            wit: v0_1_0::VERSION,
            pre,
        })
    }

    /// The component for `bytes`, from the cache when possible.
    pub fn compile(&self, name: &str, bytes: &[u8]) -> Result<Component, PolicyError> {
        let invalid = |e: wasmtime::Error| PolicyError::Invalid {
            policy: name.to_string(),
            reason: format!("{e:#}"),
        };
        match &self.cache {
            Some(cache) => cache.component(bytes).map_err(invalid),
            None => Component::new(&self.engine, bytes).map_err(invalid),
        }
    }

    /// Compile `bytes` without the cache (for benchmarks).
    pub fn compile_uncached(&self, bytes: &[u8]) -> wasmtime::Result<Component> {
        Component::new(&self.engine, bytes)
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Instantiate `policy` in a fresh store around `host` and call its
    /// `run`; the host comes back with everything it did.
    pub async fn run(
        &self,
        policy: &LoadedPolicy<H>,
        host: H,
    ) -> (H, Result<Outcome, PolicyError>) {
        let info = v0_1_0::rollout::policy::types::RolloutInfo::from(host.info());
        let mut store = self.store(host);
        let result = async {
            let instance = policy.pre.instantiate_async(&mut store).await?;
            instance.call_run(&mut store, &info).await
        }
        .await;
        let state = store.into_data();
        let result = result.map(Outcome::from).map_err(|e| {
            let stderr = String::from_utf8_lossy(&state.stderr.contents()).into_owned();
            let step = state.host.last_step();
            PolicyError::from_trap(
                &policy.name,
                &step,
                e,
                state.limiter.hit,
                &stderr,
                &self.limits,
            )
        });
        (state.host, result)
    }

    /// Time creating a store around `host` and instantiating `policy` in
    /// it, without running it (for `rollout bench runtime`).
    pub async fn time_instantiate(
        &self,
        policy: &LoadedPolicy<H>,
        host: H,
    ) -> Result<Duration, PolicyError> {
        let started = Instant::now();
        let mut store = self.store(host);
        let instance = policy.pre.instantiate_async(&mut store).await;
        let took = started.elapsed();
        instance.map_err(|e| PolicyError::link(&policy.name, e))?;
        Ok(took)
    }

    /// A store for one rollout, with the sandbox and the limits.
    fn store(&self, host: H) -> Store<PolicyState<H>> {
        let seen = SeenTime::new(host.wall_origin_ms());
        let (wasi, stderr) = sandbox::wasi_ctx(seen.clone(), self.limits.seed);
        let state = PolicyState {
            seen,
            host,
            wasi,
            stderr,
            table: ResourceTable::new(),
            limiter: StoreLimiter::new(self.limits.memory_bytes),
            guest_cpu_mark: None,
            cpu_limit: self.limits.cpu_per_call,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let s = ctx.data_mut();
            let now = limits::thread_cpu_time();
            let mark = *s.guest_cpu_mark.get_or_insert(now);
            if now.saturating_sub(mark) > s.cpu_limit {
                s.limiter.hit = Some(LimitHit::Cpu);
                return Err(LimitHit::Cpu.into());
            }
            Ok(wasmtime::UpdateDeadline::Continue(1))
        });
        store
    }
}

/// SHA-256 of `bytes`, in lowercase hex.
pub fn hex_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl<H> Drop for Runtime<H> {
    fn drop(&mut self) {
        self.ticking.store(false, Ordering::Relaxed);
    }
}
