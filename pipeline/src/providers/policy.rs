//! Timeouts, bounded retries with jitter, and the turn's deadline.
//!
//! A provider call has two phases. Until the first byte of the answer it may
//! be retried (rate limits, dropped connections) with exponential backoff and
//! full jitter — but never past the turn's deadline. Once the answer streams,
//! it is never retried (the listener has already heard part of it); instead
//! every chunk must arrive within the idle timeout.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use super::error::ProviderError;

/// How long a provider call may take and how often it is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallPolicy {
    /// Time allowed from sending a request to the first byte of its answer.
    pub first_byte_timeout: Duration,
    /// Longest pause between two chunks of a streamed answer.
    pub idle_timeout: Duration,
    /// Time allowed for the whole call, all attempts included.
    pub total_timeout: Duration,
    /// Most requests made for one call (1 = no retry).
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles for each further one.
    pub backoff_base: Duration,
    /// Longest backoff.
    pub backoff_max: Duration,
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self {
            first_byte_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(60),
            max_attempts: 3,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
        }
    }
}

impl CallPolicy {
    /// The moment the whole call must be over: the policy's total timeout
    /// or the turn's `deadline`, whichever comes first.
    pub fn call_deadline(&self, deadline: Option<Instant>) -> Instant {
        let own = Instant::now() + self.total_timeout;
        deadline.map_or(own, |turn| turn.min(own))
    }

    /// Runs `attempt` until it succeeds, fails for good, runs out of
    /// attempts, or would pass `deadline`. Each attempt gets at most the
    /// first-byte timeout.
    pub async fn retry<T, F, Fut>(
        &self,
        provider: &'static str,
        deadline: Instant,
        mut attempt: F,
    ) -> Result<T, ProviderError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let mut number = 0;
        loop {
            number += 1;
            let now = Instant::now();
            if now >= deadline {
                return Err(ProviderError::Timeout {
                    provider,
                    after: self.total_timeout,
                    what: "deadline passed before the request",
                });
            }
            let limit = self.first_byte_timeout.min(deadline - now);
            let error = match tokio::time::timeout(limit, attempt(number)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) => error,
                Err(_) => ProviderError::Timeout {
                    provider,
                    after: limit,
                    what: if limit < self.first_byte_timeout {
                        "the turn's deadline"
                    } else {
                        "first byte"
                    },
                },
            };
            let retry = error.is_retryable() && number < self.max_attempts;
            let wait = self.backoff(number);
            if !retry || Instant::now() + wait >= deadline {
                return Err(match error {
                    ProviderError::Http { status: 429, .. } => ProviderError::RateLimited {
                        provider,
                        attempts: number,
                    },
                    other => other,
                });
            }
            tracing::debug!(provider, attempt = number, ?wait, %error, "retrying provider call");
            tokio::time::sleep(wait).await;
        }
    }

    /// Backoff before attempt `number + 1`: full jitter over an exponential ceiling.
    fn backoff(&self, number: u32) -> Duration {
        let ceiling = self
            .backoff_base
            .saturating_mul(1u32 << number.saturating_sub(1).min(16))
            .min(self.backoff_max);
        let fraction: f64 = rand::random();
        ceiling.mul_f64(0.5 + fraction / 2.0)
    }
}

/// A stream that fails with [`ProviderError::Timeout`] when an item takes
/// longer than the idle timeout or the call passes its deadline.
pub struct Guarded<S> {
    inner: S,
    provider: &'static str,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    deadline: Instant,
    deadline_timer: Pin<Box<Sleep>>,
    done: bool,
}

impl<S> Guarded<S> {
    /// Wraps `inner` with the idle timeout of `policy` and the call `deadline`.
    pub fn new(inner: S, provider: &'static str, policy: &CallPolicy, deadline: Instant) -> Self {
        Self {
            inner,
            provider,
            idle: policy.idle_timeout,
            idle_timer: Box::pin(tokio::time::sleep(policy.idle_timeout)),
            deadline,
            deadline_timer: Box::pin(tokio::time::sleep_until(deadline)),
            done: false,
        }
    }
}

