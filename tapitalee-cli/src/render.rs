//! Everything `tapit` shows people or programs: results on stdout, progress and messages on
//! stderr, `--output json`, colour only on a terminal and never with `NO_COLOR`.
//!
//! The workspace warns on printing; the command line is the one place that prints, and this
//! module is the one place in it.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

use tapitalee::{
    DeployEvent, DeploymentRecord, DeploymentStatus, EventKind, ProcessRecord, ProcessStatus,
};

use crate::cli::Output;

/// Where and how to print.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// `--output`.
    pub format: Output,
    /// stderr is a terminal (live progress view).
    pub live: bool,
    /// Colour allowed on stderr (a terminal, no `NO_COLOR`).
    pub colour: bool,
    /// Colour allowed on stdout (a terminal, no `NO_COLOR`): results redirected to a file
    /// stay plain even when progress goes to a terminal.
    pub colour_stdout: bool,
}

impl Out {
    /// From the flags and the environment.
    pub fn new(format: Output) -> Out {
        let tty = std::io::stderr().is_terminal();
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Out {
            format,
            live: tty && format == Output::Human,
            colour: tty && !no_colour,
            colour_stdout: std::io::stdout().is_terminal() && !no_colour,
        }
    }

    /// Whether results are JSON.
    pub fn json(&self) -> bool {
        self.format == Output::Json
    }

    /// A result line (stdout).
    pub fn result(&self, text: &str) {
        println!("{text}");
    }

    /// A JSON document (stdout, one line).
    pub fn json_value(&self, value: &serde_json::Value) {
        println!("{value}");
    }

    /// A message for people (stderr).
    pub fn note(&self, text: &str) {
        eprintln!("{text}");
    }

    /// An error (stderr).
    pub fn error(&self, text: &str) {
        if self.colour {
            eprintln!("\x1b[1;31merror\x1b[0m: {text}");
        } else {
            eprintln!("error: {text}");
        }
    }

    /// Paints `text` for stderr with an ANSI style when colour is on there.
    pub fn paint(&self, style: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{style}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// A deployment status for stdout, coloured when stdout is a terminal.
    fn status(&self, status: DeploymentStatus) -> String {
        let style = match status {
            DeploymentStatus::Succeeded => "32",
            DeploymentStatus::Partial | DeploymentStatus::Running => "33",
            DeploymentStatus::Failed | DeploymentStatus::Interrupted => "31",
        };
        if self.colour_stdout {
            format!("\x1b[{style}m{status}\x1b[0m")
        } else {
            status.to_string()
        }
    }
}

/// RFC 3339 to the second.
pub fn time(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `12.3s`, `-` when unknown.
pub fn took(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.1}s", d.as_secs_f64()))
        .unwrap_or_else(|| "-".into())
}

/// A process's status in one word.
pub fn short(status: &ProcessStatus) -> &'static str {
    match status {
        ProcessStatus::Succeeded => "succeeded",
        ProcessStatus::RolledBack { .. } => "rolled-back",
        ProcessStatus::RollbackFailed { .. } => "ROLLBACK-FAILED",
        ProcessStatus::NotStarted { .. } => "not-started",
        ProcessStatus::Interrupted => "interrupted",
        ProcessStatus::Pending => "pending",
        ProcessStatus::Running => "running",
    }
}

/// Why a process failed, if it did.
pub fn reason(status: &ProcessStatus) -> Option<&str> {
    match status {
        ProcessStatus::RolledBack { reason }
        | ProcessStatus::RollbackFailed { reason }
        | ProcessStatus::NotStarted { reason } => Some(reason),
        _ => None,
    }
}

fn tag_of(r: Option<&tapitalee::Revision>) -> String {
    r.map(|r| r.image.tag.to_string())
        .unwrap_or_else(|| "-".into())
}

/// One plain line of an event (non-terminal progress).
pub fn event_line(e: &DeployEvent) -> String {
    let who = e.process.as_ref().map(|p| p.as_str()).unwrap_or("-");
    format!("{} {who:<10} {}", time(e.at), e.kind)
}

