//! Progress bars on stderr: the CLI's implementation of `ebm::progress::Observer`.

use std::io::IsTerminal;

use ebm::progress::{Control, Observer, Step};
use indicatif::{ProgressBar, ProgressStyle};

/// True when progress bars should be drawn: stderr is a terminal, and neither `--quiet` nor
/// `--json` was given.
pub fn progress_enabled(global: &super::GlobalArgs) -> bool {
    !global.quiet && !global.json && std::io::stderr().is_terminal()
}

/// An observer that draws an indicatif bar, or nothing when disabled.
pub struct BarObserver {
    bar: Option<ProgressBar>,
    metric_name: &'static str,
}

impl BarObserver {
    /// A bar of `total` units labelled `label`; `metric_name` labels the figure in each step.
    pub fn new(enabled: bool, total: u64, label: &str, metric_name: &'static str) -> Self {
        let bar = enabled.then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            bar
        });
        BarObserver { bar, metric_name }
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Observer for BarObserver {
    fn on_step(&mut self, step: &Step) -> Control {
        if let Some(bar) = &self.bar {
            bar.set_length(step.total);
            bar.set_position(step.done);
            if let Some(m) = step.metric {
                bar.set_message(format!("{} {m:.4}", self.metric_name));
            }
        }
        Control::Continue
    }
}

impl Drop for BarObserver {
    fn drop(&mut self) {
        self.finish();
    }
}
