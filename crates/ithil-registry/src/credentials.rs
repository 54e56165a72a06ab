//! The gateway's admin and agent tokens: what they claim, how they are issued, how they are
//! checked.
//!
//! Both kinds are HS256 JWTs from `ithil-token`, signed with the gateway's key ring and carrying
//! `iss`, `sub`, `aud`, `iat`, `exp`, `jti` and a `role` claim (`"admin"` or `"agent"`); agent
//! tokens also carry the agent's `scopes`. The role separates them: an agent token never passes
//! [`Credentials::verify_admin`] and an admin token never passes [`Credentials::verify_agent`].
//! Agent tokens are also checked against the [`Registry`] on every call, so deactivating or
//! deleting an agent refuses its tokens from the next request on.

use std::fmt;
use std::sync::Arc;

use ithil_token::{
    Audience, Claim, Claims, Clock, KeyRing, MAX_TIMESTAMP, SignError, Validation, VerifyError,
    sign, verify,
};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::agent::Agent;
use crate::registry::Registry;

/// The `sub` of every admin token.
pub const ADMIN_SUBJECT: &str = "admin";

/// How far, in seconds, an agent token's `iat` may lie before its agent's `created_at`; the
/// same as `ithil-token`'s default leeway for `exp` and `nbf`.
const CREATION_LEEWAY_SECS: i64 = 60;

/// What a token's holder may call: the management API or the MCP endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An operator: `/management/**`. Claim value `"admin"`.
    Admin,
    /// One registered agent: `/mcp`. Claim value `"agent"`.
    Agent,
}

impl Role {
    /// The claim value: `"admin"` or `"agent"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Agent => "agent",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The gateway's own claims, beside the registered ones (the `extra` of [`Claims`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayClaims {
    /// Whose token it is.
    pub role: Role,
    /// The agent's scopes when the token was issued; left out of admin tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// A freshly signed token and when it stops being accepted.
///
/// It serializes as the body the token endpoints answer with, `{"token", "expiresAt"}`
/// (RFC 3339, UTC). `Debug` shows the expiry and the token id, never the token.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct IssuedToken {
    /// The compact JWT; a bearer credential.
    pub token: String,
    /// The token's `exp`, whole seconds, UTC.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The token's `jti`, for logs and audit records.
    #[serde(skip)]
    pub jti: String,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"..")
            .field("expires_at", &self.expires_at)
            .field("jti", &self.jti)
            .finish()
    }
}

/// The holder of a verified admin token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdminPrincipal {
    /// The token's `jti`.
    pub jti: String,
    /// The token's `exp`.
    pub expires_at: OffsetDateTime,
}

/// The agent behind a verified agent token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentPrincipal {
    /// The agent as the registry holds it at verification time.
    pub agent: Arc<Agent>,
    /// The scopes the request may use: those in the token that the agent still has, so that
    /// removing a scope from an agent takes effect at once, like deactivation.
    pub scopes: Vec<String>,
    /// The token's `jti`.
    pub jti: String,
    /// The token's `exp`.
    pub expires_at: OffsetDateTime,
}

impl AgentPrincipal {
    /// Tells whether the request may use `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The lifetime is under one second, or the expiry would fall after 9999-12-31.
    #[error("token lifetime must be at least one second and end by the year 9999")]
    InvalidTtl,

    /// Tokens are not issued for an inactive agent; they would be refused anyway.
    #[error("agent {0} is inactive")]
    InactiveAgent(String),

    /// The operating system's random source failed while drawing the token id.
    #[error("the system random source failed")]
    Random,

    /// `ithil-token` refused to sign the claims.
    #[error("token could not be signed")]
    Sign(#[source] SignError),
}

/// Why a presented token was refused; one variant per reason.
///
/// The variant is for the server log. Clients should get the same answer for every variant of
/// one status (401 for all but [`AuthError::WrongRole`]), so that probing tokens reveals nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token was presented (an empty string).
    #[error("no token presented")]
    Missing,

