//! Every output is decoded by an independent inflater (flate2's miniz_oxide) and compared
//! with the input byte for byte; gzip's CRC-32 and length are checked by the decoder.

use super::huffman::huffman_lengths;
use super::*;
use std::io::Read;

fn inflate_gzip(z: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(z)
        .read_to_end(&mut out)
        .expect("a valid gzip member");
    out
}

/// Every shape's output decoded and compared; returns the generic parser's size.
fn round_trip(data: &[u8]) -> usize {
    round_trip_shaped(data, Shape::Json);
    round_trip_shaped(data, Shape::Proto);
    let z = gzip(data);
    assert!(
        inflate_gzip(&z) == data,
        "round trip differs for {} bytes",
        data.len()
    );
    z.len()
}

/// One shape's output ([`gzip_shaped_into`]) decoded and compared; returns its size.
fn round_trip_shaped(data: &[u8], shape: Shape) -> usize {
    let mut z = Vec::new();
    gzip_shaped_into(data, &mut z, shape);
    assert!(
        inflate_gzip(&z) == data,
        "{shape:?} round trip differs for {} bytes",
        data.len()
    );
    z.len()
}

/// The tokens of `input` as one block from the parser for `SHAPE`.
fn tokens<const SHAPE: u8>(input: &[u8]) -> Vec<u32> {
    let mut table: Box<Table> = Box::new([u64::MAX; 1 << HASH_BITS]);
    let mut block = Block::default();
    assert_eq!(block.parse::<SHAPE>(input, 0, &mut table), input.len());
    block.tokens
}

/// A deterministic xorshift stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize, alphabet: u64) -> Vec<u8> {
        (0..n).map(|_| (self.next() % alphabet) as u8).collect()
    }
}

/// NDJSON like the Elasticsearch exporter's: repeated keys and structure around random
/// values, so matches, literals and several dynamic blocks all occur.
fn ndjson(rng: &mut Rng, docs: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..docs {
        let v: String = (0..24)
            .map(|_| char::from(b'a' + (rng.next() % 26) as u8))
            .collect();
        let line = format!(
            "{{\"create\":{{\"_index\":\"logs-generic-default\"}}}}\n{{\"@timestamp\":\"2026-11-26T10:00:{:02}.{:09}Z\",\"attributes\":{{\"attr.{}\":\"{v}\"}},\"body\":{{\"text\":\"order {i} processed\"}},\"severity_text\":\"INFO\"}}\n",
            i % 60,
            rng.next() % 1_000_000_000,
            i % 10
        );
        out.extend_from_slice(line.as_bytes());
    }
    out
}

/// The BTYPE of the first block of a raw DEFLATE stream: 0 stored, 1 fixed, 2 dynamic.
fn first_block_type(input: &[u8]) -> u8 {
    let mut out = Vec::new();
    deflate_into(input, &mut out);
    (out[0] >> 1) & 3
}

#[test]
fn every_short_length_round_trips() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for n in 0..=300 {
        round_trip(&rng.bytes(n, 4));
        round_trip(&rng.bytes(n, 256));
    }
    round_trip(b"");
    round_trip(b"a");
    // Runs of the bytes an empty or zeroed hash table entry would claim to hold.
    for b in [0u8, 0xff] {
        for n in [4, 5, 9, 300] {
            let mut v = vec![b; n];
            v.push(1);
            round_trip(&v);
        }
    }
}

#[test]
fn incompressible_input_is_stored_and_barely_grows() {
    let mut rng = Rng(7);
    for n in [1_000, 65_535, 65_536, 200_000] {
        let data = rng.bytes(n, 256);
        let z = round_trip(&data);
        // gzip's 18 bytes plus 5 per stored block of at most 65,535 bytes.
        assert!(
            z <= n + 18 + 5 * n.div_ceil(65_535),
            "{n} bytes grew to {z}"
        );
        assert_eq!(first_block_type(&data), 0);
    }
}

#[test]
fn runs_and_long_matches_round_trip() {
    round_trip(&[7u8; 100_000]);
    let mut data = b"abc".repeat(50_000);
    data.extend_from_slice(&[0u8; 1000]);
    let z = round_trip(&data);
    assert!(
        z < data.len() / 50,
        "{} bytes of repeats compressed to {z}",
        data.len()
    );
}

