//! A setting that can change while the node runs (on SIGHUP): every holder
//! shares one cell and reads the value in force when it needs it.

use std::sync::{Arc, RwLock};

/// A shared, replaceable value. Reads are a lock and an `Arc` clone: never
/// held across an `.await`, never blocking for long.
#[derive(Debug)]
pub(crate) struct Live<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Live<T> {
    /// A cell holding `value`.
    pub(crate) fn new(value: T) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(value))))
    }

    /// The value in force now.
    pub(crate) fn get(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the value for every holder; calls already running keep the
    /// one they read.
    pub(crate) fn set(&self, value: T) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_holder_sees_a_new_value_and_a_reader_keeps_its_own() {
        let a = Live::new(1);
        let b = a.clone();
        let before = a.get();
        b.set(2);
        assert_eq!((*before, *a.get(), *b.get()), (1, 2, 2));
    }
}
