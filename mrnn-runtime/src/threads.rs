//! Thread pool set-up: pins `RAYON_NUM_THREADS` and candle's worker spinning once, before
//! candle's first operation.

use std::sync::Once;

static THREADS: Once = Once::new();

/// candle's variable for how long its workers spin after each operation before they sleep.
pub const SPIN_LIMIT_VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";

/// Sets, unless the user set them:
/// - `RAYON_NUM_THREADS` to the machine's available parallelism. candle's CPU matmul asks for
///   the thread count on every call and, when the variable is unset, re-reads `/proc/cpuinfo`
///   each time: a measurable cost per time step of a recurrent network.
/// - [`SPIN_LIMIT_VAR`] to 0: after each operation candle's workers (its own pool, besides
///   rayon's) spin 25 000 pauses, about a millisecond, before they sleep. A training step runs
///   a few candle operations (the gradient sums, the optimizer) between the recurrent engine's
///   loops, whose threads then share the cores with spinning workers: sleeping at once made
///   flip-flop training steps 8% faster and forward+backward passes at H = 64 30% faster on 2
///   cores (measured); waking a sleeping worker costs microseconds.
///
/// Every [`crate::Network`] constructor calls this; a binary should call it first thing, before
/// it spawns any thread.
pub fn ensure_threads() {
    THREADS.call_once(|| {
        let n = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        for (var, default) in [("RAYON_NUM_THREADS", n.to_string()), (SPIN_LIMIT_VAR, "0".into())] {
            if std::env::var_os(var).is_none() {
                // SAFETY: `set_var` is unsound only when another thread reads or writes the
                // environment at the same time. This runs once, from the first network
                // constructor (or from `main` before any thread is spawned), before candle's
                // first operation, which is the first place in this process that starts worker
                // threads reading these variables.
                unsafe { std::env::set_var(var, default) };
            }
        }
    });
}
