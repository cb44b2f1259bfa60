//! [`Proc`]: a child process killed by PID when dropped, with its output in files.

use std::cell::Cell;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long [`Proc`]'s drop waits after SIGTERM before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(3);

/// A spawned process. On drop: SIGTERM, then SIGKILL after [`TERM_GRACE`], then reaped.
/// Its stdout and stderr go to `<dir>/<label>.stdout` / `.stderr`.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    label: String,
    stdout: PathBuf,
    stderr: PathBuf,
    /// Byte offset in stdout after the last line matched by [`Proc::wait_for_line`].
    cursor: Cell<usize>,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout/stderr redirected to files in `dir`.
    pub fn spawn(mut cmd: Command, dir: &Path, label: &str) -> Result<Proc> {
        let stdout = dir.join(format!("{label}.stdout"));
        let stderr = dir.join(format!("{label}.stderr"));
        cmd.stdin(Stdio::null())
            .stdout(File::create(&stdout).with_context(|| stdout.display().to_string())?)
            .stderr(File::create(&stderr).with_context(|| stderr.display().to_string())?);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {label}: {cmd:?}"))?;
        Ok(Proc {
            child,
            label: label.to_string(),
            stdout,
            stderr,
            cursor: Cell::new(0),
            status: None,
        })
    }

    /// The process ID (for `ip netns exec`, the PID of the program itself: it execs).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The label given at spawn (file names of the output).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Path of the captured stdout.
    pub fn stdout_path(&self) -> &Path {
        &self.stdout
    }

    /// Path of the captured stderr.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The last `n` lines of stderr (for error messages).
    pub fn stderr_tail(&self, n: usize) -> String {
        tail(&self.stderr(), n)
    }

    /// Whether the process is still running (reaps it if it exited).
    pub fn is_alive(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// The exit status if it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits until a complete stdout line containing `pattern` appears after the last
    /// line this method matched (so calling it twice with `"established"` waits for the
    /// second establishment). Returns the line. Fails on timeout or if the process exits
    /// without printing it.
    pub fn wait_for_line(&mut self, pattern: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.stdout();
            let start = self.cursor.get().min(out.len());
            let mut off = start;
            for line in out[start..].split_inclusive('\n') {
                off += line.len();
                if line.ends_with('\n') && line.contains(pattern) {
                    self.cursor.set(off);
                    return Ok(line.trim_end().to_string());
                }
            }
            if let Some(st) = self.try_status() {
                // One last read: the line may have been written just before exit.
                let out = self.stdout();
                if let Some(l) = out[start.min(out.len())..]
                    .lines()
                    .find(|l| l.contains(pattern))
                {
                    self.cursor.set(out.len());
                    return Ok(l.to_string());
                }
                bail!(
                    "{} exited ({st}) before printing {pattern:?} (output: {}; set FERROLB_KEEP_TEST_DIRS=1 to keep it); stderr tail:\n{}",
                    self.label,
                    self.stdout.display(),
                    self.stderr_tail(30)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{}: no stdout line with {pattern:?} within {timeout:?} (output: {}; set FERROLB_KEEP_TEST_DIRS=1 to keep it); stdout tail:\n{}\nstderr tail:\n{}",
                    self.label,
                    self.stdout.display(),
                    tail(&out, 10),
                    self.stderr_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peak resident set size in kB (`VmHWM` of `/proc/PID/status`), while it runs.
    pub fn rss_peak_kb(&self) -> Option<u64> {
        read_status_kb(self.pid(), "VmHWM:")
    }

    /// Current resident set size in kB (`VmRSS`).
    pub fn rss_kb(&self) -> Option<u64> {
        read_status_kb(self.pid(), "VmRSS:")
    }

    /// Sends a signal by name (`"TERM"`, `"KILL"`, `"STOP"`, `"CONT"`, …) to this PID.
    pub fn signal(&mut self, sig: &str) -> Result<()> {
        if self.try_status().is_some() {
            return Ok(());
        }
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .context("run kill")?;
        if !st.success() && self.try_status().is_none() {
            bail!("kill -{sig} {} failed", self.pid());
        }
        Ok(())
    }

    /// Waits for exit up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.try_status() {
            return Some(s);
        }
        let _ = self.signal("TERM");
        if let Some(s) = self.wait_exit(grace) {
            return Some(s);
        }
        self.kill()
    }

    /// SIGKILL now and reap.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if let Some(s) = self.try_status() {
            return Some(s);
        }
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
        self.status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.terminate(TERM_GRACE);
    }
}

fn read_status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
