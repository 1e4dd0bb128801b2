//! The permits of one origin host, handed out instance by instance.
//!
//! Every request to a host holds one of its permits (`FetchLimits::per_host`) for as long as
//! it is in flight. When the host hangs, each request holds its permit for the whole request
//! timeout, so the host serves only `per_host / timeout` requests a second, and which requests
//! go out first decides which instances are judged first. A first-come queue serves them in
//! the order they asked: the renditions of one instance poll at nearly the same moment, so it
//! serves all of one instance's renditions before the next instance's first. At the soak's
//! scale (712 instances of 7 renditions on a hung host, 128 permits, 4 s timeout) that judged
//! only 164-180 instances in 40 s, because an instance is judged as soon as one of its own
//! requests fails and the other six requests taught nothing new.
//!
//! This queue grants a freed permit to the waiter whose instance
//! 1. waits for more than a background request (a working master playlist read again while
//!    its renditions are known, to follow added or removed ones, or any read of an instance
//!    already judged unhealthy: see [`Urgency::Background`]),
//! 2. has the fewest requests in flight to the host,
//! 3. has a rendition whose next answer can change a verdict (its last request failed while
//!    it is still fresh, or its staleness deadline passed while it waited here: see
//!    [`Urgency::PendingVerdict`] and [`Asker::decisive_at`]),
//! 4. took its last turn longest ago: its last grant here, or the moment it began waiting
//!    after having nothing in flight or queued here (so an instance that comes and goes does
//!    not jump ahead of one that has waited all along),
//!
//! and then to that instance's most urgent waiter, the oldest of those. A background waiter
//! still waiting after its `Asker::promote_after` is raised to the front rank (as a pending
//! verdict) where it stands (its ticket and its instance's turn kept), so a host kept busy
//! without hanging still serves it; at a host that has answered nothing since the waiter asked
//! (hung), it is raised only with the host's next answer (see [`HostQueue::answered`]).
//! Instances with waiters are kept ordered by these four keys, so a grant costs a logarithm of
//! the instances waiting plus a scan of one instance's waiters (at most its
//! `FetchLimits::per_instance` permits, acquired before this queue). Instances thus take
//! turns: every instance gets one request out before any gets a second, so a hung host is judged at about one request per
//! instance. The order changes nobody's verdict rules: a rendition is still judged only on its
//! own request, and the time it waits here is still the operator's, never the origin's. When
//! the host is not saturated nobody waits and the order does not matter.
//!
//! Fairness across tenants improves too: an instance whose requests hang on a shared host gets
//! one permit in turn with every other instance there, where the first-come queue let its
//! hanging renditions queue ahead of everyone who asked later.
//!
//! Written by hand: Tokio's semaphore is strictly first come, first served, and no maintained
//! crate offers a semaphore with a caller-chosen grant order.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};

/// How much the answer to a request can decide; orders a host's waiters (least first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Urgency {
    /// A master playlist that answered last time, read again while its renditions are known
    /// only to follow added or removed ones: at a busy host it waits behind every media
    /// playlist, which are what judge the instance while the master works. When a whole
    /// region hangs, its masters falling due would otherwise take permits from the media
    /// playlists whose failures judge the instances. A master that failed is not background:
    /// its next answer decides `MasterUnavailable`.
    ///
    /// Every read (media or master playlist) of an instance already judged unhealthy is
    /// background too: its answer cannot make the instance less healthy, only show a recovery,
    /// while the instances still waiting for their first hung request need the permits to be
    /// judged at all.
    Background,
    /// A routine poll.
    Routine,
    /// The rendition's last request failed and it is still fresh, or its staleness deadline
    /// passed while this request waited (see [`Asker::decisive_at`]): the answer to this
    /// request can decide a verdict, so it goes before the instance's routine polls and before
    /// instances with nothing pending that have as many requests in flight.
    PendingVerdict,
}

