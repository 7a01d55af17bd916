//! The threads that do what would stall the event loop: scrypt (a pool of
//! hashers) and the store (one thread that owns the database, through the
//! backend-neutral [`Store`] interface). Each takes
//! jobs from a channel and answers with a hub [`Input`] on another, then
//! wakes the loop through its `mio::Waker`.
//!
//! The store thread groups commits: it takes every write that is waiting,
//! applies them in one transaction, and reports the last sequence number.
//! The loop hands it new writes only once the last ones are committed, and
//! at most once every [`COMMIT_WINDOW`], so under load one fsync serves
//! hundreds of messages, and the store thread wakes once a commit; when
//! idle, a lone message is committed at once.
//! Reads wait behind the writes queued before them, so a reply never misses
//! a message its sender was already told was stored.

use super::hub::{Answer, AuthJob, Filled, GAP_FILL, Gap, Input, Level, Query, StoreJob};
use super::log;
use crate::model::Seq;
use crate::store::password::{self, HashCost};
use crate::store::{Page, Store, StoreError, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The least time from handing the store thread one batch to handing it
/// the next. Every commit costs the same fixed work (an fsync, SQLite's
/// bookkeeping, waking the thread) however few writes it carries, so a
/// server with a steady stream of messages commits them a few milliseconds'
/// worth at a time instead of a handful at a time; a message that finds the
/// store idle for longer than this still goes at once. Longer windows save
/// a little more CPU and add their length to delivery latency; 2 ms took
/// most of the saving for little latency (the figures are in
/// docs/BENCHMARKS.md, "Why the code is the way it is").
pub const COMMIT_WINDOW: Duration = Duration::from_millis(2);

/// Where answers go: the loop's channel plus the waker that rouses it.
#[derive(Clone)]
pub struct Reply {
    pub tx: Sender<Input>,
    pub waker: Arc<mio::Waker>,
}

impl Reply {
    fn send(&self, input: Input) {
        // A send fails only when the loop has gone; then nobody is waiting.
        if self.tx.send(input).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

pub struct Workers {
    auth: Option<Sender<AuthJob>>,
    store: Option<Sender<Vec<StoreJob>>>,
    /// Store jobs not yet handed over (see [`Workers::dispatch`]).
    pending: Vec<StoreJob>,
    /// The last write handed to the store thread and not yet reported
    /// committed, if any.
    writing: Option<u64>,
    /// The earliest the next batch may be handed over.
    ready: Instant,
    /// Set by [`Workers::abandon`]: nothing more goes to the store.
    abandoned: bool,
    /// Set by [`Workers::finish`]: a store thread waiting for its database
    /// to come back gives up.
    stopping: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `hashers` scrypt threads and the store thread. `hashed`
    /// counts the password jobs (hashes and checks) the scrypt threads
    /// finish, for whoever watches the server.
    pub fn start(
        store: Box<dyn Store>,
        cost: HashCost,
        hashers: usize,
        reply: Reply,
        hashed: Arc<AtomicU64>,
        publish: Option<Publish>,
    ) -> Workers {
        let (auth_tx, auth_rx) = mpsc::channel();
        let auth_rx = Arc::new(Mutex::new(auth_rx));
        // Unknown users are checked against this, so they cost what real ones do.
        let dummy = Arc::new(password::dummy_hash(cost));
        let mut threads = Vec::new();
        for n in 0..hashers.max(1) {
            let (rx, reply, dummy) = (auth_rx.clone(), reply.clone(), dummy.clone());
            let hashed = hashed.clone();
            threads.push(
                thread::Builder::new()
                    .name(format!("scrypt-{n}"))
                    .spawn(move || hash_loop(&rx, cost, &dummy, &reply, &hashed))
                    .expect("spawn a hashing thread"),
            );
        }
        let (store_tx, store_rx) = mpsc::channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        threads.push(
            thread::Builder::new()
                .name("store".into())
                .spawn(move || store_loop(store, &store_rx, &reply, &stop, publish))
                .expect("spawn the store thread"),
        );
        Workers {
            auth: Some(auth_tx),
            store: Some(store_tx),
            pending: Vec::new(),
            writing: None,
            ready: Instant::now(),
            abandoned: false,
            stopping,
            threads,
        }
    }

    pub fn auth(&self, job: AuthJob) {
        if let Some(tx) = &self.auth {
            let _ = tx.send(job);
        }
    }

    /// Queues a store job; [`Workers::dispatch`] hands the queue over.
    pub fn store(&mut self, job: StoreJob) {
        if !self.abandoned {
            self.pending.push(job);
        }
    }

    /// Hands the store thread every job queued so far, in one message,
    /// unless writes it was given before are still being committed, or the
    /// last batch went less than [`COMMIT_WINDOW`] ago: those jobs then wait
    /// and go with everything that came meanwhile. The loop calls this once
    /// a turn, so the store thread wakes once a commit, and a busy server
    /// commits (and syncs) once for many writes: group commit. A write that
    /// finds the store idle goes at once.
    pub fn dispatch(&mut self, now: Instant) {
        if self.dispatch_at().is_none_or(|at| now < at) {
            return;
        }
        self.ready = now + COMMIT_WINDOW;
        self.writing = self.pending.iter().rev().find_map(|job| match job {
            StoreJob::Write { seq, .. } => Some(*seq),
            StoreJob::Query { .. } | StoreJob::Fill(_) | StoreJob::Orphans => None,
        });
        if let Some(tx) = &self.store {
            let _ = tx.send(std::mem::take(&mut self.pending));
        }
    }

    /// When held jobs may be handed over, if only the clock holds them
    /// (`None`: nothing is held, or a commit is in flight).
    pub fn dispatch_at(&self) -> Option<Instant> {
        if self.writing.is_some() || self.pending.is_empty() {
            return None;
        }
        Some(self.ready)
    }

    /// Shows the scheduler an input on its way from the workers to the hub;
    /// the loop passes every one through here. A commit report (of writes up
    /// to `seq`, saved or failed) frees the store for the next batch: what
    /// a batch's end looks like is the workers' business, not the loop's.
    pub fn observe(&mut self, input: &Input) {
        if let Input::Committed { seq, .. } = *input
            && self.writing.is_some_and(|last| seq >= last)
        {
            self.writing = None;
        }
    }

    /// Drops every store job not yet handed over, for good: the server is
    /// stopping because the store failed (see `Hub::halted`), and none of
    /// them was acknowledged.
    pub fn abandon(&mut self) {
        self.pending.clear();
        self.abandoned = true;
    }

    /// Lets the queues drain, then joins every thread: every write handed
    /// over before this call is committed when it returns.
    pub fn finish(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.writing = None;
        let now = Instant::now();
        self.ready = now;
        self.dispatch(now);
        self.auth.take();
        self.store.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn hash_loop(
    jobs: &Mutex<Receiver<AuthJob>>,
    cost: HashCost,
    dummy: &str,
    reply: &Reply,
    hashed: &AtomicU64,
) {
    yield_to_the_loop();
    loop {
        // The lock is held only to take a job, never while hashing.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // Counted before the answer goes: whoever sees the answer sees
        // the count that includes it.
        hashed.fetch_add(1, Ordering::SeqCst);
        match job {
            AuthJob::Hash {
                caller,
                name,
                password,
            } => {
                let hash = password::hash(&password, cost);
                reply.send(Input::Hashed { caller, name, hash });
            }
            AuthJob::Verify {
                caller,
                name,
                user,
                password,
            } => {
                let (hash, user) = match &user {
                    Some((uid, hash)) => (hash.as_str(), Some(*uid)),
                    None => (dummy, None),
                };
                let ok = password::verify(&password, hash);
                reply.send(Input::Verified {
                    caller,
                    name,
                    user: user.filter(|_| ok),
                });
            }
        }
    }
}

/// Lowers this thread's scheduling priority: a storm of logins (each
/// hash is a fraction of a second of CPU) must not take the core from the
/// event loop, which has chat to deliver. Linux keeps nice values per
/// thread; elsewhere this does nothing.
fn yield_to_the_loop() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
    }
}

/// Most writes taken into one transaction.
const MAX_BATCH: usize = 4096;

/// The first wait before a batch is tried again on a database that could
/// not be reached; each wait doubles, up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// What the store thread does with each batch it committed, as stored
/// (the numbers the database gave its messages in place): servers
/// sharing a database publish it on the bus.
pub type Publish = Box<dyn FnMut(&[Write]) + Send>;

fn store_loop(
    mut store: Box<dyn Store>,
    jobs: &Receiver<Vec<StoreJob>>,
    reply: &Reply,
    stopping: &AtomicBool,
    publish: Option<Publish>,
) {
    let mut batch = Batch {
        stopping,
        writes: Vec::new(),
        seqs: Vec::new(),
        publish,
    };
    while let Ok(first) = jobs.recv() {
        // Everything waiting, in order, as one transaction (or a few, past
        // MAX_BATCH writes); a query first commits the writes before it.
        let mut next = Some(first);
        while let Some(group) = next.take() {
            batch.take(group, store.as_mut(), reply);
            next = jobs.try_recv().ok();
        }
        batch.commit(store.as_mut(), reply);
    }
}

/// Writes waiting for one transaction, with their sequence numbers.
struct Batch<'a> {
    stopping: &'a AtomicBool,
    writes: Vec<Write>,
    seqs: Vec<u64>,
    publish: Option<Publish>,
}

impl Batch<'_> {
    /// Adds a group of jobs: writes join the batch, a query is answered
    /// after committing the writes before it.
    fn take(&mut self, group: Vec<StoreJob>, store: &mut dyn Store, reply: &Reply) {
        for job in group {
            match job {
                StoreJob::Write { seq, write } => {
                    self.writes.push(write);
                    self.seqs.push(seq);
                    if self.writes.len() >= MAX_BATCH {
                        self.commit(store, reply);
                    }
                }
                StoreJob::Query { caller, query } => {
                    self.commit(store, reply);
                    let answer = answer(store, query);
                    reply.send(Input::Answered { caller, answer });
                }
                StoreJob::Fill(gap) => {
                    self.commit(store, reply);
                    let filled = fill(store, gap);
                    reply.send(Input::Filled { gap, filled });
                }
                StoreJob::Orphans => {
                    self.commit(store, reply);
                    let found = store.orphans().map_err(|e| log::chain(&e));
                    reply.send(Input::Orphans { found });
                }
            }
        }
    }

    /// Commits the batch as one transaction. If that fails, each write is
    /// tried alone, so one bad write (or one that depends on it) fails by
    /// itself instead of taking its neighbours down with it.
    fn commit(&mut self, store: &mut dyn Store, reply: &Reply) {
        let Some(&last) = self.seqs.last() else {
            return;
        };
        let result = match store.apply(&self.writes) {
            Err(e) if e.is_unavailable() => self.ride_out(store, reply, e),
            result => result,
        };
        match result {
            Ok(stored) => {
                published(&mut self.publish, &self.writes, &stored);
                reply.send(Input::Committed {
                    seq: last,
                    ok: true,
                    numbers: numbered(&self.writes, &self.seqs, stored),
                })
            }
            // Still out of reach, and the server is stopping: none of the
            // batch was acknowledged, so none of it is lost.
            Err(e) if self.writes.len() == 1 || e.is_unavailable() => {
                log::emit(Level::Error, &log::chain(&e));
                reply.send(Input::Committed {
                    seq: last,
                    ok: false,
                    numbers: Vec::new(),
                });
            }
            Err(_) => {
                // Once a numbered message fails, the ones after it are not
                // tried: storing them would leave a gap in a conversation's
                // numbers (the hub stops the server on such a failure).
                let mut message_failed = false;
                for (write, &seq) in self.writes.iter().zip(&self.seqs) {
                    let write = std::slice::from_ref(write);
                    let result = if message_failed {
                        Err(None)
                    } else {
                        store.apply(write).map_err(Some)
                    };
                    match &result {
                        Err(Some(e)) => {
                            log::emit(Level::Error, &log::chain(e));
                            message_failed = write[0].is_message();
                        }
                        Err(None) => {}
                        Ok(stored) => published(&mut self.publish, write, stored),
                    }
                    reply.send(Input::Committed {
                        seq,
                        ok: result.is_ok(),
                        numbers: result
                            .map(|stored| numbered(write, &[seq], stored))
                            .unwrap_or_default(),
                    });
                }
            }
        }
        self.writes.clear();
        self.seqs.clear();
    }

    /// The database is out of reach: tells the loop (which refuses new
    /// messages meanwhile), then tries the same batch again, waiting longer
    /// each time, until it is stored, fails for another reason, or the
    /// server stops. Its writes were not acknowledged, so their senders
    /// are still waiting, and nothing is lost or stored twice.
    fn ride_out(
        &self,
        store: &mut dyn Store,
        reply: &Reply,
        first: StoreError,
    ) -> Result<Vec<Seq>, StoreError> {
        log::emit(
            Level::Error,
            &format!(
                "storage unavailable: {}; new messages are refused, and the {} writes taken \
                 are tried again until the database is back",
                log::chain(&first),
                self.writes.len()
            ),
        );
        reply.send(Input::Storage { available: false });
        let mut wait = RETRY_FIRST;
        let mut last = first;
        while !self.stopping.load(Ordering::SeqCst) {
            let until = Instant::now() + wait;
            while Instant::now() < until && !self.stopping.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
            }
            wait = (wait * 2).min(RETRY_MAX);
            match store.apply(&self.writes) {
                Err(e) if e.is_unavailable() => last = e,
                result => {
                    log::emit(Level::Info, "storage is back: messages are taken again");
                    reply.send(Input::Storage { available: true });
                    return result;
                }
            }
        }
        Err(last)
    }
}

