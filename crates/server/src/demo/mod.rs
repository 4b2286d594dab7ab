//! Realistic demo data at a chosen scale (`inkcart seed-demo`), deterministic for a given seed:
//! the same seed and the same end make the same rows, ids included. The rows go in through the
//! store's bulk loader, by the hundred, not through the use cases (which would hash a password
//! and render a post per request; here every account shares one hash).

mod text;

use chrono::{DateTime, Duration, Utc};
use inkcart_app::ports::{UserRepo as _, truncate_to_micros};
use inkcart_domain::blog::Slug;
use inkcart_domain::shop::{Money, OrderStatus, price_order};
use inkcart_domain::{CommentId, Email, OrderId, PostId, ProductId, Role, Tier, UserId};
use inkcart_store::bulk::{
    Batch, BulkWriter, CommentRow, OrderItemRow, OrderRow, PostRow, PostTagRow, ProductRow, TagRow,
    UserRow,
};
use inkcart_store::{Db, SqlStore};
use uuid::Uuid;

use text::{ADJECTIVES, FIRST_NAMES, LAST_NAMES, Lexicon, NOUNS, Rng, TAGS, markdown, sentence};

/// How much to make.
#[derive(Debug, Clone, Copy)]
pub struct DemoPlan {
    pub users: u64,
    pub posts: u64,
    pub products: u64,
    pub orders: u64,
    pub seed: u64,
    /// The moment the data ends at: everything happened over the two years before it. The
    /// same seed and the same `until` make the same rows, ids included.
    pub until: DateTime<Utc>,
}

/// What was made, for the summary and for benchmarks.
#[derive(Debug, Clone, Default)]
pub struct DemoSummary {
    pub users: u64,
    pub posts: u64,
    pub comments: u64,
    pub tags: u64,
    pub products: u64,
    pub orders: u64,
    /// A few published slugs and product ids, to aim requests at.
    pub sample_slugs: Vec<String>,
    pub sample_products: Vec<ProductId>,
    /// Words that occur in some posts but not most, to search for.
    pub search_terms: Vec<String>,
    /// Words that occur in fewer posts (about 0.2 to 0.5 % of them), to search for.
    pub rare_search_terms: Vec<String>,
    /// Viewer accounts (`user<i>@demo.inkcart.dev`), to sign requests as: (id, email).
    pub buyers: Vec<(UserId, String)>,
}

/// The progress of one stage: (stage, done, total).
pub type Progress<'a> = &'a (dyn Fn(&str, u64, u64) + Sync);

/// The demo's admin, whose account marks a database that already holds demo data.
const ADMIN_EMAIL: &str = "admin@demo.inkcart.dev";

/// Rows made between two writes (and reports of progress): posts come with their tags and
/// comments, orders with their lines.
const STEP: u64 = 400;

