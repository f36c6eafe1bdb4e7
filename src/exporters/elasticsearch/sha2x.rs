//! Content ids several documents at a time: SHA-256 of two messages interleaved on x86's
//! SHA extensions, or of sixteen side by side in AVX-512's lanes.
//!
//! Why: with content-hash `_id`s (the default), SHA-256 was 19% of the Elasticsearch
//! exporter's CPU uncompressed and 12% with gzip (perf, README Performance). One SHA-256
//! stream on the SHA-NI units is bound by the latency of `sha256rnds2`, not by its
//! throughput: two independent streams issued together finish in ~0.65× the time of two
//! in a row (400–430 vs 600–670 ns per 14-block message in a scratch build on the
//! reference machine). So the NDJSON writer hashes documents in pairs. Measured in weft
//! (perf, uncompressed bench run): SHA's share of the path 16.9% → 12.5%, and four
//! alternated pairs 3.70 → 3.38 CPU s per million records. The 16 rounds are written
//! out: as a loop over an array of message words, the compiler kept the words on the
//! stack, in the dependency chain, and the gain was a third of that.
//!
//! Where the CPU has AVX-512 (F and BW), sixteen documents are hashed at once instead,
//! one per 32-bit lane of the 512-bit registers ([`content_ids`]). On the Intel Xeon of
//! the eleventh session (Emerald Rapids class) SHA-NI is bound by `sha256rnds2`'s
//! throughput: one stream takes ~100 cycles per block, two or three interleaved ~80 each,
//! four no better. The sixteen lanes of AVX-512's rotates and three-input logic do a block
//! in ~45: 280 vs 490 ns per 14-block message in a scratch build (312 before the 64
//! rounds were written out). End to end, Elasticsearch with gzip: SHA's share 15% → 10.7%
//! (perf), three alternated pairs 3.36–3.41 → 3.17–3.21 CPU s per million records. CPUs
//! without AVX-512, or where the lanes do not pay (`x86::wide_pays`: older Intel designs
//! that lower their clock for 512-bit work, or a first-use timing that finds SHA-NI pairs
//! faster), keep the pairs.
//!
//! [`content_ids2`] and [`content_ids`] give exactly what calls of
//! [`super::bulk::content_id`] give (the tests compare them on every length around the
//! block boundaries). Without the extensions (checked at run time) or off x86_64 they are
//! those calls.

// Off x86_64 only the fallback is compiled; the message and state helpers are the x86
// path's and the tests'.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use super::bulk::content_id;

/// The content ids of two documents: `(index, source)` each, as
/// [`super::bulk::content_id`] computes them.
pub fn content_ids2(a: (&str, &[u8]), b: (&str, &[u8])) -> ([u8; 16], [u8; 16]) {
    #[cfg(target_arch = "x86_64")]
    {
        if x86::has_sha() {
            return x86::ids2(a, b);
        }
    }
    (content_id(a.0, a.1), content_id(b.0, b.1))
}

/// The most documents [`content_ids`] takes at once.
pub const MAX_LANES: usize = 16;

/// How many documents to gather before calling [`content_ids`]: 16 where AVX-512 hashes
/// them side by side faster than SHA-NI pairs, 2 where SHA-NI interleaves two, else 1.
/// Chosen once per process, see `x86::wide_pays`.
pub fn lanes() -> usize {
    static LANES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LANES.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if x86::has_avx512() && x86::wide_pays() {
                return MAX_LANES;
            }
            if x86::has_sha() {
                return 2;
            }
        }
        1
    })
}

/// The content ids of up to [`MAX_LANES`] documents, `(index, source)` each, into
/// `out[..docs.len()]`: the same as [`super::bulk::content_id`] of each.
pub fn content_ids(docs: &[(&str, &[u8])], out: &mut [[u8; 16]]) {
    #[cfg(target_arch = "x86_64")]
    {
        // Fewer than four would leave most lanes empty: pairs are then cheaper.
        if docs.len() >= 4 && docs.len() <= MAX_LANES && x86::has_avx512() {
            x86::ids16(docs, out);
            return;
        }
    }
    let mut pairs = docs.chunks_exact(2);
    let mut at = 0;
    for p in &mut pairs {
        (out[at], out[at + 1]) = content_ids2(p[0], p[1]);
        at += 2;
    }
    if let [(index, source)] = pairs.remainder() {
        out[at] = content_id(index, source);
    }
}

