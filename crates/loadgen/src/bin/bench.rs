//! The side-by-side benchmark of issue 11: meshcall, matchbox and the `PeerJS` server, each
//! started fresh on 127.0.0.1 for every case, driven by the same Rust clients speaking each
//! server's own protocol. `scripts/bench` installs the peers, builds, and runs this;
//! docs/benchmarks.md explains the cases, the setups and the fairness rules.
//!
//! For `--runs` repetitions, every case runs on each server in turn, the order of the
//! servers rotating from one repetition to the next; with `--transport ws,wss` (or
//! `--tls`), every case runs over plain WebSocket connections and then over each server's
//! own TLS (`matchbox_server` has none and is left out of the wss cases). It prints one
//! table of medians per transport with meshcall's ratios to the others (and, with both
//! transports, ws and wss side by side with the ratio wss ÷ ws), writes every raw figure
//! of every run to a JSON file, and exits non-zero if any case failed (a message lost,
//! refused or duplicated, a socket broken, a wait that ran out).

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use clap::Parser;
use meshcall_loadgen::{
    bench::{
        cases::{self, Case, Sizes, Target},
        report::{self, Record},
        server::{Kind, Programs, Transport},
        tls::Tls,
    },
    procfs,
};
use serde_json::{Value, json};

/// Set in the re-executed, pinned harness.
const PINNED_ENV: &str = "MESHCALL_BENCH_PINNED";