/// Hands `writes`, committed, to `publish` as stored: each message under
/// its number in `stored` (one answer per [`Write::answers`], in order),
/// and only the joins that were taken.
fn published(publish: &mut Option<Publish>, writes: &[Write], stored: &[Seq]) {
    let Some(publish) = publish else {
        return;
    };
    let mut answers = stored.iter();
    let writes: Vec<Write> = (writes.iter().cloned())
        .filter_map(|mut write| {
            let answer = if write.answers() {
                answers.next().copied()
            } else {
                None
            };
            match (&mut write, answer) {
                // A join the database refused, or a message it had from
                // another server already, changed nothing.
                (_, Some(0)) => return None,
                (Write::RoomMessage { seq, .. } | Write::PrivateMessage { seq, .. }, Some(n)) => {
                    *seq = n;
                }
                _ => {}
            }
            Some(write)
        })
        .collect();
    publish(&writes);
}

/// Pairs the write number of each message and join in `writes` (numbered
/// `seqs`) with the store's answer for it (`stored`, one each, in order):
/// the number a message was kept under, 1 or 0 for a join.
fn numbered(writes: &[Write], seqs: &[u64], stored: Vec<Seq>) -> Vec<(u64, Seq)> {
    let messages = writes.iter().zip(seqs).filter(|(w, _)| w.answers());
    messages.map(|(_, &seq)| seq).zip(stored).collect()
}

