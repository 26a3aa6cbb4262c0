//! How access log lines reach stderr: each worker thread gathers its lines
//! in a batch of its own and hands the batch to the writer thread when it
//! holds [`BATCH_BYTES`] or its first line has waited [`BATCH_WAIT`],
//! whichever comes first. Handed over one by one, every line cost the
//! worker a wake-up of the writer (a futex call and, on a busy core, two
//! context switches) and the writer a `write`: most of what the access log
//! cost below saturation. NGINX's `access_log … buffer=64k flush=1s` does
//! the same with a longer wait.
//!
//! Never blocking: a full queue drops the batch and counts its lines
//! (`switchyard_log_lines_dropped_total{sink="access"}`). A thread that does
//! not batch (anything but a worker) hands each line over at once, and the
//! writer coalesces what it finds queued.

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// A batch is handed over once it holds this much.
pub(super) const BATCH_BYTES: usize = 64 * 1024;
/// ...or once its first line has waited this long.
pub(super) const BATCH_WAIT: Duration = Duration::from_millis(100);
/// Bytes of lines queued for the writer before new batches are dropped:
/// about 8,000 lines. A worker never waits for a slow stderr; this much is
/// kept for it to catch up.
const QUEUE_BYTES: usize = 2 << 20;
/// Batches (or single lines, from a thread that does not batch) queued.
const QUEUE_MESSAGES: usize = 16_384;
/// How long the last lines may take to be written at exit.
const EXIT_WAIT: Duration = Duration::from_secs(1);

enum Message {
    Lines(Vec<u8>),
    /// Write what came before, then say so.
    Stop(SyncSender<()>),
}

/// The writer thread's end, shared by every thread that logs.
#[derive(Clone)]
pub(super) struct AccessSink {
    tx: SyncSender<Message>,
    /// Bytes handed over and not yet written.
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
}

/// Keeps the writer thread; dropping it writes what is queued (for up to
/// [`EXIT_WAIT`]).
pub(super) struct AccessGuard {
    tx: SyncSender<Message>,
}

impl AccessSink {
    /// Starts the writer thread, writing to `out`.
    pub(super) fn start(out: impl Write + Send + 'static, thread: &str) -> io::Result<(Self, AccessGuard)> {
        let (tx, rx) = sync_channel(QUEUE_MESSAGES);
        let queued = Arc::new(AtomicUsize::new(0));
        let written = queued.clone();
        std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || write_batches(rx, io::BufWriter::with_capacity(BATCH_BYTES, out), &written))?;
        let sink = Self {
            tx: tx.clone(),
            queued,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        Ok((sink, AccessGuard { tx }))
    }

    /// Lines dropped so far because the writer was behind.
    pub(super) fn dropped(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }

    /// Takes one whole line: into this thread's batch when it keeps one,
    /// straight to the writer otherwise.
    pub(super) fn line(&self, line: &[u8]) {
        // Outer `None`: this thread keeps no batch; inner: the batch is full.
        let gathered = BATCH.with_borrow_mut(|batch| -> Option<Option<(Vec<u8>, u64)>> {
            let batch = batch.as_mut()?;
            if batch.sink.is_none() {
                batch.sink = Some(self.clone());
            }
            batch.bytes.extend_from_slice(line);
            batch.lines += 1;
            if batch.bytes.len() >= BATCH_BYTES {
                return Some(Some(batch.take()));
            }
            if !batch.armed {
                batch.armed = true;
                batch.wake.notify_one();
            }
            Some(None)
        });
        match gathered {
            None => self.hand_over(line.to_vec(), 1),
            Some(Some((bytes, lines))) => self.hand_over(bytes, lines),
            Some(None) => {}
        }
    }

    fn hand_over(&self, bytes: Vec<u8>, lines: u64) {
        let len = bytes.len();
        if len == 0 {
            return;
        }
        let queued = self.queued.fetch_add(len, Ordering::Relaxed) + len;
        if queued > QUEUE_BYTES || self.tx.try_send(Message::Lines(bytes)).is_err() {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            self.dropped.fetch_add(lines, Ordering::Relaxed);
        }
    }
}