/// `tapit list deploys` as a table.
pub fn deploy_table(records: &[DeploymentRecord]) -> String {
    let mut s = format!(
        "{:<30}  {:<11}  {:<20}  {:<14}  {:<20}  {:>7}  processes\n",
        "ID", "STATUS", "TAG", "INITIATOR", "STARTED", "TOOK"
    );
    for d in records {
        let processes: Vec<String> = d
            .processes
            .iter()
            .map(|p| format!("{}:{}", p.process, short(&p.status)))
            .collect();
        let _ = writeln!(
            s,
            "{:<30}  {:<11}  {:<20}  {:<14}  {:<20}  {:>7}  {}",
            d.id.to_string(),
            d.status.to_string(),
            d.image.tag.to_string(),
            d.initiator.to_string(),
            time(d.created_at),
            took(d.duration()),
            processes.join(" ")
        );
    }
    s
}

/// `tapit show deploy`: status, timing, per process (before → after, outcome, reason), steps.
pub fn deploy_details(out: &Out, d: &DeploymentRecord, steps: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "deployment {}  {}", d.id, out.status(d.status));
    let _ = writeln!(s, "  app        {}", d.app);
    let _ = writeln!(s, "  image      {}", d.image);
    let _ = writeln!(s, "  initiator  {}", d.initiator);
    if let Some(p) = &d.only_process {
        let _ = writeln!(s, "  process    {p} only");
    }
    let _ = writeln!(s, "  rollback   {}", d.policy);
    let _ = writeln!(s, "  started    {}", time(d.created_at));
    match d.finished_at {
        Some(f) => {
            let _ = writeln!(s, "  finished   {} (took {})", time(f), took(d.duration()));
        }
        None => {
            let so_far = SystemTime::now().duration_since(d.created_at).ok();
            let _ = writeln!(s, "  running    for {}", took(so_far));
        }
    }
    if let Some(r) = &d.resumes {
        let _ = writeln!(s, "  resumes    {r}");
    }
    for p in &d.processes {
        let _ = writeln!(
            s,
            "  process {:<10} {:<12} {} -> {}  ({}, {})",
            p.process.as_str(),
            short(&p.status),
            tag_of(p.from.as_ref()),
            tag_of(p.to.as_ref()),
            p.strategy,
            took(p.duration())
        );
        if let Some(r) = reason(&p.status) {
            let _ = writeln!(s, "      why: {r}");
        }
        if steps {
            for st in &p.steps {
                let _ = writeln!(s, "      {}  {}", time(st.at), st.message);
            }
        }
    }
    if steps && !d.steps.is_empty() {
        let _ = writeln!(s, "  steps");
        for st in &d.steps {
            let _ = writeln!(s, "      {}  {}", time(st.at), st.message);
        }
    }
    s
}

/// What runs where after a partial deployment, and the commands that line processes up again
/// (the product document's "Handling Mixed Version States").
pub fn mixed_state_help(d: &DeploymentRecord, app_flag: &str) -> Option<String> {
    if d.status != DeploymentStatus::Partial {
        return None;
    }
    let new_tag = d.image.tag.to_string();
    let ok: Vec<&ProcessRecord> = d
        .processes
        .iter()
        .filter(|p| p.status == ProcessStatus::Succeeded)
        .collect();
    let failed: Vec<&ProcessRecord> = d
        .processes
        .iter()
        .filter(|p| p.status != ProcessStatus::Succeeded)
        .collect();
    let mut s = String::from("The app now runs mixed versions:\n");
    for p in &ok {
        let _ = writeln!(s, "  {:<10} {new_tag} (new)", p.process.as_str());
    }
    for p in &failed {
        let _ = writeln!(
            s,
            "  {:<10} {} (previous; {})",
            p.process.as_str(),
            tag_of(p.from.as_ref()),
            short(&p.status)
        );
    }
    let _ = writeln!(
        s,
        "To line the processes up again, either fix and redeploy the failed process(es):"
    );
    for p in &failed {
        let _ = writeln!(
            s,
            "  tapit{app_flag} create deploy process={} docker_tag={new_tag}",
            p.process
        );
    }
    // Rolling the others back is one tag only when every failed process runs the same one.
    let previous: Vec<String> = failed.iter().map(|p| tag_of(p.from.as_ref())).collect();
    if let Some(first) = previous.first()
        && previous.iter().all(|t| t == first)
        && first != "-"
    {
        let _ = writeln!(
            s,
            "or roll the others back to the version the failed one(s) run:"
        );
        for p in &ok {
            let _ = writeln!(
                s,
                "  tapit{app_flag} create deploy process={} docker_tag={first}",
                p.process
            );
        }
    }
    Some(s)
}

