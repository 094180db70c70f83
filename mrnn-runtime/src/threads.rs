//! Thread pool set-up: pins `RAYON_NUM_THREADS` once, before candle's first matrix product.

use std::sync::Once;

static THREADS: Once = Once::new();

/// Sets `RAYON_NUM_THREADS` to the machine's available parallelism, unless the user set it.
///
/// candle's CPU matmul asks for the thread count on every call and, when the variable is unset,
/// re-reads `/proc/cpuinfo` each time: a measurable cost per time step of a recurrent network.
/// Every [`crate::Network`] constructor calls this; a binary should call it first thing, before
/// it spawns any thread.
pub fn ensure_threads() {
    THREADS.call_once(|| {
        if std::env::var_os("RAYON_NUM_THREADS").is_some() {
            return;
        }
        let n = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        // SAFETY: `set_var` is unsound only when another thread reads or writes the environment
        // at the same time. This runs once, from the first network constructor (or from `main`
        // before any thread is spawned), before candle's first matmul, which is the first place
        // in this process that starts worker threads reading the variable.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    });
}
