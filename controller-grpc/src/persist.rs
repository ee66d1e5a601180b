//! The controller's state file: JSON, replaced atomically (written to a temporary file
//! beside it, flushed to disk, renamed over the old one, the directory flushed), so
//! that a crash leaves either the old state or the new one, never a torn file.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use sluice_controller::ClusterState;

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("controller state file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("controller state file {path} is not valid controller state: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PersistError + '_ {
    move |source| PersistError::Io { path: path.to_path_buf(), source }
}

/// The state in `path`; a missing file is an empty cluster.
pub fn load(path: &Path) -> Result<ClusterState, PersistError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|source| PersistError::Corrupt { path: path.into(), source })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClusterState::default()),
        Err(e) => Err(io(path)(e)),
    }
}

/// Replaces `path` with `json` atomically (blocking: call from a blocking thread).
pub fn write_atomic(path: &Path, json: &[u8]) -> Result<(), PersistError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(json).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    // The rename itself is durable once the directory is.
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_state_loads_back_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        assert_eq!(load(&path).unwrap(), ClusterState::default());
        let s = ClusterState { version: 42, ..ClusterState::default() };
        write_atomic(&path, &serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(load(&path).unwrap().version, 42);
        assert!(!dir.path().join("sub/state.json.tmp").exists());
        fs::write(&path, b"{ torn").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("is not valid controller state"), "{err}");
    }
}
