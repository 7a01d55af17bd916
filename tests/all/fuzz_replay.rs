//! Replays the fuzz corpus and every crash input on stable Rust: each file
//! of `fuzz/corpus/<target>/` and `fuzz/artifacts/<target>/` goes through
//! the same function the fuzz target runs (`fuzz/logic.rs`, included here).
//! A missing or empty corpus fails the test, so it cannot pass by finding
//! nothing to replay. `fuzz/README.md` says how to run the fuzzers.

#[path = "../../fuzz/logic.rs"]
mod logic;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = files_in(&fuzz.join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target} is empty: run the fuzzer (fuzz/README.md) to seed it"
    );
    let artifacts = fuzz.join("artifacts").join(target);
    let crashes = if artifacts.is_dir() {
        files_in(&artifacts)
    } else {
        Vec::new()
    };
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&crashes) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs fail:\n{}",
        failed.len(),
        corpus.len() + crashes.len(),
        failed.join("\n")
    );
    println!(
        "{target}: replayed {} corpus files and {} crash inputs",
        corpus.len(),
        crashes.len()
    );
}

#[test]
fn frame_corpus() {
    replay("frame", logic::frame);
}

#[test]
fn handshake_corpus() {
    replay("handshake", logic::handshake);
}

#[test]
fn hub_corpus() {
    replay("hub", logic::hub);
}

#[test]
fn dh_corpus() {
    replay("dh", logic::dh);
}

#[test]
fn cipher_corpus() {
    replay("cipher", logic::cipher);
}
