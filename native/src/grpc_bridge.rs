//! Between the HTTP/2 tasks and Python: complete calls wait in a queue that one Python thread
//! drains in batches (without the GIL while it waits); each call's answer comes back through the
//! oneshot its task awaits, from whichever Python thread has it (Kafka's delivery callback).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::grpc_wire::Status;

/// A call as Python takes it: its id, which service (0 traces, 1 metrics, 2 logs), the message,
/// and the `authorization` header.
pub struct Call {
    pub id: u64,
    pub service: u8,
    pub message: Bytes,
    pub authorization: Option<String>,
}

/// The answer to a call: the response message when OK, else the status to end it with.
pub type Answer = Result<Vec<u8>, Status>;

#[derive(Default)]
struct Queue {
    calls: VecDeque<Call>,
    closed: bool,
}

#[derive(Default)]
pub struct Bridge {
    queue: Mutex<Queue>,
    arrived: Condvar,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    next_id: AtomicU64,
}

impl Bridge {
    /// Queues a call for Python; the receiver yields its answer, or an error once the bridge
    /// closed without one.
    pub fn submit(
        &self,
        service: u8,
        message: Bytes,
        authorization: Option<String>,
    ) -> oneshot::Receiver<Answer> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap().insert(id, tx);
        let mut queue = self.queue.lock().unwrap();
        if queue.closed {
            self.waiting.lock().unwrap().remove(&id); // drops tx: the call ends UNAVAILABLE
        } else {
            queue.calls.push_back(Call {
                id,
                service,
                message,
                authorization,
            });
            self.arrived.notify_one();
        }
        rx
    }

    /// Up to `max` calls, waiting until there is one; None once closed and drained.
    pub fn take(&self, max: usize) -> Option<Vec<Call>> {
        let mut queue = self.queue.lock().unwrap();
        while queue.calls.is_empty() && !queue.closed {
            queue = self.arrived.wait(queue).unwrap();
        }
        if queue.calls.is_empty() {
            return None;
        }
        let count = max.max(1).min(queue.calls.len());
        Some(queue.calls.drain(..count).collect())
    }

    /// Completes a call; false when nobody waits for it any more (the client went away).
    pub fn answer(&self, id: u64, answer: Answer) -> bool {
        let waiting = self.waiting.lock().unwrap().remove(&id);
        waiting.is_some_and(|tx| tx.send(answer).is_ok())
    }

    /// No more calls: `take` returns None, and calls queued or not answered yet end UNAVAILABLE.
    pub fn close(&self) {
        let mut queue = self.queue.lock().unwrap();
        queue.closed = true;
        queue.calls.clear();
        self.waiting.lock().unwrap().clear();
        self.arrived.notify_all();
    }
}