/// Who asks for a permit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asker {
    /// The instance the request is for (see `fetch::InstanceBudget`).
    pub instance: u64,
    pub urgency: Urgency,
    /// A background waiter still waiting after this long is raised in place to the front rank
    /// (as a [`Urgency::PendingVerdict`]), once the host has answered any request since it
    /// began waiting. A host that answers nothing (hung) would only hold the raised request
    /// for the whole timeout too: its permits go to the requests that can still judge an
    /// instance, and a background request there is raised with the host's first answer.
    pub promote_after: Option<Duration>,
    /// A routine waiter still waiting at this instant is raised to
    /// [`Urgency::PendingVerdict`] in place: its rendition's staleness deadline has passed
    /// while it waited, so the answer to its request decides the verdict (any failure judges
    /// it at once). Without this, a rendition none of whose requests got out before its
    /// deadline waited behind every instance whose first request had failed earlier.
    pub decisive_at: Option<tokio::time::Instant>,
}

/// Permission to hold one request to the host; freed (and handed to the next waiter) on drop.
pub struct HostPermit {
    queue: Arc<HostQueue>,
    instance: u64,
    promoted: bool,
}

impl HostPermit {
    /// Whether the background wait was raised (see [`Asker::promote_after`]).
    pub fn promoted(&self) -> bool {
        self.promoted
    }
}

impl Drop for HostPermit {
    fn drop(&mut self) {
        self.queue.release(self.instance);
    }
}

/// The permits of one host. See the module documentation for the order.
pub struct HostQueue {
    state: Mutex<State>,
    /// Answers the host has given (see [`HostQueue::answered`]).
    answers: AtomicU64,
    /// Woken on every answer, for background waiters whose bound has passed.
    answer: Notify,
}

/// An instance's place in the order: only background waiters, requests in flight, nothing
/// pending, its last turn.
type Rank = (bool, usize, bool, u64);

#[derive(Default)]
struct State {
    free: usize,
    /// Stamps turns and tickets, so "longest ago" and "oldest" are well defined.
    clock: u64,
    /// Instances with a request in flight or a waiter here.
    instances: HashMap<u64, InstanceState>,
    /// The instances with waiters, next first.
    ready: BTreeSet<(Rank, u64)>,
    waiting: usize,
}

struct InstanceState {
    in_flight: usize,
    turn: u64,
    waiters: VecDeque<Waiter>,
}

impl InstanceState {
    fn rank(&self) -> Option<Rank> {
        let most = self.waiters.iter().map(|w| w.urgency).max()?;
        Some((
            most == Urgency::Background,
            self.in_flight,
            most != Urgency::PendingVerdict,
            self.turn,
        ))
    }
}

struct Waiter {
    ticket: u64,
    urgency: Urgency,
    grant: oneshot::Sender<HostPermit>,
}

impl State {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Applies `change` to `instance` (made, with its turn now, if it had nothing here),
    /// keeping `ready` in order and forgetting the instance once it has nothing here.
    fn update<T>(&mut self, instance: u64, change: impl FnOnce(&mut InstanceState, u64) -> T) -> T {
        let now = self.tick();
        let i = self
            .instances
            .entry(instance)
            .or_insert_with(|| InstanceState {
                in_flight: 0,
                turn: now,
                waiters: VecDeque::new(),
            });
        if let Some(rank) = i.rank() {
            self.ready.remove(&(rank, instance));
        }
        let out = change(i, now);
        match i.rank() {
            Some(rank) => {
                self.ready.insert((rank, instance));
            }
            None if i.in_flight == 0 => {
                self.instances.remove(&instance);
            }
            None => {}
        }
        out
    }

    /// Takes the next waiter out of the queue (see the module documentation) and counts its
    /// request in flight.
    fn grant_next(&mut self) -> Option<(u64, Waiter)> {
        let &(_, instance) = self.ready.first()?;
        let w = self.update(instance, |i, now| {
            let most = i.waiters.iter().map(|w| w.urgency).max();
            let index = i
                .waiters
                .iter()
                .position(|w| Some(w.urgency) == most)
                .unwrap_or(0);
            let w = i
                .waiters
                .remove(index)
                .expect("a ready instance has waiters");
            i.in_flight += 1;
            i.turn = now;
            w
        });
        self.waiting -= 1;
        Some((instance, w))
    }
}

