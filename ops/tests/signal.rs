//! `shutdown()` resolves on SIGTERM and on SIGINT. Its own test binary: the
//! signals are sent to this process only.

use std::time::Duration;

use tokio::time::timeout;

fn send(signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([signal, &std::process::id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {signal}");
}

#[tokio::test]
async fn sigterm_then_sigint() {
    for signal in ["-TERM", "-INT"] {
        let mut shutdown = Box::pin(ferrolb_ops::signal::shutdown());
        // Polled once: handlers installed, nothing received yet.
        assert!(
            timeout(Duration::from_millis(100), &mut shutdown)
                .await
                .is_err(),
            "resolved before {signal}"
        );
        send(signal);
        timeout(Duration::from_secs(5), shutdown)
            .await
            .unwrap_or_else(|_| panic!("not resolved by {signal}"));
    }
}
