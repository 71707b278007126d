//! Tapitalee aws (in progress).
