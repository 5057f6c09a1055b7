//! Retry delays (placeholder).
