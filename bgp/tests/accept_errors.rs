//! A listening session whose accept fails (out of file descriptors) pauses
//! with a growing delay instead of spinning, and accepts again once it can.
//! Its own test binary: it lowers the process's descriptor limit.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use ferrolb_bgp::driver::{PeerConfig, spawn};
use ferrolb_bgp::wire::{Message, Negotiated, frame_len};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_errors_pause_instead_of_spinning() {
    let mut cfg = PeerConfig::new(
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 179),
        64512,
        64522,
        Ipv4Addr::new(198, 18, 0, 1),
    );
    cfg.passive = true;
    cfg.listen = true;
    cfg.listen_port = 0;
    let h = spawn(cfg);
    let mut rx = h.status();
    let addr = rx
        .wait_for(|s| s.listen_addr.is_some())
        .await
        .unwrap()
        .listen_addr
        .unwrap();
    // The client's socket exists before the descriptors run out; connecting
    // needs no new one, accepting does.
    let client = tokio::net::TcpSocket::new_v4().unwrap();

    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    setrlimit(Resource::RLIMIT_NOFILE, open + 16, hard).unwrap();
    let mut hog = Vec::new();
    while let Ok(f) = File::open("/dev/null") {
        hog.push(f);
    }
    let mut stream = client.connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let errors = rx.borrow().accept_errors;
    drop(hog);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();

    // 100, 200, 400, 800 ms pauses: a handful of failures in 2 s, not a spin.
    assert!((2..=8).contains(&errors), "{errors} accept errors in 2 s");

    // With descriptors back, the pending connection is accepted: our OPEN arrives.
    let mut buf = bytes::BytesMut::new();
    let open = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(Some(n)) = frame_len(&buf, 4096)
                && buf.len() >= n
            {
                return Message::decode(&buf.split_to(n), &Negotiated::default()).unwrap();
            }
            assert!(stream.read_buf(&mut buf).await.unwrap() > 0, "closed");
        }
    })
    .await
    .expect("never accepted");
    assert!(matches!(open, Message::Open(_)), "{open:?}");
    h.shutdown(None).await;
}
