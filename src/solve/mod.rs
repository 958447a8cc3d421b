//! The resolver: an in-memory universe of packages and a PubGrub provider over it.
