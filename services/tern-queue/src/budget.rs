//! How much message content one tern-queue node holds at once while handing messages to the
//! store ([`EnqueueBudget`]). Without it, every concurrent Enqueue stream could hold a whole
//! message (up to 64 MiB) and a burst of large messages would exhaust the node.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

/// A budget of octets, counted in KiB, shared by the node's Enqueue streams.
#[derive(Debug, Clone)]
pub struct EnqueueBudget {
    kib: Arc<Semaphore>,
    total_kib: u32,
    wait: Duration,
}

/// What one Enqueue holds of the budget; given back when dropped.
#[derive(Debug)]
pub struct Held {
    permit: Option<OwnedSemaphorePermit>,
    kib: u32,
}

impl Held {
    /// KiB held.
    pub fn kib(&self) -> u32 {
        self.kib
    }
}

impl EnqueueBudget {
    /// `mib` MiB in all; a stream waits up to `wait` for room.
    pub fn new(mib: u64, wait: Duration) -> Self {
        let total_kib = u32::try_from(mib.saturating_mul(1024))
            .unwrap_or(u32::MAX)
            .min(Semaphore::MAX_PERMITS as u32)
            .max(1);
        Self {
            kib: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
            wait,
        }
    }

    /// Nothing held yet.
    pub fn none(&self) -> Held {
        Held {
            permit: None,
            kib: 0,
        }
    }

    /// Grows `held` to cover `octets` in all, waiting for room up to the configured time;
    /// then UNAVAILABLE. A message larger than the whole budget holds all of it.
    pub async fn cover(&self, held: &mut Held, octets: u64) -> Result<(), Status> {
        let want = u32::try_from(octets.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(self.total_kib);
        let more = want.saturating_sub(held.kib);
        if more == 0 {
            return Ok(());
        }
        let acquired =
            tokio::time::timeout(self.wait, self.kib.clone().acquire_many_owned(more)).await;
        match acquired {
            Ok(Ok(permit)) => {
                match &mut held.permit {
                    Some(p) => p.merge(permit),
                    None => held.permit = Some(permit),
                }
                held.kib = want;
                Ok(())
            }
            _ => Err(Status::unavailable(format!(
                "this queue node holds {} MiB of messages in flight, its limit \
                 (enqueue_memory_mb); try again later",
                (self.total_kib - self.kib.available_permits() as u32) / 1024
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streams_share_the_budget_wait_for_room_and_give_it_back() {
        let budget = EnqueueBudget::new(1, Duration::from_millis(200));
        let mut a = budget.none();
        budget.cover(&mut a, 600 * 1024).await.unwrap();
        budget.cover(&mut a, 700 * 1024).await.unwrap();
        assert_eq!(a.kib(), 700);
        // Another stream that needs more than what is left waits, then is refused.
        let mut b = budget.none();
        let refused = budget.cover(&mut b, 400 * 1024).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert!(
            refused.message().contains("enqueue_memory_mb"),
            "{refused:?}"
        );
        assert_eq!(b.kib(), 0, "a refused stream holds nothing");
        // A waiting stream goes on as soon as room is given back.
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move {
                let mut c = budget.none();
                budget.cover(&mut c, 400 * 1024).await.map(|()| c.kib())
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(a);
        assert_eq!(waiting.await.unwrap().unwrap(), 400);
        // A message larger than the whole budget holds all of it.
        let mut big = budget.none();
        budget.cover(&mut big, 5 << 20).await.unwrap();
        assert_eq!(big.kib(), 1024);
    }
}
