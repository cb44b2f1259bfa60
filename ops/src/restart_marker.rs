//! The restart marker: how a new speaker process knows it is a restart of one
//! that had BGP sessions on this node, and so sets the graceful restart R bit
//! (RFC 4724 §3) in its OPENs.
//!
//! The marker is a small file in a state directory that outlives the process
//! but not the node. The speaker's DaemonSet mounts an in-memory emptyDir at
//! `/run/ferrolb`: it survives container restarts (crash, OOM kill, failed
//! liveness probe), not a new Pod nor a reboot (after a reboot the forwarding
//! state is gone too and the start is not a restart). A hostPath on tmpfs
//! would also survive a rollout's new Pod, but kubelet creates it owned by
//! root and the speaker does not run as root. A process
//! [`claim`](RestartMarker::claim)s it at start (present before = a restart)
//! and [`remove`](RestartMarker::remove)s it when it ends by withdrawing its
//! routes (node drain, Hard Reset); it stays after a crash, a SIGKILL or a
//! stop that keeps the routes at the peers, which are exactly the cases where
//! the next start is a graceful restart.
//!
//! Why not "always set R": RFC 4724 gives the bit a meaning (the peer must not
//! wait for our End-of-RIB before sending its own routes, and it tells an
//! operator reading the peer's state that we restarted); a first start after
//! a reboot is not a restart, and the marker costs one small file. Whether R
//! is set or not, a helper keeps our routes as stale after the session drops
//! (that depends on the previous session's capability only), so a restart
//! the marker misses still keeps the traffic flowing.

use std::io;
use std::path::{Path, PathBuf};

/// A claimed restart marker (see the module docs).
#[derive(Debug)]
pub struct RestartMarker {
    path: PathBuf,
}

impl RestartMarker {
    /// Claim the marker `name` in `dir` (created when missing): returns it
    /// and whether it existed already, i.e. whether this process is a
    /// restart. The file holds this process's id, for people.
    pub fn claim(dir: &Path, name: &str) -> io::Result<(RestartMarker, bool)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(name);
        let existed = path.try_exists()?;
        std::fs::write(&path, format!("{}\n", std::process::id()))?;
        Ok((RestartMarker { path }, existed))
    }

    /// Where the marker is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remove the marker: the process ends without leaving routes behind, so
    /// the next start is not a restart.
    pub fn remove(self) -> io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_claim_is_no_restart_then_kept_or_removed() {
        let dir = std::env::temp_dir().join(format!("ferrolb-marker-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let sub = dir.join("state");
        let (m, restart) = RestartMarker::claim(&sub, "speaker").unwrap();
        assert!(!restart, "nothing there before");
        assert!(m.path().exists());
        // The process dies (the marker stays): the next one is a restart.
        drop(m);
        let (m, restart) = RestartMarker::claim(&sub, "speaker").unwrap();
        assert!(restart);
        // Another name is another process kind.
        let (_, other) = RestartMarker::claim(&sub, "announce-198.18.0.1-179").unwrap();
        assert!(!other);
        // Ended by withdrawing: the next start is not a restart.
        m.remove().unwrap();
        let (m, restart) = RestartMarker::claim(&sub, "speaker").unwrap();
        assert!(!restart);
        m.remove().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
