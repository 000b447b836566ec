//! House rules checked on the source tree: every Rust file opens with a
//! `//!` line on its role, and crates depend on each other only in the
//! directions ARCHITECTURE.md allows.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && path.file_name().is_some_and(|n| n != "target") {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_opens_with_a_doc_line_on_its_role() {
    let mut files = Vec::new();
    rust_files(&workspace_root().join("crates"), &mut files);
    assert!(files.len() > 20, "found the sources: {}", files.len());
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap_or_default().starts_with("//!"))
        .map(|f| f.strip_prefix(workspace_root()).unwrap_or(f).display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without an opening //! line: {missing:?}");
}

#[test]
fn crates_depend_only_in_the_allowed_directions() {
    // Which of our crates each crate may use (normal dependencies only).
    let allowed: &[(&str, &[&str])] = &[
        ("domain", &[]),
        ("crypto", &["domain"]),
        ("kms", &["crypto", "domain"]),
        ("store", &["domain"]),
        ("audit", &["domain", "crypto"]),
        ("engine", &["domain", "crypto", "kms", "store", "audit"]),
        ("backup", &["engine", "store", "crypto", "domain", "kms"]),
        ("server", &["engine", "backup", "domain", "store", "crypto", "audit", "kms"]),
        ("cli", &["server", "engine", "backup", "domain", "store", "crypto", "audit", "kms"]),
        ("testkit", &["server", "engine", "backup", "domain", "store", "crypto", "audit", "kms"]),
    ];
    let ours: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
    for (name, may) in allowed {
        let manifest = workspace_root().join("crates").join(name).join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
        let doc: toml::Table = text.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
        let deps = doc.get("dependencies").and_then(|d| d.as_table()).cloned().unwrap_or_default();
        for dep in deps.keys().filter(|d| ours.contains(&d.as_str())) {
            assert!(may.contains(&dep.as_str()), "crate {name} must not depend on {dep}");
        }
    }
}

#[test]
fn domain_and_crypto_do_no_io() {
    for name in ["domain", "crypto"] {
        let manifest = workspace_root().join("crates").join(name).join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap_or_default();
        for io_crate in ["tokio", "sqlx", "reqwest", "axum", "hyper"] {
            assert!(!text.contains(&format!("\n{io_crate}")), "{name} depends on {io_crate}");
        }
    }
}
