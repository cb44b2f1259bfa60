//! Records the git commit the binary is built from, for `ferrolb --version`.
//! Outside a git checkout (a source tarball, a Docker build without `.git`)
//! `FERROLB_GIT_COMMIT` from the environment is used, else "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=FERROLB_GIT_COMMIT");
    let git_dir = Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(dir) = &git_dir {
        // A new commit or checkout changes HEAD or the ref it points at.
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/refs/heads");
        println!("cargo:rerun-if-changed={dir}/packed-refs");
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
