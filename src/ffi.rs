//! C API (next)
