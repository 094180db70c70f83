//! The engine's threads: the calling thread takes the first share of a split itself and a small
//! pool of helpers the others. Handing the whole split to rayon's global pool instead (what
//! `rayon::scope` does from outside it) wakes every share's worker and parks the caller, and
//! the global pool's idle workers then spin beside the caller's next serial work: on a 2-core
//! machine three runnable threads for two cores.

use std::sync::{Mutex, OnceLock, PoisonError};

/// The threads a split may use: rayon's pool size (`RAYON_NUM_THREADS`, which
/// [`crate::ensure_threads`] sets), read once.
pub(crate) fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
    })
}

/// `threads() - 1` helper threads, or `None` when there are none (one thread, or the OS
/// refused to start them: the work then runs on the calling thread alone).
fn helpers() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let helpers = threads().checked_sub(1).filter(|&n| n > 0)?;
        rayon::ThreadPoolBuilder::new()
            .num_threads(helpers)
            .thread_name(|i| format!("mrnn-engine-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// `work(0)`, ..., `work(tasks - 1)`: the first on the calling thread, the others on the
/// helpers, concurrently. Results in task order.
pub(crate) fn run<R: Send>(tasks: usize, work: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let pool = match helpers() {
        Some(pool) if tasks > 1 => pool,
        _ => return (0..tasks).map(&work).collect(),
    };
    let slots: Vec<Mutex<Option<R>>> = (0..tasks).map(|_| Mutex::new(None)).collect();
    let (work, slots_ref) = (&work, &slots);
    pool.in_place_scope(|scope| {
        for (task, slot) in slots_ref.iter().enumerate().skip(1) {
            scope.spawn(move |_| {
                let result = work(task);
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
            });
        }
        *slots_ref[0].lock().unwrap_or_else(PoisonError::into_inner) = Some(work(0));
    });
    slots
        .into_iter()
        .map(|slot| {
            // Every task ran: the scope returns after all of them (a panic in one resumes here).
            slot.into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .expect("a task of the split did not run")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_in_order() {
        for tasks in [0, 1, 2, 5] {
            let ran = std::sync::atomic::AtomicUsize::new(0);
            let out = run(tasks, |t| {
                ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                t * 10
            });
            assert_eq!(out, (0..tasks).map(|t| t * 10).collect::<Vec<_>>());
            assert_eq!(ran.into_inner(), tasks);
        }
    }
}
