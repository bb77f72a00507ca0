//! The threads model fits run on: threads of their own, each [`NICENESS`] nice values below
//! the thread that started it, so a node that trains answers HTTP requests, renews its lease
//! and stores ingest batches as if it were idle: when both want a core, the runtime gets it
//! (about nine tenths of it, by the kernel's weights for nice 0 against 10), and when nothing
//! else runs, fits use every core as before.
//!
//! On a 2-core machine with a fit on one core, the load test's `GET .../forecast` p99 fell from
//! 15-50 ms to 14-19 ms (`tests/gateway_load.rs`, BENCHMARKS.md "Serving while training"). The
//! priority cannot be given back without privileges, which is why fits do not borrow tokio's
//! blocking threads: other blocking work (restoring a model for an online forecast, committing
//! Kafka offsets) keeps its priority.
//!
//! A thread is started when no idle one is waiting and then waits for the next fit; how many
//! exist is bounded by how many fits run at once (`train.workers` per node).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};

/// How much nicer a fit thread is than the thread that started it (nice values run from -20,
/// the highest priority, to 19, the lowest; a process starts at 0).
pub const NICENESS: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// Idle fit threads, each waiting on its own channel.
static IDLE: Mutex<Vec<Sender<Job>>> = Mutex::new(Vec::new());

/// Why a fit gave no result.
#[derive(Debug, thiserror::Error)]
pub enum FitThreadError {
    #[error("cannot start a fit thread: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("the fit panicked: {0}")]
    Panicked(String),
}

/// Runs `work` on a fit thread and waits for its result without blocking the runtime.
pub async fn run<T, F>(work: F) -> Result<T, FitThreadError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let outcome = catch_unwind(AssertUnwindSafe(work)).map_err(|panic| {
            panic
                .downcast_ref::<&str>()
                .map(|text| text.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string())
        });
        // The caller may have gone (its request was dropped): nobody to tell.
        let _ = done.send(outcome);
    });
    hand_over(job)?;
    match result.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(message)) => Err(FitThreadError::Panicked(message)),
        // The job was dropped unrun: only when its thread died, which catch_unwind prevents.
        Err(_) => Err(FitThreadError::Panicked("the fit thread ended".to_string())),
    }
}

/// Gives `job` to an idle thread, or to a new one when none waits.
fn hand_over(mut job: Job) -> Result<(), FitThreadError> {
    loop {
        let idle = IDLE.lock().ok().and_then(|mut idle| idle.pop());
        let Some(thread) = idle else {
            break;
        };
        match thread.send(job) {
            Ok(()) => return Ok(()),
            // That thread is gone; try the next.
            Err(returned) => job = returned.0,
        }
    }
    let (sender, receiver) = channel();
    std::thread::Builder::new()
        .name("storecast-fit".to_string())
        .spawn(move || serve(job, sender, receiver))?;
    Ok(())
}

/// A fit thread: lowers its own priority, runs `first`, then whatever it is handed next.
fn serve(first: Job, me: Sender<Job>, jobs: Receiver<Job>) {
    lower_priority();
    let mut job = first;
    loop {
        job();
        match IDLE.lock() {
            Ok(mut idle) => idle.push(me.clone()),
            // A poisoned list cannot hand this thread work: let it end.
            Err(_) => return,
        }
        match jobs.recv() {
            Ok(next) => job = next,
            Err(_) => return,
        }
    }
}

/// Makes the calling thread [`NICENESS`] nicer (at most 19); on Linux a nice value belongs to
/// one thread, and `who` 0 is the calling thread.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let lower = (niceness() + NICENESS).min(19);
        // SAFETY: setpriority only reads its integer arguments.
        let status = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, lower) };
        if status != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "fit threads keep the runtime's priority"
            );
        }
    }
}

/// The calling thread's nice value.
#[cfg(target_os = "linux")]
fn niceness() -> i32 {
    // SAFETY: getpriority only reads its integer arguments.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fit_runs_on_a_lower_priority_thread_and_returns_its_result() {
        let (name, value) = run(|| (std::thread::current().name().map(str::to_string), 6 * 7))
            .await
            .unwrap();
        assert_eq!((name.as_deref(), value), (Some("storecast-fit"), 42));
        #[cfg(target_os = "linux")]
        {
            let caller = niceness();
            let fit = run(niceness).await.unwrap();
            assert_eq!(fit, (caller + NICENESS).min(19), "caller at {caller}");
        }
    }

    #[tokio::test]
    async fn a_panicking_fit_is_an_error_and_the_threads_go_on() {
        let error = run(|| -> u32 { panic!("bad series") }).await.unwrap_err();
        assert!(error.to_string().contains("bad series"), "{error}");
        assert_eq!(run(|| 1).await.unwrap(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fits_run_at_once_on_threads_of_their_own() {
        // Four fits that each wait for the others: they finish only if all four run at once.
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let fits: Vec<_> = (0..4)
            .map(|index| {
                let barrier = barrier.clone();
                tokio::spawn(run(move || {
                    barrier.wait();
                    index
                }))
            })
            .collect();
        let mut done = Vec::new();
        for fit in fits {
            let finished = tokio::time::timeout(std::time::Duration::from_secs(10), fit)
                .await
                .expect("the fits did not run at once");
            done.push(finished.unwrap().unwrap());
        }
        assert_eq!(done, [0, 1, 2, 3]);
    }
}
