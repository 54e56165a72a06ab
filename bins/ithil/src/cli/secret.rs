//! The two secrets of the command line, the admin token and the API key: where they are read
//! from, where a new token is written, and types that never print them.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use http::HeaderValue;

use super::Failure;

/// The environment variable that holds the admin token.
pub const ADMIN_TOKEN_ENV: &str = "ITHIL_ADMIN_TOKEN";

/// The environment variable that holds the API key for `admin login`.
pub const API_KEY_ENV: &str = "ITHIL_API_KEY";

/// The largest token or key file read; anything longer is not a token.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// An admin token; `Debug` prints only the type.
pub struct AdminToken(String);

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// The `Authorization` header that carries the token, marked sensitive.
    ///
    /// # Errors
    ///
    /// A usage error for a token with characters a header cannot carry; the message does not
    /// repeat the token.
    pub fn authorization(&self) -> Result<HeaderValue, Failure> {
        let mut value = HeaderValue::try_from(format!("Bearer {}", self.0)).map_err(|_| {
            Failure::Usage("the admin token holds characters an HTTP header cannot carry".into())
        })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// An API key; `Debug` prints only the type.
pub struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

impl ApiKey {
    /// The key itself, for the request body.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Reads one variable of the process environment; tests pass their own function instead.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The admin token: from `file` if given, else from `ITHIL_ADMIN_TOKEN`.
///
/// # Errors
///
/// A usage error when neither holds a token, or the file cannot be read.
pub fn admin_token(
    file: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<AdminToken, Failure> {
    match file {
        Some(path) => {
            let token = read_secret(path)?;
            if token.is_empty() {
                return Err(Failure::Usage(format!(
                    "{} holds no admin token",
                    path.display()
                )));
            }
            Ok(AdminToken(token))
        }
        None => match env(ADMIN_TOKEN_ENV).map(|t| t.trim().to_owned()) {
            Some(token) if !token.is_empty() => Ok(AdminToken(token)),
            _ => Err(Failure::Usage(format!(
                "no admin token: set {ADMIN_TOKEN_ENV} or pass --token-file FILE \
                 (`ithil admin login` gets one)"
            ))),
        },
    }
}

/// The API key of `admin login`: from `file` if given, else from `ITHIL_API_KEY`.
///
/// # Errors
///
/// A usage error when neither holds a key, or the file cannot be read.
pub fn api_key(
    file: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<ApiKey, Failure> {
    let key = match file {
        Some(path) => read_secret(path)?,
        None => env(API_KEY_ENV)
            .map(|k| k.trim().to_owned())
            .unwrap_or_default(),
    };
    if key.is_empty() {
        return Err(Failure::Usage(match file {
            Some(path) => format!("{} holds no API key", path.display()),
            None => format!("no API key: set {API_KEY_ENV} or pass --api-key-file FILE"),
        }));
    }
    Ok(ApiKey(key))
}

/// Writes a new admin token to `path`, readable by its owner only, replacing what was there.
///
/// # Errors
///
/// [`Failure::Write`] when the file cannot be created or written.
pub fn write_token(path: &Path, token: &str) -> Result<(), Failure> {
    let fail = |source| Failure::Write {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(fail)?;

    // A file that existed keeps its mode when opened, so it is narrowed before the token goes in.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(fail)?;
    }
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(fail)
}

/// The trimmed content of a secret file.
fn read_secret(path: &Path) -> Result<String, Failure> {
    use std::io::Read as _;

    let fail = |source| Failure::Read {
        path: path.to_owned(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_SECRET_FILE).read_to_string(&mut text))
        .map_err(fail)?;
    Ok(text.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_token_file_wins_over_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "from-file\n").unwrap();
        let token = admin_token(Some(&path), env(&[(ADMIN_TOKEN_ENV, "from-env")])).unwrap();
        assert_eq!(token.0, "from-file");

        let token = admin_token(None, env(&[(ADMIN_TOKEN_ENV, " from-env\n")])).unwrap();
        assert_eq!(token.0, "from-env");
    }

    #[test]
    fn a_missing_or_empty_token_is_a_usage_error() {
        for failure in [
            admin_token(None, env(&[])).unwrap_err(),
            admin_token(None, env(&[(ADMIN_TOKEN_ENV, "  ")])).unwrap_err(),
        ] {
            assert_eq!(failure.exit_code(), 2);
            assert!(failure.to_string().contains(ADMIN_TOKEN_ENV), "{failure}");
        }

        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let failure = admin_token(Some(&empty), env(&[])).unwrap_err();
        assert!(
            failure.to_string().contains("holds no admin token"),
            "{failure}"
        );
        let failure = admin_token(Some(&dir.path().join("absent")), env(&[])).unwrap_err();
        assert_eq!(failure.exit_code(), 2);
    }

    #[test]
    fn the_api_key_comes_from_its_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "k1\n").unwrap();
        assert_eq!(api_key(Some(&path), env(&[])).unwrap().expose(), "k1");
        assert_eq!(
            api_key(None, env(&[(API_KEY_ENV, "k2")])).unwrap().expose(),
            "k2"
        );
        assert_eq!(api_key(None, env(&[])).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let token = AdminToken("eyJhbGci.secret.part".into());
        assert!(!format!("{token:?}").contains("secret"));
        let key = ApiKey("topsecret".into());
        assert!(!format!("{key:?}").contains("topsecret"));
    }

    #[test]
    fn a_token_a_header_cannot_carry_is_refused_without_repeating_it() {
        let token = AdminToken("bad\ntoken".into());
        let failure = token.authorization().unwrap_err();
        assert_eq!(failure.exit_code(), 2);
        assert!(!failure.to_string().contains("bad"), "{failure}");
        assert!(
            AdminToken("abc.def".into())
                .authorization()
                .unwrap()
                .is_sensitive()
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_written_token_file_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt as _;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_token(&path, "new.token").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new.token\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
