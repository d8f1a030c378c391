//! Progress reporting from long-running algorithms, without any terminal code.
//!
//! Algorithms call [`Observer::on_step`] now and then; the default observer does nothing. The
//! CLI implements it with a progress bar. Returning [`Control::Break`] asks the algorithm to stop
//! early (it then returns what it has, or `Error::Interrupted`, as its docs say).

/// What an observer asks the algorithm to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Keep going.
    Continue,
    /// Stop as soon as possible.
    Break,
}

/// One progress report: `done` of `total` units of work, and an optional figure to show.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Units of work done so far (sweeps, epochs, states, ...).
    pub done: u64,
    /// Total units of work expected.
    pub total: u64,
    /// A figure worth showing (e.g. the current log-likelihood), if any.
    pub metric: Option<f64>,
}

/// Receives progress reports.
pub trait Observer {
    /// Called after a unit of work; the default ignores it.
    fn on_step(&mut self, _step: &Step) -> Control {
        Control::Continue
    }
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Observer for Silent {}

/// Reports `done` of `total` units (no metric) to `observer`; `Err(Error::Interrupted)` when it
/// asks to stop, for algorithms that have nothing partial to return.
pub fn report_or_interrupt(
    observer: &mut (impl Observer + ?Sized),
    done: u64,
    total: u64,
) -> crate::error::Result<()> {
    let step = Step {
        done,
        total,
        metric: None,
    };
    match observer.on_step(&step) {
        Control::Continue => Ok(()),
        Control::Break => Err(crate::error::Error::Interrupted),
    }
}