/// Writes the demo data. `password_hash` is the hash every demo account shares.
pub async fn seed(
    db: &Db,
    plan: &DemoPlan,
    password_hash: &str,
    progress: Progress<'_>,
) -> anyhow::Result<DemoSummary> {
    let mut rng = Rng(plan.seed);
    let lexicon = Lexicon::new();
    let mut summary = DemoSummary {
        search_terms: lexicon.search_terms(),
        rare_search_terms: lexicon.rare_search_terms(),
        ..DemoSummary::default()
    };
    let admin = Email::parse(ADMIN_EMAIL).map_err(|e| anyhow::anyhow!("{e}"))?;
    let already = SqlStore::new(db.clone())
        .find_credentials(&admin)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if already.is_some() {
        anyhow::bail!("this database already holds demo data; seed a fresh one");
    }
    let writer = BulkWriter::new(db);
    // Everything happened over the two years before `until`, in order. Timestamps are whole
    // microseconds, as the application's clock makes them and a post cursor carries them: with
    // the nanoseconds of `Utc::now()`, SQLite's text would sort a cursor's own post after it.
    let start = truncate_to_micros(plan.until) - Duration::days(730);
    let span_ms = 730 * 24 * 3600 * 1000;
    let at = |i: u64, n: u64| {
        start + Duration::milliseconds(i64::try_from(span_ms * i / n.max(1)).unwrap_or(0))
    };

    // Users: an admin, 2 % editors (the authors), the rest viewers.
    let mut user_ids = Vec::with_capacity(usize::try_from(plan.users).unwrap_or(0));
    let mut editor_ids = Vec::new();
    let tiers = [Tier::Guest, Tier::Guest, Tier::Regular, Tier::Premium];
    let mut done = 0;
    while done < plan.users {
        let upto = (done + STEP * 5).min(plan.users);
        let mut batch = Batch::default();
        for i in done..upto {
            let created = at(i, plan.users);
            let id = UserId::from_uuid(rng.id(created));
            let (email, role) = if i == 0 {
                (ADMIN_EMAIL.to_owned(), Role::Admin)
            } else if i % 50 == 1 {
                (format!("editor{i}@demo.inkcart.dev"), Role::Editor)
            } else {
                (format!("user{i}@demo.inkcart.dev"), Role::Viewer)
            };
            if role == Role::Viewer {
                if summary.buyers.len() < 10_000 {
                    summary.buyers.push((id, email.clone()));
                }
            } else {
                editor_ids.push(id);
            }
            user_ids.push(id);
            let name = format!("{} {}", rng.word(FIRST_NAMES), rng.word(LAST_NAMES));
            let tier = *rng.pick(&tiers);
            let email_verified = rng.chance(80);
            batch.users.push(UserRow {
                id,
                email,
                password_hash: password_hash.to_owned(),
                name: Some(name),
                role,
                tier,
                email_verified,
                created_at: created,
                updated_at: created,
            });
        }
        writer.write(batch).await?;
        done = upto;
        progress("users", done, plan.users);
    }
    summary.users = plan.users;

    // Tags.
    let tag_ids: Vec<Uuid> = TAGS.iter().map(|_| rng.id(start)).collect();
    if plan.posts > 0 {
        let tags = TAGS
            .iter()
            .zip(&tag_ids)
            .map(|(name, id)| TagRow {
                id: *id,
                name: (*name).to_owned(),
                created_at: start,
                updated_at: start,
            })
            .collect();
        writer
            .write(Batch {
                tags,
                ..Batch::default()
            })
            .await?;
        summary.tags = TAGS.len() as u64;
    }

    // Posts with their tags and comments.
    let mut done = 0;
    while done < plan.posts && !editor_ids.is_empty() {
        let upto = (done + STEP).min(plan.posts);
        let mut batch = Batch::default();
        for i in done..upto {
            let created = at(i, plan.posts);
            let id = PostId::from_uuid(rng.id(created));
            let title = format!(
                "The {} {} of the {} {}",
                rng.word(ADJECTIVES),
                rng.word(NOUNS),
                rng.word(ADJECTIVES),
                rng.word(NOUNS)
            );
            let slug = format!("{}-{i}", Slug::from_title(&title));
            let content = markdown(&mut rng, &lexicon, &title);
            let published = rng.chance(92);
            if published && summary.sample_slugs.len() < 1000 {
                summary.sample_slugs.push(slug.clone());
            }
            let author_id = *rng.pick(&editor_ids);
            batch.posts.push(PostRow {
                id,
                author_id,
                title,
                slug,
                content_html: inkcart_app::blog::render_markdown(&content),
                excerpt: inkcart_app::blog::excerpt(&content),
                content,
                cover_image_key: None,
                published,
                published_at: published.then_some(created),
                created_at: created,
                updated_at: created,
            });
            let mut chosen: Vec<Uuid> = Vec::new();
            for _ in 0..(1 + rng.below(3)) {
                let tag = *rng.pick(&tag_ids);
                if !chosen.contains(&tag) {
                    chosen.push(tag);
                    batch.post_tags.push(PostTagRow {
                        post_id: id,
                        tag_id: tag,
                        created_at: created,
                    });
                }
            }
            if published {
                for c in 0..rng.below(5) {
                    let when = created + Duration::minutes(i64::try_from(c * 37 + 5).unwrap_or(5));
                    let words = 5 + rng.below(15);
                    let comment_id = CommentId::from_uuid(rng.id(when));
                    let author_id = *rng.pick(&user_ids);
                    batch.comments.push(CommentRow {
                        id: comment_id,
                        post_id: id,
                        author_id,
                        content: sentence(&mut rng, &lexicon, words),
                        created_at: when,
                        updated_at: when,
                    });
                }
            }
        }
        summary.comments += batch.comments.len() as u64;
        writer.write(batch).await?;
        done = upto;
        progress("posts", done, plan.posts);
    }
    summary.posts = done;

    // Products.
    let mut product_prices: Vec<(ProductId, Money)> = Vec::new();
    let mut done = 0;
    while done < plan.products {
        let upto = (done + STEP * 2).min(plan.products);
        let mut batch = Batch::default();
        for i in done..upto {
            let created = at(i, plan.products);
            let id = ProductId::from_uuid(rng.id(created));
            let name = format!("{} {} #{i}", rng.word(ADJECTIVES), rng.word(NOUNS));
            let price = Money::from_cents(i64::try_from(100 + rng.below(19_900)).unwrap_or(100));
            product_prices.push((id, price));
            if summary.sample_products.len() < 1000 {
                summary.sample_products.push(id);
            }
            let description = sentence(&mut rng, &lexicon, 12);
            let stock = i32::try_from(1_000_000 + rng.below(1_000_000)).unwrap_or(1_000_000);
            batch.products.push(ProductRow {
                id,
                name,
                description: Some(description),
                price,
                stock,
                active: true,
                created_at: created,
                updated_at: created,
            });
        }
        writer.write(batch).await?;
        done = upto;
        progress("products", done, plan.products);
    }
    summary.products = plan.products;

    // Orders, priced with the shop's own rules.
    let statuses = [
        OrderStatus::Pending,
        OrderStatus::Paid,
        OrderStatus::Paid,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ];
    let mut done = 0;
    while done < plan.orders && !product_prices.is_empty() && !user_ids.is_empty() {
        let upto = (done + STEP).min(plan.orders);
        let mut batch = Batch::default();
        for i in done..upto {
            let created = at(i, plan.orders);
            let id = OrderId::from_uuid(rng.id(created));
            let mut lines: Vec<(ProductId, Money, i64)> = Vec::new();
            for _ in 0..(1 + rng.below(3)) {
                let (product, price) = *rng.pick(&product_prices);
                if !lines.iter().any(|(p, _, _)| *p == product) {
                    lines.push((product, price, i64::try_from(1 + rng.below(3)).unwrap_or(1)));
                }
            }
            let priced: Vec<(Money, i64)> = lines.iter().map(|(_, p, q)| (*p, *q)).collect();
            let tier = *rng.pick(&tiers);
            let totals = price_order(&priced, tier)
                .ok_or_else(|| anyhow::anyhow!("a demo order overflowed"))?;
            let user_id = *rng.pick(&user_ids);
            let status = *rng.pick(&statuses);
            batch.orders.push(OrderRow {
                id,
                user_id,
                status,
                subtotal: totals.subtotal,
                discount: totals.discount,
                total: totals.total,
                created_at: created,
                updated_at: created,
            });
            for ((product_id, price, quantity), line_total) in lines.iter().zip(&totals.line_totals)
            {
                batch.order_items.push(OrderItemRow {
                    id: rng.id(created),
                    order_id: id,
                    product_id: *product_id,
                    quantity: i32::try_from(*quantity).unwrap_or(1),
                    unit_price: *price,
                    line_total: *line_total,
                });
            }
        }
        writer.write(batch).await?;
        done = upto;
        progress("orders", done, plan.orders);
    }
    summary.orders = done;
    writer.finish().await?;
    Ok(summary)
}