impl HostQueue {
    pub fn new(permits: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                free: permits.max(1),
                ..State::default()
            }),
            answers: AtomicU64::new(0),
            answer: Notify::new(),
        })
    }

    /// The host answered a request (a status line, whatever the status): it is not hung, so
    /// a background waiter past its bound may be raised (see [`Asker::promote_after`]).
    pub fn answered(&self) {
        self.answers.fetch_add(1, Ordering::Relaxed);
        self.answer.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned lock still holds consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a permit. Cancel-safe: a dropped wait leaves the queue, and a permit granted
    /// to it meanwhile goes to the next waiter.
    pub async fn acquire(self: &Arc<Self>, asker: Asker) -> HostPermit {
        let answers_before = self.answers.load(Ordering::Relaxed);
        let (ticket, rx) = {
            let mut s = self.lock();
            if s.free > 0 && s.waiting == 0 {
                s.free -= 1;
                s.update(asker.instance, |i, now| {
                    i.in_flight += 1;
                    i.turn = now;
                });
                return HostPermit {
                    queue: self.clone(),
                    instance: asker.instance,
                    promoted: false,
                };
            }
            let (tx, rx) = oneshot::channel();
            let ticket = s.update(asker.instance, |i, now| {
                i.waiters.push_back(Waiter {
                    ticket: now,
                    urgency: asker.urgency,
                    grant: tx,
                });
                now
            });
            s.waiting += 1;
            (ticket, rx)
        };
        let mut guard = WaitGuard {
            queue: self,
            ticket,
            instance: asker.instance,
            rx: Some(rx),
        };
        let rx = guard.rx.as_mut().expect("set above");
        let mut promote_at = asker
            .promote_after
            .filter(|_| asker.urgency == Urgency::Background)
            .map(|after| tokio::time::Instant::now() + after);
        let mut decisive_at = asker
            .decisive_at
            .filter(|_| asker.urgency == Urgency::Routine);
        let mut promoted = false;
        let received = loop {
            let answer = self.answer.notified();
            tokio::pin!(answer);
            answer.as_mut().enable();
            let now = tokio::time::Instant::now();
            // A background waiter past its bound is raised only once the host has answered
            // something since this wait began.
            let promote_due = promote_at.is_some_and(|at| at <= now);
            if promote_due && self.answers.load(Ordering::Relaxed) != answers_before {
                // To the front rank, not merely routine: at a host kept busy by polls whose
                // deadlines pass while they wait, those are all pending verdicts, and a read
                // raised only to routine would wait behind them for as long as the host is busy.
                promoted = self.raise(asker.instance, ticket, Urgency::PendingVerdict);
                promote_at = None;
            }
            if decisive_at.is_some_and(|at| at <= now) {
                self.raise(asker.instance, ticket, Urgency::PendingVerdict);
                decisive_at = None;
            }
            let promote_due = promote_at.is_some_and(|at| at <= now);
            tokio::select! {
                biased;
                received = &mut *rx => break received,
                () = tokio::time::sleep_until(promote_at.unwrap_or(now)), if promote_at.is_some() && !promote_due => {}
                () = tokio::time::sleep_until(decisive_at.unwrap_or(now)), if decisive_at.is_some() => {}
                () = &mut answer, if promote_due => {}
            }
        };
        // The sender is dropped only after a grant was sent or the waiter was removed by this
        // guard, so an error cannot happen while the guard lives.
        let mut permit = received.expect("a waiter is only dropped by its own guard");
        guard.rx = None;
        permit.promoted = promoted;
        permit
    }

    /// Raises a waiter still queued to `to`, keeping its ticket and its instance's turn. False
    /// when it was granted meanwhile.
    fn raise(&self, instance: u64, ticket: u64, to: Urgency) -> bool {
        let mut s = self.lock();
        let queued = s
            .instances
            .get(&instance)
            .is_some_and(|i| i.waiters.iter().any(|w| w.ticket == ticket));
        if queued {
            s.update(instance, |i, _| {
                if let Some(w) = i.waiters.iter_mut().find(|w| w.ticket == ticket) {
                    w.urgency = w.urgency.max(to);
                }
            });
        }
        queued
    }

    /// Requests in flight to this host and waiters.
    #[cfg(test)]
    fn load(&self) -> (usize, usize) {
        let s = self.lock();
        let in_flight = s.instances.values().map(|i| i.in_flight).sum();
        (in_flight, s.waiting)
    }

    fn release(self: &Arc<Self>, instance: u64) {
        let next = {
            let mut s = self.lock();
            if s.instances.contains_key(&instance) {
                s.update(instance, |i, _| i.in_flight = i.in_flight.saturating_sub(1));
            }
            let next = s.grant_next();
            if next.is_none() {
                s.free += 1;
            }
            next
        };
        // Sent outside the lock: if the waiter is gone, the permit comes back here through
        // its drop, which takes the lock again.
        if let Some((instance, w)) = next {
            let permit = HostPermit {
                queue: self.clone(),
                instance,
                promoted: false,
            };
            drop(w.grant.send(permit));
        }
    }
}

