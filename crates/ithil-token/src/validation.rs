//! What [`verify`](crate::verify) checks besides the signature.

use std::fmt;
use std::sync::Arc;

use time::Duration;

use crate::claims::Claim;
use crate::clock::{Clock, SystemClock};

/// The longest token [`Validation`] accepts by default, in bytes.
pub const DEFAULT_MAX_LEN: usize = 8 * 1024;

/// The leeway [`Validation`] allows by default for clock skew.
pub const DEFAULT_LEEWAY: Duration = Duration::seconds(60);

/// The checks [`verify`](crate::verify) makes on a token's claims, and the clock it uses.
///
/// Built from [`Validation::default`] by chaining setters; each setter states its default.
///
/// ```
/// use std::sync::Arc;
/// use ithil_token::{Claim, ManualClock, Validation};
/// use time::{Duration, macros::datetime};
///
/// let validation = Validation::default()
///     .issuer("ithil")
///     .audience("mcp")
///     .require(Claim::Jti)
///     .leeway(Duration::seconds(5))
///     .clock(Arc::new(ManualClock::new(datetime!(2025-01-01 0:00 UTC))));
/// ```
#[derive(Clone)]
pub struct Validation {
    pub(crate) issuer: Option<String>,
    pub(crate) audience: Option<String>,
    /// Whole seconds, never negative.
    pub(crate) leeway: i64,
    /// A set of [`Claim`] bits.
    pub(crate) required: u8,
    pub(crate) max_len: usize,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Default for Validation {
    /// Requires `exp`, allows 60 seconds of leeway and 8 KiB tokens, and reads [`SystemClock`].
    fn default() -> Validation {
        Validation {
            issuer: None,
            audience: None,
            leeway: DEFAULT_LEEWAY.whole_seconds(),
            required: Claim::Exp.bit(),
            max_len: DEFAULT_MAX_LEN,
            clock: Arc::new(SystemClock),
        }
    }
}

impl Validation {
    /// Returns the default validation; the same as [`Validation::default`].
    pub fn new() -> Validation {
        Validation::default()
    }

    /// Requires `iss` to be present and equal to `issuer`.
    ///
    /// Default is no issuer check.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Validation {
        self.issuer = Some(issuer.into());
        self
    }

    /// Requires `aud` to be present and to contain `audience`; replaces any earlier audience.
    ///
    /// Default is no expected audience, and then a token that carries `aud` is refused: RFC 7519
    /// section 4.1.3 says a recipient that does not identify itself with the audience must reject
    /// the token.
    pub fn audience(mut self, audience: impl Into<String>) -> Validation {
        self.audience = Some(audience.into());
        self
    }

    /// Sets how far `exp` and `nbf` may be overstepped, for clock skew between machines.
    ///
    /// Counted in whole seconds, rounded down; a negative leeway counts as zero. Default is 60
    /// seconds.
    pub fn leeway(mut self, leeway: Duration) -> Validation {
        self.leeway = leeway.whole_seconds().max(0);
        self
    }

    /// Requires the registered claim `claim` to be present.
    ///
    /// Default is `exp` alone; see [`Validation::clear_required`] to accept tokens without it.
    pub fn require(mut self, claim: Claim) -> Validation {
        self.required |= claim.bit();
        self
    }

    /// Requires no claim to be present, not even `exp`.
    ///
    /// Claims that are present are still checked, and [`Validation::issuer`] and
    /// [`Validation::audience`] still require theirs. Default is to require `exp`.
    pub fn clear_required(mut self) -> Validation {
        self.required = 0;
        self
    }

    /// Sets the longest token accepted, in bytes, checked before anything is decoded.
    ///
    /// Default is 8 KiB ([`DEFAULT_MAX_LEN`]).
    pub fn max_len(mut self, max_len: usize) -> Validation {
        self.max_len = max_len;
        self
    }

    /// Sets the clock `exp` and `nbf` are judged against.
    ///
    /// Default is [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Validation {
        self.clock = clock;
        self
    }

    /// Returns whether `claim` must be present.
    pub fn requires(&self, claim: Claim) -> bool {
        self.required & claim.bit() != 0
            || (claim == Claim::Iss && self.issuer.is_some())
            || (claim == Claim::Aud && self.audience.is_some())
    }
}

impl fmt::Debug for Validation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let required: Vec<Claim> = Claim::ALL
            .into_iter()
            .filter(|c| self.required & c.bit() != 0)
            .collect();
        f.debug_struct("Validation")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_secs", &self.leeway)
            .field("required", &required)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_requires_only_exp() {
        let v = Validation::default();
        for claim in Claim::ALL {
            assert_eq!(v.requires(claim), claim == Claim::Exp, "{claim}");
        }
        assert_eq!(v.leeway, 60);
        assert_eq!(v.max_len, 8192);
    }

    #[test]
    fn issuer_and_audience_imply_their_claims() {
        let v = Validation::default()
            .clear_required()
            .issuer("i")
            .audience("a");
        assert!(v.requires(Claim::Iss));
        assert!(v.requires(Claim::Aud));
        assert!(!v.requires(Claim::Exp));
    }

    #[test]
    fn negative_or_fractional_leeway_is_rounded_toward_zero() {
        assert_eq!(
            Validation::default().leeway(Duration::seconds(-5)).leeway,
            0
        );
        assert_eq!(
            Validation::default()
                .leeway(Duration::milliseconds(2500))
                .leeway,
            2
        );
    }
}
