//! argon2id password hashing on a bounded pool of its own.
//!
//! argon2id is slow and memory-hard on purpose (19 MiB and two passes per check with
//! OWASP's parameters). Run on tokio's blocking pool, a flood of wrong passwords spawned one
//! blocking thread per check, up to 512 at once: 9.7 GiB resident on one node, and the Raft
//! log's fsync and apply, which share that pool, waited behind them. Here a fixed number of
//! threads of their own do the hashing; requests wait in a bounded queue and, when it is
//! full or they waited too long, fail fast with [`PasswordError::Busy`], which the protocols
//! answer with "try again later". Memory is then bounded by `workers × memory_kib`.
//!
//! The queue is fair between client networks ([`FairQueue`]): each network (/24, /64) waits
//! in a line of its own and the threads take the lines in turn, so a flood from a few
//! networks, however many requests it queues, delays a check from anywhere else by at most
//! one check per flooding network, not by the whole queue.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::oneshot;

use crate::error::AppError;
use crate::login_throttle::Network;

/// Longest password accepted (argon2 takes any length; this bounds the work per request).
pub const MAX_PASSWORD: usize = 1024;

/// How the pool is sized and how hard each hash is.
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Threads that hash (each holds `memory_kib` while it works).
    pub workers: usize,
    /// Requests that may wait for a thread; more are refused at once.
    pub queue: usize,
    /// Longest a request may wait for a thread before it is refused unrun.
    pub max_wait: Duration,
    /// argon2id memory cost in KiB (OWASP: 19456).
    pub memory_kib: u32,
    /// argon2id passes (OWASP: 2).
    pub passes: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            queue: 64,
            max_wait: Duration::from_secs(2),
            memory_kib: Params::DEFAULT_M_COST,
            passes: Params::DEFAULT_T_COST,
        }
    }
}

/// Why a hash or a check did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Every thread is busy and the queue is full (or the request waited too long).
    #[error("password checks are saturated on this node; try again later")]
    Busy,
    /// The password itself is unacceptable (empty or too long).
    #[error("{0}")]
    Invalid(String),
    /// The parameters or the hash could not be used.
    #[error("password hashing: {0}")]
    Internal(String),
}

impl From<PasswordError> for AppError {
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Busy => AppError::unavailable(e.to_string()),
            PasswordError::Invalid(m) => AppError::invalid(m),
            PasswordError::Internal(m) => AppError::internal(m),
        }
    }
}

enum Work {
    Hash(String, oneshot::Sender<Result<String, PasswordError>>),
    Verify(String, Option<String>, oneshot::Sender<bool>),
}

struct Job {
    queued: Instant,
    work: Work,
}

/// Whose line a request waits in: the client network of a check; `None` for work no client
/// asked for (hashing a new password for an operator).
pub type Line = Option<Network>;

/// A bounded queue with one line per client network, served in turn.
pub struct FairQueue {
    state: Mutex<Lines>,
    ready: Condvar,
    capacity: usize,
}

#[derive(Default)]
struct Lines {
    waiting: HashMap<Line, VecDeque<Job>>,
    /// The lines with requests, in the order they are served next.
    turn: VecDeque<Line>,
    len: usize,
    closed: bool,
}

impl FairQueue {
    /// A queue of at most `capacity` requests in all.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::default(),
            ready: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lines> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `job` in `line`'s line; `Busy` when the queue is full.
    fn push(&self, line: Line, job: Job) -> Result<(), PasswordError> {
        let mut s = self.lock();
        if s.closed {
            return Err(PasswordError::Internal(
                "the hashing threads are gone".into(),
            ));
        }
        if s.len >= self.capacity {
            return Err(PasswordError::Busy);
        }
        let queue = s.waiting.entry(line).or_default();
        queue.push_back(job);
        if queue.len() == 1 {
            s.turn.push_back(line);
        }
        s.len += 1;
        drop(s);
        self.ready.notify_one();
        Ok(())
    }

