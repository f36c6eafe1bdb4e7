//! weft's own gzip encoder (`exporters::deflate`) read by the reference implementation:
//! the system `python3`'s `zlib` (the C zlib that Elasticsearch's, Loki's and most
//! readers' inflaters follow). The unit tests decode with flate2; this adds a second,
//! independent decoder. Every body an exporter gzips goes through this encoder: the
//! Elasticsearch `_bulk` body, the `otlp` exporter's gRPC messages, otlphttp, Loki JSON
//! and the S3 archive. Each case is written three times: by the generic parser, the JSON
//! resync and the protobuf resync (`deflate::Shape`).

use weft::exporters::deflate::Shape;
use weft::exporters::http_client::gzip;

const CHECK: &str = r#"
import glob, gzip, sys, zlib
bad = []
for path in sorted(glob.glob(sys.argv[1] + "/*.gz")):
    raw = open(path[:-3] + ".raw", "rb").read()
    z = open(path, "rb").read()
    try:
        d = zlib.decompressobj(31)  # gzip wrapper, CRC-32 and length checked
        out = d.decompress(z) + d.flush()
        if out != raw or not d.eof or d.unused_data or gzip.decompress(z) != raw:
            bad.append(path)
    except Exception as e:
        bad.append(f"{path}: {e}")
print(len(glob.glob(sys.argv[1] + "/*.gz")), "checked")
if bad:
    sys.exit("not read back: " + ", ".join(bad))
"#;

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn python_zlib_reads_every_body_back() {
    let mut seed = 0x2545_F491_4F6C_DD1D;
    let mut cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"a".to_vec(),
        b"hello hello hello hello".to_vec(),
        vec![0; 100_000],
        vec![0xff; 1_000],
    ];
    for n in [3, 50, 300, 70_000, 200_000] {
        cases.push((0..n).map(|_| rng(&mut seed) as u8).collect());
        cases.push((0..n).map(|_| (rng(&mut seed) % 4) as u8).collect());
    }
    // NDJSON shaped like the benchmark's `_bulk` bodies: ~2.5 MB, several blocks.
    let mut ndjson = Vec::new();
    for i in 0..3_000 {
        let v: String = (0..24)
            .map(|_| char::from(b'A' + (rng(&mut seed) % 26) as u8))
            .collect();
        ndjson.extend_from_slice(
            format!(
                "{{\"create\":{{\"_id\":\"{:032x}\",\"_index\":\"logs-generic.otel-default\"}}}}\n{{\"@timestamp\":\"2026-11-26T13:51:{:02}.767053028Z\",\"attributes\":{{\"attr.0\":\"{v}\",\"attr.1\":\"{}\"}},\"body\":{{\"text\":\"order {i} processed\"}},\"resource\":{{\"attributes\":{{\"service.name\":\"order\"}}}}}}\n",
                u128::from(rng(&mut seed)) << 64 | u128::from(rng(&mut seed)),
                i % 60,
                &v[..i % 24],
            )
            .as_bytes(),
        );
    }
    for _ in 0..20 {
        let a = rng(&mut seed) as usize % ndjson.len();
        let b = a + rng(&mut seed) as usize % (ndjson.len() - a);
        cases.push(ndjson[a..b].to_vec());
    }
    cases.push(ndjson);
    // Log lines with escaped quotes and words, which the JSON resync stops at.
    let mut logfmt = Vec::new();
    for i in 0..2_000u64 {
        let r = rng(&mut seed);
        logfmt.extend_from_slice(
            format!(
                "{{\"body\":{{\"text\":\"level=info msg=\\\"order {} created\\\" user=u-{:06} dur={}ms\"}},\"n\":{i}}}\n",
                r % 1_000_000,
                (r >> 20) % 50_000,
                (r >> 40) % 900
            )
            .as_bytes(),
        );
    }
    cases.push(logfmt);
    let dir = tempfile::tempdir().unwrap();
    let mut files = 0;
    for (i, c) in cases.iter().enumerate() {
        let shaped = |shape| {
            let mut z = Vec::new();
            weft::exporters::deflate::gzip_shaped_into(c, &mut z, shape);
            z
        };
        for (name, z) in [
            (format!("{i}"), gzip(c)),
            (format!("{i}-json"), shaped(Shape::Json)),
            (format!("{i}-proto"), shaped(Shape::Proto)),
        ] {
            std::fs::write(dir.path().join(format!("{name}.raw")), c).unwrap();
            std::fs::write(dir.path().join(format!("{name}.gz")), z).unwrap();
            files += 1;
        }
    }
    let out = std::process::Command::new("python3")
        .args(["-c", CHECK])
        .arg(dir.path())
        .output()
        .expect("python3 (the tests need it; see README, Testing)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), format!("{files} checked"));
}
