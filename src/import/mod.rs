//! `lt import`: an event dump (JSONL) into a trace. (Being written.)
