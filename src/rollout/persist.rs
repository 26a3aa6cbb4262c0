//! Rollout state on disk: written atomically (temp file, fsync, rename, fsync
//! of the directory), so a crash leaves the old state or the new one, never a
//! torn file. A file that does not parse is an error, never silently reset:
//! a restart must not undo a rollback.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use super::state::RolloutState;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("cannot read rollout state file {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("rollout state file {path} is corrupt ({detail}); fix or remove it, or start with --reset-state to begin from the config's percent")]
    Corrupt { path: String, detail: String },
    #[error("cannot write rollout state file {path}: {source}")]
    Write { path: String, source: io::Error },
}

/// The saved state, or None when there is no file yet.
pub fn load(path: &Path) -> Result<Option<RolloutState>, PersistError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PersistError::Read {
                path: path.display().to_string(),
                source,
            })
        }
    };
    let state: RolloutState = serde_json::from_str(&text).map_err(|e| PersistError::Corrupt {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    if !state.percent.is_finite() || !(0.0..=100.0).contains(&state.percent) {
        return Err(PersistError::Corrupt {
            path: path.display().to_string(),
            detail: format!("percent {} is outside 0–100", state.percent),
        });
    }
    Ok(Some(state))
}

pub fn save(path: &Path, state: &RolloutState) -> Result<(), PersistError> {
    let err = |source| PersistError::Write {
        path: path.display().to_string(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(err)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let body = serde_json::to_vec_pretty(state).map_err(|e| err(io::Error::other(e)))?;
    {
        let mut f = File::create(&tmp).map_err(err)?;
        f.write_all(&body).map_err(err)?;
        f.write_all(b"\n").map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    fs::rename(&tmp, path).map_err(err)?;
    // The rename is durable only once the directory entry is.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::state::Phase;

    #[test]
    fn round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/rollout.json");
        assert_eq!(load(&path).unwrap(), None);
        let mut s = RolloutState::initial(25.0);
        s.phase = Phase::RolledBack;
        save(&path, &s).unwrap();
        assert_eq!(load(&path).unwrap(), Some(s));
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn corrupt_file_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        fs::write(&path, "{\"percent\": 5, ").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("is corrupt") && e.contains("--reset-state"), "{e}");
        fs::write(&path, r#"{"percent": 500, "phase": "idle", "step": null}"#).unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("outside 0–100"));
    }
}
