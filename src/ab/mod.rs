//! `lt ab`: compare two relay builds by replaying the same trace into each, started fresh
//! for every run. [`relay`] starts, probes and stops one relay; [`session`] runs both
//! builds in the order given here, replays, analyzes and compares; the command (`cmd::ab`)
//! maps its arguments to a session and prints what it says.

pub mod relay;
pub mod session;

/// One of the two builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn letter(self) -> char {
        match self {
            Side::A => 'A',
            Side::B => 'B',
        }
    }
}

/// `runs` runs of each side in ABBA order (A B B A A B B A …): a drift over time (a warming
/// machine, a filling disk) adds about as much to each side.
pub fn run_order(runs: u32) -> Vec<Side> {
    (0..runs)
        .flat_map(|i| {
            if i % 2 == 0 {
                [Side::A, Side::B]
            } else {
                [Side::B, Side::A]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_abba_and_balanced() {
        let s: String = run_order(3).iter().map(|s| s.letter()).collect();
        assert_eq!(s, "ABBAAB");
        let s: String = run_order(4).iter().map(|s| s.letter()).collect();
        assert_eq!(s, "ABBAABBA");
        assert_eq!(run_order(1).len(), 2);
    }
}
