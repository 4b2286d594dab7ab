//! `inkcart seed-demo`: demo data with a progress bar, and files for load tests.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use inkcart_adapters::hasher::Argon2Hasher;
use inkcart_adapters::tokens::JwtIssuer;
use inkcart_app::ports::{PasswordHasher as _, TokenIssuer as _};
use inkcart_domain::{Email, Password, Role, Tier, User};

use crate::config::Config;
use crate::demo::{DemoPlan, DemoSummary};

pub const DEMO_PASSWORD: &str = "Demo12345";

pub async fn seed_demo(
    config: &mut Config,
    plan: &DemoPlan,
    bench_files: Option<&Path>,
) -> anyhow::Result<()> {
    config.ensure_jwt_secret()?;
    let db = crate::open_database(config).await?;
    let password = Password::parse(DEMO_PASSWORD).map_err(|e| anyhow::anyhow!("{e}"))?;
    let hash = Argon2Hasher
        .hash(&password)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>9} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let started = Instant::now();
    let progress = |stage: &str, done: u64, total: u64| {
        if bar.prefix() != stage {
            bar.set_prefix(stage.to_owned());
            bar.reset();
        }
        bar.set_length(total);
        bar.set_position(done);
    };
    let summary = crate::demo::seed(&db, plan, &hash, &progress).await?;
    bar.finish_and_clear();
    println!(
        "seeded in {:.1}s: {} users, {} posts ({} comments, {} tags), {} products, {} orders (backend {:?}); password of every demo account: {DEMO_PASSWORD}",
        started.elapsed().as_secs_f64(),
        summary.users,
        summary.posts,
        summary.comments,
        summary.tags,
        summary.products,
        summary.orders,
        db.backend()
    );
    if let Some(dir) = bench_files {
        write_bench_files(config, &summary, dir)?;
        println!("load-test files in {}", dir.display());
    }
    Ok(())
}

fn write_lines(path: &Path, lines: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    for line in lines {
        writeln!(file, "{line}")?;
    }
    file.flush()?;
    Ok(())
}

fn write_bench_files(config: &Config, summary: &DemoSummary, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_lines(&dir.join("slugs.txt"), summary.sample_slugs.iter().cloned())?;
    write_lines(
        &dir.join("search.txt"),
        summary.search_terms.iter().cloned(),
    )?;
    write_lines(
        &dir.join("search-rare.txt"),
        summary.rare_search_terms.iter().cloned(),
    )?;
    write_lines(
        &dir.join("products.txt"),
        summary.sample_products.iter().map(ToString::to_string),
    )?;
    let secret = config.jwt_secret.as_ref().context("no JWT secret")?;
    let issuer = JwtIssuer::new(secret.expose());
    let now = chrono::Utc::now();
    let mut tokens = Vec::with_capacity(summary.buyers.len());
    for (id, email) in &summary.buyers {
        let user = User {
            id: *id,
            email: Email::parse(email).map_err(|e| anyhow::anyhow!("{e}"))?,
            name: None,
            role: Role::Viewer,
            tier: Tier::Guest,
            email_verified: true,
            created_at: now,
            updated_at: now,
        };
        let token = issuer
            .issue(&user, now, Duration::from_secs(2 * 3600))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tokens.push(token.token);
    }
    write_lines(&dir.join("tokens.txt"), tokens.into_iter())
}
