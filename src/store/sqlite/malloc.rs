//! SQLite's memory on the static Linux build. musl's allocator returns
//! memory to the kernel eagerly, and SQLite's page cache frees and takes
//! pages all the time, so the server spent its time in `munmap` and TLB
//! flushes. There SQLite allocates from mimalloc instead, as the rest of
//! the program does (see `src/main.rs`); the other builds keep their C
//! library's allocator, which does not have the problem.

use libmimalloc_sys as mi;
use rusqlite::ffi;
use std::ffi::{c_int, c_void};
use std::sync::Once;

unsafe extern "C" fn malloc(n: c_int) -> *mut c_void {
    // SAFETY: mimalloc's malloc takes any size; SQLite never asks for < 0.
    unsafe { mi::mi_malloc(n.max(0) as usize) }
}

unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: SQLite frees only what these functions gave it.
    unsafe { mi::mi_free(p) }
}

unsafe extern "C" fn realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    // SAFETY: as for `malloc` and `free`.
    unsafe { mi::mi_realloc(p, n.max(0) as usize) }
}

unsafe extern "C" fn size(p: *mut c_void) -> c_int {
    // SAFETY: `p` came from mimalloc (see `free`); SQLite's sizes fit c_int.
    unsafe { c_int::try_from(mi::mi_usable_size(p)).unwrap_or(c_int::MAX) }
}

unsafe extern "C" fn roundup(n: c_int) -> c_int {
    // SAFETY: a pure function of its argument.
    let good = unsafe { mi::mi_good_size(n.max(0) as usize) };
    c_int::try_from(good).unwrap_or(n)
}

unsafe extern "C" fn init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn shutdown(_: *mut c_void) {}

/// Points SQLite at mimalloc. It must come before SQLite's first use in
/// the process; if something opened a database first, SQLite refuses and
/// keeps musl's allocator, which is slower but correct.
pub fn use_mimalloc() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(malloc),
            xFree: Some(free),
            xRealloc: Some(realloc),
            xSize: Some(size),
            xRoundup: Some(roundup),
            xInit: Some(init),
            xShutdown: Some(shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: SQLite copies `methods` before returning, and every
        // function in it is a valid allocator over mimalloc.
        unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &raw const methods) };
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run alone (`packaging/build.sh` does, on the musl build): a test
    /// that opened SQLite first in the same process would leave musl's
    /// allocator in place.
    #[test]
    fn sqlite_allocates_from_mimalloc() {
        let dir = tempfile::tempdir().unwrap();
        let _store = super::super::SqliteStore::open(&dir.path().join("chatapp.db")).unwrap();
        // SAFETY: a plain allocation, checked and freed by SQLite itself.
        unsafe {
            let p = ffi::sqlite3_malloc(100);
            assert!(!p.is_null());
            assert!(
                mi::mi_check_owned(p),
                "SQLite's memory should come from mimalloc"
            );
            ffi::sqlite3_free(p);
        }
    }
}