/// The outcome of a deployment as a Markdown summary (GitHub Actions step summary).
pub fn markdown_summary(d: &DeploymentRecord, app_flag: &str) -> String {
    let mut s = format!(
        "### tapit deployment {} of `{}`: **{}**\n\n| process | outcome | from | to | why |\n|---|---|---|---|---|\n",
        d.id, d.image.tag, d.status
    );
    for p in &d.processes {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            p.process,
            short(&p.status),
            tag_of(p.from.as_ref()),
            tag_of(p.to.as_ref()),
            reason(&p.status).unwrap_or("").replace('|', "\\|")
        );
    }
    if let Some(help) = mixed_state_help(d, app_flag) {
        let _ = write!(s, "\n```\n{help}```\n");
    }
    s
}

/// The live per-process view on a terminal: one line per process, redrawn in place.
#[derive(Debug, Default)]
pub struct LiveView {
    width: usize,
    rows: BTreeMap<String, Row>,
    order: Vec<String>,
    drawn: usize,
    started: Option<SystemTime>,
}

#[derive(Debug, Default, Clone)]
struct Row {
    step: String,
    health: String,
    traffic: String,
    done: Option<String>,
}

impl LiveView {
    /// A view for the terminal on stderr. A wrapped line would break moving back up over the
    /// frame, so lines stay within the terminal's width: `COLUMNS` when the shell exports it,
    /// else the classic 80.
    pub fn for_terminal() -> LiveView {
        let columns = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse::<usize>().ok())
            .unwrap_or(80);
        LiveView::with_width(columns.saturating_sub(1))
    }

    /// A view whose lines are at most `width` characters.
    pub fn with_width(width: usize) -> LiveView {
        LiveView {
            width,
            ..LiveView::default()
        }
    }

    /// Takes an event into the view.
    pub fn update(&mut self, e: &DeployEvent) {
        if let EventKind::Started { processes, .. } = &e.kind {
            self.started = Some(e.at);
            for p in processes {
                if !self.order.contains(&p.to_string()) {
                    self.order.push(p.to_string());
                }
            }
        }
        let Some(p) = &e.process else {
            return;
        };
        let key = p.to_string();
        if !self.order.contains(&key) {
            self.order.push(key.clone());
        }
        let row = self.rows.entry(key).or_default();
        match &e.kind {
            EventKind::Health {
                fleet,
                healthy,
                wanted,
                failures,
            } => {
                row.health = format!("{fleet} {healthy}/{wanted} ok");
                if *failures > 0 {
                    let _ = write!(row.health, ", {failures} failed");
                }
            }
            EventKind::Step { message } => {
                // Only what was routed, not what a step is about to set.
                if let Some(w) = message.find('%').filter(|_| message.contains("traffic")) {
                    let start = message[..w]
                        .rfind(|c: char| !c.is_ascii_digit())
                        .map_or(0, |i| i + 1);
                    row.traffic = format!("traffic {}% new", &message[start..w]);
                }
                row.step = message.clone();
            }
            EventKind::ProcessFinished { status } => row.done = Some(status.to_string()),
            other => row.step = other.to_string(),
        }
    }

    /// Redraws the view on stderr.
    pub fn draw(&mut self, out: &Out) {
        let frame = self.frame(out);
        eprint!("{frame}");
    }

    /// The next frame: back up over the previous one, then one cleared line per process.
    pub fn frame(&mut self, out: &Out) -> String {
        let mut frame = String::new();
        if self.drawn > 0 {
            let _ = write!(frame, "\x1b[{}A", self.drawn);
        }
        let elapsed = self
            .started
            .and_then(|s| SystemTime::now().duration_since(s).ok());
        for name in &self.order {
            let row = self.rows.get(name).cloned().unwrap_or_default();
            let line = match &row.done {
                Some(done) => format!("{name:<10} {done}"),
                None => format!(
                    "{name:<10} {:>6}  {:<18} {:<14} {}",
                    took(elapsed),
                    row.health,
                    row.traffic,
                    row.step
                ),
            };
            let width = self.width.max(20);
            let line: String = line.chars().take(width).collect();
            let line = match &row.done {
                Some(d) if d.starts_with("succeeded") => out.paint("32", &line),
                Some(_) => out.paint("31", &line),
                None => line,
            };
            let _ = writeln!(frame, "\x1b[2K{line}");
        }
        self.drawn = self.order.len();
        frame
    }
}