/// A gap's messages: the newest [`GAP_FILL`] after its number.
fn fill(store: &mut dyn Store, gap: Gap) -> Filled {
    let result = match gap {
        Gap::Room { room, after } => store
            .room_history(room, Page::After(after), GAP_FILL)
            .map(Filled::Room),
        Gap::Dialogue { a, b, after } => store
            .dialogue(a, b, Page::After(after), GAP_FILL)
            .map(Filled::Dialogue),
    };
    result.unwrap_or_else(|e| Filled::Failed(log::chain(&e)))
}

fn answer(store: &mut dyn Store, query: Query) -> Answer {
    let result = match query {
        Query::Inbox { user } => store.conversations(user).map(Answer::Inbox),
        Query::Dialogue {
            user,
            other,
            page,
            limit,
        } => store
            .dialogue(user, other, page, limit)
            .map(|rows| Answer::Dialogue { other, page, rows }),
        Query::Room { room, page, limit } => store
            .room_history(room, page, limit)
            .map(|rows| Answer::Room { room, page, rows }),
        Query::Device { token_hash } => store.device(&token_hash).map(Answer::Device),
        Query::Members { room } => store.members(room).map(Answer::Members),
    };
    result.unwrap_or_else(|e| Answer::Failed(log::chain(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UserId;
    use std::time::Duration;

    fn user(seq: u64, id: i64) -> StoreJob {
        StoreJob::Write {
            seq,
            write: Write::User {
                id: UserId(id),
                name: format!("user{id}"),
                password_hash: "h".into(),
                created: 0,
            },
        }
    }

    /// Waits for the next commit report and shows it to the scheduler, as
    /// the loop does.
    fn committed(rx: &Receiver<Input>, workers: &mut Workers) -> (u64, bool) {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(input @ Input::Committed { seq, ok, .. }) => {
                workers.observe(&input);
                (seq, ok)
            }
            other => panic!("waiting for a commit: {other:?}"),
        }
    }

    /// Workers on a fresh database in `dir`, and the channel they answer on.
    fn start(dir: &std::path::Path) -> (Workers, Receiver<Input>, mio::Poll) {
        let location = crate::store::Location::Sqlite(dir.join("chatapp.db"));
        let store = crate::store::open(&location, crate::store::Sync::Full).unwrap();
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let (tx, rx) = mpsc::channel();
        let cost = HashCost {
            log_n: 4,
            r: 8,
            p: 1,
        };
        let hashed = Arc::new(AtomicU64::new(0));
        (
            Workers::start(store, cost, 1, Reply { tx, waker }, hashed, None),
            rx,
            poll,
        )
    }

    #[test]
    fn after_a_message_fails_nothing_behind_it_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (mut workers, rx, _poll) = start(dir.path());
        let message = |seq: u64, room: i64| StoreJob::Write {
            seq,
            write: Write::RoomMessage {
                id: crate::model::MessageId(seq as i64),
                seq,
                origin: None,
                room: crate::model::RoomId(room),
                sender: UserId(1),
                text: "hi".into(),
                sent: 0,
            },
        };
        let room = StoreJob::Write {
            seq: 2,
            write: Write::Room {
                id: crate::model::RoomId(1),
                name: "lobby".into(),
                admin: UserId(1),
                capacity: 5,
                created: 0,
            },
        };
        // One batch; the message to a room that does not exist fails it,
        // and each write is then tried alone until that message.
        for job in [user(1, 1), room, message(3, 7), message(4, 1), user(5, 2)] {
            workers.store(job);
        }
        workers.dispatch(Instant::now());
        let reports: Vec<(u64, bool)> = (0..5).map(|_| committed(&rx, &mut workers)).collect();
        assert_eq!(
            reports,
            [(1, true), (2, true), (3, false), (4, false), (5, false)]
        );
        // Abandoned: what comes now never reaches the store.
        workers.abandon();
        workers.store(user(6, 3));
        workers.finish();
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        let location = crate::store::Location::Sqlite(dir.path().join("chatapp.db"));
        let mut store = crate::store::open(&location, crate::store::Sync::Full).unwrap();
        assert_eq!(store.load().unwrap().users.len(), 1);
        let page = crate::store::Page::Before(u64::MAX);
        let room = crate::model::RoomId(1);
        assert!(store.room_history(room, page, 100).unwrap().is_empty());
    }

    #[test]
    fn writes_wait_for_the_commit_in_flight_and_the_window_then_go_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let (mut workers, rx, _poll) = start(dir.path());

        let t0 = Instant::now();
        workers.store(user(1, 1));
        workers.dispatch(t0);
        assert!(
            workers.pending.is_empty(),
            "the store was idle: sent at once"
        );
        workers.store(user(2, 2));
        workers.store(user(3, 3));
        let later = t0 + COMMIT_WINDOW * 2;
        workers.dispatch(later);
        assert_eq!(workers.pending.len(), 2, "held while 1 is being committed");
        assert_eq!(
            workers.dispatch_at(),
            None,
            "a commit holds them, not the clock"
        );

        assert_eq!(committed(&rx, &mut workers), (1, true));
        workers.dispatch(later);
        assert!(workers.pending.is_empty());
        assert_eq!(
            committed(&rx, &mut workers),
            (3, true),
            "2 and 3 in one commit"
        );
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());

        // Committed at once, but the next batch waits out the window.
        workers.store(user(4, 4));
        let soon = later + COMMIT_WINDOW / 2;
        workers.dispatch(soon);
        assert_eq!(workers.pending.len(), 1, "held within the window");
        assert_eq!(workers.dispatch_at(), Some(later + COMMIT_WINDOW));
        workers.dispatch(later + COMMIT_WINDOW);
        assert!(workers.pending.is_empty(), "sent when the window ends");
        assert_eq!(committed(&rx, &mut workers), (4, true));

        // What is left when the loop stops is handed over and committed.
        workers.store(user(5, 5));
        workers.dispatch(later + COMMIT_WINDOW * 2);
        workers.store(user(6, 6));
        workers.finish();
        let mut last = committed(&rx, &mut workers);
        while last.0 < 6 {
            last = committed(&rx, &mut workers);
        }
        assert_eq!(last, (6, true));
    }
}
