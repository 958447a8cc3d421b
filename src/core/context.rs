//! Typed error context: what anyhow's `with_context` gives the command
//! layer, for a library error enum. `error_context!` declares, inside a module, a `Context` trait whose `with_context` wraps
//! each listed source error type into its own variant of the module's
//! error, with the text of what was being done (`creating /x`,
//! `{url}: not UTF-8`); `None` becomes the given refusal.
//!
//! ```ignore
//! crate::core::context::error_context!(ImageError, refused: ImageError::Refused, {
//!     std::io::Error => |what, source| ImageError::Io { what, source },
//! });
//! fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
//! ```

/// Declares `pub(crate) trait Context<T>` for `Result<T, S>` of each listed
/// source type `S` and for `Option<T>`, returning `Result<T, $error>`.
macro_rules! error_context {
    ($error:ty, refused: $refused:expr, {
        $($source:ty => |$what:ident, $e:ident| $make:expr),* $(,)?
    }) => {
        /// Wraps an error with what was being done, into the variant of
        /// its type (as anyhow's `with_context` does, but typed).
        pub(crate) trait Context<T> {
            /// Wraps an error (or a missing value) with `what()`.
            fn with_context(self, what: impl FnOnce() -> String) -> Result<T, $error>;

            /// Wraps an error (or a missing value) with `what`.
            fn context(self, what: &str) -> Result<T, $error>
            where
                Self: Sized,
            {
                self.with_context(|| what.to_string())
            }
        }

        $(
            impl<T> Context<T> for Result<T, $source> {
                fn with_context(self, what: impl FnOnce() -> String) -> Result<T, $error> {
                    self.map_err(|$e| {
                        let $what = what();
                        $make
                    })
                }
            }
        )*

        /// A missing value is a refusal saying `what`.
        impl<T> Context<T> for Option<T> {
            fn with_context(self, what: impl FnOnce() -> String) -> Result<T, $error> {
                self.ok_or_else(|| ($refused)(what()))
            }
        }
    };
}
pub(crate) use error_context;
