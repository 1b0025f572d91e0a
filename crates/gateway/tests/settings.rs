//! The three runtimes read the settings they share alike: the same `MESHCALL_*` variables
//! give the self-hosted server, the Lambda function, and the function as this gateway starts
//! it (from the variables the gateway hands on) the same core `Config`, or are refused by
//! all three. The variables are given as the flags that read them (a test may not change
//! its own environment), found by each command's own `env` names.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::time::{Duration, SystemTime};

use clap::{Command, CommandFactory as _, Parser as _};
use meshcall_core::{
    Config, ResumeKey,
    protocol::{ConnectionId, IceServer},
};
use meshcall_lambda::Secrets;
use proptest::prelude::*;

/// The resume secret all three share (the server is given the key derived from it, as the
/// Lambda derives its key).
const RESUME_SECRET: &str = "a resume secret of at least thirty-two characters";
const TURN_SECRET: &str = "s3cret";

/// `command`'s flags for the variables `env`: each variable as the flag that reads it.
fn flags(command: &Command, env: &[(&str, String)]) -> Vec<String> {
    env.iter()
        .map(|(name, value)| {
            let arg = command
                .get_arguments()
                .find(|a| a.get_env().is_some_and(|e| e == *name))
                .unwrap_or_else(|| panic!("{} reads no {name}", command.get_name()));
            format!("--{}={value}", arg.get_long().unwrap())
        })
        .collect()
}

fn argv(program: &str, extra: &[&str], flags: Vec<String>) -> Vec<String> {
    std::iter::once(program.to_owned())
        .chain(extra.iter().map(|&s| s.to_owned()))
        .chain(flags)
        .collect()
}

fn server(env: &[(&str, String)]) -> Result<Config, String> {
    let flags = flags(&meshcall::Settings::command(), env);
    let s = meshcall::Settings::try_parse_from(argv(
        "meshcall",
        &["--turn-secret", TURN_SECRET],
        flags,
    ))
    .map_err(|e| e.to_string())?;
    Ok(s.core_config(ResumeKey::from_secret(RESUME_SECRET)))
}

fn lambda(env: &[(&str, String)]) -> Result<Config, String> {
    let flags = flags(&meshcall_lambda::Settings::command(), env);
    let s = meshcall_lambda::Settings::try_parse_from(argv("bootstrap", &["--table", "t"], flags))
        .map_err(|e| e.to_string())?;
    let secrets = Secrets {
        resume: Some(RESUME_SECRET.to_owned()),
        turn: Some(TURN_SECRET.to_owned()),
    };
    s.core_config(&secrets).map_err(|e| e.to_string())
}

/// The gateway reads the message size from its own `MESHCALL_GATEWAY_MAX_MESSAGE_BYTES`
/// (and hands it on as `MESHCALL_MAX_MESSAGE_BYTES`); the function reads what it is handed.
fn through_gateway(env: &[(&str, String)]) -> Result<Config, String> {
    let env: Vec<(&str, String)> = env
        .iter()
        .map(|(name, value)| match *name {
            "MESHCALL_MAX_MESSAGE_BYTES" => ("MESHCALL_GATEWAY_MAX_MESSAGE_BYTES", value.clone()),
            _ => (*name, value.clone()),
        })
        .collect();
    let flags = flags(&meshcall_gateway::Settings::command(), &env);
    let s = meshcall_gateway::Settings::try_parse_from(argv(
        "meshcall-gateway",
        &["--turn-secret", TURN_SECRET],
        flags,
    ))
    .map_err(|e| e.to_string())?;
    lambda(&s.function_env())
}

/// Everything a `Config` decides, secrets included (by what they produce).
fn shape(c: &Config) -> (String, Option<String>, Vec<IceServer>) {
    let who = ConnectionId::parse("abc").unwrap();
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    (
        format!("{c:?}"),
        c.resume.as_ref().map(|r| r.key.token(&who)),
        c.ice_servers_for(&who, when),
    )
}

