//! A real etcd on loopback for the fleet tests: its own data directory,
//! ports picked at random (etcd takes no port 0; a port found taken is
//! tried again with another), stopped, killed and restarted on the same
//! ports and data, as an outage is.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Etcd {
    child: Option<Child>,
    /// `https` with `tls`.
    tls: Option<Tls>,
    pub client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
    log: PathBuf,
}

fn etcd_binary() -> &'static str {
    if Command::new("etcd").arg("--version").output().is_err() {
        panic!(
            "etcd is not installed; the fleet tests run a real one. Run `bash .ci/run` (it installs Debian's etcd-server), or `apt-get install -y etcd-server` and then `cargo test`"
        );
    }
    "etcd"
}

impl Etcd {
    pub fn start() -> Etcd {
        Self::start_with(None)
    }

    /// An etcd serving TLS with `tls`'s certificate, asking clients for one
    /// signed by its CA.
    pub fn start_tls(tls: Tls) -> Etcd {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<Tls>) -> Etcd {
        let mut e = Etcd {
            tls,
            child: None,
            client_port: 0,
            peer_port: 0,
            dir: tempfile::tempdir().unwrap(),
            log: PathBuf::new(),
        };
        for attempt in 0..20 {
            let base = 20_000 + (rand::random::<u16>() % 20_000);
            e.client_port = base;
            e.peer_port = base + 1;
            e.log = e.dir.path().join(format!("etcd-{attempt}.log"));
            match e.run() {
                Ok(()) => return e,
                Err(why) if why.contains("address already in use") => continue,
                Err(why) => panic!("etcd did not start: {why}"),
            }
        }
        panic!("etcd found no free ports in 20 tries");
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// Runs `etcdctl` against this etcd (as root once auth is on).
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.url())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("etcdctl: {e}: run `bash .ci/run` (it installs Debian's etcd-client) or `apt-get install -y etcd-client`"));
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn run(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(&self.log).unwrap();
        let client = self.url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut cmd = Command::new(etcd_binary());
        if let Some(t) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&t.cert_file)
                .arg("--key-file")
                .arg(&t.key_file)
                .arg("--trusted-ca-file")
                .arg(&t.ca_file)
                .arg("--client-cert-auth");
        }
        let mut child = cmd
            .arg("--name")
            .arg("test")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("test={peer}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "exited {status}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ));
            }
            if TcpStream::connect(("127.0.0.1", self.client_port)).is_ok()
                && std::fs::read_to_string(&self.log)
                    .unwrap_or_default()
                    .contains("ready to serve client requests")
            {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!(
                    "not serving after 20 s: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the store is gone, as in an outage.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.log = self
            .dir
            .path()
            .join(format!("etcd-restart-{}.log", rand::random::<u32>()));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.run() {
                Ok(()) => return,
                // The old process's ports may take a moment to be free.
                Err(e) if e.contains("address already in use") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("etcd did not restart: {e}"),
            }
        }
    }
}

/// etcd's server certificate and the CA its clients' must chain to.
pub struct Tls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: PathBuf,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
