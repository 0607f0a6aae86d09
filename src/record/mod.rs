//! `lt record`: real clients through a WebSocket proxy into a trace. (Being written.)
