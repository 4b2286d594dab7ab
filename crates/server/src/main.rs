//! `inkcart`: the command line.

use std::net::SocketAddr;
use std::process::ExitCode;

use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use inkcart::config::Config;
use inkcart_app::identity::AdminOutcome;
use inkcart_app::ports::SystemClock;
use inkcart_store::Db;

#[derive(Debug, Parser)]
#[command(
    name = "inkcart",
    version,
    about = "A backend for a blog and a shop, in one binary.",
    long_about = "A backend for a blog and a shop, in one binary. Configuration comes from \
                  INKCART_* environment variables (plus DATABASE_URL and PORT) and an optional \
                  inkcart.toml; see docs/configuration.md. Without a subcommand, `serve` runs."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (applies pending migrations first), with the job worker unless
    /// `--no-worker`.
    Serve {
        /// Leave the job worker, outbox relay and schedules to `inkcart worker` processes.
        #[arg(long)]
        no_worker: bool,
    },
    /// Run only the job worker, outbox relay and schedules (scale them out as processes).
    Worker,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create an admin account, or promote the existing account with this email.
    CreateAdmin {
        #[arg(long)]
        email: String,
        /// The password for a new account (ignored when the account exists).
        #[arg(long, env = "INKCART_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Print the OpenAPI document of the REST API.
    Openapi,
    /// Fill the database with realistic demo data (every demo account's password: Demo12345).
    SeedDemo {
        #[arg(long, default_value_t = 1_000)]
        users: u64,
        #[arg(long, default_value_t = 5_000)]
        posts: u64,
        #[arg(long, default_value_t = 500)]
        products: u64,
        #[arg(long, default_value_t = 2_000)]
        orders: u64,
        /// The same seed makes the same data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also write, into this directory, files for load tests: published slugs, product ids,
        /// words to search for and access tokens of demo buyers (valid for two hours).
        #[arg(long)]
        bench_files: Option<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    inkcart::install_crypto_provider();
    let cli = Cli::parse();
    let mut config = match Config::from_env() {
        Ok(config) => config,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::from(2);
        }
    };
    let _log_writer = match inkcart::telemetry::init(config.log_format, &config.log_filter) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("{err:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(
        cli.command.unwrap_or(Command::Serve { no_worker: false }),
        &mut config,
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "inkcart stopped with an error");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: &mut Config) -> anyhow::Result<()> {
    match command {
        Command::Openapi => {
            let json = inkcart_http::openapi()
                .to_pretty_json()
                .context("rendering the OpenAPI document")?;
            println!("{json}");
            Ok(())
        }
        Command::Migrate => {
            inkcart::open_database(config).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::CreateAdmin { email, password } => {
            config.ensure_jwt_secret()?;
            let db = inkcart::open_database(config).await?;
            let app = inkcart::build_app(config, db)?;
            let (user, outcome) = app
                .identity()
                .ensure_admin(&email, &password)
                .await
                .map_err(|e| anyhow::anyhow!("{}", describe_app_error(&e)))?;
            let what = match outcome {
                AdminOutcome::Created => "created admin",
                AdminOutcome::Promoted => "promoted to admin",
                AdminOutcome::AlreadyAdmin => "already an admin",
            };
            println!("{what}: {} ({})", user.email, user.id);
            Ok(())
        }
        Command::Serve { no_worker } => serve(config, !no_worker).await,
        Command::SeedDemo {
            users,
            posts,
            products,
            orders,
            seed,
            bench_files,
        } => {
            let plan = inkcart::demo::DemoPlan {
                users,
                posts,
                products,
                orders,
                seed,
                until: chrono::Utc::now(),
            };
            inkcart::seed::seed_demo(config, &plan, bench_files.as_deref()).await
        }
        Command::Worker => worker(config).await,
    }
}

fn describe_app_error(err: &inkcart_app::AppError) -> String {
    match err {
        inkcart_app::AppError::Validation(errors) => errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => format!("{other:#}"),
    }
}

/// The use cases over the configured database, with every adapter, and the database to close
/// when they are done.
async fn app(config: &mut Config) -> anyhow::Result<(Arc<inkcart_app::App>, Db)> {
    config.ensure_jwt_secret()?;
    let db = inkcart::open_database(config).await?;
    tracing::info!(backend = ?db.backend(), "database ready");
    let connected = inkcart::connect(config, &db).await?;
    let app = inkcart::build_app_with(config, db.clone(), Arc::new(SystemClock), connected)?;
    Ok((Arc::new(app), db))
}

/// A flag that turns true once SIGINT or SIGTERM arrived.
fn stop_on_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        inkcart::shutdown_signal().await;
        let _ = tx.send(true);
    });
    rx
}

async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn serve(config: &mut Config, with_worker: bool) -> anyhow::Result<()> {
    let (app, db) = app(config).await?;
    // Closed however serving ended: a port already taken, a worker that panicked.
    let served = serve_app(config, app, with_worker).await;
    db.close().await;
    served
}

async fn serve_app(
    config: &Config,
    app: Arc<inkcart_app::App>,
    with_worker: bool,
) -> anyhow::Result<()> {
    let stop = stop_on_signal();
    let worker = with_worker.then(|| {
        tokio::spawn(inkcart_jobs::run(
            app.background().clone(),
            inkcart::worker_config(config),
            stopped(stop.clone()),
        ))
    });
    let router = inkcart::router_for(config, app);
    let addr = SocketAddr::new(config.bind, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    let served = inkcart::listen::serve(
        listener,
        router,
        stopped(stop),
        &inkcart::server_limits(config),
    )
    .await;
    if let Some(worker) = worker {
        worker.await.context("the worker ended abnormally")?;
    }
    served
}

async fn worker(config: &mut Config) -> anyhow::Result<()> {
    let (app, db) = app(config).await?;
    inkcart_jobs::run(
        app.background().clone(),
        inkcart::worker_config(config),
        stopped(stop_on_signal()),
    )
    .await;
    db.close().await;
    Ok(())
}
