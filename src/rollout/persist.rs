//! Rollout state on disk: written atomically (temp file, fsync, rename, fsync
//! of the directory), so a crash leaves the old state or the new one, never a
//! torn file. A file that does not parse is an error, never silently reset:
//! a restart must not undo a rollback.
//!
//! A full or failing disk must not undo one either. Beside the state file,
//! a small [`RollbackSlot`] is made (and its blocks allocated) at start; a
//! rollback that cannot be saved the normal way is written into it in
//! place, which needs no new blocks, and [`load`] prefers it when it is
//! newer than the state file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// What [`load`] found.
#[derive(Debug, PartialEq)]
pub struct Loaded {
    pub state: RolloutState,
    /// The rollback slot held a rollback newer than the state file: the
    /// last run rolled back but could not save it normally.
    pub from_slot: bool,
}

/// The saved state (the state file, or a newer rollback from its slot), or
/// None when there is neither yet.
pub fn load(path: &Path) -> Result<Option<Loaded>, PersistError> {
    let file = load_file(path)?;
    let slot = RollbackSlot::read(&slot_path(path));
    let changed_at = |s: &RolloutState| s.last_change.as_ref().map_or(0, |c| c.at_ms);
    Ok(match (file, slot) {
        (Some(f), Some(mut s)) if changed_at(&s) >= changed_at(&f) && f != s => {
            // A slot too small for the acceptances leaves them out; the
            // state file still has them.
            if s.accepted.is_empty() {
                s.accepted = f.accepted;
            }
            Some(Loaded {
                state: s,
                from_slot: true,
            })
        }
        (None, Some(s)) => Some(Loaded {
            state: s,
            from_slot: true,
        }),
        (Some(f), _) => Some(Loaded {
            state: f,
            from_slot: false,
        }),
        (None, None) => None,
    })
}

