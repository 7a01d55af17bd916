//! libFuzzer entry point; the body is `logic::dh`, which
//! `tests/all/fuzz_replay.rs` also runs on every file of the corpus.
#![no_main]

#[path = "../logic.rs"]
mod logic;

libfuzzer_sys::fuzz_target!(|data: &[u8]| logic::dh(data));
