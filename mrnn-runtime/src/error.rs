//! The runtime's error type: every failure names what was wrong and what was expected.

/// Everything that can go wrong in the runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The architecture (a JSON config) did not compile; the report lists every problem.
    #[error("{0}")]
    Config(Box<mrnn_ir::Report>),
    /// A tensor had the wrong shape.
    #[error("{what} has shape {got:?}, expected {expected}")]
    Shape {
        /// What the tensor is (`input`, `x0`, `stim`, `rnn.W_rec in flip_flop.pth`).
        what: String,
        /// The expected shape, in words (`[B, T, 25] (batch first)`).
        expected: String,
        /// The shape it had.
        got: Vec<usize>,
    },
    /// A region name that the network does not have.
    #[error("unknown region `{name}` (regions: {known})")]
    UnknownRegion {
        /// The name asked for.
        name: String,
        /// The names the network has.
        known: String,
    },
    /// Two architectures that should be the same are not.
    #[error("architecture mismatch: {0}")]
    Architecture(String),
    /// A checkpoint could not be read or does not fit.
    #[error("checkpoint `{path}`: {message}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Training diverged: a NaN or infinite loss or gradient. Nothing was updated at that step.
    #[error(
        "training diverged at step {step}: {what}; the parameters were not updated at this step"
    )]
    Diverged {
        /// The step whose loss or gradient was not finite.
        step: usize,
        /// What was not finite.
        what: String,
    },
    /// An argument out of range or inconsistent with the network.
    #[error("{0}")]
    Invalid(String),
    /// A request that would need more memory than the limit ([`crate::memory`]); refused before
    /// anything was allocated.
    #[error(
        "{what} needs about {}, more than the {} available (the limit; `{}` changes it)",
        crate::memory::human(*needed),
        crate::memory::human(*limit),
        crate::memory::LIMIT_VARIABLE
    )]
    TooLarge {
        /// What needed the memory (`a network of 80000 units`, `4096 candidates`).
        what: String,
        /// The estimate, in bytes.
        needed: u64,
        /// The limit, in bytes.
        limit: u64,
    },
}

/// The runtime's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<mrnn_ir::Report> for Error {
    fn from(report: mrnn_ir::Report) -> Self {
        Error::Config(Box::new(report))
    }
}
