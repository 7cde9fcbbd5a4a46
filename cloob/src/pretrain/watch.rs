//! What a run shows while it trains: a progress bar when stderr is a terminal, plain progress lines every
//! `--log-every-n-steps` steps when it is not (nohup, Slurm, a pipe), each evaluation's results as lines,
//! TensorBoard scalars (`--report-to tensorboard`), and the plots redrawn after each evaluation.

use super::config::ReportOptions;
use super::evaluate::EvalReport;
use super::tensorboard::EventWriter;
use super::{plots, Result};
use crate::train::StepStats;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How progress is shown.
enum Show {
    /// A progress bar on the terminal.
    Bar(ProgressBar),
    /// A line every N steps.
    Lines(u64),
    /// Nothing (`--quiet`, tests, ranks other than 0).
    Nothing,
}

/// The run's progress display and reports (rank 0's; the other ranks show and write nothing).
pub(crate) struct Watch {
    show: Show,
    total: u64,
    /// Step and time this process started from (for the rate and the ETA of the lines).
    from: (u64, Instant),
    events: Option<EventWriter>,
    plots: Option<(PathBuf, PathBuf)>,
    /// Whether drawing the plots failed once already (said once, not at every evaluation).
    plots_failed: bool,
    /// Rank 0.
    lead: bool,
}

