//! The listener's shutdown as its connections wait for it: a flag that a
//! busy connection reads at each wake-up, and one registration per wait.
//!
//! A connection's task is woken several times per request, and every wake
//! polls what it waits on. `CancellationToken::cancelled()` reads the
//! token's flag under the token's mutex and then re-registers its waker
//! under the token's waiter list's mutex: two locks per poll, both shared by
//! every connection of every worker, so with two workers the same cache
//! lines crossed cores on every request. The accept loop built two such
//! futures per connection, each locking again when dropped. Here each
//! worker's listener follows the token with one task that raises a flag of
//! its own and then wakes the waiters; a [`Wait`] registers its waker once,
//! on its first poll, and afterwards a poll is one atomic load.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// One listener's view of the gateway's shutdown.
#[derive(Debug, Default)]
pub struct Shutdown {
    raised: AtomicBool,
    waiters: Notify,
}

impl Shutdown {
    /// A signal raised once `token` is cancelled, followed by a task on
    /// the current runtime (the worker's own, so raising it wakes that
    /// worker's connections without another thread's help).
    pub fn follow(token: &CancellationToken) -> Arc<Self> {
        let shutdown = Arc::new(Self::default());
        let raised = shutdown.clone();
        let token = token.clone();
        tokio::spawn(async move {
            token.cancelled().await;
            raised.raise();
        });
        shutdown
    }

    /// Raises the signal: the flag first, so a waiter woken sees it.
    pub fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.waiters.notify_waiters();
    }

    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Resolves once the signal is raised. Keep one alive across the
    /// polls of a loop rather than making one per iteration: each is a
    /// registration (and, dropped unresolved, an unregistration).
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            // Made before the flag is first read: a raise in between still
            // completes it (tokio's `Notified` counts `notify_waiters` calls
            // from its creation, polled or not).
            notified: self.waiters.notified(),
            shutdown: self,
            registered: false,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Shutdown::wait`].
    pub struct Wait<'a> {
        #[pin]
        notified: Notified<'a>,
        shutdown: &'a Shutdown,
        registered: bool,
    }
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.shutdown.is_raised() {
            return Poll::Ready(());
        }
        if !*this.registered {
            // The waker is the task's, the same at every later poll: kept
            // from this one, it is what the raise wakes.
            *this.registered = true;
            if this.notified.poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::pin::pin;
    use std::task::Poll;
    use std::time::Duration;

    use super::*;

    fn poll_once<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
        let waker = std::task::Waker::noop();
        fut.poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn a_wait_made_after_the_raise_is_over_at_once() {
        let shutdown = Shutdown::default();
        shutdown.raise();
        assert!(poll_once(pin!(shutdown.wait())).is_ready());
    }

    #[test]
    fn a_raise_between_making_a_wait_and_polling_it_is_not_missed() {
        let shutdown = Shutdown::default();
        let mut wait = pin!(shutdown.wait());
        // The flag is read first: clear it again after the raise, so only
        // the registration can tell the wait it came.
        shutdown.raise();
        shutdown.raised.store(false, Ordering::Release);
        assert!(poll_once(wait.as_mut()).is_ready());
    }

    #[test]
    fn a_registered_wait_is_pending_until_the_raise_then_over() {
        let shutdown = Shutdown::default();
        let mut wait = pin!(shutdown.wait());
        for _ in 0..3 {
            assert!(poll_once(wait.as_mut()).is_pending());
        }
        shutdown.raise();
        assert!(poll_once(wait.as_mut()).is_ready());
    }

    #[tokio::test]
    async fn the_raise_wakes_a_task_whose_wait_registered_once_and_was_polled_again_since() {
        let token = CancellationToken::new();
        let shutdown = Shutdown::follow(&token);
        let polls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let waiting = {
            let (shutdown, polls) = (shutdown.clone(), polls.clone());
            tokio::spawn(async move {
                let mut wait = pin!(shutdown.wait());
                poll_fn(|cx| {
                    // Woken by something else twice: polled again, and
                    // only the first poll registered.
                    if polls.fetch_add(1, Ordering::Relaxed) < 2 {
                        cx.waker().wake_by_ref();
                    }
                    wait.as_mut().poll(cx)
                })
                .await;
            })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while polls.load(Ordering::Relaxed) < 3 {
            assert!(tokio::time::Instant::now() < deadline, "the waiting task never ran");
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished(), "the wait was over before the raise");
        token.cancel();
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the raise never woke the waiting task")
            .unwrap();
        assert!(shutdown.is_raised());
    }
}
