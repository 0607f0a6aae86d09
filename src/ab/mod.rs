//! `lt ab`: compare two relay builds by replaying the same trace into each, started fresh
//! for every run.

pub mod supervisor;