    /// The next request, taking the lines in turn; `None` once the queue is closed.
    fn pop(&self) -> Option<Job> {
        let mut s = self.lock();
        loop {
            if s.closed {
                return None;
            }
            if let Some(line) = s.turn.pop_front() {
                let Some(queue) = s.waiting.get_mut(&line) else {
                    continue;
                };
                let job = queue.pop_front();
                if queue.is_empty() {
                    s.waiting.remove(&line);
                } else {
                    s.turn.push_back(line);
                }
                if let Some(job) = job {
                    s.len -= 1;
                    return Some(job);
                }
                continue;
            }
            s = self.ready.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Wakes every thread to end.
    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

/// The pool: cheap to share (`Arc` it); its threads end when it is dropped.
pub struct Passwords {
    jobs: Arc<FairQueue>,
}

impl Drop for Passwords {
    fn drop(&mut self) {
        self.jobs.close();
    }
}

impl Passwords {
    /// Starts `config.workers` hashing threads.
    pub fn start(config: PoolConfig) -> Result<Self, PasswordError> {
        let params = Params::new(config.memory_kib, config.passes, 1, None)
            .map_err(|e| PasswordError::Internal(format!("argon2 parameters: {e}")))?;
        let jobs = Arc::new(FairQueue::new(config.queue));
        let worker = Arc::new(Worker::new(params, config.max_wait)?);
        for i in 0..config.workers.max(1) {
            let (jobs, worker) = (jobs.clone(), worker.clone());
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || worker.run(&jobs))
                .map_err(|e| PasswordError::Internal(format!("starting a hashing thread: {e}")))?;
        }
        Ok(Self { jobs })
    }

    fn submit(&self, line: Line, work: Work) -> Result<(), PasswordError> {
        let job = Job {
            queued: Instant::now(),
            work,
        };
        self.jobs.push(line, job)
    }

    /// Hashes a password into a PHC string with this pool's parameters.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        if password.is_empty() || password.len() > MAX_PASSWORD {
            return Err(PasswordError::Invalid(format!(
                "a password must be 1 to {MAX_PASSWORD} octets"
            )));
        }
        let (tx, rx) = oneshot::channel();
        self.submit(None, Work::Hash(password, tx))?;
        rx.await.unwrap_or(Err(PasswordError::Busy))
    }

    /// Checks `password` against `hash`, or against a dummy hash when `hash` is `None`, so
    /// that an unknown address takes as long as a wrong password. The check waits in the
    /// line of `client`'s network.
    pub async fn verify(
        &self,
        password: String,
        hash: Option<String>,
        client: Option<IpAddr>,
    ) -> Result<bool, PasswordError> {
        if password.len() > MAX_PASSWORD {
            return Ok(false);
        }
        let (tx, rx) = oneshot::channel();
        self.submit(client.map(Network::of), Work::Verify(password, hash, tx))?;
        rx.await.map_err(|_| PasswordError::Busy)
    }
}

/// What every hashing thread shares.
struct Worker {
    argon2: Argon2<'static>,
    max_wait: Duration,
    /// A hash of a random password with this pool's parameters, for unknown users.
    dummy: String,
}

impl Worker {
    fn new(params: Params, max_wait: Duration) -> Result<Self, PasswordError> {
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy = hash_with(&argon2, "tern-dummy-password")?;
        Ok(Self {
            argon2,
            max_wait,
            dummy,
        })
    }

    fn run(&self, jobs: &FairQueue) {
        while let Some(job) = jobs.pop() {
            // A request that waited past its bound, or whose caller went away, is not worth
            // 19 MiB and tens of milliseconds: under a flood this is what keeps the queue
            // moving.
            let stale = job.queued.elapsed() > self.max_wait;
            match job.work {
                Work::Hash(password, reply) => {
                    if reply.is_closed() {
                        continue;
                    }
                    let _ = reply.send(if stale {
                        Err(PasswordError::Busy)
                    } else {
                        hash_with(&self.argon2, &password)
                    });
                }
                Work::Verify(password, hash, reply) => {
                    if stale || reply.is_closed() {
                        // Dropping `reply` tells the caller Busy.
                        continue;
                    }
                    let _ = reply.send(self.verify(&password, hash.as_deref()));
                }
            }
        }
    }

