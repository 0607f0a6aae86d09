//! A network thread's one task: every connection of the thread in one loop, with the
//! scheduler polled beside them (or, for live subscriptions, on a thread of its own).
//!
//! Why not a task per connection: then a due record went from the scheduler's task through
//! a channel to its connection's task, which the runtime then woke and polled, and each
//! reply was a task wake-up too. Here a record the scheduler lets go is in its
//! connection's book and on the wire within the same turn, and a reply is read by the
//! loop that the socket's readiness woke: each connection has its own waker, which only
//! puts the connection on this loop's list ([`Woken`]).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{Instant, Sleep};

use super::book::Done;
use super::conn::Conn;
use super::dispatch::{Dispatch, Layout};
use super::fanout::Delivery;
use super::shared::Shared;

/// Records taken from the scheduler in one go, and batches in one turn.
const INBOX_BATCH: usize = 256;
const INBOX_BATCHES: usize = 16;

/// The connections whose socket (or connection attempt) has news, by index, and the loop's
/// own waker. A waker must be callable from any thread, hence the atomics and the lock;
/// in practice only this thread's I/O driver and timer call them.
struct Woken {
    list: Mutex<Vec<u32>>,
    listed: Vec<AtomicBool>,
    task: AtomicWaker,
}

impl Woken {
    fn take(&self, into: &mut Vec<u32>) {
        if let Ok(mut list) = self.list.lock() {
            std::mem::swap(&mut *list, into);
        }
        for &i in into.iter() {
            self.listed[i as usize].store(false, Ordering::Release);
        }
    }
}

/// One connection's waker: lists the connection and wakes the loop.
struct ConnWaker {
    woken: Arc<Woken>,
    index: u32,
}

impl Wake for ConnWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.listed[self.index as usize].swap(true, Ordering::AcqRel) {
            if let Ok(mut list) = self.woken.list.lock() {
                list.push(self.index);
            }
            self.woken.task.wake();
        }
    }
}

pub struct Net {
    conns: Vec<Conn>,
    wakers: Vec<Waker>,
    woken: Arc<Woken>,
    inbox: UnboundedReceiver<Dispatch>,
    layout: Layout,
    shared: Arc<Shared>,
    /// The scheduler is done and every record it sent is taken.
    schedule_over: bool,
    /// Connections to write for and move on after this turn's news.
    dirty: Vec<u32>,
    is_dirty: Vec<bool>,
    /// When each connection asked to be woken (ns after t0), earliest first; an entry
    /// whose moment has changed since is stale, and finds nothing due.
    timers: BinaryHeap<Reverse<(u64, u32)>>,
    /// The earliest entry each connection has in `timers`.
    timer_of: Vec<Option<u64>>,
    sleep: Pin<Box<Sleep>>,
    sleep_at: Option<u64>,
    /// Connections that have finished (and are counted out of `unfinished`).
    ended: Vec<bool>,
    unfinished: usize,
    // Buffers kept from turn to turn.
    records: Vec<Dispatch>,
    turn_woken: Vec<u32>,
    done: Vec<Done>,
    deliveries: Vec<Delivery>,
}

impl Net {
    /// The loop over `conns` (in [`Layout::local_index`] order), fed by `inbox`.
    pub fn new(
        conns: Vec<Conn>,
        inbox: UnboundedReceiver<Dispatch>,
        layout: Layout,
        shared: Arc<Shared>,
    ) -> Net {
        let n = conns.len();
        // Every connection is polled in the first turn: a socket wakes its connection only
        // once a read has found it empty.
        let woken = Arc::new(Woken {
            list: Mutex::new((0..n as u32).collect()),
            listed: (0..n).map(|_| AtomicBool::new(true)).collect(),
            task: AtomicWaker::new(),
        });
        let wakers = (0..n as u32)
            .map(|index| {
                Waker::from(Arc::new(ConnWaker {
                    woken: woken.clone(),
                    index,
                }))
            })
            .collect();
        Net {
            ended: vec![false; n],
            unfinished: n,
            conns,
            wakers,
            woken,
            inbox,
            layout,
            shared,
            schedule_over: false,
            dirty: Vec::new(),
            is_dirty: vec![false; n],
            timers: BinaryHeap::new(),
            timer_of: vec![None; n],
            sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
            sleep_at: None,
            records: Vec::with_capacity(INBOX_BATCH),
            turn_woken: Vec::new(),
            done: Vec::new(),
            deliveries: Vec::new(),
        }
    }

    /// Runs `scheduler` and the connections until the scheduler has ended and every
    /// connection is finished; returns what the scheduler returned.
    pub async fn run<R>(mut self, scheduler: impl Future<Output = R>) -> R {
        let mut scheduler = Some(Box::pin(scheduler));
        let mut result = None;
        // Unconstrained: tokio's budget (128 resource polls per turn of a task) was made
        // for many small tasks; this one task does every connection's work in a turn, and
        // bounds it itself.
        tokio::task::unconstrained(std::future::poll_fn(|cx| {
            if let Some(s) = scheduler.as_mut() {
                if let Poll::Ready(r) = s.as_mut().poll(cx) {
                    result = Some(r);
                    // Dropping it drops its sender: the inbox closes once drained.
                    scheduler = None;
                }
            }
            // The inbox closes only when the scheduler is gone, so the loop cannot end
            // before the scheduler's result is here.
            match (self.turn(cx), result.take()) {
                (Poll::Ready(()), Some(r)) => Poll::Ready(r),
                (_, r) => {
                    result = r;
                    Poll::Pending
                }
            }
        }))
        .await
    }