/// meshcall, matchbox and `PeerJS` side by side.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// Repetitions of every case on every server (medians are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Small sizes and short windows, one repetition: about a minute in all.
    #[arg(long)]
    quick: bool,
    /// Run each server on CPU 0 and this harness on CPU 1 (`taskset`).
    #[arg(long)]
    pin: bool,
    /// Only these servers (comma-separated: meshcall, matchbox, peerjs).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Only these cases (comma-separated families: idle, moderate, saturated, storm; or
    /// names such as idle-10000, moderate-2).
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Over which transports (comma-separated: ws, wss). wss: meshcall and the `PeerJS`
    /// server terminate TLS themselves with a certificate made for the run, which the
    /// clients trust; `matchbox_server` has no TLS and is skipped.
    #[arg(long, value_delimiter = ',', default_value = "ws")]
    transport: Vec<String>,
    /// The same as `--transport ws,wss`.
    #[arg(long, conflicts_with = "transport")]
    tls: bool,
    /// Where the run's certificate and key are written (for wss).
    #[arg(long, default_value = "artifacts/bench/tls")]
    tls_dir: PathBuf,
    /// The meshcall binary.
    #[arg(long, default_value = "target/release/meshcall")]
    meshcall: PathBuf,
    /// The `matchbox_server` binary.
    #[arg(long, default_value = ".bench-cache/matchbox/bin/matchbox_server")]
    matchbox: PathBuf,
    /// The `peer` package's CLI script.
    #[arg(
        long,
        default_value = ".bench-cache/peerjs/node_modules/peer/dist/bin/peerjs.js"
    )]
    peerjs: PathBuf,
    /// Node, for the `PeerJS` server.
    #[arg(long, default_value = "node")]
    node: PathBuf,
    /// The JSON file with every raw figure (default
    /// `artifacts/bench/bench-<UTC time>.json`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where the servers' logs go (one file per server, the last start's).
    #[arg(long, default_value = "artifacts/bench/logs")]
    log_dir: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.pin && std::env::var_os(PINNED_ENV).is_none() {
        return match repin() {
            Ok(code) => code,
            Err(e) => {
                eprintln!("bench: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--pin`: runs this same command again on CPU 1 (`taskset -c 1`), where it starts the
/// servers on CPU 0.
fn repin() -> anyhow::Result<ExitCode> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if cpus < 2 {
        bail!("--pin needs two CPUs; this process may use {cpus}");
    }
    let me = std::env::current_exe().context("the bench binary's path")?;
    let status = Command::new("taskset")
        .arg("-c")
        .arg("1")
        .arg(me)
        .args(std::env::args_os().skip(1))
        .env(PINNED_ENV, "1")
        .status()
        .context("running taskset")?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn servers(args: &Args) -> anyhow::Result<Vec<Kind>> {
    if args.only.is_empty() {
        return Ok(Kind::ALL.to_vec());
    }
    let mut v = args
        .only
        .iter()
        .map(|s| Kind::parse(s.trim()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    v.sort();
    v.dedup();
    Ok(v)
}

fn transports(args: &Args) -> anyhow::Result<Vec<Transport>> {
    if args.tls {
        return Ok(Transport::ALL.to_vec());
    }
    let mut v = args
        .transport
        .iter()
        .map(|s| Transport::parse(s.trim()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    v.sort();
    v.dedup();
    Ok(v)
}

fn selected_cases(args: &Args, sizes: &Sizes) -> anyhow::Result<Vec<Case>> {
    let all = Case::all(sizes);
    if args.cases.is_empty() {
        return Ok(all);
    }
    for want in &args.cases {
        if !all.iter().any(|c| c.family() == want || c.name() == *want) {
            bail!("unknown case {want:?}; cases: {}", names(&all));
        }
    }
    Ok(all
        .into_iter()
        .filter(|c| args.cases.iter().any(|w| c.family() == w || c.name() == *w))
        .collect())
}

fn names(cases: &[Case]) -> String {
    cases
        .iter()
        .map(|c| c.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn first_line(program: &Path, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The first line of `path` containing `needle`, trimmed.
fn file_line(path: &Path, needle: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.contains(needle))
        .map(|l| l.trim().to_owned())
}

/// The installed `matchbox_server` version, from `cargo install`'s `.crates.toml`
/// (`"matchbox_server 0.15.0 (registry+…)" = […]`).
fn matchbox_version(binary: &Path) -> Option<String> {
    let root = binary.parent()?.parent()?;
    let line = file_line(&root.join(".crates.toml"), "matchbox_server ")?;
    let rest = &line[line.find("matchbox_server ")? + "matchbox_server ".len()..];
    Some(rest.split_whitespace().next()?.to_owned())
}

/// The `peer` package's version, from its package.json (three levels above
/// `dist/bin/peerjs.js`).
fn peer_version(cli: &Path) -> Option<String> {
    let dir = cli.ancestors().nth(3)?;
    let text = std::fs::read_to_string(dir.join("package.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Some(v.get("version")?.as_str()?.to_owned())
}

/// What the JSON says about this machine, the versions and the settings.
fn meta(args: &Args, plan: &Plan, started: u64) -> Value {
    let unknown = || "unknown".to_owned();
    json!({
        "started": report::timestamp(started),
        "command": std::env::args().collect::<Vec<_>>(),
        "machine": {
            // The machine's, not this process's (pinned, it may use one).
            "cpus": std::fs::read_to_string("/proc/cpuinfo")
                .map_or(0, |info| info.lines().filter(|l| l.starts_with("processor")).count()),
            "cpu": file_line(Path::new("/proc/cpuinfo"), "model name")
                .and_then(|l| Some(l.split_once(':')?.1.trim().to_owned()))
                .unwrap_or_else(unknown),
            "kernel": first_line(Path::new("uname"), &["-sr"]),
        },
        "versions": {
            "meshcall": first_line(&plan.programs.meshcall, &["--version"]),
            "meshcall_commit": first_line(Path::new("git"), &["describe", "--always", "--dirty"]),
            "matchbox_server": matchbox_version(&plan.programs.matchbox).unwrap_or_else(unknown),
            "peer": peer_version(&plan.programs.peerjs).unwrap_or_else(unknown),
            "node": first_line(&plan.programs.node, &["--version"]),
        },
        "pinned": args.pin,
        "quick": args.quick,
        "runs": plan.runs,
        "sizes": format!("{:?}", plan.sizes),
        "transports": plan.transports.iter().map(|t| t.name()).collect::<Vec<_>>(),
        "servers": plan
            .transports
            .iter()
            .flat_map(|&t| Kind::ALL.iter().map(move |&k| (k, t)))
            .filter(|&(k, t)| k.serves(t))
            .map(|(k, t)| {
                (
                    format!("{k}{}", t.suffix()),
                    json!(command_line(&plan.programs, k, t)),
                )
            })
            .collect::<serde_json::Map<_, _>>(),
    })
}

/// How `kind` is started over `transport` (port 0 standing for the free port each start
/// picks).
fn command_line(programs: &Programs, kind: Kind, transport: Transport) -> String {
    let (program, args, env) = programs.command(kind, ([127, 0, 0, 1], 0).into(), transport);
    let mut words: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if let Some(cpu) = programs.pin_cpu {
        words.push(format!("taskset -c {cpu}"));
    }
    words.push(program.display().to_string());
    words.extend(args);
    words.join(" ")
}

fn summary(outcome: &cases::Outcome) -> String {
    outcome
        .figures
        .iter()
        .map(|(k, v)| format!("{k}={v:.2}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What to run.
struct Plan {
    programs: Programs,
    servers: Vec<Kind>,
    transports: Vec<Transport>,
    cases: Vec<Case>,
    sizes: Sizes,
    runs: usize,
    clk_tck: u32,
    case_limit: Duration,
}

impl Plan {
    fn new(args: &Args) -> anyhow::Result<Self> {
        let sizes = if args.quick {
            Sizes::quick()
        } else {
            Sizes::full()
        };
        let transports = transports(args)?;
        let tls = if transports.contains(&Transport::Wss) {
            Some(Tls::generate(&args.tls_dir).context("the certificate for wss")?)
        } else {
            None
        };
        let programs = Programs {
            meshcall: args.meshcall.clone(),
            matchbox: args.matchbox.clone(),
            node: args.node.clone(),
            peerjs: args.peerjs.clone(),
            pin_cpu: args.pin.then_some(0),
            log_dir: args.log_dir.clone(),
            tls,
        };
        let servers = servers(args)?;
        for (kind, path) in [
            (Kind::Meshcall, &programs.meshcall),
            (Kind::Matchbox, &programs.matchbox),
            (Kind::Peerjs, &programs.peerjs),
        ] {
            if servers.contains(&kind) && !path.exists() {
                bail!(
                    "{kind}: {} does not exist (scripts/bench installs it)",
                    path.display()
                );
            }
        }
        Ok(Self {
            cases: selected_cases(args, &sizes)?,
            runs: if args.quick { 1 } else { args.runs.max(1) },
            case_limit: if args.quick {
                Duration::from_mins(1)
            } else {
                Duration::from_mins(10)
            },
            clk_tck: procfs::clk_tck(),
            programs,
            servers,
            transports,
            sizes,
        })
    }

    /// Every case over every transport on every server that has it, `runs` times, the
    /// servers' order rotating.
    async fn run(&self) -> Vec<Record> {
        let runs = self.runs;
        let mut records = Vec::new();
        for run in 0..runs {
            let mut order = self.servers.clone();
            let shift = run % order.len();
            order.rotate_left(shift);
            for &case in &self.cases {
                for &transport in &self.transports {
                    for &kind in order.iter().filter(|k| k.serves(transport)) {
                        let result = self.one(kind, transport, case).await;
                        let record = Record {
                            run,
                            case: case.name(),
                            transport,
                            server: kind,
                            result: result.map_err(|e| format!("{e:#}")),
                        };
                        let name = record.key();
                        match &record.result {
                            Ok(o) => {
                                println!("[run {}/{runs}] {name} {kind}: {}", run + 1, summary(o));
                            }
                            Err(e) => {
                                println!("[run {}/{runs}] {name} {kind}: FAILED: {e}", run + 1);
                            }
                        }
                        records.push(record);
                    }
                }
            }
        }
        records
    }

    /// One case over `transport` on a fresh server.
    async fn one(
        &self,
        kind: Kind,
        transport: Transport,
        case: Case,
    ) -> anyhow::Result<cases::Outcome> {
        let start = {
            let programs = self.programs.clone();
            let settle = self.sizes.settle;
            tokio::task::spawn_blocking(move || programs.start(kind, transport, settle))
        };
        let mut server = start.await??;
        let limit = self.case_limit;
        let result = {
            let mut target = Target {
                server: &mut server,
                clk_tck: self.clk_tck,
                sizes: &self.sizes,
            };
            tokio::time::timeout(limit, cases::run(case, &mut target))
                .await
                .unwrap_or_else(|_| {
                    Err(anyhow::anyhow!(
                        "{} did not finish within {limit:?}",
                        case.name()
                    ))
                })
        };
        tokio::task::spawn_blocking(move || server.stop()).await?;
        result
    }
}

async fn bench(args: Args) -> anyhow::Result<bool> {
    let started = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let plan = Plan::new(&args)?;
    println!(
        "bench: {} run(s) of {} over {} on {}{}",
        plan.runs,
        names(&plan.cases),
        plan.transports
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(" and "),
        plan.servers
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", "),
        if args.pin {
            " (servers on CPU 0, harness on CPU 1)"
        } else {
            ""
        }
    );
    let records = plan.run().await;
    for &transport in &plan.transports {
        println!("\n{transport}://");
        if transport == Transport::Wss && plan.servers.contains(&Kind::Matchbox) {
            println!("(matchbox_server has no TLS: not measured over wss)");
        }
        println!();
        print!(
            "{}",
            report::table(&records, &plan.sizes, &plan.servers, transport)
        );
    }
    let side = report::transport_table(&records, &plan.sizes, &plan.servers);
    if !side.is_empty() {
        println!("\nws:// and wss:// side by side\n");
        print!("{side}");
    }
    let mut doc = report::document(meta(&args, &plan, started), &records);
    let finished = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    doc["meta"]["finished"] = json!(report::timestamp(finished));
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "artifacts/bench/bench-{}.json",
            report::timestamp(started)
        ))
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {}", out.display()))?;
    println!("\nraw figures: {}", out.display());
    let mut ok = true;
    for r in &records {
        if let Err(e) = &r.result {
            eprintln!("FAILED: run {} {} {}: {e}", r.run + 1, r.key(), r.server);
            ok = false;
        }
    }
    Ok(ok)
}
