//! The options that shape a trace: their defaults and their checks. The type itself is the
//! capture format's ([`crate::capture::trace::SynthOptions`]): the trace header keeps them,
//! so a trace says how it was made, and the format does not depend on the model.

/// The options of the traffic model, as the trace header keeps them.
pub use crate::capture::trace::SynthOptions as Options;

/// `created_at` base used unless `--epoch` says otherwise: 2026-02-02T02:40:00Z, the `T0` of
/// the platform's reference events. A fixed default keeps traces byte-identical whatever day
/// they are made. Both test relays accept it: nostr-rs-relay 0.8.12 has no lower bound on
/// `created_at`, rnostr 0.4.8 accepts up to 3 years into the past (so until early 2029) and
/// 15 minutes into the future.
pub const DEFAULT_EPOCH: u64 = 1_770_000_000;

/// Mean EVENT frames per second. Conservative on purpose: the platform's own harnesses used
/// 10 and 20; nostr-rs-relay's single SQLite writer tops out near 1,000 events/s on a 2-core
/// machine, so 50/s measures a relay at light load. Raise it to find the knee.
pub const DEFAULT_RATE_EPS: f64 = 50.0;

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 42,
            clients: 1000,
            duration_s: 600.0,
            rate_eps: DEFAULT_RATE_EPS,
            view_share: 0.9,
            read_share: 0.2,
            edit_share: 0.1,
            nip71_share: 0.2,
            creators: 20,
            epoch: DEFAULT_EPOCH,
            live_share: 0.0,
        }
    }
}

/// Creators default to one per fifty clients: a video platform has far more viewers than
/// uploaders.
pub fn default_creators(clients: u32) -> u32 {
    (clients / 50).max(1)
}

impl Options {
    /// Checks every value; the message names the flag and what it accepts.
    pub fn validate(&self) -> Result<(), String> {
        let share = |name: &str, v: f64, hi_open: bool| -> Result<(), String> {
            let ok = v.is_finite() && v >= 0.0 && if hi_open { v < 1.0 } else { v <= 1.0 };
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "{name} {v}: must be a share from 0 to 1{}",
                    if hi_open { " (less than 1)" } else { "" }
                ))
            }
        };
        if self.clients == 0 {
            return Err("--clients 0: need at least one connection".into());
        }
        if !(self.duration_s.is_finite() && self.duration_s > 0.0) {
            return Err(format!(
                "--duration {}: must be a positive number of seconds",
                self.duration_s
            ));
        }
        if !(self.rate_eps.is_finite() && self.rate_eps > 0.0) {
            return Err(format!(
                "--rate {}: must be a positive number of events per second",
                self.rate_eps
            ));
        }
        share("--mix", self.view_share, false)?;
        share("--read-share", self.read_share, true)?;
        share("--edit-share", self.edit_share, false)?;
        share("--nip71-share", self.nip71_share, false)?;
        share("--live-share", self.live_share, false)?;
        if self.creators == 0 || self.creators > self.clients {
            return Err(format!(
                "--creators {}: must be from 1 to --clients ({})",
                self.creators, self.clients
            ));
        }
        let records = self.expected_records();
        if records > 2e9 {
            return Err(format!(
                "--rate {} × --duration {} would make ~{records:.0} records; lt caps a trace at 2 billion",
                self.rate_eps, self.duration_s
            ));
        }
        Ok(())
    }

    /// Mean EVENT frames per publish action under the model's shares.
    pub fn events_per_publish(&self) -> f64 {
        let m = &super::model::SHARES;
        let hosted = 1.0 - m.magnet_only;
        let new_bundle = 1.0 + hosted + hosted * self.nip71_share;
        let edit = m.tombstone + (1.0 - m.tombstone) * (1.0 + hosted * self.nip71_share);
        let bundle = (1.0 - self.edit_share) * new_bundle + self.edit_share * edit;
        self.view_share + (1.0 - self.view_share) * bundle
    }

    /// Mean arrivals (publish actions and reads) per second that give `rate_eps` events/s.
    pub fn arrivals_per_second(&self) -> f64 {
        self.rate_eps / ((1.0 - self.read_share) * self.events_per_publish())
    }

    /// Clients that hold live subscriptions.
    pub fn live_clients(&self) -> u32 {
        (f64::from(self.clients) * self.live_share).round() as u32
    }

    /// Roughly how many records the options make (a read is two records; a viewing session
    /// at most four: two live REQs and their CLOSEs).
    pub fn expected_records(&self) -> f64 {
        let arrivals = self.arrivals_per_second() * self.duration_s;
        let sessions =
            f64::from(self.live_clients()) * (1.0 + self.duration_s / super::model::SESSION_MEAN_S);
        self.rate_eps * self.duration_s + arrivals * self.read_share * 2.0 + sessions * 4.0
    }
}
