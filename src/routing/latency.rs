//! Time-to-first-token tracking per upstream (placeholder).
