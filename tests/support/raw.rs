//! Raw sockets: a client that writes exact bytes (attacks no HTTP library
//! would send), and the `switchyard` binary run as an operator runs it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Writes `bytes` and reads until the server closes (at most `within`):
/// every response the connection carried, as text. The client keeps its
/// side open, as clients do: a gateway treats a client's end of stream as
/// the client leaving, and stops the request.
pub async fn exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    read_to_close(&mut s, within).await
}

/// Reads until the peer closes, or `within` has passed.
pub async fn read_to_close(s: &mut TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status codes of every response in `text`, in order.
pub fn statuses(text: &str) -> Vec<u16> {
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

/// A `switchyard serve` process, its addresses read from its own log.
pub struct Running {
    pub child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    /// Kept open when the log is not read any more (a blocked pipe).
    _stderr: Arc<Mutex<Option<ChildStderr>>>,
}

impl Running {
    /// Starts `switchyard serve -c config` (with `extra` arguments) and waits
    /// for it to serve. With `read_log: false` the log is read only until
    /// then: afterwards stderr is a pipe nobody reads, which fills up.
    pub fn start(config: &std::path::Path, extra: &[&str], read_log: bool) -> Result<Running, String> {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve").arg("-c").arg(config).args(extra);
        Self::spawn(cmd, read_log)
    }

    /// Like [`Running::start`], for a command that ends up running `serve`
    /// (a shell setting limits first, say).
    pub fn spawn(mut cmd: Command, read_log: bool) -> Result<Running, String> {
        let mut child = cmd
            .env("RUST_LOG", "info")
            .env_remove("SWITCHYARD_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(None));
        let (ready_tx, ready_rx) = mpsc::channel();
        {
            let (log, keep) = (log.clone(), stderr.clone());
            let pipe = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(pipe);
                let mut line = String::new();
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    log.lock().unwrap().push(line.trim_end().to_string());
                    if line.contains("switchyard is serving") {
                        let _ = ready_tx.send(line.clone());
                        if !read_log {
                            *keep.lock().unwrap() = Some(reader.into_inner());
                            return;
                        }
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(line) = ready_rx.recv_timeout(Duration::from_millis(50)) {
                let field = |key: &str| -> SocketAddr {
                    let at = line.find(key).unwrap() + key.len();
                    line[at..].split_whitespace().next().unwrap().parse().unwrap()
                };
                return Ok(Running {
                    proxy: field("proxy="),
                    admin: field("admin="),
                    child,
                    log,
                    _stderr: stderr,
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Let the reader finish the last lines.
                let _ = ready_rx.recv_timeout(Duration::from_millis(500));
                return Err(format!("exited {status}: {}", log.lock().unwrap().join("\n")));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("not serving after 30 s: {}", log.lock().unwrap().join("\n")));
            }
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy)
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// SIGKILL: no drain, no flush, as a crash.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines a child prints on its (piped) stdout, as they come.
pub fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// The value of `name` (summed over series matching `labels`) in a
/// Prometheus text exposition.
pub fn scraped(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A request as a recording backend read it off the wire.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub head: String,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn target(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A backend that parses requests strictly (RFC 9112 framing: Content-Length
/// or chunked), records each, and answers `200 ok`. Bytes it cannot frame
/// are recorded as garbage and the connection is closed: a desync shows
/// there, or as a request nobody sent.
pub struct Recorder {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Recorded>>>,
    garbage: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    pub async fn start() -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let garbage = Arc::new(Mutex::new(Vec::new()));
        let (s, g) = (seen.clone(), garbage.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(record(stream, s.clone(), g.clone()));
            }
        });
        Recorder { addr, seen, garbage }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    pub fn garbage(&self) -> Vec<String> {
        self.garbage.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
        self.garbage.lock().unwrap().clear();
    }
}

async fn record(mut s: TcpStream, seen: Arc<Mutex<Vec<Recorded>>>, garbage: Arc<Mutex<Vec<String>>>) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        match frame(&buf) {
            Framed::Complete(used, rec) => {
                buf.drain(..used);
                seen.lock().unwrap().push(rec);
                if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Framed::Bad(why) => {
                garbage
                    .lock()
                    .unwrap()
                    .push(format!("{why}: {}", String::from_utf8_lossy(&buf)));
                return;
            }
            Framed::More => {}
        }
        let mut chunk = [0u8; 8192];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                if !buf.is_empty() {
                    garbage
                        .lock()
                        .unwrap()
                        .push(format!("left over at close: {}", String::from_utf8_lossy(&buf)));
                }
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

enum Framed {
    Complete(usize, Recorded),
    More,
    Bad(&'static str),
}

fn frame(buf: &[u8]) -> Framed {
    if buf.is_empty() {
        return Framed::More;
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Framed::More,
        Err(_) => return Framed::Bad("unparseable head"),
    };
    let mut length = None;
    let mut chunked = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let Some(n) = std::str::from_utf8(h.value).ok().and_then(|v| v.parse::<usize>().ok()) else {
                return Framed::Bad("bad content-length");
            };
            if length.is_some_and(|l| l != n) {
                return Framed::Bad("two lengths");
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !h.value.eq_ignore_ascii_case(b"chunked") {
                return Framed::Bad("a transfer-encoding other than chunked");
            }
            chunked = true;
        }
    }
    if chunked && length.is_some() {
        return Framed::Bad("both content-length and transfer-encoding");
    }
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let rest = &buf[head_len..];
    if !chunked {
        let n = length.unwrap_or(0);
        if rest.len() < n {
            return Framed::More;
        }
        return Framed::Complete(
            head_len + n,
            Recorded {
                head,
                body: rest[..n].to_vec(),
            },
        );
    }
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = rest[at..].windows(2).position(|w| w == b"\r\n") else {
            return Framed::More;
        };
        let line = std::str::from_utf8(&rest[at..at + eol]).unwrap_or("");
        let size_text = line.split(';').next().unwrap_or("");
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return Framed::Bad("bad chunk size");
        };
        at += eol + 2;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some(eol) = rest[at..].windows(2).position(|w| w == b"\r\n") else {
                    return Framed::More;
                };
                at += eol + 2;
                if eol == 0 {
                    return Framed::Complete(head_len + at, Recorded { head, body });
                }
            }
        }
        if rest.len() < at + size + 2 {
            return Framed::More;
        }
        body.extend_from_slice(&rest[at..at + size]);
        if &rest[at + size..at + size + 2] != b"\r\n" {
            return Framed::Bad("chunk data not followed by CRLF");
        }
        at += size + 2;
    }
}
