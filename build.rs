//! Records the git commit the binary is built from, for `ferrolb --version`.
//! Outside a git checkout (a source tarball, a Docker build without `.git`)
//! `FERROLB_GIT_COMMIT` from the environment is used, else "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=FERROLB_GIT_COMMIT");
    let git = |arg: &str| {
        Command::new("git")
            .args(["rev-parse", arg])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let git_dir = git("--git-dir");
    if let Some(dir) = &git_dir {
        // A new commit or checkout changes HEAD or the ref it points at. In a
        // worktree the refs live in the common dir. Only existing paths are
        // named: cargo reruns a script whose watched path is missing every time.
        let common = git("--git-common-dir").unwrap_or_else(|| dir.clone());
        for path in [
            format!("{dir}/HEAD"),
            format!("{common}/refs/heads"),
            format!("{common}/packed-refs"),
        ] {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    let from_git = git_dir.and_then(|_| {
        let out = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    let commit = from_git
        .or_else(|| std::env::var("FERROLB_GIT_COMMIT").ok())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=FERROLB_GIT_COMMIT={commit}");
}