/// Takes a waiter out of the queue if its wait is dropped before the grant.
struct WaitGuard<'a> {
    queue: &'a Arc<HostQueue>,
    ticket: u64,
    instance: u64,
    rx: Option<oneshot::Receiver<HostPermit>>,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        {
            let mut s = self.queue.lock();
            let queued = s
                .instances
                .get(&self.instance)
                .is_some_and(|i| i.waiters.iter().any(|w| w.ticket == self.ticket));
            if queued {
                let ticket = self.ticket;
                // Dropped here, under the lock: a sender that never sent holds no permit.
                let _gone = s.update(self.instance, |i, _| {
                    let index = i.waiters.iter().position(|w| w.ticket == ticket);
                    index.and_then(|index| i.waiters.remove(index))
                });
                s.waiting -= 1;
                return;
            }
        }
        // Granted meanwhile: the permit is in the channel (or on its way); taking it here and
        // dropping it hands it to the next waiter. Closing first makes a send still to come
        // fail, so its permit is dropped by the sender instead.
        rx.close();
        drop(rx.try_recv());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A background read of `instance`, raised after 100 ms (once its host has answered).
    fn background(instance: u64) -> Asker {
        Asker {
            instance,
            urgency: Urgency::Background,
            promote_after: Some(Duration::from_millis(100)),
            decisive_at: None,
        }
    }

    fn asker(instance: u64) -> Asker {
        Asker {
            instance,
            urgency: Urgency::Routine,
            promote_after: None,
            decisive_at: None,
        }
    }

    /// Spawns a task that waits for a permit for `a` and returns it through its handle, once
    /// the wait is in the queue (so waiters queued one after another keep their order).
    async fn queued(q: &Arc<HostQueue>, a: Asker) -> tokio::task::JoinHandle<HostPermit> {
        let waiting = q.load().1;
        let task = tokio::spawn({
            let q = q.clone();
            async move { q.acquire(a).await }
        });
        while q.load().1 <= waiting {
            tokio::task::yield_now().await;
        }
        task
    }

    /// Queues one waiter per asker, in order, behind a host whose permits are all held, and
    /// returns the order in which they are served as permits free up one at a time.
    async fn served_order(permits: usize, held_by: &[u64], askers: &[Asker]) -> Vec<Asker> {
        served_order_after(Duration::ZERO, permits, held_by, askers).await
    }

    /// [`served_order`] with the first permit freed only `wait` after the last waiter queued.
    async fn served_order_after(
        wait: Duration,
        permits: usize,
        held_by: &[u64],
        askers: &[Asker],
    ) -> Vec<Asker> {
        let q = HostQueue::new(permits);
        let mut held = Vec::new();
        for &i in held_by {
            held.push(q.acquire(asker(i)).await);
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for &a in askers {
            let (waiter, tx) = (queued(&q, a).await, tx.clone());
            tokio::spawn(async move { tx.send((a, waiter.await.unwrap())).unwrap() });
        }
        let mut order = Vec::new();
        tokio::time::sleep(wait).await;
        drop(held.remove(0));
        for _ in askers {
            let (a, p) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("a freed permit reaches a waiter")
                .unwrap();
            order.push(a);
            drop(p);
        }
        order
    }

    #[tokio::test]
    async fn instances_take_turns_instead_of_first_come() {
        // Instance 1 asked for three renditions before instances 2 and 3 asked for one each.
        // Instance 1 keeps waiters throughout, so it is remembered as just served and goes
        // after the instances never served.
        let askers = [asker(1), asker(1), asker(1), asker(2), asker(3)];
        let order = served_order(1, &[9], &askers).await;
        let instances: Vec<u64> = order.iter().map(|a| a.instance).collect();
        assert_eq!(instances, [1, 2, 3, 1, 1]);
    }

    #[tokio::test]
    async fn an_instance_with_a_request_in_flight_waits_behind_one_without() {
        // Two permits: one held by instance 1, one by instance 9. Instance 1's next rendition
        // asked first, yet instance 2, with nothing in flight, is served first.
        let q = HostQueue::new(2);
        let _one = q.acquire(asker(1)).await;
        let nine = q.acquire(asker(9)).await;
        let first = queued(&q, asker(1)).await;
        let second = queued(&q, asker(2)).await;
        drop(nine);
        let granted = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("instance 2 is served")
            .unwrap();
        assert_eq!(granted.instance, 2);
        assert!(!first.is_finished());
        assert_eq!(q.load(), (2, 1));
    }

    #[tokio::test]
    async fn a_pending_verdict_goes_first_among_equals() {
        let pending = Asker {
            instance: 3,
            urgency: Urgency::PendingVerdict,
            promote_after: None,
            decisive_at: None,
        };
        let order = served_order(1, &[9], &[asker(1), asker(2), pending]).await;
        assert_eq!(order[0], pending);
    }

    #[tokio::test]
    async fn a_background_read_is_raised_where_it_stands() {
        // Instance 1's master (background) waits before instance 2's poll: once raised, it
        // goes first, on instance 1's turn (older than instance 2's).
        let q = HostQueue::new(1);
        let held = q.acquire(asker(9)).await;
        let master = queued(&q, background(1)).await;
        let poll = queued(&q, asker(2)).await;
        q.answered();
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(held);
        let first = tokio::time::timeout(Duration::from_secs(5), master)
            .await
            .expect("the raised master is served first")
            .unwrap();
        assert!(first.promoted());
        assert!(!poll.is_finished());
        drop(first);
        assert!(!poll.await.unwrap().promoted());

        // Raised, it keeps its ticket: it goes before a poll of its own instance that asked
        // after it (asked again instead, it would go after).
        let q = HostQueue::new(1);
        let held = q.acquire(asker(9)).await;
        let master = queued(&q, background(1)).await;
        let poll = queued(&q, asker(1)).await;
        q.answered();
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(held);
        let first = tokio::time::timeout(Duration::from_secs(5), master)
            .await
            .expect("the raised master is served first")
            .unwrap();
        assert!(!poll.is_finished());
        drop(first);
        poll.await.unwrap();

        // Served before its bound: not raised.
        let q = HostQueue::new(1);
        let held = q.acquire(asker(9)).await;
        let master = queued(&q, background(1)).await;
        drop(held);
        assert!(!master.await.unwrap().promoted());
        assert_eq!(q.load(), (0, 0));
    }

    #[tokio::test]
    async fn a_background_read_is_raised_only_once_its_host_answers() {
        // Past its bound at a host that has answered nothing since it asked (hung), instance
        // 1's background read stays behind the routine polls of instances 2 and 3.
        let q = HostQueue::new(1);
        let held = q.acquire(asker(9)).await;
        let read = queued(&q, background(1)).await;
        let second = queued(&q, asker(2)).await;
        let third = queued(&q, asker(3)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(held);
        let first = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("a routine poll is served")
            .unwrap();
        assert_eq!(first.instance, 2);
        assert!(!read.is_finished());
        // The host answers: the read is raised where it stands, and instance 1's turn is older
        // than instance 3's.
        q.answered();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(first);
        let raised = tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("the raised read is served next")
            .unwrap();
        assert!(raised.promoted());
        assert!(!third.is_finished());
        drop(raised);
        assert_eq!(third.await.unwrap().instance, 3);
    }

    #[tokio::test]
    async fn a_poll_whose_deadline_passes_in_the_queue_goes_first_among_equals() {
        // Instance 1's poll asked first but nothing of it has failed yet; instance 2's rendition
        // failed once before its deadline (pending). Once instance 1's deadline passes while it
        // waits, its answer decides as much, and its older turn puts it first.
        let served = |deadline_in: Duration| async move {
            let poll = Asker {
                decisive_at: Some(tokio::time::Instant::now() + deadline_in),
                ..asker(1)
            };
            let pending = Asker {
                urgency: Urgency::PendingVerdict,
                ..asker(2)
            };
            let order =
                served_order_after(Duration::from_millis(300), 1, &[9], &[poll, pending]).await;
            order.iter().map(|a| a.instance).collect::<Vec<_>>()
        };
        assert_eq!(served(Duration::from_millis(100)).await, [1, 2]);
        // Before its deadline it is routine: the pending one goes first.
        assert_eq!(served(Duration::from_secs(60)).await, [2, 1]);
    }

    #[tokio::test]
    async fn a_background_read_waits_behind_every_poll() {
        // Instance 1's master is read again (background) and asked first; instance 2's
        // routine poll, with a request already in flight, still goes first.
        let q = HostQueue::new(2);
        let _two = q.acquire(asker(2)).await;
        let held = q.acquire(asker(9)).await;
        let background = Asker {
            instance: 1,
            urgency: Urgency::Background,
            promote_after: None,
            decisive_at: None,
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for (n, a) in [background, asker(2)].into_iter().enumerate() {
            let (queue, tx) = (q.clone(), tx.clone());
            tokio::spawn(async move {
                let p = queue.acquire(a).await;
                tx.send((a, p)).unwrap();
            });
            while q.load().1 < n + 1 {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        let (first, p) = rx.recv().await.unwrap();
        assert_eq!(first, asker(2));
        drop(p);
        assert_eq!(rx.recv().await.unwrap().0, background);
    }

    #[tokio::test]
    async fn an_instance_that_comes_and_goes_does_not_jump_ahead_of_one_that_waited() {
        // X waits with two renditions and is served once; Y asks only after that. X's second
        // rendition has waited since before Y asked, so it goes first: Y takes its turn
        // after X's last one, not ahead of it as an instance never seen would.
        let q = HostQueue::new(1);
        let held = q.acquire(asker(9)).await;
        let x1 = queued(&q, asker(1)).await;
        let x2 = queued(&q, asker(1)).await;
        drop(held);
        let first = x1.await.unwrap();
        let y = queued(&q, asker(2)).await;
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), x2)
            .await
            .expect("instance 1's second rendition is served")
            .unwrap();
        assert!(
            !y.is_finished(),
            "instance 2 jumped ahead of instance 1's waiting rendition"
        );
        drop(second);
        assert_eq!(y.await.unwrap().instance, 2);
    }

    #[tokio::test]
    async fn a_dropped_wait_leaves_the_queue_and_loses_no_permit() {
        let q = HostQueue::new(1);
        let held = q.acquire(asker(1)).await;
        let waiting = queued(&q, asker(2)).await;
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(q.load(), (1, 0));
        drop(held);
        assert_eq!(q.load(), (0, 0));
        // The permit is free again: taken at once.
        let p = tokio::time::timeout(Duration::from_secs(5), q.acquire(asker(3)))
            .await
            .expect("the permit came back");
        assert_eq!(q.load(), (1, 0));
        drop(p);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn permits_are_never_lost_or_exceeded_under_cancellation() {
        let q = HostQueue::new(3);
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for n in 0..200u64 {
            let (q, peak) = (q.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                let a = Asker {
                    instance: n % 7,
                    urgency: match n % 5 {
                        0 => Urgency::PendingVerdict,
                        1 => Urgency::Background,
                        _ => Urgency::Routine,
                    },
                    promote_after: (n % 3 == 0).then(|| Duration::from_millis(n % 4)),
                    decisive_at: (n % 4 == 0)
                        .then(|| tokio::time::Instant::now() + Duration::from_millis(n % 5)),
                };
                // Every third wait gives up after a moment, like a probe whose instance goes.
                let wait = q.acquire(a);
                let permit = if n % 3 == 0 {
                    match tokio::time::timeout(Duration::from_micros(n * 10), wait).await {
                        Ok(p) => p,
                        Err(_) => return,
                    }
                } else {
                    wait.await
                };
                peak.fetch_max(q.load().0, std::sync::atomic::Ordering::SeqCst);
                tokio::task::yield_now().await;
                drop(permit);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(peak.load(std::sync::atomic::Ordering::SeqCst) <= 3);
        assert_eq!(q.load(), (0, 0));
        // All three permits are free.
        let all: Vec<_> = futures_three(&q).await;
        assert_eq!(all.len(), 3);
        assert_eq!(q.lock().free, 0);
    }

    async fn futures_three(q: &Arc<HostQueue>) -> Vec<HostPermit> {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(
                tokio::time::timeout(Duration::from_secs(5), q.acquire(asker(i)))
                    .await
                    .expect("a free permit is taken at once"),
            );
        }
        v
    }
}
