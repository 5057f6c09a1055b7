//! The `tollgate` command: `serve` runs the gateway, `check` validates a `routes.toml`,
//! `key new` creates a virtual API key, `eval-router` measures the classifier on labelled
//! prompts, `sim` runs the simulated providers on their own (for load benchmarks).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use std::sync::Arc;
use tollgate::config::{parse_base_url, Config};

use tollgate::providers::auth::Secret;
use tollgate::providers::ProviderKind;
use tollgate::proxy::upstream::Credentials;
use tollgate::proxy::GatewayState;
use tollgate::reload::Reloader;
use tollgate::server::{self, ServeOptions};
use tollgate::sim::{SimFleet, SimOptions};

/// tollgate: an OpenAI-compatible LLM gateway.
#[derive(Parser)]
#[command(name = "tollgate", version, about, long_about = None)]
struct Cli {
    /// Log as JSON lines instead of human-readable text (logs go to stderr).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The routes file.
        #[arg(long, short, default_value = "routes.toml")]
        config: PathBuf,
        /// Serve offline against built-in simulated providers (no credentials needed).
        #[arg(long)]
        demo: bool,
        /// Public listener HOST:PORT (overrides the config).
        #[arg(long)]
        listen: Option<String>,
        /// Admin listener HOST:PORT (overrides the config).
        #[arg(long)]
        admin_listen: Option<String>,
    },
    /// Validate a routes file (and its budget files) without serving; exit 0 when valid.
    Check {
        /// The routes file.
        #[arg(default_value = "routes.toml")]
        config: PathBuf,
    },
    /// Measure the classifier of a routes file on labelled prompts (JSON lines of
    /// `{"id", "prompt", "label": "simple"|"complex", "source"}`).
    EvalRouter {
        /// The labelled prompts.
        file: PathBuf,
        /// The routes file whose classifier and tiers are evaluated.
        #[arg(long, short, default_value = "routes.toml")]
        config: PathBuf,
        /// Also list the prompts routed against their label, with the classifier's reason.
        #[arg(long)]
        show_misses: bool,
    },
    /// Run the simulated providers alone, on fixed ports, until SIGINT or SIGTERM (an
    /// upstream for benchmarks): OpenAI on PORT, Anthropic on PORT+1, Mistral on PORT+2,
    /// Cortex on PORT+3. Any non-empty credential is accepted; requests are not recorded.
    Sim {
        /// HOST:PORT of the first simulator.
        #[arg(long, default_value = "127.0.0.1:8180")]
        listen: std::net::SocketAddr,
        /// Delay between stream events, in milliseconds (a fault directive overrides it).
        #[arg(long, default_value_t = 0)]
        chunk_delay_ms: u64,
        /// Delay before response headers, in milliseconds.
        #[arg(long, default_value_t = 0)]
        first_byte_delay_ms: u64,
        /// Worker threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Manage virtual API keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a key that bills to a budget: prints it once and stores only its SHA-256 in
    /// the budget's file.
    New {
        /// The budget (file name in the budgets directory, without `.toml`).
        #[arg(long)]
        budget: String,
        /// A name for the key, shown in logs and the ledger (default: key-YYYYMMDD-HHMMSS).
        #[arg(long)]
        id: Option<String>,
        /// The routes file that names the budgets directory.
        #[arg(long, short, default_value = "routes.toml")]
        config: PathBuf,
    },
}

/// mimalloc rather than the system allocator: a request allocates and frees many small
/// buffers across worker threads, which glibc's malloc served at a fifth of the CPU time
/// per request (see README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _log = init_logging(cli.log_json);
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: valid (version {}, {} providers, {} models, {} aliases, {} budgets)",
                    config.display(),
                    c.version,
                    c.providers.len(),
                    c.models.len(),
                    c.aliases.len(),
                    c.budgets.len()
                );
                ExitCode::SUCCESS
            }
            Err(errs) => {
                for p in &errs.0 {
                    eprintln!("{p}");
                }
                eprintln!("{}: {} problem(s)", config.display(), errs.0.len());
                ExitCode::FAILURE
            }
        },
        Command::Key {
            command: KeyCommand::New { budget, id, config },
        } => new_key(&config, &budget, id),
        Command::EvalRouter {
            file,
            config,
            show_misses,
        } => eval_router(&config, &file, show_misses),
        Command::Serve {
            config,
            demo,
            listen,
            admin_listen,
        } => serve(config, demo, listen, admin_listen),
        Command::Sim {
            listen,
            chunk_delay_ms,
            first_byte_delay_ms,
            threads,
        } => {
            let opts = SimOptions {
                chunk_delay: std::time::Duration::from_millis(chunk_delay_ms),
                first_byte_delay: std::time::Duration::from_millis(first_byte_delay_ms),
                discard_requests: true,
                ..SimOptions::default()
            };
            run_sim(listen, opts, threads)
        }
    }
}

