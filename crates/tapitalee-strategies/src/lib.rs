//! Tapitalee strategies (in progress).