#[test]
fn documents_compress_in_several_dynamic_blocks() {
    let mut rng = Rng(42);
    // ~4.8 MB: far more than one block's 32,768 tokens.
    let data = ndjson(&mut rng, 20_000);
    let z = round_trip(&data);
    assert!(
        z * 3 < data.len(),
        "NDJSON compressed to {z} of {}",
        data.len()
    );
    assert_eq!(first_block_type(&data), 2);
    // Any cut of it, so blocks and matches end at arbitrary places.
    for _ in 0..40 {
        let a = (rng.next() as usize) % data.len();
        let b = a + (rng.next() as usize) % (data.len() - a).min(300_000);
        round_trip(&data[a..b]);
    }
}

#[test]
fn short_text_takes_the_fixed_code() {
    let data = b"hello hello hello hello";
    round_trip(data);
    assert_eq!(first_block_type(data), 1);
}

#[test]
fn matches_reach_exactly_the_window() {
    for gap in [WINDOW - 8, WINDOW - 9, WINDOW - 7] {
        // A marker, zeros (which match only themselves, one byte back, and hash to one
        // table slot, so the marker's stays), then the marker again `gap + 8` bytes on.
        let mut data = b"MARKER!!".to_vec();
        data.resize(8 + gap, 0);
        data.extend_from_slice(b"MARKER!!");
        round_trip(&data);
        let far = tokens::<ANY>(&data)
            .iter()
            .filter(|t| **t & MATCH != 0)
            .map(|t| ((t >> 8) & 0x7fff) as usize + 1)
            .max();
        let reached = far == Some(gap + 8);
        assert_eq!(
            reached,
            gap + 8 <= WINDOW,
            "gap {gap}: farthest match {far:?}"
        );
    }
}

fn kraft(lengths: &[u8], limit: u8) -> u64 {
    lengths
        .iter()
        .filter(|l| **l > 0)
        .map(|&l| 1u64 << (limit - l))
        .sum()
}

#[test]
fn huffman_lengths_are_complete_and_limited() {
    // Fibonacci frequencies make the unlimited tree ~30 deep.
    let mut fib = vec![1u32, 1];
    while fib.len() < 286 {
        let n = fib[fib.len() - 1].saturating_add(fib[fib.len() - 2]);
        fib.push(n);
    }
    let l = huffman_lengths(&fib[..30], 15);
    assert!(l.iter().all(|&x| (1..=15).contains(&x)), "{l:?}");
    assert_eq!(kraft(&l, 15), 1 << 15);
    let l11 = huffman_lengths(&fib[..286], LIT_LIMIT);
    assert!(l11.iter().all(|&x| (1..=11).contains(&x)), "{l11:?}");
    assert_eq!(kraft(&l11, 11), 1 << 11);
    let l7 = huffman_lengths(&fib[..19], 7);
    assert!(l7.iter().all(|&x| (1..=7).contains(&x)), "{l7:?}");
    assert_eq!(kraft(&l7, 7), 1 << 7);
    // Unlimited case: the optimal code.
    assert_eq!(huffman_lengths(&[1, 1, 2], 15), vec![2, 2, 1]);
    // No symbol or one symbol still gives two codes, so the code is complete.
    for freq in [vec![0u32; 30], {
        let mut f = vec![0u32; 30];
        f[5] = 9;
        f
    }] {
        let l = huffman_lengths(&freq, 15);
        assert_eq!(l.iter().filter(|x| **x > 0).count(), 2, "{l:?}");
        assert_eq!(kraft(&l, 15), 1 << 15);
    }
}

/// Literals whose counts would give codes of up to ~20 bits unlimited: every code is cut
/// to 11 bits, so runs of the rarest bytes — five 11-bit codes between stores — must
/// still round-trip (a longer code would overflow the bit buffer and corrupt them).
#[test]
fn skewed_literals_with_the_longest_codes_round_trip() {
    let mut rng = Rng(7);
    let mut data = Vec::new();
    // Byte i half as often as byte i - 1 (down to once): a ~17-deep unlimited tree.
    for b in 0u8..24 {
        data.extend(std::iter::repeat_n(b, (1usize << 16 >> b).max(1)));
    }
    // Shuffled so that runs do not become matches; then ten of the rarest bytes in a row.
    for i in (1..data.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        data.swap(i, j);
    }
    data.extend_from_slice(&[23, 22, 21, 20, 19, 23, 22, 21, 20, 19, 18]);
    assert_eq!(first_block_type(&data), 2, "a dynamic block");
    round_trip(&data);
}

#[test]
fn gzip_into_appends_after_existing_bytes() {
    let mut out = b"prefix".to_vec();
    gzip_into(b"payload payload payload", &mut out);
    assert_eq!(&out[..6], b"prefix");
    assert_eq!(inflate_gzip(&out[6..]), b"payload payload payload");
}

