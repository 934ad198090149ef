//! Crate-private macros.

/// The `get_ref` / `get_mut` / `into_inner` accessors of a middleware service
/// whose wrapped service is its `inner` field (as tower-http's services have).
macro_rules! define_inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Unwraps the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}
