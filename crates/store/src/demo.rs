//! Realistic demo data at a chosen scale, written in batches straight to the tables (the use
//! cases would hash a password and render a post per request; here every user shares one hash
//! and rows go in by the hundred). Deterministic for a given seed.

use chrono::{DateTime, Duration, Utc};
use inkcart_app::ports::truncate_to_micros;
use inkcart_domain::Tier;
use inkcart_domain::blog::Slug;
use inkcart_domain::shop::{Money, price_order};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait as _, ConnectionTrait, EntityTrait as _, PaginatorTrait as _, QueryFilter as _,
    TransactionTrait as _,
};
use uuid::Uuid;

use crate::Db;
use crate::dialect::Dialect;
use crate::entity::{comments, order_items, orders, post_tags, posts, products, tags, users};

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
    pub sample_products: Vec<Uuid>,
    /// Words that occur in some posts but not most, to search for.
    pub search_terms: Vec<String>,
    /// Words that occur in fewer posts (about 0.2 to 0.5 % of them), to search for.
    pub rare_search_terms: Vec<String>,
    /// Viewer accounts (`user<i>@demo.inkcart.dev`), to sign requests as: (id, email).
    pub buyers: Vec<(Uuid, String)>,
}

/// The progress of one stage: (stage, done, total).
pub type Progress<'a> = &'a (dyn Fn(&str, u64, u64) + Sync);

/// SplitMix64: small, fast and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[usize::try_from(self.below(items.len() as u64)).unwrap_or(0)]
    }

    fn word(&mut self, words: &[&'static str]) -> &'static str {
        words[usize::try_from(self.below(words.len() as u64)).unwrap_or(0)]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A UUID v7-shaped id at `at`, reproducible from the seed.
    fn id(&mut self, at: DateTime<Utc>) -> Uuid {
        let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        let random = self.next();
        let bits = (u128::from(millis) << 80)
            | (0x7u128 << 76)
            | (u128::from(random & 0x0FFF) << 64)
            | (0b10u128 << 62)
            | u128::from(random >> 2);
        Uuid::from_u128(bits)
    }
}

const ADJECTIVES: &[&str] = &[
    "quiet", "bright", "hidden", "patient", "rusty", "curious", "modern", "gentle", "bold",
    "simple", "distant", "careful", "wild", "honest", "tiny", "golden", "open", "lasting",
];
const NOUNS: &[&str] = &[
    "garden", "server", "river", "kitchen", "library", "journey", "market", "engine", "letter",
    "harbor", "mountain", "workshop", "forest", "compiler", "teapot", "lantern", "bicycle",
    "notebook", "window", "bridge",
];
const WORDS: &[&str] = &[
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "rust",
    "coffee",
    "morning",
    "database",
    "query",
    "bread",
    "window",
    "light",
    "writes",
    "reads",
    "builds",
    "ships",
    "quietly",
    "fast",
    "every",
    "day",
    "small",
    "large",
    "order",
    "stock",
    "price",
    "search",
    "index",
    "cache",
    "garden",
    "tomato",
    "sourdough",
    "river",
    "stone",
    "paper",
    "ink",
    "cart",
    "shop",
    "blog",
    "running",
    "walking",
    "thinking",
    "simple",
    "careful",
    "measure",
    "twice",
    "cut",
    "once",
];
const FIRST_NAMES: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Dennis",
    "Barbara",
    "Ken",
    "Radia",
    "Edsger",
    "Frances",
    "Niklaus",
    "Hedy",
    "Tim",
    "Katherine",
    "John",
    "Sophie",
    "Guido",
];
const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Ritchie",
    "Liskov",
    "Thompson",
    "Perlman",
    "Dijkstra",
    "Allen",
    "Wirth",
    "Lamarr",
    "Berners-Lee",
    "Johnson",
    "Backus",
    "Wilson",
    "van Rossum",
];
const TAGS: &[&str] = &[
    "rust",
    "web",
    "databases",
    "cooking",
    "travel",
    "gardening",
    "design",
    "books",
    "music",
    "photography",
    "coffee",
    "hardware",
    "security",
    "performance",
    "testing",
    "writing",
    "bicycles",
    "tea",
    "maps",
    "history",
    "science",
    "open source",
    "startups",
    "ux",
    "sqlite",
    "postgres",
    "search",
    "caching",
    "shipping",
    "pricing",
];

