//! Development shortcuts: tokens without an API key, for a loopback peer in development mode.
//!
//! A loopback peer is not enough on its own. A web page the developer opens can make the
//! browser send requests to the gateway under the page's own host name, once that name's DNS
//! answer changes to 127.0.0.1 (DNS rebinding): the TCP peer is then the developer's own
//! machine, but the request carries the attacker's name in `Host` and the page's origin in
//! `Origin`. So the request must also be addressed to a loopback name, and come from a
//! loopback origin if it comes from a page at all. A browser sets `Host` on every request and
//! `Origin` on every cross-origin one, and no page can change either.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::header::{HOST, ORIGIN};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use ithil_registry::{CredentialError, NewAgent};
use tracing::{debug, error};

use super::auth::token_response;
use super::error::{ApiError, Body};
use super::record;
use crate::peer;
use crate::state::AppState;

/// The label of the agent `GET /dev/token` creates on first use.
pub const DEV_AGENT_LABEL: &str = "Development agent";

/// How long a development agent token lives.
const DEV_TOKEN_TTL: time::Duration = time::Duration::hours(8);

/// Whether the development endpoints exist for this peer: development mode and a loopback TCP
/// peer, decided from the socket. This is only the first half of the check; see
/// [`allowed_request`].
pub fn allowed(state: &AppState, peer: SocketAddr) -> bool {
    state.dev && peer::is_loopback(peer.ip())
}

/// Whether the development endpoints exist for this request: [`allowed`] for its peer, and
/// [`addressed_to_loopback`] for its headers. Anything else gets the 404 of a path that does
/// not exist.
pub fn allowed_request<B>(state: &AppState, peer: SocketAddr, request: &Request<B>) -> bool {
    allowed(state, peer) && addressed_to_loopback(request.headers(), request.uri())
}

/// Whether a request is addressed to this machine by a loopback name and comes from no page
/// of another host: every host it names (the `Host` header, and the authority of an HTTP/2 or
/// absolute-form request) is `localhost`, an IPv4 address in `127.0.0.0/8` or `[::1]`, with an
/// optional port, and at least one is given; every `Origin` it carries is `http` or `https` on
/// such a host.
///
/// Names under `.localhost` are not accepted: browsers resolve them to loopback, but other
/// resolvers may send them to a DNS server, and the shortcut needs only one name.
pub fn addressed_to_loopback(headers: &HeaderMap, uri: &Uri) -> bool {
    let mut named = false;
    if let Some(authority) = uri.authority() {
        if !is_loopback_host(authority.as_str()) {
            return false;
        }
        named = true;
    }
    for host in headers.get_all(HOST) {
        if !host.to_str().is_ok_and(is_loopback_host) {
            return false;
        }
        named = true;
    }

    named
        && headers
            .get_all(ORIGIN)
            .iter()
            .all(|origin| origin.to_str().is_ok_and(is_loopback_origin))
}

/// `http://` or `https://` and a loopback host with an optional port; nothing else (an origin
/// has no path, and `null` is the origin of a sandboxed or local page).
fn is_loopback_origin(origin: &str) -> bool {
    let lower = origin.to_ascii_lowercase();
    lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .is_some_and(is_loopback_host)
}

/// A `host[:port]` whose host is `localhost`, `127.x.y.z` or a loopback IPv6 address in
/// brackets; userinfo, paths and anything else make it foreign.
fn is_loopback_host(text: &str) -> bool {
    if let Some(rest) = text.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return false;
        };
        return (after.is_empty() || after.strip_prefix(':').is_some_and(is_port))
            && address
                .parse::<Ipv6Addr>()
                .is_ok_and(|a| peer::is_loopback(IpAddr::V6(a)));
    }

    let host = match text.split_once(':') {
        Some((host, port)) if is_port(port) => host,
        Some(_) => return false,
        None => text,
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

/// One to five ASCII digits that make a port number.
fn is_port(text: &str) -> bool {
    (1..=5).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_digit())
        && text.parse::<u16>().is_ok()
}

/// `GET /dev/admin-token`: an admin token, as the API key exchange would give.
pub async fn admin_token(state: &AppState) -> Result<Response<Body>, ApiError> {
    let issued = state
        .credentials
        .issue_admin(state.admin_token_ttl)
        .map_err(|e| {
            error!(error = %e, "development admin token could not be issued");
            ApiError::internal()
        })?;
    debug!("development admin token issued");
    record::admin_token_issued(state, &issued, "dev").await;
    Ok(token_response(&issued))
}