    fn dirty(&mut self, i: u32) {
        if !self.is_dirty[i as usize] {
            self.is_dirty[i as usize] = true;
            self.dirty.push(i);
        }
    }

    /// One turn: records in, sockets read, times due, writes out, rows handed over.
    fn turn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.woken.task.register(cx.waker());
        // Until the inbox is empty, which registers this task's waker with it (a scheduler
        // on its own thread wakes it so); after a few batches the sockets come first.
        for batch in 0.. {
            if self.schedule_over {
                break;
            }
            if batch == INBOX_BATCHES {
                cx.waker().wake_by_ref();
                break;
            }
            match self
                .inbox
                .poll_recv_many(cx, &mut self.records, INBOX_BATCH)
            {
                Poll::Ready(0) => {
                    self.schedule_over = true;
                    for i in 0..self.conns.len() as u32 {
                        self.dirty(i);
                    }
                }
                Poll::Ready(_) => {
                    let mut records = std::mem::take(&mut self.records);
                    for d in records.drain(..) {
                        let i = self.layout.local_index(d.conn);
                        self.conns[i].accept(d);
                        self.dirty(i as u32);
                    }
                    self.records = records;
                }
                Poll::Pending => break,
            }
        }
        // Records due go out before the replies are read: their lag is lt's.
        self.settle();
        let mut woken = std::mem::take(&mut self.turn_woken);
        self.woken.take(&mut woken);
        for &i in &woken {
            let waker = &self.wakers[i as usize];
            if self.conns[i as usize].poll(&mut Context::from_waker(waker)) {
                // More replies than a batch: the others get their turn first.
                waker.wake_by_ref();
            }
            self.dirty(i);
        }
        woken.clear();
        self.turn_woken = woken;

        // The clock is read only when the timer has fired: a turn per reply does not need it.
        if self.sleep_at.is_some() && self.sleep.is_elapsed() {
            self.times_due();
        }

        self.settle();
        // One lock and one message to the writer per turn, rather than per connection.
        if !self.done.is_empty() {
            self.shared.complete_all(std::mem::take(&mut self.done));
        }
        if !self.deliveries.is_empty() {
            self.shared.delivered(std::mem::take(&mut self.deliveries));
        }
        if self.schedule_over && self.unfinished == 0 {
            return Poll::Ready(());
        }
        self.arm(cx);
        Poll::Pending
    }

    /// Tells every connection whose moment has come.
    fn times_due(&mut self) {
        let now = self.shared.now_ns();
        while let Some(&Reverse((at, i))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.timer_of[i as usize] == Some(at) {
                self.timer_of[i as usize] = None;
            }
            let waker = &self.wakers[i as usize];
            self.conns[i as usize].on_time(
                now,
                self.schedule_over,
                &mut Context::from_waker(waker),
            );
            self.dirty(i);
        }
    }

    /// Lets every connection touched this turn write what it may and move on in its life;
    /// collects what finished and asks the timer for each one's next moment.
    fn settle(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &i in &dirty {
            let c = &mut self.conns[i as usize];
            self.is_dirty[i as usize] = false;
            if self.ended[i as usize] {
                continue;
            }
            if !c.finished() {
                c.pump(
                    &mut Context::from_waker(&self.wakers[i as usize]),
                    self.schedule_over,
                );
            }
            c.take(&mut self.done, &mut self.deliveries);
            if c.finished() {
                self.ended[i as usize] = true;
                self.unfinished -= 1;
            } else if let Some(at) = c.next_wake() {
                let queued = &mut self.timer_of[i as usize];
                if queued.is_none_or(|q| at < q) {
                    *queued = Some(at);
                    self.timers.push(Reverse((at, i)));
                }
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }

    /// Sets the thread's one timer to the earliest moment a connection asked for.
    fn arm(&mut self, cx: &mut Context<'_>) {
        let Some(&Reverse((at, _))) = self.timers.peek() else {
            self.sleep_at = None;
            return;
        };
        if self.sleep_at != Some(at) {
            self.sleep_at = Some(at);
            let when = self.shared.t0() + Duration::from_nanos(at);
            self.sleep.as_mut().reset(Instant::from_std(when));
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            // Already due: another turn at once.
            cx.waker().wake_by_ref();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts its wake-ups: stands for the loop's task.
    struct Counter(std::sync::atomic::AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_connection_woken_twice_is_listed_once_and_again_after_its_turn() {
        let woken = Arc::new(Woken {
            list: Mutex::new(Vec::new()),
            listed: (0..3).map(|_| AtomicBool::new(false)).collect(),
            task: AtomicWaker::new(),
        });
        let task = Arc::new(Counter(Default::default()));
        woken.task.register(&Waker::from(task.clone()));
        let conn = |index| {
            Waker::from(Arc::new(ConnWaker {
                woken: woken.clone(),
                index,
            }))
        };
        let (one, two) = (conn(1), conn(2));
        one.wake_by_ref();
        one.wake_by_ref();
        two.wake_by_ref();
        let mut turn = Vec::new();
        woken.take(&mut turn);
        assert_eq!(turn, [1, 2]);
        // The loop's waker is taken by the first wake-up, until the loop registers again.
        assert_eq!(task.0.load(Ordering::SeqCst), 1);

        // Woken during its turn (more to read): listed for the next one.
        one.wake_by_ref();
        let mut next = Vec::new();
        woken.take(&mut next);
        assert_eq!(next, [1]);
        let mut empty = Vec::new();
        woken.take(&mut empty);
        assert!(empty.is_empty());
    }
}