/// A repeat of a random stretch is found only after the skip-ahead has jumped past its
/// start; the match is extended back over the jumped bytes, so the repeat costs one
/// token, not a few dozen literals before it.
#[test]
fn a_match_found_after_a_skip_is_extended_backwards() {
    let mut rng = Rng(7);
    let r = rng.bytes(200, 256);
    let input = [&r[..], &r[..]].concat();
    let tokens = tokens::<ANY>(&input);
    assert!(
        round_trip(&input) < gzip(&r).len() + 16,
        "the repeat costs a few bytes"
    );
    let matches: Vec<u32> = tokens.iter().copied().filter(|t| t & MATCH != 0).collect();
    assert_eq!(matches.len(), 1, "tokens {tokens:?}");
    let (len, dist) = ((matches[0] & 0xff) + 3, ((matches[0] >> 8) & 0x7fff) + 1);
    assert_eq!((len, dist), (200, 200));
    assert_eq!(tokens[0], 200, "the first copy is one literal run");
}

/// Every match length (4–258) at distances in every range of distance codes: each length's
/// code and extra bits, and each distance code's, come out as an inflater reads them.
#[test]
fn every_match_length_at_every_distance_range_round_trips() {
    let mut rng = Rng(0x5EED);
    for dist in [
        1usize, 2, 3, 5, 9, 100, 300, 1025, 4097, 16_385, 24_577, 32_768,
    ] {
        let mut data = Vec::new();
        let mut random = 0;
        for len in 4..=258usize {
            if len < dist {
                // A random segment, zeros up to `dist`, the segment again: the repeat is
                // found at its first byte (a literal run's first position is always
                // hashed, and the zeros hash to one entry).
                let seg = rng.bytes(len, 256);
                data.extend_from_slice(&seg);
                data.resize(data.len() + dist - len, 0);
                data.extend_from_slice(&seg);
                random += len;
            } else {
                // An overlapping copy: `dist` random bytes repeated for `len` bytes.
                data.extend_from_slice(&rng.bytes(dist, 256));
                for _ in 0..len {
                    data.push(data[data.len() - dist]);
                }
                random += dist;
            }
            data.extend_from_slice(&[0xA5; 8]);
            data.extend_from_slice(&rng.bytes(1, 256));
        }
        let z = round_trip(&data);
        // The random bytes once, and little for their repeats: the matches were found.
        // About 24 bytes per length for the matches and the filler, and the zeros' runs.
        // Written as literals, the repeated segments alone would double `random`.
        let bound = random + 255 * 24 + data.len() / 500;
        assert!(
            z < bound,
            "{dist}: {} bytes to {z} (bound {bound})",
            data.len()
        );
    }
}

/// Two documents of one shape with new values: after the first match the JSON parser
/// finds each key at the end of the value before it, one document back, without the
/// hash search; each new value is exactly one literal run.
#[test]
fn the_json_parser_resumes_after_each_value() {
    let doc = |a: &str, b: &str, n: u32| {
        format!(
            "{{\"@timestamp\":\"2026-11-27T03:00:00Z\",\"attributes\":{{\"attr.0\":\"{a}\",\"attr.1\":\"{b}\"}},\"severity_number\":{n}}}\n"
        )
    };
    let first = doc("Pwj9tTKYF50ERXagKZESl97I", "hhY0u2iMbPP3FWehzbZxYwrV", 9);
    let input = first.clone() + &doc("ppBEraYu2AMczqTNK5glybLx", "q7", 17);
    let tokens = tokens::<JSON>(input.as_bytes());
    let at = first.len() as u32;
    // The first document is one literal run; then `{"@timestamp":…"attr.0":"` one back.
    assert_eq!(tokens[0], at, "tokens {tokens:?}");
    let mut runs = Vec::new();
    for t in &tokens[1..] {
        if t & MATCH == 0 {
            runs.push(*t);
        } else {
            let dist = ((t >> 8) & 0x7fff) + 1;
            // Distances: the document's length while values are as long as before;
            // `q7` is 22 bytes shorter, so past it the same bytes are 22 less far back.
            assert!(
                dist == at || dist == at - 22,
                "distance {dist} in {tokens:?}"
            );
        }
    }
    // The new values (24 and 2 bytes), then `17}\n`: the number, and the line's end
    // after it is shorter than a match.
    assert_eq!(runs, vec![24, 2, 4], "literal runs in {tokens:?}");
    assert!(round_trip_shaped(input.as_bytes(), Shape::Json) <= round_trip(input.as_bytes()));
}

