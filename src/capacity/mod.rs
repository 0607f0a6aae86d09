//! `lt capacity`: the highest event rate a relay sustains under an SLO, found by a search
//! whose every step is a real replay. [`search`] is the pure core (outcomes in, decisions
//! out), [`slo`] judges a step's report, [`source`] gives each step records no relay has
//! seen, [`run`] drives it all, [`report`] and [`render`] are what it writes;
//! [`compare`] and [`ab`] make capacity a comparison metric (`lt ab --capacity`, `lt compare`). The algorithm
//! and its defaults are explained in `docs/capacity.md`.

pub mod ab;
pub mod compare;
pub mod render;
pub mod report;
pub mod run;
pub mod search;
pub mod slo;
pub mod source;
