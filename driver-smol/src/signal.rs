//! A wake-up for one task: set by anyone, taken by the task. No allocation per wake-up (the
//! node's loop waits on it every turn).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// See the module documentation. Wake-ups set before the task polls are kept (one is enough).
#[derive(Debug, Default)]
pub(crate) struct Signal {
    set: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Signal {
    /// Wakes the task (or makes its next poll ready).
    pub(crate) fn notify(&self) {
        self.set.store(true, Ordering::Release);
        if let Some(waker) = lock(&self.waker).take() {
            waker.wake();
        }
    }

    /// Ready (and reset) if notified since the last time; otherwise the task in `cx` is woken
    /// by the next [`notify`](Self::notify).
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.set.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        {
            let mut waker = lock(&self.waker);
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
        }
        // Set between the check and the registration: not lost.
        if self.set.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Waits for a wake-up.
    pub(crate) async fn wait(&self) {
        std::future::poll_fn(|cx| self.poll(cx)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_notification_before_or_after_polling_is_seen_once() {
        let count = Arc::new(Count::default());
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let signal = Signal::default();
        assert!(signal.poll(&mut cx).is_pending());
        signal.notify();
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "the waiting task is woken"
        );
        assert!(signal.poll(&mut cx).is_ready());
        assert!(signal.poll(&mut cx).is_pending(), "taken once");
        signal.notify();
        signal.notify();
        assert!(signal.poll(&mut cx).is_ready(), "kept until polled");
        assert!(
            signal.poll(&mut cx).is_pending(),
            "two notifications, one wake-up"
        );
    }
}
