//! A signed start made fast, behind one seam. Signing the zone from scratch
//! ([`crate::dnssec::whole::sign_zone`]) is the one path that is always right; everything
//! here only saves time at a start, and hands back to that path whenever what is stored is
//! not exactly the zone to serve. Its outputs are two:
//!
//! - **a source of signatures**: [`resume`] takes the signed zone up again from the
//!   terminals' signatures as stored (the copy saved at the last clean stop, or the store's
//!   `signed` table), checked against the terminals in one walk;
//! - **a lookup for serving while loading**: [`preview`] answers queries with DO from the
//!   saved copy where it lies, until the resumed zone is in force.
//!
//! The view says which of them answers through one state ([`crate::index::Signing`]:
//! unsigned, loading with or without the copy in place, ready);
//! [`crate::directory::SignedStart`] runs the start and puts the result in force.

pub mod preview;
pub mod resume;
