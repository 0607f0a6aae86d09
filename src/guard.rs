//! Target safety: resolve, check, refuse with a reason. (Being written.)
