//! A task an actor runs beside its mailbox (a consumer loop, a server), told to stop when the
//! actor stops and awaited, so what it holds is finished or handed back first.

use std::future::Future;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The task and the switch that asks it to stop.
pub struct Background {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Background {
    /// Spawns `work`, which gets a receiver that changes to `true` when it must stop.
    pub fn spawn<Work, Running>(work: Work) -> Background
    where
        Work: FnOnce(watch::Receiver<bool>) -> Running,
        Running: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        Background {
            stop,
            task: Some(tokio::spawn(work(stopped))),
        }
    }

    /// Nothing runs (the role has nothing to do on this node).
    pub fn idle() -> Background {
        let (stop, _) = watch::channel(false);
        Background { stop, task: None }
    }

    /// Asks the task to stop and waits until it has.
    pub async fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}