/// The GitHub Actions outputs of a finished deployment: `::error::` per failed process on
/// stdout, the Markdown summary appended to `$GITHUB_STEP_SUMMARY`.
pub fn github_actions(d: &DeploymentRecord, app_flag: &str) {
    if std::env::var("GITHUB_ACTIONS").as_deref() != Ok("true") {
        return;
    }
    for p in &d.processes {
        if let Some(r) = reason(&p.status)
            && p.status != ProcessStatus::Succeeded
        {
            let msg = format!("process {} {}: {r}", p.process, short(&p.status))
                .replace('%', "%25")
                .replace('\r', "%0D")
                .replace('\n', "%0A");
            println!("::error title=tapit deployment {}::{msg}", d.id);
        }
    }
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        use std::io::Write;
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(markdown_summary(d, app_flag).as_bytes()));
        if let Err(e) = written {
            eprintln!("warning: cannot append to $GITHUB_STEP_SUMMARY: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapitalee::{DeploymentId, ProcessName};

    fn event(process: Option<&str>, kind: EventKind) -> DeployEvent {
        DeployEvent {
            deployment: DeploymentId::new(),
            process: process.map(|p| ProcessName::new(p).unwrap()),
            at: SystemTime::now(),
            kind,
        }
    }

    #[test]
    fn the_live_view_has_one_line_per_process_redrawn_in_place() {
        let out = Out {
            format: Output::Human,
            live: true,
            colour: false,
            colour_stdout: false,
        };
        let mut view = LiveView::with_width(200);
        view.update(&event(
            None,
            EventKind::Started {
                image: "registry.local/shop:v1".parse().unwrap(),
                processes: vec![
                    ProcessName::new("default").unwrap(),
                    ProcessName::new("worker").unwrap(),
                ],
            },
        ));
        view.update(&event(
            Some("default"),
            EventKind::Health {
                fleet: "new".into(),
                healthy: 1,
                wanted: 4,
                failures: 0,
            },
        ));
        view.update(&event(
            Some("default"),
            EventKind::Step {
                message: "routed 25% of traffic to the new fleet".into(),
            },
        ));
        let first = view.frame(&out);
        assert!(!first.contains("\x1b[2A"), "nothing to back over yet");
        let lines: Vec<&str> = first.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("new 1/4 ok"), "{first}");
        assert!(lines[0].contains("traffic 25% new"), "{first}");
        assert!(lines[0].contains("routed 25% of traffic"), "{first}");
        assert!(lines[1].contains("worker"), "{first}");
        view.update(&event(
            Some("worker"),
            EventKind::ProcessFinished {
                status: ProcessStatus::Succeeded,
            },
        ));
        let second = view.frame(&out);
        assert!(
            second.starts_with("\x1b[2A"),
            "moves up over the last frame"
        );
        assert!(second.contains("worker     succeeded"), "{second}");
    }

    #[test]
    fn event_lines_are_plain_and_timestamped() {
        let line = event_line(&event(
            Some("worker"),
            EventKind::RollingBack {
                reason: "crash loop".into(),
            },
        ));
        assert!(line.starts_with("20"), "{line}");
        assert!(
            line.ends_with("worker     rolling back: crash loop"),
            "{line}"
        );
        assert!(!line.contains('\x1b'));
    }
}