fn load_file(path: &Path) -> Result<Option<RolloutState>, PersistError> {
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

/// Checks at start that the state file can be written where it is
/// configured (the directory exists or can be made, and takes a file), so
/// that the first rollback is not the moment this is found out.
pub fn check_writable(path: &Path) -> Result<(), PersistError> {
    let err = |source| PersistError::Write {
        path: path.display().to_string(),
        source,
    };
    if path.is_dir() {
        return Err(err(io::Error::other("it is a directory; name a file in it")));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(err)?;
    let mut probe_name = path.file_name().unwrap_or_default().to_owned();
    probe_name.push(format!(".probe.{}", std::process::id()));
    let probe = dir.join(probe_name);
    let written = File::create(&probe).and_then(|mut f| {
        f.write_all(b"probe\n")?;
        f.sync_all()
    });
    let _ = fs::remove_file(&probe);
    written.map_err(err)
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

/// Where a state file's rollback slot lives.
/// Beside the state file while a rollback made on this instance has not
/// reached the fleet store: a restart in the meantime still lands it.
pub fn unlanded_path(state_file: &Path) -> PathBuf {
    let mut s = state_file.as_os_str().to_owned();
    s.push(".unlanded");
    PathBuf::from(s)
}

pub fn slot_path(state_file: &Path) -> PathBuf {
    let mut s = state_file.as_os_str().to_owned();
    s.push(".rollback");
    PathBuf::from(s)
}

/// Bytes of the slot: a rollback state with a long reason fits.
const SLOT_BYTES: usize = 4096;

/// A file of fixed size whose blocks exist before they are needed, for a
/// rollback to be recorded when the state file cannot be replaced.
pub struct RollbackSlot {
    file: Mutex<File>,
}

impl RollbackSlot {
    /// Makes (or reuses) the slot beside `state_file`.
    pub fn prepare(state_file: &Path) -> Result<Self, PersistError> {
        let path = slot_path(state_file);
        let err = |source| PersistError::Write {
            path: path.display().to_string(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(err)?;
        if file.metadata().map_err(err)?.len() != SLOT_BYTES as u64 {
            // Real zeros, not a hole: writing later must need no new block.
            file.set_len(0).map_err(err)?;
            file.write_all(&[b' '; SLOT_BYTES]).map_err(err)?;
            file.sync_all().map_err(err)?;
        }
        Ok(Self { file: Mutex::new(file) })
    }

    /// Overwrites the slot with `state`, in place.
    pub fn record(&self, state: &RolloutState) -> io::Result<()> {
        let mut state = state.clone();
        let mut body = serde_json::to_vec(&state).map_err(io::Error::other)?;
        if body.len() > SLOT_BYTES {
            if let Some(c) = state.last_change.as_mut() {
                c.why = c.why.chars().take(256).collect();
            }
            body = serde_json::to_vec(&state).map_err(io::Error::other)?;
        }
        if body.len() > SLOT_BYTES {
            // The rollback matters; the acceptances are in the state file.
            state.accepted.clear();
            body = serde_json::to_vec(&state).map_err(io::Error::other)?;
        }
        if body.len() > SLOT_BYTES {
            return Err(io::Error::other("the rollback state does not fit the slot"));
        }
        body.resize(SLOT_BYTES, b' ');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&body)?;
        file.sync_data()
    }

    /// The rollback the slot holds, if any.
    fn read(path: &Path) -> Option<RolloutState> {
        let mut text = String::new();
        File::open(path).ok()?.read_to_string(&mut text).ok()?;
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        serde_json::from_str::<RolloutState>(text)
            .ok()
            .filter(|s| s.phase == super::state::Phase::RolledBack)
    }
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
        assert_eq!(load(&path).unwrap().map(|l| l.state), Some(s));
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

    fn changed(percent: f64, phase: Phase, at_ms: u64) -> RolloutState {
        let mut s = RolloutState::initial(percent);
        s.phase = phase;
        s.last_change = Some(crate::rollout::state::Change {
            who: "t".into(),
            why: "x".repeat(10_000),
            at_ms,
            from_percent: 25.0,
            to_percent: percent,
            from_phase: Phase::Progressing,
            to_phase: phase,
        });
        s
    }

    #[test]
    fn a_rollback_in_the_slot_wins_over_an_older_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollout.json");
        save(&path, &changed(25.0, Phase::Progressing, 1_000)).unwrap();
        let slot = RollbackSlot::prepare(&path).unwrap();
        assert_eq!(fs::metadata(slot_path(&path)).unwrap().len(), SLOT_BYTES as u64);
        // An empty slot changes nothing.
        assert!(!load(&path).unwrap().unwrap().from_slot);
        // A long reason is shortened to fit.
        slot.record(&changed(0.0, Phase::RolledBack, 2_000)).unwrap();
        let loaded = load(&path).unwrap().unwrap();
        assert!(loaded.from_slot);
        assert_eq!((loaded.state.percent, loaded.state.phase), (0.0, Phase::RolledBack));
        // A later change saved normally wins over the slot.
        save(&path, &changed(5.0, Phase::Progressing, 3_000)).unwrap();
        let loaded = load(&path).unwrap().unwrap();
        assert!(!loaded.from_slot);
        assert_eq!(loaded.state.percent, 5.0);
        // Reopening keeps the slot's content and size.
        drop(slot);
        RollbackSlot::prepare(&path).unwrap();
        assert_eq!(fs::metadata(slot_path(&path)).unwrap().len(), SLOT_BYTES as u64);
    }

    #[test]
    fn a_state_file_that_cannot_be_written_is_found_at_start() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_writable(&dir.path().join("state/rollout.json")).is_ok());
        let e = check_writable(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        let blocker = dir.path().join("file");
        fs::write(&blocker, "x").unwrap();
        assert!(
            check_writable(&blocker.join("rollout.json")).is_err(),
            "a file in the way of the directory"
        );
        let names: Vec<_> = fs::read_dir(dir.path().join("state")).unwrap().collect();
        assert!(names.is_empty(), "the probe is gone");
    }
}