impl Watch {
    /// `progress`: show progress (a bar on a terminal, lines every `report.log_every_n_steps` otherwise);
    /// `run_dir`: where rank 0 writes (`None` on the other ranks); `resumed_at`: the step this process goes
    /// on from, after a resume; `plots`: redraw the plots after each evaluation.
    pub(crate) fn new(
        progress: bool,
        report: &ReportOptions,
        total: u64,
        run_dir: Option<&Path>,
        resumed_at: Option<u64>,
        plots: bool,
    ) -> Result<Watch> {
        report.validate()?;
        let lead = run_dir.is_some();
        let show = match (progress && lead, std::io::stderr().is_terminal()) {
            (false, _) => Show::Nothing,
            (true, false) => Show::Lines(report.log_every_n_steps),
            (true, true) => {
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]")
                        .expect("a valid template"),
                );
                bar.set_position(resumed_at.unwrap_or(0));
                Show::Bar(bar)
            }
        };
        let events = match run_dir.filter(|_| report.tensorboard()) {
            Some(dir) => {
                let dir = dir.join("tensorboard");
                if resumed_at.is_none() {
                    // A fresh run: event files left in its folder are no run's (it was checked to hold none).
                    for f in super::tensorboard::event_files(&dir)? {
                        std::fs::remove_file(&f).map_err(|e| super::err(f.display(), e))?;
                    }
                }
                Some(EventWriter::create(&dir, &super::run_dir::host_name(), resumed_at)?)
            }
            None => None,
        };
        let plots = run_dir.filter(|_| plots).map(|d| (d.join("metrics.jsonl"), d.join("plots")));
        let from = (resumed_at.unwrap_or(0), Instant::now());
        Ok(Watch { show, total, from, events, plots, plots_failed: false, lead })
    }

    /// The event file written, if any.
    pub(crate) fn event_file(&self) -> Option<&Path> {
        self.events.as_ref().map(|e| e.path())
    }

    /// Print a line (above the bar on a terminal); nothing when progress is not shown.
    pub(crate) fn say(&self, line: &str) {
        match &self.show {
            Show::Bar(bar) => bar.println(line),
            Show::Lines(_) => eprintln!("{line}"),
            Show::Nothing => {}
        }
    }

    /// A training step done: `rate` is the smoothed samples/s, `sps` this step's.
    pub(crate) fn step(&mut self, stats: &StepStats, epoch: u64, sps: f64, rate: f64) -> Result<()> {
        let done = stats.step + 1;
        match &self.show {
            Show::Bar(bar) => {
                bar.set_message(format!(
                    "loss {:.4} lr {:.2e} τ⁻¹ {:.1} {rate:.0} samples/s",
                    stats.loss, stats.lr, stats.inv_tau
                ));
                bar.set_position(done);
            }
            Show::Lines(every) if done.is_multiple_of(*every) || done == self.from.0 + 1 || done == self.total => {
                let elapsed = self.from.1.elapsed().as_secs_f64();
                let per_step = elapsed / (done - self.from.0) as f64;
                eprintln!(
                    "step {done}/{} ({:.1} %) epoch {epoch}: loss {:.4} lr {:.3e} τ⁻¹ {:.2} grad norm {:.3} \
                     {rate:.1} samples/s [{} < {}]",
                    self.total,
                    100.0 * done as f64 / self.total as f64,
                    stats.loss,
                    stats.lr,
                    stats.inv_tau,
                    stats.grad_norm,
                    clock(elapsed),
                    clock(per_step * (self.total - done) as f64)
                );
            }
            _ => {}
        }
        if let Some(events) = &mut self.events {
            let scalars = [
                ("train/loss", stats.loss),
                ("train/lr", stats.lr),
                ("train/inv_tau", stats.inv_tau),
                ("train/grad_norm", stats.grad_norm),
                ("train/samples_per_second", sps),
                ("train/epoch", epoch as f64),
                ("train/comm_seconds", stats.comm_seconds),
            ];
            events.scalars(done, &scalars.map(|(t, v)| (t.to_string(), v)))?;
        }
        Ok(())
    }

    /// The run went back to `step` (`--on-nan rollback`).
    pub(crate) fn rewind_to(&mut self, step: u64) -> Result<()> {
        if let Show::Bar(bar) = &self.show {
            bar.set_position(step);
        }
        match &mut self.events {
            Some(events) => events.rewind_to(step),
            None => Ok(()),
        }
    }

    /// The evaluation after `step`: its results as lines (the headline alone for the `last`, whose table
    /// the binary prints with the run's summary; a failed diagnostic as one line even without progress),
    /// its figures to TensorBoard, the plots redrawn (`metrics.jsonl` holds it already).
    pub(crate) fn evaluation(&mut self, step: u64, report: &EvalReport, last: bool) -> Result<()> {
        let headline = report.headline().map_or(String::new(), |h| format!(": mean zero-shot top-1 {h:.3}"));
        self.say(&format!("evaluation at step {step}{headline}"));
        for line in report.table().lines().filter(|_| !last) {
            self.say(&format!("  {line}"));
        }
        for (set, f) in report.failures() {
            let on = set.map_or(String::new(), |s| format!(" on {s}"));
            let line = format!(
                "step {step}: diagnostic {}{on} failed ({}); reported as failed, the run goes on",
                f.diagnostic, f.error
            );
            match &self.show {
                Show::Bar(bar) => bar.println(line),
                _ if self.lead => eprintln!("{line}"),
                _ => {}
            }
        }
        if let Some(events) = &mut self.events {
            events.scalars(step, &eval_scalars(report))?;
        }
        if let Some((metrics, dir)) = &self.plots {
            match plots::draw_all(metrics, Some(report), dir) {
                Ok(_) => self.plots_failed = false,
                Err(e) if !self.plots_failed => {
                    self.plots_failed = true;
                    eprintln!("plots skipped: {e}");
                }
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// Finish the bar.
    pub(crate) fn finish(&self) {
        if let Show::Bar(bar) = &self.show {
            bar.finish();
        }
    }
}

/// `h:mm:ss`.
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Every number of an evaluation as a TensorBoard scalar, tagged `eval/<set>/…` (and `eval/probe/…`);
/// failed diagnostics have none.
pub fn eval_scalars(report: &EvalReport) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    if let Some(h) = report.headline() {
        out.push(("eval/zero_shot_mean_top1".to_string(), h));
    }
    for s in &report.sets {
        let mut add = |tag: String, v: f64| out.push((format!("eval/{}/{tag}", s.set), v));
        for (task, t) in &s.zero_shot {
            add(format!("zero_shot/{task}/top1"), t.top1);
            add(format!("zero_shot/{task}/top5"), t.top5);
        }
        for (task, classes) in &s.per_class {
            for c in classes {
                if let (Some(top1), Some(top5)) = (c.top1, c.top5) {
                    add(format!("zero_shot/{task}/class/{}/top1", c.class), top1);
                    add(format!("zero_shot/{task}/class/{}/top5", c.class), top5);
                }
            }
        }
        let r = &s.retrieval;
        for (k, at) in ["R@1", "R@5", "R@10"].iter().enumerate() {
            add(format!("retrieval/image_to_text_{at}"), r.image_to_text[k]);
            add(format!("retrieval/text_to_image_{at}"), r.text_to_image[k]);
        }
        add("retrieval/image_to_text_median_rank".into(), r.image_to_text_median_rank);
        add("retrieval/text_to_image_median_rank".into(), r.text_to_image_median_rank);
        let e = &s.embedding;
        let figures = [
            ("image_eigen_99", e.image_eigen_99.map(|v| v as f64)),
            ("text_eigen_99", e.text_eigen_99.map(|v| v as f64)),
            ("image_ajne", e.image_ajne),
            ("text_ajne", e.text_ajne),
            ("image_uniformity", e.image_uniformity),
            ("text_uniformity", e.text_uniformity),
            ("alignment", e.alignment),
        ];
        for (name, v) in figures {
            if let Some(v) = v {
                add(format!("embedding/{name}"), v);
            }
        }
    }
    if let Some(p) = &report.probe {
        out.push((format!("eval/probe/{}/test_accuracy", p.task), p.test_accuracy));
        out.push((format!("eval/probe/{}/c", p.task), p.c));
    }
    out
}
