//! Threads that must lose to the live path: mirrors and the analysis thread
//! run at the lowest CPU priority (nice 19), so when the machine is busy the
//! kernel serves the live workers first, and an overloaded shadow side shows
//! as counted drops and timeouts, never as live latency.

/// Lowers the calling thread's CPU priority as far as an unprivileged
/// process may; logs once if the system refuses.
pub fn lower_priority(what: &str) {
    if let Err(e) = thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min) {
        tracing::warn!(thread = what, error = ?e, "cannot lower this thread's CPU priority; it competes with live traffic as an equal");
    }
}

/// The calling thread's nice value (Linux), for tests and `/status`.
pub fn current_nice() -> Option<i32> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ")?.1;
    rest.split_whitespace().nth(16)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_background_thread_runs_at_nice_19() {
        let nice = std::thread::spawn(|| {
            lower_priority("test");
            current_nice()
        })
        .join()
        .unwrap();
        assert_eq!(nice, Some(19));
        assert_ne!(current_nice(), Some(19), "only the thread that asked is lowered");
    }
}
