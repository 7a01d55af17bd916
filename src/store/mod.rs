//! Storage: the SQLite backend (`sqlite`) and scrypt password hashing
//! (`password`).

pub mod password;
pub mod sqlite;

pub use sqlite::*;
