//! The audit trail and the privacy filter end to end.
