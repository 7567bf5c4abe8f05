//! The process backend's preflight: a revision whose command cannot be run
//! (no such file, not executable, no such program in `PATH`) is refused
//! before a rollout changes anything.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::backend::BackendError;
use crate::backend::runner::Launch;

/// Where programs are looked up when `PATH` is unset (as `execvp` does).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// Check that `launch.command` names a program its instances can run: a
/// path (one with `/`, relative to the working directory) to an executable
/// file, or the name of one in `PATH` (the revision's own, else the
/// agent's).
pub(crate) fn check(launch: &Launch) -> Result<(), BackendError> {
    let command = launch.command.as_str();
    let refused = |why: String| BackendError::Failed(format!("revision.command: {why}"));
    if command.contains('/') {
        let path = match &launch.workdir {
            Some(dir) => dir.join(command),
            None => PathBuf::from(command),
        };
        return executable(&path).map_err(refused);
    }
    let agent_path = std::env::var_os("PATH");
    let search = match launch.env.get("PATH") {
        Some(path) => OsStr::new(path),
        None => agent_path.as_deref().unwrap_or(OsStr::new(DEFAULT_PATH)),
    };
    let found = std::env::split_paths(search)
        .map(|dir| dir.join(command))
        .any(|path| executable(&path).is_ok());
    match found {
        true => Ok(()),
        false => Err(refused(format!(
            "no program named {command} in PATH ({}): install it, or give its path",
            search.to_string_lossy()
        ))),
    }
}

/// `Ok` when `path` is a file someone may execute; else what is wrong.
fn executable(path: &Path) -> Result<(), String> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "{shown} does not exist: build or install it, or fix the path (a relative one is relative to the spec file)"
        )),
        Err(e) => Err(format!("cannot read {shown}: {e}")),
        Ok(m) if m.is_dir() => Err(format!("{shown} is a directory, not a program")),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => {
            Err(format!("{shown} is not executable: `chmod +x {shown}`"))
        }
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(command: &str, path: Option<&str>) -> Launch {
        Launch {
            revision: "r1".into(),
            command: command.into(),
            image: None,
            args: Vec::new(),
            env: path
                .map(|p| [("PATH".to_string(), p.to_string())].into())
                .unwrap_or_default(),
            workdir: None,
            health: Default::default(),
            stop_grace_ms: 0,
            log_max_bytes: 0,
        }
    }

    /// A shell script `name` in `dir` with `mode`; its path.
    fn script(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn refusal(launch: &Launch) -> String {
        check(launch).unwrap_err().to_string()
    }

    #[test]
    fn a_path_must_be_an_executable_file() {
        let dir = tempfile::tempdir().unwrap();
        let program = script(dir.path(), "web", 0o644);
        let at = program.to_str().unwrap();
        let e = refusal(&launch(at, None));
        assert!(
            e.contains(&format!("revision.command: {at} is not executable")),
            "{e}"
        );
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(check(&launch(at, None)).is_ok());

        let missing = dir.path().join("target/release/demo-app");
        let e = refusal(&launch(missing.to_str().unwrap(), None));
        assert!(e.starts_with("revision.command: "), "{e}");
        assert!(
            e.contains(&format!("{} does not exist", missing.display())),
            "{e}"
        );

        let e = refusal(&launch(dir.path().to_str().unwrap(), None));
        assert!(e.contains("is a directory, not a program"), "{e}");
    }

    #[test]
    fn a_relative_path_is_relative_to_the_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "web", 0o755);
        let mut relative = launch("./web", None);
        relative.workdir = Some(dir.path().to_path_buf());
        assert!(check(&relative).is_ok());
    }

    #[test]
    fn a_bare_name_is_looked_up_in_the_revisions_path() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "web-server", 0o755);
        let here = dir.path().to_str().unwrap();
        assert!(check(&launch("web-server", Some(here))).is_ok());
        let e = refusal(&launch("web-server", Some("/nonexistent")));
        assert_eq!(
            e,
            "revision.command: no program named web-server in PATH (/nonexistent): install it, or give its path"
        );
        assert!(
            check(&launch("sh", None)).is_ok(),
            "sh is in the agent's PATH"
        );
    }
}