/// `index`, `\n`, `source` as one SHA-256 message, read block by block with its padding.
struct Msg<'a> {
    parts: [&'a [u8]; 3],
    len: usize,
    blocks: usize,
}

impl<'a> Msg<'a> {
    fn new(index: &'a str, source: &'a [u8]) -> Self {
        let parts = [index.as_bytes(), b"\n".as_slice(), source];
        let len = parts.iter().map(|p| p.len()).sum::<usize>();
        Msg {
            parts,
            len,
            // The 0x80 byte and the 8-byte length follow the message.
            blocks: (len + 9).div_ceil(64),
        }
    }

    /// Block `k` of the padded message: most blocks are 64 bytes of the source, read in
    /// place; the first and last are assembled in `tmp`.
    #[inline(always)]
    fn block<'t>(&'t self, k: usize, tmp: &'t mut [u8; 64]) -> &'t [u8; 64] {
        let start = 64 * k;
        let body_at = self.parts[0].len() + self.parts[1].len();
        if start >= body_at && start + 64 <= self.len {
            let at = start - body_at;
            if let Some(b) = self.parts[2]
                .get(at..at + 64)
                .and_then(|b| b.try_into().ok())
            {
                return b;
            }
        }
        self.assemble(k, tmp);
        tmp
    }

    fn assemble(&self, k: usize, out: &mut [u8; 64]) {
        let start = 64 * k;
        out.fill(0);
        let mut at = 0;
        for p in self.parts {
            let (from, to) = (start.max(at), (start + 64).min(at + p.len()));
            if from < to {
                out[from - start..to - start].copy_from_slice(&p[from - at..to - at]);
            }
            at += p.len();
        }
        if (start..start + 64).contains(&self.len) {
            out[self.len - start] = 0x80;
        }
        if k + 1 == self.blocks {
            out[56..].copy_from_slice(&(self.len as u64 * 8).to_be_bytes());
        }
    }
}

