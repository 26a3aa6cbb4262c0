//! The diff store: every real difference appended to a JSONL file (readable
//! with `jq`), plus periodic tallies of the counts, rotated by size. On
//! restart the report is rebuilt from it: the last tally of each endpoint
//! gives the counts, the difference records give the samples.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::sample::Sample;
use super::tally::{EndpointStats, Results};
use crate::config::StoreConfig;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// A real difference, with its evidence.
    Diff {
        endpoint: String,
        field: String,
        sample: Box<Sample>,
    },
    /// The counts of one endpoint at a moment.
    Tally {
        endpoint: String,
        stats: Box<EndpointStats>,
    },
    /// Totals over every endpoint at a moment.
    Totals { results: Results },
    /// The report was started afresh: what came before is not restored.
    Reset { at_ms: u64 },
}

pub struct Store {
    path: PathBuf,
    max_bytes: u64,
    max_files: usize,
    file: File,
    size: u64,
}

/// The `n`th rotated file of `path` (`path.n`).
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl Store {
    pub fn open(cfg: &StoreConfig) -> io::Result<Self> {
        Self::open_at(&cfg.path, cfg.max_bytes, cfg.max_files)
    }

    /// A JSONL file at `path`, rotated at `max_bytes` into `path.1` …
    /// `path.MAX_FILES` (the capture file is one too).
    pub fn open_at(path: &Path, max_bytes: u64, max_files: usize) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            max_bytes,
            max_files,
            file,
            size,
        })
    }

    /// Appends one record; returns true if the file was rotated first (the
    /// caller then writes fresh tallies so the new file stands alone). A
    /// line the disk took only part of is cut off again: the file only ever
    /// holds whole lines.
    pub fn append(&mut self, record: &Record) -> io::Result<bool> {
        self.append_json(record)
    }

    /// Appends any value as one JSON line; see [`Store::append`].
    pub fn append_json<T: Serialize>(&mut self, value: &T) -> io::Result<bool> {
        let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
        line.push(b'\n');
        let rotated = self.size + line.len() as u64 > self.max_bytes && self.size > 0;
        if rotated {
            self.rotate()?;
        }
        if let Err(e) = self.file.write_all(&line) {
            if let Err(cut) = self.file.set_len(self.size) {
                return Err(io::Error::new(
                    e.kind(),
                    format!("{e}; and the partial line could not be cut off: {cut}"),
                ));
            }
            return Err(e);
        }
        self.size += line.len() as u64;
        Ok(rotated)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        if self.max_files == 0 {
            fs::remove_file(&self.path)?;
        } else {
            let _ = fs::remove_file(rotated(&self.path, self.max_files));
            for n in (1..self.max_files).rev() {
                let from = rotated(&self.path, n);
                if from.exists() {
                    fs::rename(&from, rotated(&self.path, n + 1))?;
                }
            }
            fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        Ok(())
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// What a store held.
#[derive(Default)]
pub struct Replay {
    pub tallies: BTreeMap<String, EndpointStats>,
    pub totals: Option<Results>,
    /// (endpoint, field, sample), oldest first.
    pub samples: Vec<(String, String, Sample)>,
    /// Lines that did not parse (a torn last line after a crash).
    pub skipped: usize,
    /// The last reset the store recorded.
    pub since_ms: Option<u64>,
}

/// Reads every file of a store, oldest first.
pub fn replay(cfg: &StoreConfig) -> io::Result<Replay> {
    let mut out = Replay::default();
    let mut files: Vec<PathBuf> = (1..=cfg.max_files).rev().map(|n| rotated(&cfg.path, n)).collect();
    files.push(cfg.path.clone());
    for f in files {
        let file = match File::open(&f) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in BufReader::new(file).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(&line) {
                Ok(Record::Diff {
                    endpoint,
                    field,
                    sample,
                }) => out.samples.push((endpoint, field, *sample)),
                Ok(Record::Tally { endpoint, stats }) => {
                    out.tallies.insert(endpoint, *stats);
                }
                Ok(Record::Totals { results }) => out.totals = Some(results),
                Ok(Record::Reset { at_ms }) => {
                    out = Replay {
                        since_ms: Some(at_ms),
                        skipped: out.skipped,
                        ..Replay::default()
                    };
                }
                Err(_) => out.skipped += 1,
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{Difference, Kind};
    use crate::report::sample::SideSample;

    fn sample(i: usize) -> Sample {
        let side = SideSample {
            status: 200,
            content_type: "application/json".into(),
            body: format!("{{\"v\":{i}}}"),
            latency_ms: 1.0,
        };
        Sample {
            id: String::new(),
            request_body_cut: false,
            twin: None,
            at_ms: i as u64,
            request_id: format!("r{i}"),
            route: "default".into(),
            method: "GET".into(),
            target: "/a".into(),
            headers: vec![],
            request_body: String::new(),
            old: side.clone(),
            new: side,
            difference: Difference::new("body:/v", Kind::ValueChanged),
        }
    }

    #[test]
    fn rotates_by_size_and_replays_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            path: dir.path().join("diffs.jsonl"),
            max_bytes: 4096,
            max_files: 3,
        };
        let mut store = Store::open(&cfg).unwrap();
        let mut rotations = 0;
        for i in 0..60 {
            let rec = Record::Diff {
                endpoint: "GET /a".into(),
                field: "body:/v".into(),
                sample: Box::new(sample(i)),
            };
            if store.append(&rec).unwrap() {
                rotations += 1;
            }
        }
        assert!(rotations >= 2, "rotations {rotations}");
        assert!(fs::metadata(&cfg.path).unwrap().len() <= 4096);
        assert!(!rotated(&cfg.path, 4).exists(), "at most max_files rotated files");
        let r = replay(&cfg).unwrap();
        assert!(!r.samples.is_empty());
        // Oldest first, newest last.
        let ids: Vec<u64> = r.samples.iter().map(|(_, _, s)| s.at_ms).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(*ids.last().unwrap(), 59);
    }

    fn small_store(dir: &tempfile::TempDir) -> StoreConfig {
        StoreConfig {
            path: dir.path().join("d.jsonl"),
            max_bytes: 1 << 20,
            max_files: 2,
        }
    }

    #[test]
    fn last_tally_wins_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = small_store(&dir);
        let mut store = Store::open(&cfg).unwrap();
        for n in [1, 5] {
            let stats = EndpointStats {
                compared: n,
                ..Default::default()
            };
            store
                .append(&Record::Tally {
                    endpoint: "GET /a".into(),
                    stats: Box::new(stats),
                })
                .unwrap();
        }
        drop(store);
        let mut f = OpenOptions::new().append(true).open(&cfg.path).unwrap();
        f.write_all(b"{\"type\":\"diff\",\"endp").unwrap();
        let r = replay(&cfg).unwrap();
        assert_eq!(r.tallies["GET /a"].compared, 5);
        assert_eq!(r.skipped, 1);
    }

    #[test]
    fn a_reset_hides_what_came_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = small_store(&dir);
        let mut store = Store::open(&cfg).unwrap();
        let tally = |n| Record::Tally {
            endpoint: format!("GET /{n}"),
            stats: Box::new(EndpointStats::default()),
        };
        store.append(&tally(1)).unwrap();
        store
            .append(&Record::Diff {
                endpoint: "GET /1".into(),
                field: "body:/v".into(),
                sample: Box::new(sample(1)),
            })
            .unwrap();
        store.append(&Record::Reset { at_ms: 42 }).unwrap();
        store.append(&tally(2)).unwrap();
        let r = replay(&cfg).unwrap();
        assert_eq!(r.tallies.keys().collect::<Vec<_>>(), ["GET /2"]);
        assert!(r.samples.is_empty());
        assert_eq!(r.since_ms, Some(42));
    }
}
