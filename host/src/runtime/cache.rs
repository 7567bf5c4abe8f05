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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    use wasmtime::Config;

    use super::*;

    /// The smallest component: no imports, no exports.
    const EMPTY: &[u8] = b"\0asm\x0d\x00\x01\x00";

    /// The `.cwasm` files in `dir`, sorted.
    fn cached(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .collect();
        files.sort();
        files
    }

    /// An engine whose precompiled code the default engine cannot load.
    fn other_engine() -> Engine {
        let mut config = Config::new();
        config.epoch_interruption(true);
        Engine::new(&config).unwrap()
    }

    #[test]
    fn a_compiled_component_is_stored_under_its_hash_and_loaded_from_there() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ComponentCache::new(dir.path().into(), &Engine::default());
        cache.component(EMPTY).unwrap();
        let files = cached(dir.path());
        assert_eq!(files.len(), 1, "{files:?}");
        let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
        let hash: String = Sha256::digest(EMPTY)[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(name.starts_with(&format!("{hash}-")), "{name}");
        // A second load reads that file: compiling again would store a new
        // one (written aside and renamed over it, so another inode).
        let inode = std::fs::metadata(&files[0]).unwrap().ino();
        cache.component(EMPTY).unwrap();
        assert_eq!(cached(dir.path()), files);
        assert_eq!(std::fs::metadata(&files[0]).unwrap().ino(), inode);
        // Another engine configuration has its own key: its own file.
        ComponentCache::new(dir.path().into(), &other_engine())
            .component(EMPTY)
            .unwrap();
        assert_eq!(cached(dir.path()).len(), 2);
    }

    #[test]
    fn a_corrupt_or_incompatible_cache_file_is_compiled_again() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = ComponentCache::new(dir.path().into(), &engine);
        cache.component(EMPTY).unwrap();
        let file = cached(dir.path()).remove(0);
        let foreign = other_engine().precompile_component(EMPTY).unwrap();
        for bad in [b"garbage".to_vec(), foreign] {
            std::fs::write(&file, &bad).unwrap();
            cache.component(EMPTY).expect("compiled again");
            let stored = std::fs::read(&file).unwrap();
            assert_ne!(stored, bad, "the bad file was replaced");
            // SAFETY: written by this engine's `precompile_component` just now.
            unsafe { Component::deserialize_file(&engine, &file) }.expect("loads now");
        }
    }
}
