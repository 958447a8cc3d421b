//! Remote archives: mirrors, signed indexes, verified caches.
