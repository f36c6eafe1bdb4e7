//! The command line and config errors: every fixture in tests/config/invalid/ fails
//! `weft validate` with the messages it lists (`# expect:` lines: file, line, key path,
//! suggestion); every shipped YAML (config/, pipelines/) validates; print-config redacts;
//! several --config files merge in order.

use std::path::{Path, PathBuf};
use std::process::Command;

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_invalid_fixture_reports_its_errors() {
    let files = yaml_files("tests/config/invalid");
    assert!(files.len() >= 15, "fixtures missing");
    let mut failures = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let expects: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expects.is_empty(),
            "{} has no # expect: lines",
            f.display()
        );
        let out = weft()
            .args(["validate", "--config"])
            .arg(&f)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(1) {
            failures.push(format!(
                "{}: exit {:?}, want 1\n{stderr}",
                f.display(),
                out.status.code()
            ));
        }
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        for e in expects {
            // A leading ":LINE:" means "this file, this line".
            let want = if e.starts_with(':') {
                format!("{name}{e}")
            } else {
                e.to_string()
            };
            if !stderr.contains(&want) {
                failures.push(format!("{name}: missing {want:?} in:\n{stderr}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn shipped_configs_validate() {
    let mut files = yaml_files("pipelines");
    files.extend(yaml_files("config"));
    assert!(files.len() >= 4);
    for f in files {
        let out = weft()
            .args(["validate", "--config"])
            .arg(&f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} does not validate:\n{}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The embedded default too.
    assert!(weft().arg("validate").output().unwrap().status.success());
}

#[test]
fn print_config_merges_and_redacts() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(
        &a,
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: localhost:4317\nexporters:\n  otlphttp:\n    endpoint: https://backend:4318\n    headers:\n      Authorization: Bearer s3cr3t\n      X-Tenant: shop\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [otlphttp]\n",
    )
    .unwrap();
    std::fs::write(&b, "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: ${env:WEFT_TEST_GRPC}\n").unwrap();
    let out = weft()
        .args(["print-config", "--config"])
        .arg(&a)
        .arg("--config")
        .arg(&b)
        .env("WEFT_TEST_GRPC", "0.0.0.0:5317")
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        s.contains("endpoint: 0.0.0.0:5317"),
        "the later file wins:\n{s}"
    );
    assert!(!s.contains("s3cr3t"), "secret leaked:\n{s}");
    assert!(
        s.contains("Authorization: \"[REDACTED]\"") || s.contains("Authorization: [REDACTED]"),
        "{s}"
    );
    assert!(s.contains("X-Tenant: shop"), "{s}");
}

#[test]
fn version_help_and_missing_file() {
    let v = weft().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).contains(env!("CARGO_PKG_VERSION")));
    let h = weft().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&h.stdout);
    assert!(
        help.contains("validate") && help.contains("print-config") && help.contains("--config")
    );
    let m = weft()
        .args(["validate", "--config", "/nonexistent/weft.yaml"])
        .output()
        .unwrap();
    assert_eq!(m.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&m.stderr).contains("cannot read config file"));
}

#[test]
fn unused_components_are_warnings_not_errors() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("w.yaml");
    std::fs::write(&f, "receivers:\n  otlp:\n    protocols:\n      grpc:\nprocessors:\n  batch:\nexporters:\n  debug:\n  debug/unused:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n").unwrap();
    let out = weft()
        .args(["validate", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning")
            && err.contains("debug/unused")
            && err.contains("processors \"batch\" is defined but not used"),
        "{err}"
    );
}
