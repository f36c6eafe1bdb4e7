//! Huffman code construction for DEFLATE's dynamic blocks: length-limited code lengths,
//! canonical codes, and the run-length coded block header.

use super::bits::Bits;

/// Canonical Huffman codes (RFC 1951 3.2.2) for `lengths`, bit-reversed for LSB-first
/// output.
pub(super) fn canonical(lengths: &[u8]) -> Vec<u32> {
    let mut count = [0u32; 16];
    for &l in lengths {
        count[l as usize] += 1;
    }
    count[0] = 0;
    let mut next = [0u32; 16];
    let mut code = 0;
    for bits in 1..16 {
        code = (code + count[bits - 1]) << 1;
        next[bits] = code;
    }
    lengths
        .iter()
        .map(|&l| {
            if l == 0 {
                return 0;
            }
            let c = next[l as usize];
            next[l as usize] += 1;
            c.reverse_bits() >> (32 - l as u32)
        })
        .collect()
}

/// Length-limited Huffman code lengths for `freq`. At least two symbols get a code, so
/// every code written is complete (some inflaters refuse an incomplete literal code).
pub(super) fn huffman_lengths(freq: &[u32], limit: usize) -> Vec<u8> {
    let n = freq.len();
    let mut syms: Vec<(u32, usize)> = freq
        .iter()
        .enumerate()
        .filter(|(_, f)| **f > 0)
        .map(|(i, f)| (*f, i))
        .collect();
    // Pad to two symbols with zero-cost dummies (their codes are never written).
    let mut s = 0;
    while syms.len() < 2 {
        if freq[s] == 0 {
            syms.push((0, s));
        }
        s += 1;
    }
    syms.sort_unstable();
    let m = syms.len();
    // Huffman tree over the sorted leaves with the two-queue method: leaves in `syms`
    // order, internal nodes in creation order (their weights never decrease).
    let mut weight: Vec<u64> = syms.iter().map(|(f, _)| *f as u64).collect();
    let mut parent = vec![0usize; 2 * m - 1];
    let (mut leaf, mut node) = (0, m);
    weight.reserve(m - 1);
    for next in m..2 * m - 1 {
        let mut pick = || {
            let take_leaf = leaf < m && (node >= next || weight[leaf] <= weight[node]);
            if take_leaf {
                leaf += 1;
                leaf - 1
            } else {
                node += 1;
                node - 1
            }
        };
        let a = pick();
        let b = pick();
        weight.push(weight[a] + weight[b]);
        parent[a] = next;
        parent[b] = next;
    }
    // Depths: the root is the last node; parents come after their children.
    let mut depth = vec![0usize; 2 * m - 1];
    for i in (0..2 * m - 2).rev() {
        depth[i] = depth[parent[i]] + 1;
    }
    // Count leaves per length, folding lengths over the limit into it, then restore the
    // Kraft sum by lengthening the deepest short codes (as zlib and miniz do).
    let mut count = vec![0usize; limit + 1];
    for &d in &depth[..m] {
        count[d.min(limit)] += 1;
    }
    let mut kraft: u64 = (1..=limit).map(|l| (count[l] as u64) << (limit - l)).sum();
    while kraft > 1 << limit {
        count[limit] -= 1;
        for l in (1..limit).rev() {
            if count[l] != 0 {
                count[l] -= 1;
                count[l + 1] += 2;
                break;
            }
        }
        kraft -= 1;
    }
    // Longest codes to the rarest symbols (`syms` is ascending by frequency).
    let mut lengths = vec![0u8; n];
    let mut i = 0;
    for l in (1..=limit).rev() {
        for _ in 0..count[l] {
            lengths[syms[i].1] = l as u8;
            i += 1;
        }
    }
    lengths
}

/// The header of a dynamic block: HLIT, HDIST, HCLEN and the run-length coded lengths.
pub(super) struct DynHeader {
    hlit: usize,
    hdist: usize,
    hclen: usize,
    /// Code-length symbols: (symbol, extra bits value).
    rle: Vec<(u8, u8)>,
    cl_len: Vec<u8>,
    cl_codes: Vec<u32>,
}

const CL_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

impl DynHeader {
    pub(super) fn new(lit_len: &[u8], dist_len: &[u8]) -> Self {
        let hlit = lit_len
            .iter()
            .rposition(|&l| l != 0)
            .map_or(257, |i| (i + 1).max(257));
        let hdist = dist_len.iter().rposition(|&l| l != 0).map_or(1, |i| i + 1);
        let all: Vec<u8> = lit_len[..hlit]
            .iter()
            .chain(&dist_len[..hdist])
            .copied()
            .collect();
        let mut rle = Vec::new();
        let mut i = 0;
        while i < all.len() {
            let v = all[i];
            let mut run = 1;
            while i + run < all.len() && all[i + run] == v {
                run += 1;
            }
            i += run;
            if v == 0 {
                while run >= 11 {
                    let r = run.min(138);
                    rle.push((18, (r - 11) as u8));
                    run -= r;
                }
                if run >= 3 {
                    rle.push((17, (run - 3) as u8));
                    run = 0;
                }
            } else {
                rle.push((v, 0));
                run -= 1;
                while run >= 3 {
                    let r = run.min(6);
                    rle.push((16, (r - 3) as u8));
                    run -= r;
                }
            }
            for _ in 0..run {
                rle.push((v, 0));
            }
        }
        let mut freq = [0u32; 19];
        for &(s, _) in &rle {
            freq[s as usize] += 1;
        }
        let cl_len = huffman_lengths(&freq, 7);
        let cl_codes = canonical(&cl_len);
        let hclen = CL_ORDER
            .iter()
            .rposition(|&s| cl_len[s] != 0)
            .map_or(4, |i| (i + 1).max(4));
        DynHeader {
            hlit,
            hdist,
            hclen,
            rle,
            cl_len,
            cl_codes,
        }
    }

    pub(super) fn bits(&self) -> u64 {
        let body: u64 = self
            .rle
            .iter()
            .map(|&(s, _)| self.cl_len[s as usize] as u64 + RLE_EXTRA[s as usize] as u64)
            .sum();
        14 + 3 * self.hclen as u64 + body
    }

    pub(super) fn write(&self, w: &mut Bits<'_>) {
        w.put((self.hlit - 257) as u64, 5);
        w.put((self.hdist - 1) as u64, 5);
        w.put((self.hclen - 4) as u64, 4);
        for &s in &CL_ORDER[..self.hclen] {
            w.put(self.cl_len[s] as u64, 3);
        }
        for &(s, x) in &self.rle {
            let s = s as usize;
            w.put(self.cl_codes[s] as u64, self.cl_len[s] as u32);
            w.put(x as u64, RLE_EXTRA[s] as u32);
        }
    }
}

const RLE_EXTRA: [u8; 19] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 7];