/// The long tail of a post's words: made-up words whose frequencies fall off as in real text
/// (Zipf: the word of rank r is drawn in proportion to 1/r), so that a search for one of them
/// matches a realistic share of the posts, from most of them to a handful.
struct Lexicon {
    words: Vec<String>,
    /// Cumulative weights, for drawing by rank.
    cumulative: Vec<u64>,
}

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ren", "to", "va", "shi", "dor", "bel", "nu", "fa", "ri", "gan", "pe", "sol",
    "ti", "mar", "ve", "lu", "zen",
];
const LEXICON_SIZE: usize = 3_000;

impl Lexicon {
    /// The same lexicon for every seed.
    fn new() -> Self {
        let mut rng = Rng(0x001E_61C0);
        let mut seen = std::collections::HashSet::new();
        let mut words = Vec::with_capacity(LEXICON_SIZE);
        while words.len() < LEXICON_SIZE {
            let syllables = 2 + rng.below(2);
            let word: String = (0..syllables).map(|_| rng.word(SYLLABLES)).collect();
            if seen.insert(word.clone()) {
                words.push(word);
            }
        }
        let mut total = 0;
        let cumulative = (1..=LEXICON_SIZE as u64)
            .map(|rank| {
                total += 1_000_000 / rank;
                total
            })
            .collect();
        Self { words, cumulative }
    }

    fn draw(&self, rng: &mut Rng) -> &str {
        let total = self.cumulative.last().copied().unwrap_or(1);
        let at = rng.below(total);
        let rank = self.cumulative.partition_point(|&c| c <= at);
        self.words.get(rank).map_or("ink", String::as_str)
    }

    /// Words of middling frequency (ranks 100 to 2,000), to search for.
    fn search_terms(&self) -> Vec<String> {
        self.every_100th_from(100)
    }

    /// Rarer words (ranks 1,000 to 2,900): each in about 0.2 to 0.5 % of the posts.
    fn rare_search_terms(&self) -> Vec<String> {
        self.every_100th_from(1_000)
    }

    /// Twenty words, one every hundred ranks from `rank` (counted from 1).
    fn every_100th_from(&self, rank: usize) -> Vec<String> {
        self.words
            .iter()
            .skip(rank - 1)
            .step_by(100)
            .take(20)
            .cloned()
            .collect()
    }
}

/// How many rows go into one statement.
const BATCH: usize = 400;

fn sentence(rng: &mut Rng, lexicon: &Lexicon, words: u64) -> String {
    let mut out = String::new();
    for i in 0..words {
        if i > 0 {
            out.push(' ');
        }
        // Seven words in ten are the common ones, the rest come from the long tail.
        if rng.chance(70) {
            out.push_str(rng.word(WORDS));
        } else {
            out.push_str(lexicon.draw(rng));
        }
    }
    let mut chars = out.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_uppercase().chain(chars).collect::<String>() + "."
    })
}

fn markdown(rng: &mut Rng, lexicon: &Lexicon, title: &str) -> String {
    let mut md = format!("# {title}\n\n");
    for _ in 0..(2 + rng.below(3)) {
        for _ in 0..(3 + rng.below(4)) {
            let words = 6 + rng.below(10);
            md.push_str(&sentence(rng, lexicon, words));
            md.push(' ');
        }
        md.push_str("\n\n");
    }
    let (word, noun) = (rng.word(WORDS), rng.word(NOUNS));
    md.push_str(&format!(
        "Some **{word}** and a [link](https://example.com/{noun}).\n"
    ));
    md
}