/// JSON-looking input made to mislead the resync: escaped quotes inside values, values
/// longer than it looks ahead, keys that come and go, quotes as random bytes, documents
/// around the window's size. Every output decodes to the input.
#[test]
fn the_json_parser_round_trips_what_misleads_it() {
    let mut rng = Rng(0x4A53_4F4E);
    let mut data = Vec::new();
    for i in 0..3_000 {
        data.extend_from_slice(b"{\"k\":\"");
        let n = (rng.next() % 80) as usize;
        for _ in 0..n {
            let b = match rng.next() % 10 {
                0 => b'"',
                1 => b'\\',
                _ => b'a' + (rng.next() % 26) as u8,
            };
            data.push(b);
        }
        data.extend_from_slice(b"\"");
        if i % 3 == 0 {
            data.extend_from_slice(
                format!(",\"extra.{}\":{}", i % 7, rng.next() % 1000).as_bytes(),
            );
        }
        data.extend_from_slice(b"}\n");
    }
    round_trip(&data);
    let mut rng2 = Rng(11);
    for _ in 0..50 {
        let a = (rng2.next() as usize) % data.len();
        let b = a + (rng2.next() as usize) % (data.len() - a).min(5_000);
        round_trip(&data[a..b]);
    }
    // Quotes as a quarter of random bytes.
    let noise: Vec<u8> = (0..100_000)
        .map(|_| {
            if rng.next().is_multiple_of(4) {
                b'"'
            } else {
                rng.next() as u8
            }
        })
        .collect();
    round_trip(&noise);
    // Documents one shorter than, as long as and one longer than the window: the
    // structure one document back is just within or just out of reach.
    for len in [WINDOW - 1, WINDOW, WINDOW + 1] {
        let mut doc = |v: &str| {
            let mut d = format!("{{\"v\":\"{v}\",\"pad\":\"").into_bytes();
            let fill = len - d.len() - 3;
            d.extend(rng.bytes(fill, 26).iter().map(|b| b'a' + b));
            d.extend_from_slice(b"\"}\n");
            assert_eq!(d.len(), len);
            d
        };
        let two = [doc("one"), doc("two")].concat();
        round_trip(&two);
    }
}

/// On NDJSON the JSON parser's output is no larger than the generic parser's, give or
/// take 2%: it gives up no structure, and the values it does not search are new.
#[test]
fn the_json_parser_compresses_ndjson_as_well() {
    let mut rng = Rng(42);
    let data = ndjson(&mut rng, 5_000);
    let (json, generic) = (round_trip_shaped(&data, Shape::Json), round_trip(&data));
    assert!(
        json * 100 <= generic * 102,
        "JSON {json} vs generic {generic}"
    );
}

/// Protobuf-like records (tags, a 16-byte random id, a string, a 24-byte random value, a
/// varint that repeats every 100 records): the same-distance resync finds the structure
/// past each new value one record back, where the generic parser's hash search also
/// takes the varint's repeat 100 records back (this test fails with it); the output is
/// no larger than the generic parser's.
#[test]
fn the_proto_parser_resumes_past_each_value() {
    let mut rng = Rng(0x5052_4F54);
    let mut data = Vec::new();
    for i in 0..400u32 {
        data.extend_from_slice(&[0x0a, 0x10]);
        data.extend(rng.bytes(16, 256));
        data.extend_from_slice(&[0x12, 0x07]);
        data.extend_from_slice(b"service");
        data.extend_from_slice(&[0x1a, 0x18]);
        data.extend(rng.bytes(24, 256));
        data.extend_from_slice(&[0x20, (i % 100) as u8 + 1, 0x2a, 0x04]);
        data.extend_from_slice(b"name");
    }
    let tokens = tokens::<PROTO>(&data);
    let record = 2 + 16 + 2 + 7 + 2 + 24 + 4 + 4;
    // From the third record on (the first is literals, the second finds its matches
    // while the table fills), every match is one record back.
    let mut at = 0;
    for t in &tokens {
        let n = if t & MATCH == 0 {
            *t as usize
        } else {
            let dist = ((t >> 8) & 0x7fff) as usize + 1;
            if at >= 2 * record {
                assert_eq!(dist, record, "at {at}: {tokens:?}");
            }
            (t & 0xff) as usize + 3
        };
        at += n;
    }
    assert_eq!(at, data.len());
    assert!(round_trip_shaped(&data, Shape::Proto) <= round_trip(&data));
}
