//! Progress bars and spinners on stderr, drawn only when stderr is a terminal and `--quiet` is
//! off; otherwise every method is a no-op, so scripts and pipes see no escape codes.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

const BYTES_TEMPLATE: &str =
    "{msg:12} [{bar:40.cyan/blue}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})";
const ITEMS_TEMPLATE: &str = "{msg:12} [{bar:40.cyan/blue}] {human_pos}/{human_len} ({eta})";
const SPINNER_TEMPLATE: &str = "{spinner} {msg} ({elapsed})";

/// A progress indicator that may be hidden.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar counting `total` bytes.
    pub fn bytes(total: u64, message: &'static str, quiet: bool) -> Self {
        Self::bar(total, message, BYTES_TEMPLATE, quiet)
    }

    /// A bar counting `total` items (keys, pairs).
    pub fn items(total: u64, message: &'static str, quiet: bool) -> Self {
        Self::bar(total, message, ITEMS_TEMPLATE, quiet)
    }

    /// A spinner for work of unknown length; it ticks on its own.
    pub fn spinner(message: String, quiet: bool) -> Self {
        if !visible(quiet) {
            return Progress {
                bar: ProgressBar::hidden(),
            };
        }
        let bar = ProgressBar::new_spinner().with_message(message);
        if let Ok(style) = ProgressStyle::with_template(SPINNER_TEMPLATE) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(100));
        Progress { bar }
    }

    fn bar(total: u64, message: &'static str, template: &str, quiet: bool) -> Self {
        if !visible(quiet) {
            return Progress {
                bar: ProgressBar::hidden(),
            };
        }
        let bar = ProgressBar::new(total).with_message(message);
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress { bar }
    }

    /// Advances by `delta` bytes or items.
    pub fn inc(&self, delta: u64) {
        self.bar.inc(delta);
    }

    /// Sets the position (for work measured by an offset, e.g. bytes read).
    pub fn set_position(&self, position: u64) {
        self.bar.set_position(position);
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // A bar abandoned by an error must not leave its line behind before the error message.
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}

fn visible(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}
