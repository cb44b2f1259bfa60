//! Bounds-checked reading and length-counting writing.
//!
//! Decoding goes through [`Reader`], which never indexes past its slice: every
//! read returns `None` when too few bytes remain. Encoding goes through [`Sink`],
//! implemented by `BytesMut` (real output) and [`Counter`] (exact length only),
//! so `encoded_len` and `encode` share one code path and cannot disagree.

use bytes::{BufMut, BytesMut};

/// A cursor over a byte slice that never panics.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes not read yet, without consuming them.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        let (&b, tail) = self.buf.split_first()?;
        self.buf = tail;
        Some(b)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let b = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Some(out)
    }
}

/// Where encoders write: a real buffer or a byte counter.
pub(crate) trait Sink {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_slice(&mut self, s: &[u8]);
    /// Bytes written so far (for a `BytesMut`, its total length).
    fn position(&self) -> usize;
    /// Overwrite a 2-byte big-endian value written earlier at `at`.
    fn patch_u16(&mut self, at: usize, v: u16);
    /// Overwrite one byte written earlier at `at`.
    fn patch_u8(&mut self, at: usize, v: u8);
}

impl Sink for BytesMut {
    #[inline]
    fn put_u8(&mut self, v: u8) {
        BufMut::put_u8(self, v);
    }
    #[inline]
    fn put_u16(&mut self, v: u16) {
        BufMut::put_u16(self, v);
    }
    #[inline]
    fn put_u32(&mut self, v: u32) {
        BufMut::put_u32(self, v);
    }
    #[inline]
    fn put_slice(&mut self, s: &[u8]) {
        self.extend_from_slice(s);
    }
    #[inline]
    fn position(&self) -> usize {
        self.len()
    }
    fn patch_u16(&mut self, at: usize, v: u16) {
        if let Some(dst) = self.get_mut(at..at + 2) {
            dst.copy_from_slice(&v.to_be_bytes());
        }
    }
    fn patch_u8(&mut self, at: usize, v: u8) {
        if let Some(dst) = self.get_mut(at) {
            *dst = v;
        }
    }
}

/// A [`Sink`] that only counts bytes.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    #[inline]
    fn put_u8(&mut self, _: u8) {
        self.0 += 1;
    }
    #[inline]
    fn put_u16(&mut self, _: u16) {
        self.0 += 2;
    }
    #[inline]
    fn put_u32(&mut self, _: u32) {
        self.0 += 4;
    }
    #[inline]
    fn put_slice(&mut self, s: &[u8]) {
        self.0 += s.len();
    }
    #[inline]
    fn position(&self) -> usize {
        self.0
    }
    fn patch_u16(&mut self, _: usize, _: u16) {}
    fn patch_u8(&mut self, _: usize, _: u8) {}
}
