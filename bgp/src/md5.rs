//! Socket options tokio does not expose: the TCP MD5 signature key
//! (RFC 2385, Linux `TCP_MD5SIG`) and the outgoing TTL / hop limit of either
//! address family. The only unsafe code in the crate: two `setsockopt` calls
//! on a file descriptor the caller owns.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

/// Longest key Linux accepts (`TCP_MD5SIG_MAXKEYLEN`).
pub(crate) const MAX_KEY_LEN: usize = 80;

/// `struct tcp_md5sig` from `<linux/tcp.h>`.
#[repr(C)]
struct TcpMd5Sig {
    tcpm_addr: libc::sockaddr_storage,
    tcpm_flags: u8,
    tcpm_prefixlen: u8,
    tcpm_keylen: u16,
    tcpm_ifindex: libc::c_int,
    tcpm_key: [u8; MAX_KEY_LEN],
}

/// Sign every segment exchanged with `peer` on this socket with `key`
/// (an empty key removes it). Set it on a connecting socket before
/// `connect`, and on a listening socket (one call per peer) before accepting.
pub(crate) fn set_md5_key(sock: &impl AsRawFd, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TCP MD5 key longer than {MAX_KEY_LEN} bytes"),
        ));
    }
    // SAFETY: TcpMd5Sig is plain old data (integers and byte arrays, no
    // pointers, no invariants); the all-zero bit pattern is a valid value.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    let storage: *mut libc::sockaddr_storage = &mut sig.tcpm_addr;
    match peer {
        IpAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is at least as large as and at least as
            // aligned as sockaddr_in (that is its purpose); `storage` points to
            // a live, exclusively borrowed field of `sig`.
            unsafe { storage.cast::<libc::sockaddr_in>().write(sin) };
        }
        IpAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { storage.cast::<libc::sockaddr_in6>().write(sin6) };
        }
    }
    sig.tcpm_keylen = key.len() as u16;
    sig.tcpm_key[..key.len()].copy_from_slice(key);
    // SAFETY: the fd is open for the lifetime of `sock`; the option value
    // pointer and length describe `sig`, which outlives the call; the kernel
    // only reads it.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (&sig as *const TcpMd5Sig).cast::<libc::c_void>(),
            size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Set the TTL (IPv4, `IP_TTL`) or unicast hop limit (IPv6,
/// `IPV6_UNICAST_HOPS`) of packets this socket sends.
pub(crate) fn set_ttl(sock: &impl AsRawFd, ipv6: bool, ttl: u8) -> io::Result<()> {
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS)
    } else {
        (libc::IPPROTO_IP, libc::IP_TTL)
    };
    let value: libc::c_int = ttl.into();
    // SAFETY: the fd is open for the lifetime of `sock`; the pointer and
    // length describe `value`, a c_int that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast::<libc::c_void>(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
