//! A value alone on its cache lines. A counter a hook's thread writes for every event and
//! one the delivery runtime writes for every event must not share a line: each write would
//! first take the line from the other core (measured: most of an admission's cost in nginx).

use std::ops::Deref;

/// `T` aligned (and so padded) to 128 bytes: two lines, as adjacent-line prefetchers pair them.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

impl<T> Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}
