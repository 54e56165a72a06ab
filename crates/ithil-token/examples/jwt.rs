//! Signs and verifies HS256 tokens from the command line.
//!
//! ```text
//! cargo run -p ithil-token --example jwt -- demo
//! cargo run -p ithil-token --example jwt -- sign --key <secret> --sub agt_1 [--iss ithil]
//!     [--aud mcp] [--ttl 3600] [--kid k1] [--claim name=json]...
//! cargo run -p ithil-token --example jwt -- verify --key <secret> [--iss ithil] [--aud mcp] <token>
//! ```
//!
//! The key is the secret's UTF-8 bytes, at least 32 of them; instead of `--key` it may come from
//! the `JWT_KEY` environment variable, which keeps it out of shell history.

use std::process::ExitCode;

use ithil_token::{Audience, Claims, KeyRing, SigningKey, Validation, sign, verify};
use serde_json::{Map, Value};

type Extra = Map<String, Value>;

const USAGE: &str = "usage:
  jwt demo
  jwt sign --key SECRET --sub SUBJECT [--iss ISSUER] [--aud AUDIENCE] [--ttl SECONDS]
           [--kid KID] [--claim NAME=JSON]...
  jwt verify --key SECRET [--iss ISSUER] [--aud AUDIENCE] [--kid KID] TOKEN
SECRET may be given in JWT_KEY instead; it must be at least 32 bytes.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<String, String> {
    let (command, rest) = args.split_first().ok_or("no command given")?;
    match command.as_str() {
        "demo" => demo(),
        "sign" => sign_command(&Options::parse(rest)?),
        "verify" => verify_command(&Options::parse(rest)?),
        other => Err(format!("unknown command {other:?}")),
    }
}

/// Generates a key, signs a token with it, verifies the token and shows both.
fn demo() -> Result<String, String> {
    let keys = KeyRing::new("demo", SigningKey::generate().map_err(|e| e.to_string())?);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut extra = Extra::new();
    extra.insert("role".into(), "agent".into());
    extra.insert("scopes".into(), serde_json::json!(["orders:read"]));
    let claims = Claims {
        iss: Some("ithil-dev".into()),
        sub: Some("agt_demo".into()),
        aud: Some(Audience::One("mcp".into())),
        iat: Some(now),
        exp: Some(now + 3600),
        ..Claims::new(extra)
    };

    let token = sign(&keys, &claims).map_err(|e| e.to_string())?;
    let validation = Validation::default().issuer("ithil-dev").audience("mcp");
    let verified: Claims<Extra> = verify(&token, &keys, &validation).map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&verified).map_err(|e| e.to_string())?;
    Ok(format!(
        "token (signed with a fresh random key):\n{token}\n\nverified claims:\n{json}"
    ))
}

fn sign_command(options: &Options) -> Result<String, String> {
    let keys = options.keys()?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = Claims {
        iss: options.iss.clone(),
        sub: Some(options.sub.clone().ok_or("sign needs --sub")?),
        aud: options.aud.clone().map(Audience::One),
        iat: Some(now),
        exp: Some(now + options.ttl),
        ..Claims::new(options.extra.clone())
    };
    sign(&keys, &claims).map_err(|e| e.to_string())
}

fn verify_command(options: &Options) -> Result<String, String> {
    let token = options.token.as_deref().ok_or("verify needs a token")?;
    let mut validation = Validation::default();
    if let Some(iss) = &options.iss {
        validation = validation.issuer(iss);
    }
    if let Some(aud) = &options.aud {
        validation = validation.audience(aud);
    }
    let claims: Claims<Extra> =
        verify(token, &options.keys()?, &validation).map_err(|e| e.to_string())?;
    serde_json::to_string_pretty(&claims).map_err(|e| e.to_string())
}

#[derive(Default)]
struct Options {
    key: Option<String>,
    kid: Option<String>,
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<String>,
    ttl: i64,
    extra: Extra,
    token: Option<String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options {
            ttl: 3600,
            ..Options::default()
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .cloned()
                    .ok_or_else(|| format!("{arg} needs a value"))
            };
            match arg.as_str() {
                "--key" => options.key = Some(value()?),
                "--kid" => options.kid = Some(value()?),
                "--iss" => options.iss = Some(value()?),
                "--sub" => options.sub = Some(value()?),
                "--aud" => options.aud = Some(value()?),
                "--ttl" => {
                    options.ttl = value()?
                        .parse()
                        .map_err(|_| "--ttl needs a whole number of seconds")?;
                }
                "--claim" => {
                    let claim = value()?;
                    let (name, json) = claim.split_once('=').ok_or("--claim needs NAME=JSON")?;
                    let json = serde_json::from_str(json)
                        .map_err(|_| format!("the value of claim {name:?} is not JSON"))?;
                    options.extra.insert(name.to_owned(), json);
                }
                flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
                token if options.token.is_none() => options.token = Some(token.to_owned()),
                _ => return Err("more than one token given".into()),
            }
        }
        Ok(options)
    }

    fn keys(&self) -> Result<KeyRing, String> {
        let secret = match &self.key {
            Some(key) => key.clone(),
            None => std::env::var("JWT_KEY").map_err(|_| "no --key given and JWT_KEY is unset")?,
        };
        let key = SigningKey::from_bytes(secret.as_bytes()).map_err(|e| e.to_string())?;
        // Tokens signed by this program carry the kid; verify finds the key under the same kid,
        // or under the signing key when the token has none.
        Ok(KeyRing::new(
            self.kid.clone().unwrap_or_else(|| "cli".into()),
            key,
        ))
    }
}
