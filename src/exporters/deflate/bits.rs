//! The LSB-first bit writer of the DEFLATE encoder.

/// LSB-first bit writer into the output vector. Room is made per block (its size is
/// known before it is written), so a flush is one unconditional 8-byte store.
pub(super) struct Bits<'o> {
    out: &'o mut Vec<u8>,
    /// Bytes of `out` written; `out` beyond it is scratch room.
    pos: usize,
    acc: u64,
    /// Bits in `acc`; at most 7 after a flush, at most 63 ever.
    n: u32,
}

impl<'o> Bits<'o> {
    pub(super) fn new(out: &'o mut Vec<u8>) -> Self {
        let pos = out.len();
        Bits {
            out,
            pos,
            acc: 0,
            n: 0,
        }
    }

    /// Runs `f` on a copy of this writer, then takes its state back. In a hot loop the
    /// copy's state stays in registers: through `&mut self`, the compiler stores and
    /// reloads it around every flush, whose store into the output might alias it.
    #[inline(always)]
    pub(super) fn hot<R>(&mut self, f: impl FnOnce(&mut Bits<'_>) -> R) -> R {
        let mut b = Bits {
            out: &mut *self.out,
            pos: self.pos,
            acc: self.acc,
            n: self.n,
        };
        let r = f(&mut b);
        let Bits { pos, acc, n, .. } = b;
        (self.pos, self.acc, self.n) = (pos, acc, n);
        r
    }

    /// Makes room for `bits` more bits (plus the 8-byte store's slack).
    pub(super) fn room(&mut self, bits: u64) {
        let need = self.pos + (bits / 8) as usize + 16;
        if self.out.len() < need {
            self.out.resize(need, 0);
        }
    }

    /// Adds the low `len` bits of `v`; the caller flushes before 63 bits are held.
    #[inline(always)]
    pub(super) fn add(&mut self, v: u64, len: u32) {
        self.acc |= v << self.n;
        self.n += len;
    }

    /// Writes the whole bytes held.
    #[inline(always)]
    pub(super) fn flush(&mut self) {
        let at = self.pos;
        if self.out.len() < at + 8 {
            // Not reached when `room` was asked for enough; growing keeps the output
            // right if it ever was not.
            self.out.resize(at + 8, 0);
        }
        self.out[at..at + 8].copy_from_slice(&self.acc.to_le_bytes());
        let bytes = self.n >> 3;
        self.pos += bytes as usize;
        self.acc >>= bytes * 8;
        self.n &= 7;
    }

    #[inline(always)]
    pub(super) fn put(&mut self, v: u64, len: u32) {
        self.add(v, len);
        self.flush();
    }

    /// Pads to a byte boundary.
    pub(super) fn align(&mut self) {
        self.n = self.n.div_ceil(8) * 8;
        self.flush();
        self.acc = 0;
    }

    fn bytes(&mut self, b: &[u8]) {
        self.room(8 * b.len() as u64);
        self.out[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }

    pub(super) fn stored(&mut self, raw: &[u8], last: bool) {
        self.room(64);
        if raw.is_empty() {
            self.put(u64::from(last), 3);
            self.align();
            self.bytes(&[0, 0, 0xff, 0xff]);
            return;
        }
        let mut chunks = raw.chunks(65535).peekable();
        while let Some(c) = chunks.next() {
            let fin = last && chunks.peek().is_none();
            self.room(64);
            self.put(u64::from(fin), 3);
            self.align();
            let len = c.len() as u16;
            self.bytes(&len.to_le_bytes());
            self.bytes(&(!len).to_le_bytes());
            self.bytes(c);
        }
    }

    pub(super) fn finish(mut self) {
        self.room(64);
        self.align();
        self.out.truncate(self.pos);
    }
}