    /// The token failed cryptographic or claim validation.
    #[error("token is invalid")]
    Invalid(#[source] VerifyError),

    /// A valid token of the other role: an agent token on an admin route, or the reverse.
    #[error("token role does not grant this access")]
    WrongRole,

    /// The token's agent does not exist (deleted, or never in this registry), or the token was
    /// issued more than a minute before the agent now holding that id was created.
    #[error("token agent is not registered")]
    UnknownAgent,

    /// The token's agent is deactivated.
    #[error("token agent is inactive")]
    InactiveAgent,
}

/// Issues and verifies the gateway's tokens with one key ring, issuer, audience and clock.
pub struct Credentials {
    keys: KeyRing,
    issuer: String,
    audience: String,
    clock: Arc<dyn Clock>,
    validation: Validation,
    random: SystemRandom,
}

impl Credentials {
    /// Creates the token service.
    ///
    /// Issued tokens are signed with the ring's signing key and carry `issuer` and `audience`;
    /// verified tokens must carry both, must have `sub`, `iat`, `exp` and `jti`, and are judged
    /// against `clock` with `ithil-token`'s default leeway of 60 seconds.
    pub fn new(
        keys: KeyRing,
        issuer: impl Into<String>,
        audience: impl Into<String>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let issuer = issuer.into();
        let audience = audience.into();
        let validation = Validation::default()
            .issuer(issuer.clone())
            .audience(audience.clone())
            .require(Claim::Sub)
            .require(Claim::Iat)
            .require(Claim::Jti)
            .clock(Arc::clone(&clock));
        Self {
            keys,
            issuer,
            audience,
            clock,
            validation,
            random: SystemRandom::new(),
        }
    }

    /// Issues an admin token valid for `ttl` from now.
    ///
    /// # Errors
    ///
    /// [`CredentialError::InvalidTtl`] for a lifetime under one second or past the year 9999,
    /// [`CredentialError::Random`] or [`CredentialError::Sign`] when the token cannot be made.
    pub fn issue_admin(&self, ttl: Duration) -> Result<IssuedToken, CredentialError> {
        let claims = GatewayClaims {
            role: Role::Admin,
            scopes: Vec::new(),
        };
        self.issue(ADMIN_SUBJECT, claims, ttl)
    }

    /// Issues a token for `agent`, valid for `ttl` from now, carrying the agent's scopes.
    ///
    /// # Errors
    ///
    /// [`CredentialError::InactiveAgent`] when the agent is deactivated, and the errors of
    /// [`Credentials::issue_admin`].
    pub fn issue_agent(
        &self,
        agent: &Agent,
        ttl: Duration,
    ) -> Result<IssuedToken, CredentialError> {
        if !agent.is_active {
            return Err(CredentialError::InactiveAgent(agent.agent_id.clone()));
        }
        let claims = GatewayClaims {
            role: Role::Agent,
            scopes: agent.scopes.clone(),
        };
        self.issue(&agent.agent_id, claims, ttl)
    }

    /// Verifies an admin token.
    ///
    /// # Errors
    ///
    /// [`AuthError::Missing`] for an empty token, [`AuthError::Invalid`] when validation fails,
    /// and [`AuthError::WrongRole`] for a valid agent token.
    pub fn verify_admin(&self, token: &str) -> Result<AdminPrincipal, AuthError> {
        let claims = self.verify(token, Role::Admin)?;
        let expires_at = required(claims.expires_at(), Claim::Exp)?;

        Ok(AdminPrincipal {
            jti: required(claims.jti, Claim::Jti)?,
            expires_at,
        })
    }