    fn verify(&self, password: &str, hash: Option<&str>) -> bool {
        let known = hash.is_some();
        let phc = hash.unwrap_or(&self.dummy);
        let ok = PasswordHash::new(phc)
            .map(|parsed| {
                self.argon2
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        known && ok
    }
}

fn hash_with(argon2: &Argon2<'_>, password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Internal(format!("hashing: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(workers: usize, queue: usize) -> Passwords {
        Passwords::start(PoolConfig {
            workers,
            queue,
            max_wait: Duration::from_secs(30),
            memory_kib: 1024,
            passes: 1,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let p = small(1, 4);
        let h = p.hash("s3cret".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{h}");
        assert!(p
            .verify("s3cret".into(), Some(h.clone()), None)
            .await
            .unwrap());
        assert!(!p.verify("wrong".into(), Some(h), None).await.unwrap());
        assert!(!p.verify("s3cret".into(), None, None).await.unwrap());
        assert!(matches!(
            p.hash(String::new()).await,
            Err(PasswordError::Invalid(_))
        ));
    }

    /// A hash made with other parameters (an earlier configuration) still verifies: the
    /// PHC string carries its own.
    #[tokio::test]
    async fn hashes_keep_their_own_parameters() {
        let old = small(1, 4).hash("pw".into()).await.unwrap();
        let p = Passwords::start(PoolConfig {
            memory_kib: 2048,
            passes: 2,
            ..PoolConfig::default()
        })
        .unwrap();
        assert!(p.verify("pw".into(), Some(old), None).await.unwrap());
        assert!(p.hash("pw".into()).await.unwrap().contains("m=2048,t=2"));
    }

    /// More requests than threads plus queue: the surplus is refused at once with Busy,
    /// and every admitted one is answered.
    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let p = Arc::new(
            Passwords::start(PoolConfig {
                workers: 1,
                queue: 2,
                max_wait: Duration::from_secs(60),
                memory_kib: 8 * 1024,
                passes: 3,
            })
            .unwrap(),
        );
        let h = p.hash("pw".into()).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (p, h) = (p.clone(), h.clone());
            tasks.push(tokio::spawn(async move {
                p.verify("pw".into(), Some(h), None).await
            }));
        }
        let (mut ok, mut busy) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(true) => ok += 1,
                Err(PasswordError::Busy) => busy += 1,
                other => panic!("{other:?}"),
            }
        }
        // The queue holds two (the thread may not have taken one yet); a few more fit if
        // the thread drains the queue while the requests are still being submitted.
        assert!(ok >= 2 && busy >= 10, "ok {ok}, busy {busy}");
        assert_eq!(ok + busy, 20);
    }

    /// A request that waited longer than `max_wait` is refused without being run.
    #[tokio::test]
    async fn stale_requests_are_not_run() {
        let p = Arc::new(
            Passwords::start(PoolConfig {
                workers: 1,
                queue: 16,
                max_wait: Duration::from_millis(1),
                memory_kib: 8 * 1024,
                passes: 3,
            })
            .unwrap(),
        );
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let p = p.clone();
            tasks.push(tokio::spawn(async move {
                p.verify("pw".into(), None, None).await
            }));
        }
        let mut busy = 0;
        for t in tasks {
            if matches!(t.await.unwrap(), Err(PasswordError::Busy)) {
                busy += 1;
            }
        }
        assert!(
            busy >= 1,
            "every request ran although they queued past max_wait"
        );
    }

    fn job(tag: &str) -> Job {
        let (tx, _rx) = oneshot::channel();
        Job {
            queued: Instant::now(),
            work: Work::Hash(tag.to_string(), tx),
        }
    }

    fn tag(job: Job) -> String {
        match job.work {
            Work::Hash(p, _) | Work::Verify(p, _, _) => p,
        }
    }

    #[test]
    fn lines_are_served_in_turn_so_a_flood_does_not_starve_another_network() {
        let q = FairQueue::new(100);
        let flood = Some(Network::of("127.1.0.1".parse().unwrap()));
        let other = Some(Network::of("127.2.0.1".parse().unwrap()));
        for i in 0..5 {
            q.push(flood, job(&format!("f{i}"))).unwrap();
        }
        q.push(other, job("o0")).unwrap();
        q.push(None, job("admin")).unwrap();
        q.push(flood, job("f5")).unwrap();
        let order: Vec<String> = (0..8).map(|_| tag(q.pop().unwrap())).collect();
        assert_eq!(order, ["f0", "o0", "admin", "f1", "f2", "f3", "f4", "f5"]);
        // Bounded in all, and closed wakes and ends every taker.
        let small = FairQueue::new(2);
        small.push(flood, job("1")).unwrap();
        small.push(other, job("2")).unwrap();
        assert!(matches!(
            small.push(other, job("3")),
            Err(PasswordError::Busy)
        ));
        small.close();
        assert!(small.pop().is_none());
    }
}