impl Drop for AccessGuard {
    fn drop(&mut self) {
        let (done_tx, done_rx) = sync_channel(1);
        let deadline = Instant::now() + EXIT_WAIT;
        let mut stop = Message::Stop(done_tx);
        // The queue may be full of lines the writer is still writing.
        loop {
            match self.tx.try_send(stop) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    stop = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return,
            }
        }
        let _ = done_rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

fn write_batches(rx: Receiver<Message>, mut out: impl Write, queued: &AtomicUsize) {
    loop {
        let message = match rx.try_recv() {
            Ok(m) => m,
            Err(TryRecvError::Empty) => {
                // Nothing more queued: what is buffered goes out now.
                let _ = out.flush();
                match rx.recv() {
                    Ok(m) => m,
                    Err(_) => return,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        match message {
            // A write error (stderr closed) loses the lines; nobody is
            // left to tell.
            Message::Lines(bytes) => {
                let _ = out.write_all(&bytes);
                queued.fetch_sub(bytes.len(), Ordering::Relaxed);
            }
            Message::Stop(done) => {
                let _ = out.flush();
                let _ = done.send(());
                return;
            }
        }
    }
    let _ = out.flush();
}

/// A worker thread's lines not yet handed over.
struct Batch {
    bytes: Vec<u8>,
    lines: u64,
    /// The flush tick is counting down to this batch's hand-over.
    armed: bool,
    wake: Arc<Notify>,
    /// Where the batch goes: the sink of its first line.
    sink: Option<AccessSink>,
}

impl Batch {
    fn take(&mut self) -> (Vec<u8>, u64) {
        self.armed = false;
        (std::mem::take(&mut self.bytes), std::mem::take(&mut self.lines))
    }

    fn hand_over(&mut self) {
        let (bytes, lines) = self.take();
        if let Some(sink) = &self.sink {
            sink.hand_over(bytes, lines);
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.hand_over();
    }
}

thread_local! {
    static BATCH: RefCell<Option<Batch>> = const { RefCell::new(None) };
}

/// From now on this thread gathers its access log lines in a batch; the
/// returned future hands each batch over [`BATCH_WAIT`] after its first
/// line (when size has not already). Spawn it on this thread's event loop
/// for as long as it serves, and call [`flush`] when it stops.
pub fn gather_on_this_thread() -> impl std::future::Future<Output = ()> + 'static {
    let wake = BATCH.with_borrow_mut(|batch| {
        batch
            .get_or_insert_with(|| Batch {
                bytes: Vec::new(),
                lines: 0,
                armed: false,
                wake: Arc::new(Notify::new()),
                sink: None,
            })
            .wake
            .clone()
    });
    async move {
        loop {
            wake.notified().await;
            tokio::time::sleep(BATCH_WAIT).await;
            flush();
        }
    }
}

/// Hands this thread's batch to the writer now.
pub fn flush() {
    BATCH.with_borrow_mut(|batch| {
        if let Some(b) = batch.as_mut() {
            b.hand_over();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A writer that keeps every `write` call it gets, and can be held shut.
    #[derive(Clone, Default)]
    struct Calls {
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
        gate: Arc<Mutex<()>>,
        /// Writes begun, whether or not the gate let them through.
        begun: Arc<AtomicU64>,
    }

    impl Write for Calls {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.begun.fetch_add(1, Ordering::SeqCst);
            let _open = self.gate.lock().unwrap();
            self.writes.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Calls {
        fn lines(&self) -> usize {
            self.writes
                .lock()
                .unwrap()
                .iter()
                .map(|w| w.iter().filter(|&&b| b == b'\n').count())
                .sum()
        }
        fn calls(&self) -> usize {
            self.writes.lock().unwrap().len()
        }
        /// Waits until the writer thread is in a write (stuck, if the gate
        /// is held).
        fn wait_until_writing(&self) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.begun.load(Ordering::SeqCst) == 0 {
                assert!(Instant::now() < deadline, "the writer never wrote");
                std::thread::yield_now();
            }
        }
        fn wait_for_lines(&self, n: usize) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.lines() < n {
                assert!(Instant::now() < deadline, "{} of {n} lines written", self.lines());
                std::thread::yield_now();
            }
        }
    }

    fn sink(out: &Calls) -> (AccessSink, AccessGuard) {
        AccessSink::start(out.clone(), "test-access-log").unwrap()
    }

    /// A worker's kind of event loop.
    fn event_loop() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    const LINE: &[u8] = b"{\"method\":\"GET\",\"path\":\"/a\",\"status\":200}\n";

    #[test]
    fn a_worker_hands_its_lines_over_in_one_batch_not_one_by_one() {
        let out = Calls::default();
        let (sink, _guard) = sink(&out);
        let rt = event_loop();
        let shut = out.gate.lock().unwrap();
        // This thread keeps no batch yet: the line goes straight to the
        // writer, which is then stuck writing it.
        sink.line(LINE);
        out.wait_until_writing();
        rt.block_on(async {
            let _tick = tokio::spawn(gather_on_this_thread());
            // Twice as many lines as the queue holds messages: handed over
            // one by one, half would be dropped.
            for _ in 0..QUEUE_MESSAGES * 2 {
                sink.line(LINE);
            }
            flush();
        });
        assert_eq!(sink.dropped().load(Ordering::Relaxed), 0, "lines were dropped");
        drop(shut);
        out.wait_for_lines(QUEUE_MESSAGES * 2 + 1);
        let batches = QUEUE_MESSAGES * 2 * LINE.len() / BATCH_BYTES + 1;
        assert!(
            out.calls() <= 1 + batches,
            "{} writes: the first line, then one per {BATCH_BYTES}-byte batch ({batches})",
            out.calls()
        );
    }

    #[test]
    fn a_quiet_worker_still_hands_its_last_lines_over_after_the_wait() {
        let out = Calls::default();
        let (sink, _guard) = sink(&out);
        let rt = event_loop();
        rt.block_on(async {
            tokio::spawn(gather_on_this_thread());
            sink.line(LINE);
            sink.line(LINE);
            // No flush: the tick hands the batch over on its own.
            let deadline = Instant::now() + Duration::from_secs(10);
            while out.lines() < 2 {
                assert!(Instant::now() < deadline, "the batch was never handed over");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }

    #[test]
    fn a_full_batch_is_handed_over_without_waiting() {
        let out = Calls::default();
        let (sink, _guard) = sink(&out);
        // Marked, but with no tick running: only size can hand it over.
        drop(gather_on_this_thread());
        let n = BATCH_BYTES / LINE.len() + 1;
        for _ in 0..n {
            sink.line(LINE);
        }
        out.wait_for_lines(n);
    }

    #[test]
    fn a_thread_that_does_not_batch_writes_each_line_at_once() {
        let out = Calls::default();
        let (sink, _guard) = sink(&out);
        sink.line(LINE);
        out.wait_for_lines(1);
    }

    #[test]
    fn a_writer_that_is_behind_drops_whole_batches_and_counts_their_lines() {
        let out = Calls::default();
        let (sink, guard) = sink(&out);
        let shut = out.gate.lock().unwrap();
        // One line reaches the writer, which is then stuck writing it...
        sink.line(LINE);
        out.wait_until_writing();
        // ...and the queue fills behind it (spaces: no line of their own).
        sink.hand_over(vec![b' '; QUEUE_BYTES - LINE.len()], 0);
        drop(gather_on_this_thread());
        for _ in 0..7 {
            sink.line(LINE);
        }
        flush();
        assert_eq!(
            sink.dropped().load(Ordering::Relaxed),
            7,
            "the dropped batch's lines are counted"
        );
        drop(shut);
        drop(guard);
        assert_eq!(out.lines(), 1, "what was queued before is written, nothing twice");
    }

    #[test]
    fn the_last_batch_of_a_thread_is_not_lost_when_it_ends() {
        let out = Calls::default();
        let (sink, _guard) = sink(&out);
        let s = sink.clone();
        std::thread::spawn(move || {
            drop(gather_on_this_thread());
            s.line(LINE);
            s.line(LINE);
        })
        .join()
        .unwrap();
        out.wait_for_lines(2);
    }
}