/// `GET /dev/token`: an 8-hour token for the development agent, created on first use (no
/// allowlist, no scopes) and remembered in the store.
pub async fn agent_token(state: &AppState) -> Result<Response<Body>, ApiError> {
    let _one_at_a_time = state.dev_agent.lock().await;

    let stored = state.store.dev_agent_id().map_err(|e| {
        error!(error = %e, "development agent id could not be read");
        ApiError::internal()
    })?;
    // An operator may have deleted the agent; then a new one takes its place.
    let agent = match stored.as_deref().and_then(|id| state.registry.get(id)) {
        Some(agent) => agent,
        None => {
            let agent = state
                .registry
                .create(NewAgent::new(DEV_AGENT_LABEL), state.clock.now())
                .map_err(|e| {
                    error!(error = %e, "development agent could not be created");
                    ApiError::internal()
                })?;
            state.store.set_dev_agent_id(&agent.agent_id).map_err(|e| {
                error!(error = %e, "development agent id could not be stored");
                ApiError::internal()
            })?;
            debug!(agent.id = %agent.agent_id, "development agent created");
            std::sync::Arc::new(agent)
        }
    };

    let issued = state
        .credentials
        .issue_agent(&agent, DEV_TOKEN_TTL)
        .map_err(|e| match e {
            CredentialError::InactiveAgent(id) => ApiError::new(
                StatusCode::CONFLICT,
                "agent_inactive",
                format!("the development agent {id} is inactive; activate it to get a token"),
            ),
            other => {
                error!(error = %other, "development token could not be issued");
                ApiError::internal()
            }
        })?;
    debug!(agent.id = %agent.agent_id, "development agent token issued");
    Ok(token_response(&issued))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use http::header::HeaderValue;
    use http_body_util::{BodyExt as _, Full};
    use ithil_token::ManualClock;
    use time::macros::datetime;

    use super::*;
    use crate::config::{Config, Environment, Flags};
    use crate::routes::route;
    use crate::store::Store;

    fn headers(pairs: &[(http::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn path() -> Uri {
        Uri::from_static("/dev/admin-token")
    }

    #[test]
    fn loopback_names_with_or_without_a_port_are_loopback_hosts() {
        for host in [
            "localhost",
            "LocalHost:5100",
            "127.0.0.1",
            "127.0.0.1:5100",
            "127.1.2.3:1",
            "[::1]",
            "[::1]:5100",
            "[0:0:0:0:0:0:0:1]:80",
            "[::ffff:127.0.0.1]:5100",
        ] {
            assert!(
                addressed_to_loopback(&headers(&[(HOST, host)]), &path()),
                "{host}"
            );
        }
    }

    #[test]
    fn other_names_are_not_loopback_hosts() {
        for host in [
            "",
            "rebind.example",
            "rebind.example:5100",
            "localhost.rebind.example",
            "app.localhost",
            "127.0.0.1.nip.io",
            "127.1",
            "0.0.0.0:5100",
            "10.0.0.1",
            "169.254.169.254",
            "localhost:",
            "localhost:http",
            "localhost:65536",
            "localhost:5100:1",
            "user@localhost",
            "localhost/x",
            "::1",
            "[::1",
            "[::1]5100",
            "[::1]:",
            "[fe80::1]",
            "[::ffff:10.0.0.1]",
            "[::1%25lo]",
        ] {
            assert!(
                !addressed_to_loopback(&headers(&[(HOST, host)]), &path()),
                "{host:?}"
            );
        }
    }

    #[test]
    fn a_request_that_names_no_host_is_not_addressed_to_loopback() {
        assert!(!addressed_to_loopback(&HeaderMap::new(), &path()));
    }

    #[test]
    fn every_host_a_request_names_must_be_loopback() {
        // Two Host headers: the proxy or server behind may pick either.
        let two = headers(&[(HOST, "localhost"), (HOST, "rebind.example")]);
        assert!(!addressed_to_loopback(&two, &path()));

        // An HTTP/2 request names its host in the authority, which wins over `Host`.
        let h2 = Uri::from_static("http://rebind.example:5100/dev/admin-token");
        assert!(!addressed_to_loopback(
            &headers(&[(HOST, "localhost")]),
            &h2
        ));
        assert!(!addressed_to_loopback(&HeaderMap::new(), &h2));
        let h2 = Uri::from_static("http://127.0.0.1:5100/dev/admin-token");
        assert!(addressed_to_loopback(&HeaderMap::new(), &h2));
        assert!(!addressed_to_loopback(
            &headers(&[(HOST, "rebind.example")]),
            &h2
        ));
    }

    #[test]
    fn an_origin_must_be_a_loopback_origin_when_there_is_one() {
        for origin in [
            "http://localhost",
            "http://localhost:3000",
            "HTTPS://LOCALHOST:3000",
            "http://127.0.0.1:5100",
            "https://[::1]:8443",
        ] {
            let map = headers(&[(HOST, "localhost:5100"), (ORIGIN, origin)]);
            assert!(addressed_to_loopback(&map, &path()), "{origin}");
        }
        for origin in [
            "null",
            "",
            "http://rebind.example",
            "http://rebind.example:5100",
            "http://localhost.rebind.example",
            "http://localhost:3000/",
            "http://localhost@rebind.example",
            "ftp://localhost",
            "file://",
            "localhost",
        ] {
            let map = headers(&[(HOST, "localhost:5100"), (ORIGIN, origin)]);
            assert!(!addressed_to_loopback(&map, &path()), "{origin:?}");
        }
        let two = headers(&[
            (HOST, "localhost"),
            (ORIGIN, "http://localhost"),
            (ORIGIN, "http://rebind.example"),
        ]);
        assert!(!addressed_to_loopback(&two, &path()));
    }

    fn dev_state() -> (tempfile::TempDir, AppState) {
        let dir = tempfile::tempdir().unwrap();
        let env: Environment = [("Ithil__Audit__DisableStdoutSink", "true")]
            .into_iter()
            .collect();
        let flags = Flags {
            dev: true,
            data: Some(dir.path().to_owned()),
            ..Flags::default()
        };
        let config = Config::load(&flags, &env).unwrap();
        let store = Store::open(&config.server.data_dir).unwrap();
        let clock = ManualClock::new(datetime!(2026-05-06 12:00 UTC));
        let (state, writer) = AppState::build(&config, store, Arc::new(clock), &env).unwrap();
        // The writer ends when the state is dropped.
        std::thread::spawn(move || writer.run());
        (dir, state)
    }

    #[test]
    fn a_loopback_peer_in_development_mode_still_needs_a_loopback_host() {
        let (_dir, state) = dev_state();
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let request = |host: &str| {
            Request::get("/dev/admin-token")
                .header(HOST, host)
                .body(())
                .unwrap()
        };
        assert!(allowed_request(&state, peer, &request("localhost:5100")));
        assert!(!allowed_request(
            &state,
            peer,
            &request("rebind.example:5100")
        ));
        assert!(!allowed_request(
            &state,
            "203.0.113.7:1".parse().unwrap(),
            &request("localhost:5100")
        ));
    }

    #[tokio::test]
    async fn a_rebinding_host_or_a_foreign_origin_gets_no_development_token() {
        // Bug: DNS rebinding. A page at rebind.example whose name now resolves to 127.0.0.1
        // reached /dev/admin-token from the developer's own browser, a loopback peer.
        let (_dir, state) = dev_state();
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let send = |path: &'static str, pairs: Vec<(http::HeaderName, &'static str)>| {
            let mut request = Request::get(path).body(Full::new(Bytes::new())).unwrap();
            *request.headers_mut() = headers(&pairs);
            route(&state, request, peer)
        };

        for path in ["/dev/admin-token", "/dev/token"] {
            for pairs in [
                vec![(HOST, "rebind.example:5100")],
                vec![(HOST, "localhost:5100"), (ORIGIN, "http://rebind.example")],
                vec![(HOST, "localhost:5100"), (ORIGIN, "null")],
                vec![],
            ] {
                let answer = send(path, pairs.clone()).await;
                assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{path} {pairs:?}");
                let body = answer.into_body().collect().await.unwrap().to_bytes();
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(body["error"]["code"], "not_found");
            }
        }
        assert_eq!(state.registry.len(), 0, "no development agent was made");

        let answer = send("/dev/admin-token", vec![(HOST, "localhost:5100")]).await;
        assert_eq!(answer.status(), StatusCode::OK);
        let answer = send(
            "/dev/token",
            vec![(HOST, "127.0.0.1:5100"), (ORIGIN, "http://localhost:3000")],
        )
        .await;
        assert_eq!(answer.status(), StatusCode::OK);
    }
}