impl<S, T> Stream for Guarded<S>
where
    S: Stream<Item = Result<T, ProviderError>> + Unpin,
{
    type Item = Result<T, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut this.inner).poll_next(cx) {
            match &item {
                Some(Ok(_)) => {
                    let next = Instant::now() + this.idle;
                    this.idle_timer.as_mut().reset(next);
                }
                _ => this.done = true,
            }
            return Poll::Ready(item);
        }
        let what = if this.deadline_timer.as_mut().poll(cx).is_ready() {
            Some((this.deadline.saturating_duration_since(Instant::now()), "whole call"))
        } else if this.idle_timer.as_mut().poll(cx).is_ready() {
            Some((this.idle, "pause between chunks"))
        } else {
            None
        };
        match what {
            Some((after, what)) => {
                this.done = true;
                Poll::Ready(Some(Err(ProviderError::Timeout {
                    provider: this.provider,
                    after,
                    what,
                })))
            }
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast_policy() -> CallPolicy {
        CallPolicy {
            first_byte_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_millis(100),
            total_timeout: Duration::from_secs(5),
            max_attempts: 3,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(40),
        }
    }

    fn http(status: u16) -> ProviderError {
        ProviderError::Http {
            provider: "test",
            status,
            body: String::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_429_then_succeeds() {
        let calls = AtomicU32::new(0);
        let policy = fast_policy();
        let result = policy
            .retry("test", policy.call_deadline(None), |n| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 3 {
                        Err(http(429))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(result.unwrap(), 3);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn persistent_429_becomes_rate_limited() {
        let policy = fast_policy();
        let err = policy
            .retry::<(), _, _>("test", policy.call_deadline(None), |_| async { Err(http(429)) })
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::RateLimited { attempts: 3, .. }), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn server_error_500_is_not_retried() {
        let calls = AtomicU32::new(0);
        let policy = fast_policy();
        let err = policy
            .retry::<(), _, _>("test", policy.call_deadline(None), |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(http(500)) }
            })
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Http { status: 500, .. }));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn hang_times_out_at_first_byte_limit() {
        let policy = CallPolicy {
            max_attempts: 1,
            ..fast_policy()
        };
        let started = Instant::now();
        let err = policy
            .retry::<(), _, _>("test", policy.call_deadline(None), |_| std::future::pending())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProviderError::Timeout { what: "first byte", .. }),
            "{err}"
        );
        assert_eq!(started.elapsed(), Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn never_retries_past_the_turn_deadline() {
        let policy = fast_policy();
        let deadline = Instant::now() + Duration::from_millis(50);
        let started = Instant::now();
        let err = policy
            .retry::<(), _, _>("test", policy.call_deadline(Some(deadline)), |_| std::future::pending())
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Timeout { .. }));
        assert!(
            started.elapsed() <= Duration::from_millis(50),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        let policy = fast_policy();
        for number in 1..10 {
            let wait = policy.backoff(number);
            assert!(wait <= policy.backoff_max, "{wait:?}");
            assert!(wait >= Duration::from_millis(5), "{wait:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn guarded_stream_times_out_when_idle() {
        let policy = fast_policy();
        let items = futures_util::stream::iter(vec![Ok::<u8, ProviderError>(1)]).chain(futures_util::stream::pending());
        let mut guarded = Guarded::new(Box::pin(items), "test", &policy, policy.call_deadline(None));
        use futures_util::StreamExt;
        assert_eq!(guarded.next().await.unwrap().unwrap(), 1);
        let err = guarded.next().await.unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                ProviderError::Timeout {
                    what: "pause between chunks",
                    ..
                }
            ),
            "{err}"
        );
        assert!(guarded.next().await.is_none());
    }
}
