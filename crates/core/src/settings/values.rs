//! How every runtime reads a setting's text, in one place: the value parsers its flags
//! name (`value_parser = positive`, [`duration`], [`switch`], [`stun_url`], [`turn_url`]), and
//! [`parse`], which reads a command line and its `MESHCALL_*` variables with an empty
//! variable counting as not set.

use std::{ffi::OsString, time::Duration};

use clap::{ArgAction, CommandFactory, FromArgMatches, builder::BoolishValueParser};

/// Parses a whole number of at least 1 (a clap value parser).
///
/// # Errors
/// A message naming the text, for anything else.
pub fn positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?} is not a whole number of at least 1")),
    }
}

/// Parses a duration with units (`300ms`, `30s`, `10m`, `24h`; a bare `0` is zero). The
/// one duration parser of every runtime's flags.
///
/// # Errors
/// A message naming the text, for anything else.
pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?} is not a duration: {e}"))
}

/// A duration as [`duration`] reads it back.
pub fn duration_text(d: Duration) -> String {
    if d.is_zero() {
        "0s".to_owned()
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// The value parser of every on/off setting: `1`/`0`, `yes`/`no`, `true`/`false`,
/// `on`/`off` (and `y`/`n`, `t`/`f`), any case. On the command line the flag alone is on.
pub fn switch() -> BoolishValueParser {
    BoolishValueParser::new()
}

/// A `--stun` entry: a `stun:` or `stuns:` URL with something after the scheme, `none`
/// (no STUN server), or empty (nothing: an empty deployment parameter).
///
/// # Errors
/// A message naming the text, for anything else.
pub fn stun_url(s: &str) -> Result<String, String> {
    if s.trim().is_empty() || s.trim().eq_ignore_ascii_case(super::NO_STUN) {
        return Ok(s.to_owned());
    }
    ice_url(s, &["stun", "stuns"])
}

/// A `--turn` entry: a `turn:` or `turns:` URL with something after the scheme, or empty.
///
/// # Errors
/// A message naming the text, for anything else.
pub fn turn_url(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Ok(s.to_owned());
    }
    ice_url(s, &["turn", "turns"])
}

/// `s` when it is an ICE server URL (RFC 7064, 7065) with one of `schemes`.
fn ice_url(s: &str, schemes: &[&str]) -> Result<String, String> {
    let url = s.trim();
    let valid = url.split_once(':').is_some_and(|(scheme, rest)| {
        schemes.iter().any(|k| scheme.eq_ignore_ascii_case(k))
            && !rest.is_empty()
            && !rest.starts_with('/')
            && !rest.chars().any(char::is_whitespace)
    });
    if valid {
        Ok(url.to_owned())
    } else {
        let schemes: Vec<String> = schemes.iter().map(|k| format!("{k}:")).collect();
        Err(format!(
            "{s:?} is not an ICE server URL ({}host[:port])",
            schemes.join("host[:port] or ")
        ))
    }
}

/// `T`'s command, with every argument whose environment variable is set but empty acting as
/// if it were not set: an empty variable means "not set" for every flag alike (without
/// this, clap hands `""` to the flag: `MESHCALL_ACME_DOMAIN=` asked for a certificate for
/// the domain `""`, `MESHCALL_REDIRECT_HTTP=` was refused as no address).
pub fn command<T: CommandFactory>() -> clap::Command {
    without_empty_env(T::command(), |name| std::env::var_os(name))
}

/// `command` with the variables that `lookup` finds empty unset, in every subcommand too;
/// and those of on/off flags that say off (clap counts a flag given by its variable as
/// present even when off, so `MESHCALL_TLS_SELF_SIGNED=0` conflicted with `--tls-cert`).
fn without_empty_env(
    mut command: clap::Command,
    lookup: impl Fn(&std::ffi::OsStr) -> Option<OsString> + Copy,
) -> clap::Command {
    let empty: Vec<String> = command
        .get_arguments()
        .filter(|a| {
            a.get_env().and_then(lookup).is_some_and(|value| {
                value.is_empty() || (matches!(a.get_action(), ArgAction::SetTrue) && off(&value))
            })
        })
        .map(|a| a.get_id().to_string())
        .collect();
    for id in empty {
        command = command.mut_arg(id, |a| a.env(None::<&'static str>));
    }
    let subcommands: Vec<String> = command
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    for name in subcommands {
        command = command.mut_subcommand(name, |c| without_empty_env(c, lookup));
    }
    command
}

/// Whether an on/off value says off (`0`, `no`, `false`, `off`, `n`, `f`, any case).
fn off(value: &std::ffi::OsStr) -> bool {
    value.to_str().is_some_and(|v| {
        ["0", "no", "false", "off", "n", "f"]
            .iter()
            .any(|o| v.trim().eq_ignore_ascii_case(o))
    })
}

/// Reads `T` from this process's command line and environment (empty variables not set:
/// [`command`]); on an error, prints it and exits, as `Parser::parse` does.
pub fn parse<T: CommandFactory + FromArgMatches>() -> T {
    try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// Reads `T` from `args` and this process's environment (empty variables not set:
/// [`command`]).
///
/// # Errors
/// [`clap::Error`] for a missing or malformed flag or variable.
pub fn try_parse_from<T, I>(args: I) -> Result<T, clap::Error>
where
    T: CommandFactory + FromArgMatches,
    I: IntoIterator,
    I::Item: Into<OsString> + Clone,
{
    let mut command = command::<T>();
    let mut matches = command.try_get_matches_from_mut(args)?;
    T::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut command))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[arg(long, env = "MESHCALL_TEST_ON", value_parser = switch())]
        on: bool,
        #[arg(long, env = "MESHCALL_TEST_ADDR")]
        addr: Option<std::net::SocketAddr>,
        #[arg(long, env = "MESHCALL_TEST_LIST", value_delimiter = ',')]
        list: Vec<String>,
        #[arg(long = "stun", value_parser = stun_url, value_delimiter = ',')]
        stun: Vec<String>,
        #[arg(long = "turn", value_parser = turn_url, value_delimiter = ',')]
        turn: Vec<String>,
    }

    fn flags(args: &[&str]) -> Result<Flags, clap::Error> {
        Flags::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
    }

    #[test]
    fn on_off_takes_every_usual_spelling() {
        for on in ["1", "yes", "true", "on", "Y", "TRUE"] {
            assert!(flags(&["--on", on]).is_err(), "a flag takes no value");
            assert!(switch().parse_ref_value(on), "{on}");
        }
        for off in ["0", "no", "false", "off", "N"] {
            assert!(!switch().parse_ref_value(off), "{off}");
        }
        assert!(flags(&["--on"]).unwrap().on);
        assert!(!flags(&[]).unwrap().on);
    }

    /// `BoolishValueParser` through clap's `TypedValueParser`, as a variable's value is.
    trait ParseRef {
        fn parse_ref_value(&self, s: &str) -> bool;
    }

    impl ParseRef for BoolishValueParser {
        fn parse_ref_value(&self, s: &str) -> bool {
            use clap::builder::TypedValueParser as _;
            let cmd = clap::Command::new("t");
            self.parse_ref(&cmd, None, std::ffi::OsStr::new(s))
                .unwrap_or_else(|e| panic!("{s}: {e}"))
        }
    }

    #[test]
    fn ice_server_urls_need_their_scheme() {
        let s = flags(&[
            "--stun",
            "stun:a:3478,STUNS:b,none,,",
            "--turn",
            "turn:t:3478?transport=udp,turns:t:5349",
        ])
        .unwrap();
        assert_eq!(s.stun, ["stun:a:3478", "STUNS:b", "none", "", ""]);
        assert_eq!(s.turn, ["turn:t:3478?transport=udp", "turns:t:5349"]);
        for bad in [
            &["--stun", "bogus"][..],
            &["--stun", "stun:"],
            &["--stun", "turn:t:3478"],
            &["--stun", "https://stun.example"],
            &["--turn", "bogus"],
            &["--turn", "stun:a:3478"],
            &["--turn", "turn://t"],
            &["--turn", "none"],
        ] {
            assert!(flags(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_empty_variable_is_not_set() {
        let lookup = |name: &std::ffi::OsStr| match name.to_str() {
            Some("MESHCALL_TEST_ON" | "MESHCALL_TEST_ADDR") => Some(OsString::new()),
            _ => None,
        };
        let command = without_empty_env(Flags::command(), lookup);
        for id in ["on", "addr"] {
            let arg = command.get_arguments().find(|a| a.get_id() == id).unwrap();
            assert_eq!(arg.get_env(), None, "{id}");
        }
        for (value, unset) in [("off", true), ("No", true), ("0", true), ("1", false)] {
            let lookup = |name: &std::ffi::OsStr| {
                (name == "MESHCALL_TEST_ON").then(|| OsString::from(value))
            };
            let command = without_empty_env(Flags::command(), lookup);
            let arg = command
                .get_arguments()
                .find(|a| a.get_id() == "on")
                .unwrap();
            assert_eq!(arg.get_env().is_none(), unset, "{value}");
        }
        let list = command.get_arguments().find(|a| a.get_id() == "list");
        assert!(
            list.unwrap().get_env().is_some(),
            "a variable not set stays"
        );
    }

    #[test]
    fn durations_read_back_as_written() {
        for d in [
            Duration::ZERO,
            Duration::from_millis(1500),
            Duration::from_hours(2),
        ] {
            assert_eq!(duration(&duration_text(d)), Ok(d));
        }
        assert!(duration("30").is_err());
        assert_eq!(duration(" 10m "), Ok(Duration::from_mins(10)));
    }
}