    /// Verifies an agent token and finds its agent in `registry`, which must be active.
    ///
    /// The registry is asked on every call, from memory, so a deactivation or deletion is seen
    /// by the first call after the write returned.
    ///
    /// # Errors
    ///
    /// [`AuthError::Missing`] for an empty token, [`AuthError::Invalid`] when validation fails,
    /// [`AuthError::WrongRole`] for a valid admin token, [`AuthError::UnknownAgent`] when the
    /// agent is not in the registry (or was created over a minute after the token was issued),
    /// and
    /// [`AuthError::InactiveAgent`] when it is deactivated.
    pub fn verify_agent(
        &self,
        token: &str,
        registry: &Registry,
    ) -> Result<AgentPrincipal, AuthError> {
        let claims = self.verify(token, Role::Agent)?;
        let agent_id = required(claims.sub.as_deref(), Claim::Sub)?;
        let issued_at = required(claims.iat, Claim::Iat)?;
        let expires_at = required(claims.expires_at(), Claim::Exp)?;

        let agent = registry.get(agent_id).ok_or(AuthError::UnknownAgent)?;
        // Ids are random and never reused on purpose, but one could be drawn again after a
        // deletion; a token older than the agent belongs to its predecessor. The leeway keeps a
        // wall clock stepped back between creation and issue from spoiling a fresh token.
        if issued_at.saturating_add(CREATION_LEEWAY_SECS) < agent.created_at.unix_timestamp() {
            return Err(AuthError::UnknownAgent);
        }
        if !agent.is_active {
            return Err(AuthError::InactiveAgent);
        }

        let scopes = claims
            .extra
            .scopes
            .into_iter()
            .filter(|scope| agent.scopes.contains(scope))
            .collect();
        Ok(AgentPrincipal {
            scopes,
            jti: required(claims.jti, Claim::Jti)?,
            expires_at,
            agent,
        })
    }

    /// The clock tokens are issued and judged by; registry writes should take `now` from it
    /// too, because agent tokens issued over a minute before their agent are refused.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The `iss` of issued tokens, required on verified ones.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `aud` of issued tokens, required on verified ones.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    fn issue(
        &self,
        subject: &str,
        extra: GatewayClaims,
        ttl: Duration,
    ) -> Result<IssuedToken, CredentialError> {
        if ttl < Duration::SECOND {
            return Err(CredentialError::InvalidTtl);
        }
        let now = self.clock.now().unix_timestamp();
        let exp = now
            .checked_add(ttl.whole_seconds())
            .filter(|exp| *exp <= MAX_TIMESTAMP)
            .ok_or(CredentialError::InvalidTtl)?;
        let expires_at =
            OffsetDateTime::from_unix_timestamp(exp).map_err(|_| CredentialError::InvalidTtl)?;
        let jti = self.draw_jti()?;

        let claims = Claims {
            iss: Some(self.issuer.clone()),
            sub: Some(subject.to_owned()),
            aud: Some(Audience::One(self.audience.clone())),
            exp: Some(exp),
            nbf: None,
            iat: Some(now),
            jti: Some(jti.clone()),
            extra,
        };
        let token = sign(&self.keys, &claims).map_err(CredentialError::Sign)?;

        tracing::debug!(sub = subject, jti = %jti, exp, "token issued");
        Ok(IssuedToken {
            token,
            expires_at,
            jti,
        })
    }

    fn verify(&self, token: &str, role: Role) -> Result<Claims<GatewayClaims>, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let claims: Claims<GatewayClaims> =
            verify(token, &self.keys, &self.validation).map_err(AuthError::Invalid)?;
        if claims.extra.role != role {
            return Err(AuthError::WrongRole);
        }
        Ok(claims)
    }

    /// 128 random bits as 32 lowercase hexadecimal digits.
    fn draw_jti(&self) -> Result<String, CredentialError> {
        let mut bytes = [0u8; 16];
        self.random
            .fill(&mut bytes)
            .map_err(|_| CredentialError::Random)?;
        Ok(format!("{:032x}", u128::from_be_bytes(bytes)))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("signing_kid", &self.keys.signing_kid())
            .finish_non_exhaustive()
    }
}

/// A claim the validation requires; `verify` has already refused tokens without it, so the
/// error is unreachable in practice, but it keeps this code free of panics.
fn required<T>(value: Option<T>, claim: Claim) -> Result<T, AuthError> {
    value.ok_or(AuthError::Invalid(VerifyError::MissingClaim(claim)))
}

#[cfg(test)]
mod tests;
