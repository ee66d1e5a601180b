//! The progress bar shown on stderr while a phase runs (hidden when stderr is not a
//! terminal). Workers only bump a shared counter; a ticker task redraws, so the hot
//! path never touches the bar.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;

use super::{args::Stop, report::group};

const REDRAW_EVERY: Duration = Duration::from_millis(200);

/// A running progress bar; dropping it clears the bar.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    ticker: JoinHandle<()>,
}

impl Progress {
    /// Shows `label` progressing towards `stop`, counting records in `counter`.
    pub fn start(label: &'static str, stop: Stop, counter: Arc<AtomicU64>) -> Self {
        let (len, by_time) = match stop {
            Stop::Count(n) => (n, false),
            Stop::Duration(d) => (d.as_millis() as u64, true),
        };
        let bar = ProgressBar::new(len);
        let style = ProgressStyle::with_template("{prefix:>8} {elapsed_precise} [{bar:30}] {percent:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label);
        let started = Instant::now();
        let ticker = tokio::spawn({
            let bar = bar.clone();
            async move {
                let mut tick = tokio::time::interval(REDRAW_EVERY);
                loop {
                    tick.tick().await;
                    let n = counter.load(Ordering::Relaxed);
                    let elapsed = started.elapsed();
                    bar.set_position(if by_time { elapsed.as_millis() as u64 } else { n }.min(len));
                    let rate = n as f64 / elapsed.as_secs_f64().max(1e-3);
                    bar.set_message(format!("{} records, {}/s", group(n), group(rate as u64)));
                }
            }
        });
        Self { bar, ticker }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}
