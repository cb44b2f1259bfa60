//! Logging set-up: which filter is in force, and that `init` is idempotent.

use ferrolb_ops::logging::{directive, init};

#[test]
fn level_then_rust_log_then_info() {
    assert_eq!(directive(Some("debug"), Some("warn")), "debug");
    assert_eq!(directive(None, Some("warn,kube=debug")), "warn,kube=debug");
    assert_eq!(directive(None, None), "info");
    assert_eq!(directive(Some(""), Some("warn")), "warn");
    assert_eq!(directive(Some("  "), None), "info");
    // MetalLB's --log-level names.
    assert_eq!(directive(Some("all"), None), "trace");
    assert_eq!(directive(None, Some("none")), "off");
}

#[test]
fn init_twice_is_harmless() {
    init(Some("debug"));
    init(Some("not a [valid filter"));
    init(None);
    assert!(tracing::enabled!(tracing::Level::DEBUG));
    assert!(!tracing::enabled!(tracing::Level::TRACE));
}