/// SHA-256's initial state.
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The first 128 bits of a final state, as the digest's first 16 bytes.
fn id_of(state: &[u32; 8]) -> [u8; 16] {
    let mut id = [0u8; 16];
    for (dst, w) in id.chunks_exact_mut(4).zip(state) {
        dst.copy_from_slice(&w.to_be_bytes());
    }
    id
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{H0, Msg, id_of};
    use std::arch::x86_64::*;

    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// The SHA extensions (and the SSE levels their helpers use).
    pub(super) fn has_sha() -> bool {
        is_x86_feature_detected!("sha")
            && is_x86_feature_detected!("sse4.1")
            && is_x86_feature_detected!("ssse3")
    }

    /// AVX-512 F (rotates, three-input logic, gathers) and BW (the byte swap).
    pub(super) fn has_avx512() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
    }

    /// Whether the sixteen lanes are worth it on this CPU. Two reasons they may not be:
    /// - Intel's Skylake-SP and Cascade Lake lower the core's clock while 512-bit
    ///   instructions run, even these light ones, which would slow the rest of weft more
    ///   than the ids gain. VBMI2 came with Ice Lake, whose clock they do not lower, so
    ///   it stands for "a later design".
    /// - AMD's Zen 4 runs 512-bit operations as two halves, while its SHA-NI is fast.
    ///
    /// So the lanes are used only where VBMI2 is present and a quick timing at first use
    /// (16 messages of 14 blocks each way, best of three: ~50 µs once) finds them faster
    /// than SHA-NI pairs. Only the first is checked on this session's machine; neither
    /// older Intel nor AMD with AVX-512 was available to measure.
    pub(super) fn wide_pays() -> bool {
        if !is_x86_feature_detected!("avx512vbmi2") {
            return false;
        }
        if !has_sha() {
            return true;
        }
        let source: Vec<u8> = (0..880u32 * 16).map(|i| (i * 7 + 3) as u8).collect();
        let docs: Vec<(&str, &[u8])> = source.chunks(880).map(|c| ("i", c)).collect();
        let mut out = [[0u8; 16]; 16];
        let time = |f: &mut dyn FnMut()| {
            (0..3)
                .map(|_| {
                    let t = std::time::Instant::now();
                    f();
                    t.elapsed()
                })
                .min()
                .unwrap_or_default()
        };
        let wide = time(&mut || ids16(&docs, &mut out));
        let pairs = time(&mut || {
            for (p, o) in docs.chunks_exact(2).zip(out.chunks_exact_mut(2)) {
                (o[0], o[1]) = ids2(p[0], p[1]);
            }
        });
        wide < pairs
    }

    /// Up to 16 documents' ids, one per lane (`docs.len()` at most 16).
    pub(super) fn ids16(docs: &[(&str, &[u8])], out: &mut [[u8; 16]]) {
        let msgs: [Option<Msg<'_>>; 16] =
            std::array::from_fn(|i| docs.get(i).map(|(index, source)| Msg::new(index, source)));
        // SAFETY: called only after `has_avx512` found AVX-512 F and BW, which `digest16`
        // is compiled for.
        let states = unsafe { digest16(&msgs) };
        for (o, s) in out.iter_mut().zip(&states).take(docs.len()) {
            *o = id_of(s);
        }
    }

    /// Sixteen messages (`None`: an empty lane), one per 32-bit lane: each register holds
    /// one of the eight state words (or one message word) of all sixteen. A lane whose
    /// message has ended keeps its state (masked adds) while the longer ones go on. Returns
    /// each lane's final state.
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn digest16(msgs: &[Option<Msg<'_>>; 16]) -> [[u32; 8]; 16] {
        let most = msgs.iter().flatten().map(|m| m.blocks).max().unwrap_or(0);
        // Lane i's block is at byte 64·i of `buf`; word j of every lane at 4·j from there.
        let offsets = _mm512_setr_epi32(
            0, 64, 128, 192, 256, 320, 384, 448, 512, 576, 640, 704, 768, 832, 896, 960,
        );
        // Big-endian words: reverse the bytes of each 32-bit lane.
        let bswap = _mm512_set4_epi32(0x0C0D0E0F, 0x08090A0B, 0x04050607, 0x00010203);
        let mut st: [__m512i; 8] = std::array::from_fn(|k| _mm512_set1_epi32(H0[k] as i32));
        let mut buf = [0u8; 1024];
        let mut tmp = [0u8; 64];
        for k in 0..most {
            let mut active: __mmask16 = 0;
            for (i, m) in msgs.iter().enumerate() {
                if let Some(m) = m
                    && k < m.blocks
                {
                    buf[64 * i..64 * i + 64].copy_from_slice(m.block(k, &mut tmp));
                    active |= 1 << i;
                }
            }
            let mut w = [_mm512_setzero_si512(); 16];
            for (j, wj) in w.iter_mut().enumerate() {
                // SAFETY: the gather reads 4 bytes at `4·j + offsets[i]` ≤ 4·15 + 960,
                // within the 1,024 bytes of `buf`.
                let g = unsafe {
                    _mm512_i32gather_epi32::<1>(offsets, buf.as_ptr().add(4 * j) as *const i32)
                };
                *wj = _mm512_shuffle_epi8(g, bswap);
            }
            let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = st;
            // Round `t`; written out 64 times (below), so that every index of `w` is a
            // constant and the sixteen message words stay in registers (a rolled loop kept
            // them on the stack: ~10% slower).
            macro_rules! round {
                ($t:expr) => {{
                    let t: usize = $t;
                    if t >= 16 {
                        let (w15, w2) = (w[(t - 15) & 15], w[(t - 2) & 15]);
                        let s0 = _mm512_ternarylogic_epi32::<0x96>(
                            _mm512_ror_epi32::<7>(w15),
                            _mm512_ror_epi32::<18>(w15),
                            _mm512_srli_epi32::<3>(w15),
                        );
                        let s1 = _mm512_ternarylogic_epi32::<0x96>(
                            _mm512_ror_epi32::<17>(w2),
                            _mm512_ror_epi32::<19>(w2),
                            _mm512_srli_epi32::<10>(w2),
                        );
                        w[t & 15] = _mm512_add_epi32(
                            _mm512_add_epi32(w[t & 15], s0),
                            _mm512_add_epi32(w[(t - 7) & 15], s1),
                        );
                    }
                    // 0x96: x ^ y ^ z; 0xCA: Ch (e ? f : g); 0xE8: Maj.
                    let s1 = _mm512_ternarylogic_epi32::<0x96>(
                        _mm512_ror_epi32::<6>(e),
                        _mm512_ror_epi32::<11>(e),
                        _mm512_ror_epi32::<25>(e),
                    );
                    let ch = _mm512_ternarylogic_epi32::<0xCA>(e, f, g);
                    let kw = _mm512_add_epi32(w[t & 15], _mm512_set1_epi32(K[t] as i32));
                    let t1 = _mm512_add_epi32(_mm512_add_epi32(h, s1), _mm512_add_epi32(ch, kw));
                    let s0 = _mm512_ternarylogic_epi32::<0x96>(
                        _mm512_ror_epi32::<2>(a),
                        _mm512_ror_epi32::<13>(a),
                        _mm512_ror_epi32::<22>(a),
                    );
                    let t2 = _mm512_add_epi32(s0, _mm512_ternarylogic_epi32::<0xE8>(a, b, c));
                    (h, g, f, e, d, c, b, a) = (
                        g,
                        f,
                        e,
                        _mm512_add_epi32(d, t1),
                        c,
                        b,
                        a,
                        _mm512_add_epi32(t1, t2),
                    );
                }};
            }
            macro_rules! sixteen {
                ($r:expr) => {
                    round!(16 * $r);
                    round!(16 * $r + 1);
                    round!(16 * $r + 2);
                    round!(16 * $r + 3);
                    round!(16 * $r + 4);
                    round!(16 * $r + 5);
                    round!(16 * $r + 6);
                    round!(16 * $r + 7);
                    round!(16 * $r + 8);
                    round!(16 * $r + 9);
                    round!(16 * $r + 10);
                    round!(16 * $r + 11);
                    round!(16 * $r + 12);
                    round!(16 * $r + 13);
                    round!(16 * $r + 14);
                    round!(16 * $r + 15);
                };
            }
            sixteen!(0);
            sixteen!(1);
            sixteen!(2);
            sixteen!(3);
            for (s, x) in st.iter_mut().zip([a, b, c, d, e, f, g, h]) {
                *s = _mm512_mask_add_epi32(*s, active, *s, x);
            }
        }
        let mut lanes = [[0u32; 16]; 8];
        for (l, s) in lanes.iter_mut().zip(st) {
            // SAFETY: a 64-byte unaligned store into a 64-byte array.
            unsafe { _mm512_storeu_si512(l.as_mut_ptr() as *mut _, s) };
        }
        std::array::from_fn(|i| std::array::from_fn(|k| lanes[k][i]))
    }

    pub(super) fn ids2(a: (&str, &[u8]), b: (&str, &[u8])) -> ([u8; 16], [u8; 16]) {
        let (ma, mb) = (Msg::new(a.0, a.1), Msg::new(b.0, b.1));
        let (mut sa, mut sb) = (H0, H0);
        // SAFETY: `content_ids2` calls this only after checking at run time that the CPU
        // has the SHA, SSE4.1 and SSSE3 extensions `digest2` is compiled for.
        unsafe { digest2(&ma, &mut sa, &mb, &mut sb) };
        (id_of(&sa), id_of(&sb))
    }

    /// Both messages, block by block, the states kept in registers throughout. The longer
    /// message's last blocks (rarely more than one) run beside a throwaway copy of
    /// themselves: a lone stream takes as long as two.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    unsafe fn digest2(ma: &Msg<'_>, sa: &mut [u32; 8], mb: &Msg<'_>, sb: &mut [u32; 8]) {
        unsafe {
            let (mut a0, mut a1) = load(sa);
            let (mut b0, mut b1) = load(sb);
            let (mut ta, mut tb) = ([0u8; 64], [0u8; 64]);
            let both = ma.blocks.min(mb.blocks);
            for k in 0..both {
                let (ba, bb) = (ma.block(k, &mut ta), mb.block(k, &mut tb));
                (a0, a1, b0, b1) = rounds2(a0, a1, ba, b0, b1, bb);
            }
            for k in both..ma.blocks {
                let ba = ma.block(k, &mut ta);
                let (x0, x1) = (a0, a1);
                (a0, a1, _, _) = rounds2(a0, a1, ba, x0, x1, ba);
            }
            for k in both..mb.blocks {
                let bb = mb.block(k, &mut tb);
                let (x0, x1) = (b0, b1);
                (b0, b1, _, _) = rounds2(b0, b1, bb, x0, x1, bb);
            }
            store(sa, a0, a1);
            store(sb, b0, b1);
        }
    }

    /// Loads a state as SHA-NI's two registers (ABEF, CDGH).
    #[inline(always)]
    unsafe fn load(s: &[u32; 8]) -> (__m128i, __m128i) {
        let p = s.as_ptr() as *const __m128i;
        // SAFETY (for every intrinsic below): unaligned loads and stores of 16 bytes
        // within the 32-byte state and 64-byte blocks; the rest are register operations.
        unsafe {
            let dcba = _mm_loadu_si128(p);
            let hgfe = _mm_loadu_si128(p.add(1));
            let cdab = _mm_shuffle_epi32(dcba, 0xB1);
            let efgh = _mm_shuffle_epi32(hgfe, 0x1B);
            (
                _mm_alignr_epi8(cdab, efgh, 8),
                _mm_blend_epi16(efgh, cdab, 0xF0),
            )
        }
    }

    #[inline(always)]
    unsafe fn store(s: &mut [u32; 8], abef: __m128i, cdgh: __m128i) {
        unsafe {
            let feba = _mm_shuffle_epi32(abef, 0x1B);
            let dchg = _mm_shuffle_epi32(cdgh, 0xB1);
            let p = s.as_mut_ptr() as *mut __m128i;
            _mm_storeu_si128(p, _mm_blend_epi16(feba, dchg, 0xF0));
            _mm_storeu_si128(p.add(1), _mm_alignr_epi8(dchg, feba, 8));
        }
    }

    /// The block's 16 message words, byte-swapped to big endian, in four registers.
    #[inline(always)]
    unsafe fn words(block: &[u8; 64]) -> [__m128i; 4] {
        unsafe {
            let mask = _mm_set_epi64x(
                0x0C0D_0E0F_0809_0A0Bu64 as i64,
                0x0405_0607_0001_0203u64 as i64,
            );
            let p = block.as_ptr() as *const __m128i;
            [
                _mm_shuffle_epi8(_mm_loadu_si128(p), mask),
                _mm_shuffle_epi8(_mm_loadu_si128(p.add(1)), mask),
                _mm_shuffle_epi8(_mm_loadu_si128(p.add(2)), mask),
                _mm_shuffle_epi8(_mm_loadu_si128(p.add(3)), mask),
            ]
        }
    }

    /// One block into each of two states (as ABEF/CDGH register pairs), the two
    /// streams' instructions interleaved.
    #[inline(always)]
    unsafe fn rounds2(
        mut a0: __m128i,
        mut a1: __m128i,
        ba: &[u8; 64],
        mut b0: __m128i,
        mut b1: __m128i,
        bb: &[u8; 64],
    ) -> (__m128i, __m128i, __m128i, __m128i) {
        unsafe {
            let (ia0, ia1, ib0, ib1) = (a0, a1, b0, b1);
            let [mut x0, mut x1, mut x2, mut x3] = words(ba);
            let [mut y0, mut y1, mut y2, mut y3] = words(bb);
            // Four rounds of each stream with message words `x`/`y` and round constants
            // `K[4k..4k + 4]`. Written out (no loop over an array): a rolled loop kept the
            // message words on the stack, in the dependency chain.
            macro_rules! quad {
                ($k:expr, $x:expr, $y:expr) => {{
                    let k = _mm_loadu_si128(K.as_ptr().add(4 * $k) as *const __m128i);
                    let (ta, tb) = (_mm_add_epi32($x, k), _mm_add_epi32($y, k));
                    a1 = _mm_sha256rnds2_epu32(a1, a0, ta);
                    b1 = _mm_sha256rnds2_epu32(b1, b0, tb);
                    a0 = _mm_sha256rnds2_epu32(a0, a1, _mm_shuffle_epi32(ta, 0x0E));
                    b0 = _mm_sha256rnds2_epu32(b0, b1, _mm_shuffle_epi32(tb, 0x0E));
                }};
            }
            // The next four message words from the previous sixteen, into the oldest.
            macro_rules! sched {
                ($w0:ident, $w1:ident, $w2:ident, $w3:ident) => {
                    $w0 = _mm_sha256msg2_epu32(
                        _mm_add_epi32(_mm_sha256msg1_epu32($w0, $w1), _mm_alignr_epi8($w3, $w2, 4)),
                        $w3,
                    );
                };
            }
            quad!(0, x0, y0);
            quad!(1, x1, y1);
            quad!(2, x2, y2);
            quad!(3, x3, y3);
            for k in [4, 8, 12] {
                sched!(x0, x1, x2, x3);
                sched!(y0, y1, y2, y3);
                quad!(k, x0, y0);
                sched!(x1, x2, x3, x0);
                sched!(y1, y2, y3, y0);
                quad!(k + 1, x1, y1);
                sched!(x2, x3, x0, x1);
                sched!(y2, y3, y0, y1);
                quad!(k + 2, x2, y2);
                sched!(x3, x0, x1, x2);
                sched!(y3, y0, y1, y2);
                quad!(k + 3, x3, y3);
            }
            (
                _mm_add_epi32(a0, ia0),
                _mm_add_epi32(a1, ia1),
                _mm_add_epi32(b0, ib0),
                _mm_add_epi32(b1, ib1),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pair of lengths around the block boundaries, with indices of several lengths:
    /// the same ids as two calls of `content_id`, on the SHA-NI path where the CPU has it.
    #[test]
    fn pairs_give_the_ids_of_single_calls() {
        let source: Vec<u8> = (0..400u32).map(|i| (i * 7 + 3) as u8).collect();
        let lens = [
            0, 1, 40, 45, 46, 47, 54, 55, 56, 63, 64, 65, 110, 118, 119, 120, 127, 128,
        ];
        for index in ["", "logs-generic.otel-default", &"x".repeat(70)] {
            for &la in &lens {
                for &lb in &[0usize, 9, 55, 56, 119, 200, 399] {
                    let (a, b) = (&source[..la], &source[400 - lb..]);
                    let want = (content_id(index, a), content_id("other", b));
                    assert_eq!(content_ids2((index, a), ("other", b)), want, "{la} {lb}");
                    let want = (content_id("other", b), content_id(index, a));
                    assert_eq!(content_ids2(("other", b), (index, a)), want, "{lb} {la}");
                }
            }
        }
    }

    /// The group size follows the CPU: never 16 without AVX-512, at least 2 with SHA-NI.
    #[test]
    fn lanes_follow_the_cpu() {
        let n = lanes();
        assert!([1, 2, MAX_LANES].contains(&n), "{n}");
        #[cfg(target_arch = "x86_64")]
        {
            if !x86::has_avx512() {
                assert_ne!(n, MAX_LANES);
            }
            if x86::has_sha() {
                assert!(n >= 2, "{n}");
            }
        }
        eprintln!("content ids {n} at a time on this CPU");
        assert_eq!(lanes(), n, "chosen once");
    }

    /// Groups of every size up to 16, their lengths spread around the block boundaries so
    /// lanes end after different numbers of blocks (empty messages, one block, 14 and
    /// more): the ids of single calls, on the AVX-512 path where the CPU has it.
    #[test]
    fn sixteen_lanes_give_the_ids_of_single_calls() {
        let source: Vec<u8> = (0..1200u32).map(|i| (i * 31 + 7) as u8).collect();
        let lens = [
            0, 1, 54, 55, 56, 63, 64, 65, 119, 120, 200, 890, 891, 1000, 1150, 1200,
        ];
        let indices = ["", "logs-generic.otel-default", "i"];
        for n in 1..=MAX_LANES {
            for rot in [0, 5, 11] {
                let docs: Vec<(&str, &[u8])> = (0..n)
                    .map(|i| {
                        let len = lens[(i + rot) % lens.len()];
                        let at = (i * 13) % (source.len() - len + 1);
                        (indices[i % 3], &source[at..at + len])
                    })
                    .collect();
                let mut ids = [[0u8; 16]; MAX_LANES];
                content_ids(&docs, &mut ids);
                for (i, (index, src)) in docs.iter().enumerate() {
                    assert_eq!(ids[i], content_id(index, src), "{n} docs, lane {i}");
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        if !x86::has_avx512() {
            eprintln!("no AVX-512 here: only the pairs were compared");
        }
    }

    /// The padded blocks are what SHA-256 pads: a message of `len` bytes gives
    /// `(len + 9).div_ceil(64)` blocks, 0x80 right after the message, the bit length last.
    #[test]
    fn padding_follows_the_message() {
        let m = Msg::new("ab", b"cdef");
        assert_eq!((m.len, m.blocks), (7, 1));
        let mut out = [0u8; 64];
        m.assemble(0, &mut out);
        assert_eq!(&out[..8], b"ab\ncdef\x80");
        assert!(out[8..56].iter().all(|&b| b == 0));
        assert_eq!(&out[56..], &56u64.to_be_bytes());
        let source = [b'z'; 55];
        let m = Msg::new("", &source);
        // 1 + 55 = 56 bytes: 0x80 at 56 leaves no room for the length, so a second block.
        assert_eq!((m.len, m.blocks), (56, 2));
        m.assemble(0, &mut out);
        assert_eq!(out[56], 0x80);
        m.assemble(1, &mut out);
        assert!(out[..56].iter().all(|&b| b == 0));
        assert_eq!(&out[56..], &(56u64 * 8).to_be_bytes());
    }
}