async fn insert_batches<A, C>(conn: &C, rows: Vec<A>) -> anyhow::Result<()>
where
    A: sea_orm::ActiveModelTrait + Send,
    C: ConnectionTrait,
{
    let mut rows = rows;
    while !rows.is_empty() {
        let rest = rows.split_off(rows.len().min(BATCH));
        let chunk = std::mem::replace(&mut rows, rest);
        <A::Entity as sea_orm::EntityTrait>::insert_many(chunk)
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

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
    let writer = &db.writer;
    let already = users::Entity::find()
        .filter(users::Column::Email.eq("admin@demo.inkcart.dev"))
        .count(writer)
        .await?;
    if already > 0 {
        anyhow::bail!("this database already holds demo data; seed a fresh one");
    }
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
        let upto = (done + BATCH as u64 * 5).min(plan.users);
        let tx = writer.begin().await?;
        let mut rows = Vec::new();
        for i in done..upto {
            let created = at(i, plan.users);
            let id = rng.id(created);
            let (email, role) = if i == 0 {
                ("admin@demo.inkcart.dev".to_owned(), "admin")
            } else if i % 50 == 1 {
                (format!("editor{i}@demo.inkcart.dev"), "editor")
            } else {
                (format!("user{i}@demo.inkcart.dev"), "viewer")
            };
            if role == "editor" || role == "admin" {
                editor_ids.push(id);
            } else if summary.buyers.len() < 10_000 {
                summary.buyers.push((id, email.clone()));
            }
            user_ids.push(id);
            rows.push(users::ActiveModel {
                id: Set(id),
                email: Set(email),
                password_hash: Set(password_hash.to_owned()),
                name: Set(Some(format!(
                    "{} {}",
                    rng.word(FIRST_NAMES),
                    rng.word(LAST_NAMES)
                ))),
                role: Set(role.to_owned()),
                tier: Set(rng.pick(&tiers).as_str().to_owned()),
                email_verified: Set(rng.chance(80)),
                created_at: Set(created),
                updated_at: Set(created),
            });
        }
        insert_batches(&tx, rows).await?;
        tx.commit().await?;
        done = upto;
        progress("users", done, plan.users);
    }
    summary.users = plan.users;

    // Tags.
    let tag_ids: Vec<Uuid> = TAGS.iter().map(|_| rng.id(start)).collect();
    if plan.posts > 0 {
        let rows = TAGS
            .iter()
            .zip(&tag_ids)
            .map(|(name, id)| tags::ActiveModel {
                id: Set(*id),
                name: Set((*name).to_owned()),
                created_at: Set(start),
                updated_at: Set(start),
            })
            .collect();
        insert_batches(writer, rows).await?;
        summary.tags = TAGS.len() as u64;
    }

    // Posts with their tags and comments.
    let mut done = 0;
    while done < plan.posts && !editor_ids.is_empty() {
        let upto = (done + BATCH as u64).min(plan.posts);
        let tx = writer.begin().await?;
        let (mut post_rows, mut link_rows, mut comment_rows) = (Vec::new(), Vec::new(), Vec::new());
        for i in done..upto {
            let created = at(i, plan.posts);
            let id = rng.id(created);
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
            post_rows.push(posts::ActiveModel {
                id: Set(id),
                author_id: Set(*rng.pick(&editor_ids)),
                title: Set(title),
                slug: Set(slug),
                content_html: Set(inkcart_app::blog::render_markdown(&content)),
                excerpt: Set(inkcart_app::blog::excerpt(&content)),
                content: Set(content),
                cover_image_key: Set(None),
                published: Set(published),
                published_at: Set(published.then_some(created)),
                created_at: Set(created),
                updated_at: Set(created),
                // Kept by the database's triggers.
                comment_count: NotSet,
            });
            let mut chosen: Vec<Uuid> = Vec::new();
            for _ in 0..(1 + rng.below(3)) {
                let tag = *rng.pick(&tag_ids);
                if !chosen.contains(&tag) {
                    chosen.push(tag);
                    link_rows.push(post_tags::ActiveModel {
                        post_id: Set(id),
                        tag_id: Set(tag),
                        created_at: Set(created),
                    });
                }
            }
            if published {
                for c in 0..rng.below(5) {
                    let when = created + Duration::minutes(i64::try_from(c * 37 + 5).unwrap_or(5));
                    let words = 5 + rng.below(15);
                    comment_rows.push(comments::ActiveModel {
                        id: Set(rng.id(when)),
                        post_id: Set(id),
                        author_id: Set(*rng.pick(&user_ids)),
                        content: Set(sentence(&mut rng, &lexicon, words)),
                        created_at: Set(when),
                        updated_at: Set(when),
                    });
                }
            }
        }
        summary.comments += comment_rows.len() as u64;
        insert_batches(&tx, post_rows).await?;
        insert_batches(&tx, link_rows).await?;
        insert_batches(&tx, comment_rows).await?;
        tx.commit().await?;
        done = upto;
        progress("posts", done, plan.posts);
    }
    summary.posts = done;

    // Products.
    let mut product_prices: Vec<(Uuid, String, Money)> = Vec::new();
    let mut done = 0;
    while done < plan.products {
        let upto = (done + BATCH as u64 * 2).min(plan.products);
        let mut rows = Vec::new();
        for i in done..upto {
            let created = at(i, plan.products);
            let id = rng.id(created);
            let name = format!("{} {} #{i}", rng.word(ADJECTIVES), rng.word(NOUNS));
            let price = Money::from_cents(i64::try_from(100 + rng.below(19_900)).unwrap_or(100));
            product_prices.push((id, name.clone(), price));
            if summary.sample_products.len() < 1000 {
                summary.sample_products.push(id);
            }
            rows.push(products::ActiveModel {
                id: Set(id),
                name: Set(name),
                description: Set(Some(sentence(&mut rng, &lexicon, 12))),
                price_cents: Set(price.cents()),
                stock: Set(i32::try_from(1_000_000 + rng.below(1_000_000)).unwrap_or(1_000_000)),
                active: Set(true),
                created_at: Set(created),
                updated_at: Set(created),
            });
        }
        insert_batches(writer, rows).await?;
        done = upto;
        progress("products", done, plan.products);
    }
    summary.products = plan.products;

    // Orders, priced with the shop's own rules.
    let statuses = [
        "pending",
        "paid",
        "paid",
        "shipped",
        "delivered",
        "delivered",
        "cancelled",
    ];
    let mut done = 0;
    while done < plan.orders && !product_prices.is_empty() && !user_ids.is_empty() {
        let upto = (done + BATCH as u64).min(plan.orders);
        let tx = writer.begin().await?;
        let (mut order_rows, mut item_rows) = (Vec::new(), Vec::new());
        for i in done..upto {
            let created = at(i, plan.orders);
            let id = rng.id(created);
            let mut lines: Vec<(Uuid, Money, i64)> = Vec::new();
            for _ in 0..(1 + rng.below(3)) {
                let (pid, _, price) = rng.pick(&product_prices);
                if !lines.iter().any(|(p, _, _)| p == pid) {
                    lines.push((*pid, *price, i64::try_from(1 + rng.below(3)).unwrap_or(1)));
                }
            }
            let priced: Vec<(Money, i64)> = lines.iter().map(|(_, p, q)| (*p, *q)).collect();
            let tier = *rng.pick(&tiers);
            let totals = price_order(&priced, tier)
                .ok_or_else(|| anyhow::anyhow!("a demo order overflowed"))?;
            order_rows.push(orders::ActiveModel {
                id: Set(id),
                user_id: Set(*rng.pick(&user_ids)),
                status: Set((*rng.word(&statuses)).to_owned()),
                subtotal_cents: Set(totals.subtotal.cents()),
                discount_cents: Set(totals.discount.cents()),
                total_cents: Set(totals.total.cents()),
                created_at: Set(created),
                updated_at: Set(created),
            });
            for ((pid, price, quantity), line_total) in lines.iter().zip(&totals.line_totals) {
                item_rows.push(order_items::ActiveModel {
                    id: Set(rng.id(created)),
                    order_id: Set(id),
                    product_id: Set(*pid),
                    quantity: Set(i32::try_from(*quantity).unwrap_or(1)),
                    unit_price_cents: Set(price.cents()),
                    line_total_cents: Set(line_total.cents()),
                });
            }
        }
        insert_batches(&tx, order_rows).await?;
        insert_batches(&tx, item_rows).await?;
        tx.commit().await?;
        done = upto;
        progress("orders", done, plan.orders);
    }
    summary.orders = done;
    // Statistics for the planner, as after any bulk load.
    if let Some(sql) = Dialect::of(writer).after_bulk_load() {
        writer.execute_unprepared(sql).await?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic() {
        let (mut a, mut b) = (Rng(42), Rng(42));
        for _ in 0..100 {
            assert_eq!(a.next(), b.next());
        }
        let at = Utc::now();
        let id = Rng(1).id(at);
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(Rng(1).id(at), id);
    }
}