/// `tollgate sim`: every simulator on consecutive ports from `first`, until a signal.
fn run_sim(first: std::net::SocketAddr, opts: SimOptions, threads: usize) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("tollgate-sim")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let mut servers = Vec::new();
        for (i, kind) in ProviderKind::ALL.into_iter().enumerate() {
            let mut addr = first;
            addr.set_port(first.port().saturating_add(i as u16));
            match tollgate::sim::SimServer::start_on(kind, opts.clone(), addr).await {
                Ok(s) => {
                    println!("{kind} {}", s.base_url());
                    servers.push(s);
                }
                Err(e) => {
                    eprintln!("cannot start the simulated {kind} provider on {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cannot watch SIGTERM: {e}");
                    return ExitCode::FAILURE;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        drop(servers);
        ExitCode::SUCCESS
    })
}

fn serve(
    path: PathBuf,
    demo: bool,
    listen: Option<String>,
    admin_listen: Option<String>,
) -> ExitCode {
    let mut config = match Config::load(&path) {
        Ok(c) => c,
        Err(errs) => {
            for p in &errs.0 {
                eprintln!("{p}");
            }
            eprintln!(
                "{}: {} problem(s); not starting",
                path.display(),
                errs.0.len()
            );
            return ExitCode::FAILURE;
        }
    };
    if let Some(l) = listen {
        config.server.listen = l;
    }
    if let Some(a) = admin_listen {
        config.server.admin_listen = Some(a);
    }
    if config
        .server
        .listen
        .parse::<std::net::SocketAddr>()
        .is_err()
    {
        eprintln!("--listen must be IP:PORT, got `{}`", config.server.listen);
        return ExitCode::FAILURE;
    }

    // The simulated providers live for the whole run (demo mode).
    let fleet: Option<Arc<SimFleet>> = if demo {
        match SimFleet::spawn(SimOptions::default()) {
            Ok(f) => Some(Arc::new(f)),
            Err(e) => {
                eprintln!("cannot start the simulated providers: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    if fleet.is_some() {
        tracing::warn!(
            "DEMO MODE: every provider is a built-in simulator on this machine; answers are synthetic \
             and no real provider is called. Any API key (or none) is accepted and billed to the \
             `{}` budget. Do not use in production.",
            config.auth.anonymous_budget
        );
    }
    // Applied to the config at start-up and to every reloaded one.
    let listen_override = config.server.listen.clone();
    let admin_override = config.server.admin_listen.clone();
    let prepare = move |cfg: &mut Config| -> Credentials {
        cfg.server.listen = listen_override.clone();
        cfg.server.admin_listen = admin_override.clone();
        match &fleet {
            Some(f) => {
                cfg.auth.allow_anonymous = true;
                cfg.auth.accept_any_key = true;
                point_at_simulators(cfg, f);
                Credentials::demo(cfg)
            }
            None => {
                let creds = Credentials::load(cfg);
                for (provider, reason) in creds.missing() {
                    tracing::warn!(%provider, %reason, "Provider has no usable credential; requests will skip it.");
                }
                creds
            }
        }
    };
    let credentials = prepare(&mut config);
    let admin_token = std::env::var("TOLLGATE_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .map(|t| Secret::new(t.trim()));
    if config.server.admin_listen.is_some() && admin_token.is_none() {
        tracing::warn!("TOLLGATE_ADMIN_TOKEN is not set; the admin API refuses every request.");
    }
    // Budget state and the ledger live on their own runtime for the life of the process
    // (Redis connections are driven there; Pingora's services run on theirs).
    let state_rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("tollgate-state")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the state runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let billing = match state_rt.block_on(tollgate::billing::Billing::open(
        &config,
        Arc::new(tollgate::clock::SystemClock),
    )) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        backend = ?config.state.backend,
        data_dir = %config.state.data_dir.display(),
        budgets = config.budgets.len(),
        "Accounting ready."
    );
    let state = GatewayState::with_billing(config, credentials, billing);
    let reloader = Reloader::new(path.clone(), state.clone(), Box::new(prepare));
    let config = state.config.load_full();
    let opts = ServeOptions {
        listen: config.server.listen.clone(),
        threads: config.server.threads,
        grace: config.server.shutdown_grace,
        admin_listen: config.server.admin_listen.clone(),
        admin_token,
        reloader: Some(reloader),
    };
    // Pingora retries a busy address for a while and then panics in its service thread,
    // leaving a process that serves nothing: check both addresses first.
    for addr in std::iter::once(&opts.listen).chain(opts.admin_listen.as_ref()) {
        if let Err(e) = server::check_listen(addr) {
            tracing::error!(address = %addr, error = %e, "Cannot listen; exiting.");
            return ExitCode::FAILURE;
        }
    }
    tracing::info!(
        listen = %opts.listen,
        config = %path.display(),
        version = %config.version,
        models = config.models.len(),
        "tollgate is serving the OpenAI API at http://{}/v1.",
        opts.listen
    );
    server::run(state, &opts);
    drop(state_rt);
    ExitCode::SUCCESS
}

/// `tollgate key new`: the budget must exist and the whole config must stay valid.
fn eval_router(config: &std::path::Path, file: &std::path::Path, show_misses: bool) -> ExitCode {
    let cfg = match Config::load(config) {
        Ok(c) => c,
        Err(errs) => {
            for p in &errs.0 {
                eprintln!("{p}");
            }
            return ExitCode::FAILURE;
        }
    };
    let input = match std::fs::File::open(file) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    match tollgate::routing::eval::evaluate(&cfg, input) {
        Ok(report) => {
            print!("{}", report.render());
            if show_misses {
                print!("{}", report.render_misses());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

fn new_key(config: &std::path::Path, budget: &str, id: Option<String>) -> ExitCode {
    let cfg = match Config::load(config) {
        Ok(c) => c,
        Err(errs) => {
            for p in &errs.0 {
                eprintln!("{p}");
            }
            eprintln!("{}: fix these problems first", config.display());
            return ExitCode::FAILURE;
        }
    };
    if cfg.budgets.get(budget).is_none() {
        let known: Vec<_> = cfg.budgets.iter().map(|b| b.name.as_str()).collect();
        eprintln!(
            "no budget `{budget}` in {} (known: {})",
            cfg.budgets_settings.dir.display(),
            known.join(", ")
        );
        return ExitCode::FAILURE;
    }
    let now = jiff::Timestamp::now();
    let id = id.unwrap_or_else(|| format!("key-{}", now.strftime("%Y%m%d-%H%M%S")));
    let file = cfg.budgets_settings.dir.join(format!("{budget}.toml"));
    let result = tollgate::budget::keys::generate().and_then(|key| {
        tollgate::budget::keys::add_to_file(&file, &id, &key, &now.strftime("%Y-%m-%d").to_string())
            .map(|_| key)
    });
    match result {
        Ok(key) => {
            println!("{key}");
            eprintln!(
                "Created key `{id}` for budget `{budget}` ({}). It is shown only this once; \
                 only its SHA-256 is stored. A running gateway picks it up within a second.",
                file.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Demo mode: every provider's base URL becomes its simulator's. A provider kind without a
/// simulator is pointed at a closed port so that no request can leave the machine.
fn point_at_simulators(config: &mut Config, fleet: &SimFleet) {
    for p in config.providers.values_mut() {
        let url = fleet
            .base_url(p.kind)
            .unwrap_or_else(|| "http://127.0.0.1:9".to_string());
        let p = std::sync::Arc::make_mut(p);
        if let Ok(base) = parse_base_url(&url) {
            p.base = base;
        }
        if p.kind == ProviderKind::Cortex {
            p.snowflake_token_type = Some("PROGRAMMATIC_ACCESS_TOKEN");
        }
    }
}

/// Logs go to stderr through a buffer (see `tollgate::logging`); the guard writes what is
/// left when `main` returns, and a panic writes it before the panic message.
fn init_logging(json: bool) -> Option<tollgate::logging::LogGuard> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,pingora=warn"));
    let (writer, guard) = match tollgate::logging::BufferedWriter::spawn(std::io::stderr()) {
        Ok((w, g)) => (Some(w), Some(g)),
        Err(_) => (None, None),
    };
    // Colour codes only for a terminal: in a log file they are noise, and formatting them
    // was a sizeable share of the work per access-log line.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal());
    match (writer, json) {
        (Some(w), json) => {
            let flusher = w.clone();
            let hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                flusher.flush();
                hook(info);
            }));
            let builder = builder.with_writer(w);
            if json {
                builder.json().init();
            } else {
                builder.fmt_fields(tollgate::logging::PlainFields).init();
            }
        }
        (None, true) => builder.with_writer(std::io::stderr).json().init(),
        (None, false) => builder
            .with_writer(std::io::stderr)
            .fmt_fields(tollgate::logging::PlainFields)
            .init(),
    }
    guard
}
