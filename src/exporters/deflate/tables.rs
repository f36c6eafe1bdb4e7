//! DEFLATE's fixed tables (RFC 1951 3.2.5, 3.2.6), built at compile time.

/// Length symbol (257..=285) for `length - 3`.
pub(super) const LEN_SYM: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut sym = 0;
    while sym < 29 {
        let base = LEN_BASE[sym] as usize - 3;
        let span = if sym == 28 { 1 } else { 1 << LEN_EXTRA[sym] };
        let mut k = 0;
        while k < span && base + k < 256 {
            t[base + k] = 257 + sym as u16;
            k += 1;
        }
        sym += 1;
    }
    // 258 has its own symbol (285), not 284 with all extra bits set.
    t[255] = 285;
    t
};
pub(super) const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
pub(super) const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
/// Per distance code. Codes 30 and 31 do not occur (base 1, no extra bits): the tables
/// have 32 entries so that an index masked to 5 bits needs no bounds check.
pub(super) const DIST_BASE: [u16; 32] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577, 1, 1,
];
pub(super) const DIST_EXTRA: [u8; 32] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13, 0, 0,
];

/// Distance code for `distance - 1` (zlib's two-range table).
#[inline(always)]
pub(super) fn dist_code(d1: usize) -> usize {
    if d1 < 256 {
        DIST_CODE[d1] as usize
    } else {
        DIST_CODE[256 + (d1 >> 7)] as usize
    }
}

pub(super) const DIST_CODE: [u8; 512] = {
    let mut t = [0u8; 512];
    let mut code = 0;
    while code < 30 {
        let base = DIST_BASE[code] as usize - 1;
        let span = 1usize << DIST_EXTRA[code];
        let mut k = 0;
        while k < span {
            let d1 = base + k;
            if d1 < 256 {
                t[d1] = code as u8;
            } else {
                t[256 + (d1 >> 7)] = code as u8;
            }
            k += 1;
        }
        code += 1;
    }
    t
};

/// The fixed literal/length code's lengths, over all 288 symbols: 286 and 287 are never
/// used, but they take code values that shift every 9-bit code (RFC 1951 3.2.6).
pub(super) const FIXED_LIT_LEN: [u8; 288] = {
    let mut t = [0u8; 288];
    let mut i = 0;
    while i < 288 {
        t[i] = if i < 144 {
            8
        } else if i < 256 {
            9
        } else if i < 280 {
            7
        } else {
            8
        };
        i += 1;
    }
    t
};
