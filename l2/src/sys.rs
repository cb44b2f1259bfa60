//! The system calls nix does not wrap for packet sockets: opening one, binding it to an
//! interface (`sockaddr_ll`), attaching a classic BPF filter (`SO_ATTACH_FILTER`) and
//! joining link-layer multicast groups (`PACKET_ADD_MEMBERSHIP`). The only unsafe code
//! in the crate: each call passes pointers to values that live across the call.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::eth::Mac;

/// One classic BPF instruction (`struct sock_filter`).
pub(crate) type Insn = libc::sock_filter;

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A non-blocking, close-on-exec `AF_PACKET`/`SOCK_RAW` socket with protocol 0, which
/// receives nothing until [`bind`] names a protocol (so a filter can be attached first).
pub(crate) fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2), is open, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Binds the socket to interface `ifindex` and EtherType `ethertype`: from then on it
/// receives that protocol's frames on that interface, and `send` without an address
/// transmits there.
pub(crate) fn bind(fd: &OwnedFd, ifindex: u32, ethertype: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as libc::c_ushort;
    sll.sll_protocol = ethertype.to_be();
    sll.sll_ifindex = ifindex as libc::c_int;
    // SAFETY: the fd is open for the lifetime of `fd`; the pointer and length describe
    // `sll`, which outlives the call; the kernel only reads it.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })
}

/// Attaches a classic BPF program: the kernel drops frames it returns 0 for before
/// they are queued to the socket.
pub(crate) fn attach_filter(fd: &OwnedFd, prog: &[Insn]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as libc::c_ushort,
        // The kernel copies the program and never writes through this pointer.
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: the fd is open; the option value is `fprog`, which outlives the call and
    // points at `prog.len()` instructions borrowed for the duration of the call; the
    // kernel copies them in and keeps no pointer.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast::<libc::c_void>(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })
}

/// Joins (`add`) or leaves the link-layer multicast group `mac` on `ifindex` for this
/// socket, so the interface's hardware filter lets those frames in. The kernel counts
/// memberships per socket and drops them when the socket closes.
pub(crate) fn membership(fd: &OwnedFd, ifindex: u32, mac: Mac, add: bool) -> io::Result<()> {
    let mut addr = [0u8; 8];
    addr[..6].copy_from_slice(&mac.0);
    let mreq = libc::packet_mreq {
        mr_ifindex: ifindex as libc::c_int,
        mr_type: libc::PACKET_MR_MULTICAST as libc::c_ushort,
        mr_alen: 6,
        mr_address: addr,
    };
    let opt = if add {
        libc::PACKET_ADD_MEMBERSHIP
    } else {
        libc::PACKET_DROP_MEMBERSHIP
    };
    // SAFETY: the fd is open; the pointer and length describe `mreq`, which outlives
    // the call; the kernel only reads it.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            opt,
            (&mreq as *const libc::packet_mreq).cast::<libc::c_void>(),
            size_of::<libc::packet_mreq>() as libc::socklen_t,
        )
    })
}

/// Registers the socket with the current tokio reactor.
pub(crate) fn register(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is an open descriptor that it alone closes, when dropped; the
    // AsyncFd owns it from here on, so it stays open and `as_raw_fd` returns the same
    // number for the AsyncFd's whole lifetime.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(|e| e.into())
}
