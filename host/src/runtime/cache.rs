//! Precompiled components on disk, keyed by the wasm's hash and the
//! engine's compatibility hash (wasmtime version and settings), so a policy
//! compiles once per machine and later loads in about a millisecond.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of `.cwasm` files.
pub struct ComponentCache {
    dir: PathBuf,
    engine: Engine,
    engine_key: u64,
}

impl ComponentCache {
    /// A cache in `dir` for `engine`.
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ComponentCache {
            dir,
            engine: engine.clone(),
            engine_key: hasher.finish(),
        }
    }

    /// The component for `bytes`: loaded precompiled when cached, else
    /// compiled and stored. A cache that cannot be written only costs time.
    pub fn component(&self, bytes: &[u8]) -> wasmtime::Result<Component> {
        let digest = Sha256::digest(bytes);
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        let path = self
            .dir
            .join(format!("{hex}-{:016x}.cwasm", self.engine_key));
        if path.is_file() {
            // SAFETY: the file was written by `precompile_component` of an
            // engine with the same compatibility hash, in the user's own
            // cache directory; a corrupt file fails to load and is replaced.
            if let Ok(component) = unsafe { Component::deserialize_file(&self.engine, &path) } {
                return Ok(component);
            }
        }
        let compiled = self.engine.precompile_component(bytes)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let stored = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&tmp, &compiled))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if stored.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        // SAFETY: `compiled` was just produced by this engine.
        unsafe { Component::deserialize(&self.engine, &compiled) }
    }
}
