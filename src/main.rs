//! The `tollgate` command: `serve` runs the gateway, `check` validates a `routes.toml`.

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
    /// Validate a routes file without serving; exit 0 when valid.
    Check {
        /// The routes file.
        #[arg(default_value = "routes.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: valid (version {}, {} providers, {} models, {} aliases)",
                    config.display(),
                    c.version,
                    c.providers.len(),
                    c.models.len(),
                    c.aliases.len()
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
        Command::Serve {
            config,
            demo,
            listen,
            admin_listen,
        } => serve(config, demo, listen, admin_listen),
    }
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
             and no real provider is called. Do not use in production."
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
    let state = GatewayState::new(config, credentials);
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
    tracing::info!(
        listen = %opts.listen,
        config = %path.display(),
        version = %config.version,
        models = config.models.len(),
        "tollgate is serving the OpenAI API at http://{}/v1.",
        opts.listen
    );
    server::run(state, &opts);
    ExitCode::SUCCESS
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

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,pingora=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