/// The three runtimes' configurations from `env`, all the same; `None` if all refuse it.
fn same_everywhere(env: &[(&str, String)]) -> Result<Option<Config>, TestCaseError> {
    let (s, l, g) = (server(env), lambda(env), through_gateway(env));
    match (&s, &l, &g) {
        (Ok(s), Ok(l), Ok(g)) => {
            prop_assert_eq!(shape(s), shape(l), "server and function differ");
            prop_assert_eq!(
                shape(l),
                shape(g),
                "function alone and through the gateway differ"
            );
        }
        (Err(_), Err(_), Err(_)) => return Ok(None),
        _ => prop_assert!(
            false,
            "refused by some only: server {:?}, function {:?}, gateway {:?}",
            s.as_ref().map(|_| ()),
            l.as_ref().map(|_| ()),
            g.as_ref().map(|_| ())
        ),
    }
    Ok(s.ok())
}

fn var(
    name: &'static str,
    values: &[&'static str],
) -> impl Strategy<Value = Option<(&'static str, String)>> {
    let values: Vec<String> = values.iter().map(|&v| v.to_owned()).collect();
    proptest::option::of(proptest::sample::select(values).prop_map(move |v| (name, v)))
}

/// Any choice of the shared variables, good and bad values among them.
fn env() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    (
        var(
            "MESHCALL_MAX_ROOM_SIZE",
            &["0", "1", "2", "8", "50", "-1", "x"],
        ),
        var("MESHCALL_MAX_MESSAGE_BYTES", &["0", "1", "1000", "131072"]),
        // Always given: with none, the server hands out a public STUN server by default and
        // the function none (its deployment template has the same default).
        var(
            "MESHCALL_STUN",
            &["", "none", "stun:a:3478", "stun:a:3478,,stun:b:3478"],
        )
        .prop_map(|v| v.or(Some(("MESHCALL_STUN", String::new())))),
        var(
            "MESHCALL_TURN",
            &["", "turn:t:3478", "turn:t:3478,turns:t:5349"],
        ),
        var("MESHCALL_TURN_TTL", &["1h", "90s", "1h 30m", "0s", "soon"]),
        var(
            "MESHCALL_ALLOWED_ORIGINS",
            &["", "https://a", "https://a,https://b"],
        ),
        var("MESHCALL_RESUME_GRACE", &["0", "0s", "5s", "2m", "30"]),
        var("MESHCALL_FANOUT_CONCURRENCY", &["0", "1", "4"]),
    )
        .prop_map(|(v0, v1, v2, v3, v4, v5, v6, v7)| {
            [v0, v1, v2, v3, v4, v5, v6, v7]
                .into_iter()
                .flatten()
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_same_variables_give_the_same_config_in_every_runtime(env in env()) {
        same_everywhere(&env)?;
    }
}

#[test]
fn a_room_size_of_zero_is_refused_by_all_three() {
    for name in [
        "MESHCALL_MAX_ROOM_SIZE",
        "MESHCALL_FANOUT_CONCURRENCY",
        "MESHCALL_MAX_MESSAGE_BYTES",
    ] {
        let env = [(name, "0".to_owned())];
        assert!(server(&env).unwrap_err().contains("at least 1"), "{name}");
        assert!(lambda(&env).unwrap_err().contains("at least 1"), "{name}");
        assert!(
            through_gateway(&env).unwrap_err().contains("at least 1"),
            "{name}"
        );
    }
}

#[test]
fn given_settings_reach_the_config_alike() {
    let env: Vec<(&str, String)> = [
        ("MESHCALL_MAX_ROOM_SIZE", "3"),
        ("MESHCALL_MAX_MESSAGE_BYTES", "1000"),
        ("MESHCALL_STUN", "stun:a:3478,stun:b:3478"),
        ("MESHCALL_TURN", "turn:t:3478"),
        ("MESHCALL_TURN_TTL", "1h"),
        ("MESHCALL_RESUME_GRACE", "5s"),
        ("MESHCALL_FANOUT_CONCURRENCY", "4"),
    ]
    .map(|(k, v)| (k, v.to_owned()))
    .to_vec();
    let config = same_everywhere(&env).unwrap().unwrap();
    assert_eq!(config.max_room_size, 3);
    assert_eq!(config.max_message_bytes, 1000);
    assert_eq!(config.fanout_concurrency, 4);
    assert_eq!(config.ice_servers[0].urls, ["stun:a:3478", "stun:b:3478"]);
    let turn = config.turn.unwrap();
    assert_eq!(
        (turn.urls.as_slice(), turn.ttl),
        (&["turn:t:3478".to_owned()][..], Duration::from_hours(1))
    );
    assert_eq!(config.resume.unwrap().grace, Duration::from_secs(5));
}
